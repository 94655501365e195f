"""A Python agent: sends one request with requests or httpx, configured only by env.

Reads {method, url, headers, body, http2} as JSON on stdin; prints {status, headers, body}.
"""

import json
import sys

spec = json.load(sys.stdin)
body = None if spec["body"] is None else spec["body"].encode("latin-1")

if sys.argv[1] == "requests":
    import requests

    r = requests.request(spec["method"], spec["url"], headers=spec["headers"], data=body, timeout=60)
    status, headers, content = r.status_code, dict(r.headers), r.content
else:
    import httpx

    # http1=False makes httpx offer only h2 in ALPN (it lists http/1.1 first otherwise).
    with httpx.Client(http1=not spec["http2"], http2=spec["http2"], timeout=60) as client:
        r = client.request(spec["method"], spec["url"], headers=spec["headers"], content=body)
        if spec["http2"] and r.http_version != "HTTP/2":
            sys.exit(f"expected HTTP/2 to the proxy, got {r.http_version}")
        status, headers, content = r.status_code, dict(r.headers), r.content

json.dump({"status": status, "headers": headers, "body": content.decode("latin-1")}, sys.stdout)
