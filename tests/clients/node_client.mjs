// A Node agent: fetch through the proxy named by HTTPS_PROXY/NO_PROXY (undici's
// EnvHttpProxyAgent), trusting the CA named by NODE_EXTRA_CA_CERTS. Nothing else.
import { EnvHttpProxyAgent, fetch } from "undici";

let input = "";
for await (const chunk of process.stdin) input += chunk;
const spec = JSON.parse(input);
const res = await fetch(spec.url, {
  method: spec.method,
  headers: spec.headers,
  body: spec.body === null ? undefined : Buffer.from(spec.body, "latin1"),
  dispatcher: new EnvHttpProxyAgent(),
});
const body = Buffer.from(await res.arrayBuffer()).toString("latin1");
process.stdout.write(JSON.stringify({
  status: res.status,
  headers: Object.fromEntries(res.headers.entries()),
  body,
}));
