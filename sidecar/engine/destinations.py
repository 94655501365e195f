"""Where a request goes: SSRF targets, data smuggled in DNS labels, host lists, tools.

No DNS is resolved here (the engine is pure): a name is judged as written. IP literals
are parsed in every form a client accepts (decimal, hex, octal, short, IPv6-mapped).
"""

from __future__ import annotations

import fnmatch
import ipaddress
import re
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

from sidecar.engine.checks import entropy

METADATA_HOSTS = frozenset(
    {"metadata", "metadata.google.internal", "metadata.goog", "instance-data",
     "instance-data.ec2.internal", "metadata.azure.internal", "metadata.packet.net",
     "metadata.platformequinix.com", "metadata.tencentyun.com", "api.metadata.cloud.ibm.com",
     "metadata.oraclecloud.com"}
)  # fmt: skip
METADATA_ADDRESSES = frozenset(
    {ipaddress.ip_address(a) for a in ("169.254.169.254", "169.254.170.2", "fd00:ec2::254",
                                        "100.100.100.200", "192.0.0.192", "168.63.129.16")}
)  # fmt: skip
_SHARED = ipaddress.ip_network("100.64.0.0/10")


IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@lru_cache(maxsize=4096)  # every request asks this of its host, several times
def parse_ip(host: str) -> IPAddress | None:
    """The address a client would connect to for this literal, in any accepted form."""
    h = host.strip("[]").lower()
    try:
        addr = ipaddress.ip_address(h.split("%", 1)[0])
    except ValueError:
        pass
    else:
        if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
            return addr.ipv4_mapped
        return addr
    if not re.fullmatch(r"(?:0x[0-9a-f]+|\d+)(?:\.(?:0x[0-9a-f]+|\d+)){0,3}", h):
        return None
    try:  # inet_aton accepts decimal, hex, octal and short forms, like libc clients do
        return ipaddress.IPv4Address(socket.inet_aton(h))
    except OSError:
        return None


@dataclass(frozen=True, slots=True)
class SsrfFinding:
    reason: str  # "metadata", "loopback", "private", "link_local", ...


_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")  # RFC 8215, IPv4 in the last 32 bits
_SIIT = ipaddress.ip_network("::ffff:0:0:0/96")  # RFC 2765 IPv4-translated


def embedded_ipv4(addr: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one carries to (6to4, NAT64, Teredo, IPv4-compatible)."""
    if not isinstance(addr, ipaddress.IPv6Address):
        return None
    if addr.sixtofour is not None:
        return addr.sixtofour
    if addr.teredo is not None:
        return addr.teredo[1]
    if addr in _NAT64 or addr in _NAT64_LOCAL or addr in _SIIT or 1 < int(addr) < 2**32:
        return ipaddress.IPv4Address(int(addr) & 0xFFFFFFFF)
    return None


# Names that only resolve inside a network: cluster services, mDNS, split-horizon zones.
_INTERNAL_SUFFIXES = (
    ".svc", ".svc.cluster.local", ".cluster.local", ".internal", ".local", ".localdomain",
    ".home.arpa", ".lan", ".intranet", ".corp", ".private", ".consul",
)  # fmt: skip
# Kubernetes namespaces reached as `service.namespace` (never a public top-level domain).
_NAMESPACES = frozenset(
    {"default", "kube-system", "kube-public", "monitoring", "vault", "argocd", "etcd", "redis",
     "istio-system", "cert-manager", "ingress-nginx", "logging", "observability", "database",
     "cache", "svc", "cluster", "kafka", "postgres", "mysql", "elastic", "jenkins", "gitlab",
     "prometheus", "grafana", "minio", "rabbitmq", "mongodb", "airflow", "keycloak"}
)  # fmt: skip
# Public names that answer with a loopback or a private address by design.
_LOOPBACK_NAMES = ("localtest.me", "lvh.me", "vcap.me", "lacolhost.com", "127-0-0-1.org")
_ADDRESS_IN_NAME = ("nip.io", "sslip.io", "xip.io", "traefik.me", "localh.st")
_EMBEDDED_HEX = re.compile(r"(?:^|[.-])([0-9a-f]{8})\.(?:nip\.io|sslip\.io)$")
_EMBEDDED = re.compile(r"(?:^|[.-])((?:\d{1,3}[.-]){3}\d{1,3})(?:[.-]|$)")


def ssrf(host: str) -> SsrfFinding | None:
    h = host.lower().rstrip(".")
    if h in METADATA_HOSTS:
        return SsrfFinding("metadata")
    if h == "localhost" or h.endswith(".localhost"):
        return SsrfFinding("loopback")
    if belongs_to(h, _LOOPBACK_NAMES):
        return SsrfFinding("loopback")
    if belongs_to(h, _ADDRESS_IN_NAME):
        if m := _EMBEDDED.search(h):
            return ssrf(m.group(1).replace("-", "."))  # `10.0.0.1.nip.io` is 10.0.0.1
        if m := _EMBEDDED_HEX.search(h):
            return ssrf(str(ipaddress.IPv4Address(int(m.group(1), 16))))  # `a9fea9fe.nip.io`
    addr = parse_ip(h)
    if addr is None:
        last = h.rsplit(".", 1)[-1]
        if "." not in h.strip("[]") or h.endswith(_INTERNAL_SUFFIXES) or last in _NAMESPACES:
            return SsrfFinding("internal_name")  # a search-domain or cluster name
        return None
    inner = embedded_ipv4(addr)
    if inner is not None and (found := ssrf(str(inner))) is not None:
        return found
    if addr in METADATA_ADDRESSES:
        return SsrfFinding("metadata")
    for reason, flagged in (
        ("loopback", addr.is_loopback),
        ("unspecified", addr.is_unspecified),
        ("link_local", addr.is_link_local),
        ("private", addr.is_private),
        ("shared", isinstance(addr, ipaddress.IPv4Address) and addr in _SHARED),
        ("reserved", addr.is_reserved or addr.is_multicast),
    ):
        if flagged:
            return SsrfFinding(reason)
    return None


def address_refusal(host: str, address: IPAddress, internal: Iterable[str]) -> str | None:
    """Why connecting to `address` (what `host` resolved to) is refused, or None.

    The name as written was judged already; this judges where it actually leads, so a
    public name pointing at loopback or the metadata service is caught. Internal names
    and CIDR blocks the operator listed are allowed.
    """
    patterns = tuple(internal)
    if host_matches(host, patterns) or host_matches(str(address), patterns):
        return None
    target = ssrf(str(address))
    return None if target is None else target.reason


_HEX_ONLY = re.compile(r"^[0-9a-f]+$")
_B32_ONLY = re.compile(r"^[a-z2-7]+$")
_CODED = re.compile(r"^(?:[a-z2-7]+|[0-9a-f]+)$")  # a base32 or a hex piece
_ALNUM = re.compile(r"^[a-z0-9]+$")


def subdomain_labels(host: str) -> list[str]:
    """The labels left of the registrable name: what the sender chose freely."""
    h = host.lower().rstrip(".")
    if parse_ip(h) is not None:
        return []
    base = registrable_domain(h)
    rest = h[: -len(base)].rstrip(".") if h.endswith(base) else ""
    return rest.split(".") if rest else []


def random_label(label: str) -> bool:
    """A label that reads as data, not a name: letters and digits mixed the way
    encodings and random ids mix them, long enough for that to be telling."""
    if len(label) < 10 or not _ALNUM.match(label):
        return False
    digits = sum(c.isdigit() for c in label)
    if digits == 0 or digits == len(label):
        return _HEX_ONLY.match(label) is not None and len(label) >= 16
    return 0.12 <= digits / len(label) <= 0.75 and entropy(label) >= 3.0


# Zones of the large clouds and CDNs: their generated names (load balancers, buckets,
# distributions) look random by design, and data cannot be sent to them by name alone.
_CLOUD_ZONES = (
    "amazonaws.com", "cloudfront.net", "azure.com", "windows.net", "azureedge.net",
    "googleapis.com", "googleusercontent.com", "gvt1.com", "googlevideo.com", "ytimg.com",
    "akamaiedge.net", "akamaized.net", "fastly.net", "fastlylb.net", "cloudflare.net",
    "cloudflarestorage.com", "r2.dev", "edgekey.net", "llnwd.net", "b-cdn.net", "on.aws",
    "found.io", "huggingface.cloud", "dweb.link", "w3s.link", "ipfs.io", "cf-ipfs.com",
    "nftstorage.link", "4everland.io", "mypinata.cloud", "hf.space", "azurefd.net",
    "trafficmanager.net", "pstmn.io", "azuredatabricks.net", "cloud.databricks.com",
    "cloud.es.io", "es.io", "elastic-cloud.com",
)  # fmt: skip


def _mixed(label: str) -> bool:
    """Letters and digits interleaved, as encodings make them (`k9`, `x3q7m2`), not a
    name with a number at its end (`web01`, `s3`, `ipv6`)."""
    if not _ALNUM.match(label) or label.isalpha() or label.isdigit():
        return False
    return bool(re.search(r"\d[a-z]", label)) and bool(re.search(r"[a-z]\d", label))


def _hex_data(text: str) -> bool:
    return _HEX_ONLY.match(text) is not None and any(c.isdigit() for c in text)


def cloud_generated(host: str) -> bool:
    """A name the large clouds and CDNs generate (load balancers, buckets, tenants)."""
    return belongs_to(host, _CLOUD_ZONES)


def dns_exfiltration(host: str) -> bool:
    """Subdomain labels, judged together, that carry encoded or random data rather than
    names: long ones, hex or base32 runs however they are cut into labels, long chains of
    short labels (a token in 4-character pieces), random-looking labels, long numbers."""
    sub = subdomain_labels(host)
    if not sub or belongs_to(host, _CLOUD_ZONES):
        return False
    joined = "".join(sub)
    if len(joined) > 100 or len(sub) > 10:
        return True
    if any(random_label(label) or (len(label) >= 8 and label.isdigit()) for label in sub):
        return True
    coded = [label for label in sub if _mixed(label)]
    if len(coded) >= 3 or (len(coded) >= 2 and sum(map(len, coded)) >= 16):
        return True  # several short labels of letters and digits mixed (`k9.x3.q7`)
    if any(len(label) >= 16 and _HEX_ONLY.match(label) and not label.isalpha() for label in sub):
        return True  # a hex label
    for label in sub:  # dashes: a long random or hex piece (`ghp-<token>`, `v1-<hex>`), or
        if "-" not in label:  # dash-grouped hex, base32 or digits (`414b4941-4737...`)
            continue
        if any(len(p) >= 16 and (random_label(p) or _hex_data(p)) for p in label.split("-")):
            return True
        bare = label.replace("-", "")
        if len(bare) >= 16 and (_hex_data(bare) or (len(bare) >= 24 and _B32_ONLY.match(bare))):
            return True
        if len(bare) >= 9 and bare.isdigit():
            return True
    for run in _runs(sub):  # consecutive labels that together read as data
        text = "".join(run)
        if len(text) >= 16 and _HEX_ONLY.match(text) and any(c.isdigit() for c in text):
            return True  # hex, however it is cut
        if (
            len(run) >= 2
            and len(text) >= 16
            and sum(any(c.isdigit() for c in label) for label in run) >= 2
            and all(len(label) >= 4 and _CODED.match(label) for label in run)
            and random_label(text)
        ):
            return True  # mixed hex and base32 pieces
        if len(run) >= 4 and max(map(len, run)) <= 6 and any(c.isdigit() for c in text):
            return True  # a token in short pieces
        if len(run) >= 2 and len(text) >= 9 and text.isdigit():
            return True  # a number cut into labels (`525.69.3558`)
    return any(len(label) >= 24 and _B32_ONLY.match(label) for label in sub)


def _runs(labels: list[str]) -> list[list[str]]:
    """Maximal runs of consecutive letters-and-digits labels (a name's words such as
    `api` or `eu-west-1` break them only when they hold other characters)."""
    runs: list[list[str]] = [[]]
    for label in labels:
        if _ALNUM.match(label):
            runs[-1].append(label)
        elif runs[-1]:
            runs.append([])
    out = [r for r in runs if r]
    # Also each run without its last label: the attacker's zone label (`x`, `t`) often
    # closes the data labels, and joined with them breaks a hex run.
    return out + [r[:-1] for r in out if len(r) >= 2]


def host_matches(host: str, patterns: Iterable[str]) -> bool:
    """Exact names, `*.example.com` (subdomains only), `*` wildcards, and CIDR blocks."""
    return _host_set(tuple(patterns)).matches(host)


def check_host_patterns(patterns: list[str]) -> list[str]:
    """Load-time check: a pattern with "/" must be a CIDR block (else it never matches)."""
    for pattern in patterns:
        if "/" in pattern:
            try:
                ipaddress.ip_network(pattern.strip(), strict=False)
            except ValueError:
                raise ValueError(f"{pattern!r} is not a CIDR block (e.g. 10.0.0.0/8)") from None
    return patterns


def split_host_port(value: str) -> tuple[str, int | None]:
    """`host`, `host:port`, `[v6]`, `[v6]:port` -> (host without brackets, port or None)."""
    v = value.strip()
    if v.startswith("["):
        host, closed, rest = v[1:].partition("]")
        if not closed:
            raise ValueError(f"unclosed IPv6 literal in {value[:64]!r}")
        if not rest:
            return host, None
        if not rest.startswith(":") or not rest[1:].isdigit():
            raise ValueError(f"bad port in {value[:64]!r}")
        digits = rest[1:]
    elif v.count(":") == 1:
        host, _, digits = v.partition(":")
        if not digits.isdigit():
            raise ValueError(f"bad port in {value[:64]!r}")
    elif ":" in v:
        raise ValueError(f"write IPv6 addresses in brackets, e.g. [fd00::1]:5432: {value[:64]!r}")
    else:
        return v, None
    port = int(digits)
    if not 0 < port < 65536:
        raise ValueError(f"bad port in {value[:64]!r}")
    return host, port


def parse_destination_pattern(entry: str) -> tuple[str, int | None]:
    """`HOST[:PORT]` -> (host pattern, port or None); IPv6 literals and blocks in brackets."""
    try:
        host, port = split_host_port(entry)
    except ValueError as e:
        raise ValueError(f"{entry!r}: expected HOST[:PORT] ({e})") from None
    if not host or " " in host:
        raise ValueError(f"{entry!r}: expected HOST[:PORT]")
    check_host_patterns([host])
    return host.lower(), port


@dataclass(frozen=True, slots=True)
class DestinationPatterns:
    """`HOST[:PORT]` patterns (see `parse_destination_pattern`), parsed once."""

    entries: tuple[tuple[str, int | None], ...]

    def matches(self, host: str, port: int) -> bool:
        return any(
            (want is None or want == port) and host_matches(host, (pattern,))
            for pattern, want in self.entries
        )

    def __bool__(self) -> bool:
        return bool(self.entries)


@lru_cache(maxsize=64)
def destination_patterns(entries: tuple[str, ...]) -> DestinationPatterns:
    return DestinationPatterns(tuple(parse_destination_pattern(e) for e in entries))


@dataclass(frozen=True, slots=True)
class _HostSet:
    """Host patterns compiled once: a set lookup, one regex, and a few networks."""

    exact: frozenset[str]
    wildcards: re.Pattern[str] | None
    networks: tuple[IPNetwork, ...]

    def matches(self, host: str) -> bool:
        h = host.lower().rstrip(".")
        if h in self.exact or (self.wildcards is not None and self.wildcards.match(h)):
            return True
        if self.networks:
            addr = parse_ip(h)
            return addr is not None and any(addr in net for net in self.networks)
        return False


@lru_cache(maxsize=256)  # policy and engine lists: a handful of distinct tuples
def _host_set(patterns: tuple[str, ...]) -> _HostSet:
    exact, wildcards, networks = set(), [], []
    for pattern in patterns:
        p = pattern.lower().strip()
        if "/" in p:  # a CIDR block; never a host name (names have no "/")
            networks.append(ipaddress.ip_network(p, strict=False))  # checked at load
        elif any(c in p for c in "*?["):
            wildcards.append(fnmatch.translate(p))  # `*.x` covers subdomains only
        else:
            exact.add(p)
    regex = re.compile("|".join(wildcards)) if wildcards else None
    return _HostSet(frozenset(exact), regex, tuple(networks))


def belongs_to(host: str, providers: Iterable[str]) -> bool:
    """True when `host` is one of the provider's domains or a subdomain of one."""
    h = host.lower().rstrip(".")
    return any(h == p or h.endswith("." + p) for p in providers)


# Names under a provider's domain that serve its customers' code or content: a key sent
# there goes to whoever deployed it, not to the provider.
_USER_CONTENT = (
    "github.io", "gitlab.io", "pages.dev", "workers.dev", "vercel.app", "netlify.app",
    "herokuapp.com", "appspot.com", "web.app", "firebaseapp.com", "azurewebsites.net",
    "cloudfunctions.net", "run.app", "execute-api.amazonaws.com",
    "on.aws", "googleusercontent.com", "ngrok-free.app",
    "ngrok.io", "ngrok.app", "trycloudflare.com", "repl.co", "glitch.me", "fly.dev",
)  # fmt: skip


def issued_by(host: str, providers: Iterable[str]) -> bool:
    """`host` is one of the provider's domains and not code its customers run under them
    (`x.github.io`, `y.execute-api.amazonaws.com`, `z.vercel.app`) — unless the family's
    issuer is such a tenant (an Azure Functions key belongs to its `*.azurewebsites.net`
    app). Storage tenants (`bucket.s3.amazonaws.com`) are the provider's servers: a key
    presented there goes to the provider; content stored there is judged as content
    (`engine._presented`)."""
    tenant = belongs_to(host, _USER_CONTENT)
    return any(
        belongs_to(host, (p,)) and (not tenant or belongs_to(p, _USER_CONTENT)) for p in providers
    )


# (host pattern, method or "*", path regex, tool, operation); first match wins.
_TOOLS: tuple[tuple[str, str, str, str, str], ...] = (
    ("hooks.slack.com", "*", r"^/services/", "slack", "post_message"),
    ("slack.com", "*", r"^/api/chat\.postMessage", "slack", "post_message"),
    ("slack.com", "*", r"^/api/files\.(upload|getUploadURLExternal)", "slack", "upload_file"),
    ("slack.com", "*", r"^/api/conversations\.(history|replies)", "slack", "read_messages"),
    ("api.github.com", "POST", r"^/repos/[^/]+/[^/]+/pulls/?$", "github", "create_pr"),
    ("api.github.com", "POST", r"^/repos/[^/]+/[^/]+/issues/?$", "github", "create_issue"),
    ("api.github.com", "POST", r"^/repos/[^/]+/[^/]+/(issues|pulls)/\d+/comments", "github", "comment"),
    ("api.github.com", "PUT", r"^/repos/[^/]+/[^/]+/contents/", "github", "write_file"),
    ("api.github.com", "POST", r"^/gists", "github", "create_gist"),
    ("api.github.com", "GET", r".", "github", "read"),
    ("api.openai.com", "POST", r"^/v1/chat/completions", "openai", "chat_completion"),
    ("api.openai.com", "POST", r"^/v1/responses", "openai", "response"),
    ("api.openai.com", "POST", r"^/v1/embeddings", "openai", "embedding"),
    ("api.anthropic.com", "POST", r"^/v1/messages", "anthropic", "create_message"),
    ("generativelanguage.googleapis.com", "POST", r":(stream)?[gG]enerateContent", "gemini", "generate_content"),
    ("bedrock-runtime.*.amazonaws.com", "POST", r"^/model/.+/(invoke|converse)", "bedrock", "invoke_model"),
    ("discord.com", "POST", r"^/api/webhooks/", "discord", "post_message"),
    ("api.telegram.org", "*", r"/send(Message|Document|Photo)", "telegram", "send_message"),
    ("api.stripe.com", "POST", r"^/v1/(charges|payment_intents)", "stripe", "create_payment"),
    ("api.sendgrid.com", "POST", r"^/v3/mail/send", "sendgrid", "send_email"),
    ("gmail.googleapis.com", "POST", r"/messages/send", "gmail", "send_email"),
    ("*.s3.amazonaws.com", "PUT", r".", "s3", "put_object"),
    ("pastebin.com", "POST", r"^/api/", "pastebin", "create_paste"),
    ("webhook.site", "*", r".", "webhook_site", "post"),
    ("api.notion.com", "POST", r"^/v1/pages", "notion", "create_page"),
    ("*.atlassian.net", "POST", r"/rest/api/\d+/issue", "jira", "create_issue"),
)  # fmt: skip
_TOOL_PATHS = [re.compile(t[2]) for t in _TOOLS]


def recognise_tool(method: str, host: str, path: str) -> tuple[str, str]:
    """(tool_name, operation) for well-known SaaS APIs; `custom_proxy` otherwise."""
    for path_re, tool, operation in _tools_at(method, host.lower().rstrip(".")):
        if path_re.search(path):
            return tool, operation
    return "custom_proxy", "read" if method in ("GET", "HEAD", "OPTIONS") else "write"


@lru_cache(maxsize=1024)  # agents talk to few hosts; the path is checked per request
def _tools_at(method: str, host: str) -> tuple[tuple[re.Pattern[str], str, str], ...]:
    return tuple(
        (path_re, tool, operation)
        for (pattern, want, _, tool, operation), path_re in zip(_TOOLS, _TOOL_PATHS, strict=True)
        if want in ("*", method) and host_matches(host, (pattern,))
    )


# Suffixes under which every name belongs to a different owner (hosting platforms, CDNs,
# tunnels): `a.vercel.app` and `b.vercel.app` are two parties, not one.
_SHARED_SUFFIXES = frozenset(
    {"vercel.app", "netlify.app", "herokuapp.com", "github.io", "gitlab.io", "pages.dev",
     "workers.dev", "ngrok-free.app", "ngrok.io", "ngrok.app", "azurewebsites.net",
     "cloudfront.net", "appspot.com", "firebaseapp.com", "web.app", "s3.amazonaws.com",
     "blob.core.windows.net", "onrender.com", "fly.dev", "railway.app", "repl.co",
     "glitch.me", "trycloudflare.com", "loca.lt", "serveo.net", "requestcatcher.com",
     "myshopify.com", "atlassian.net", "supabase.co", "cloud.databricks.com",
     "azuredatabricks.net", "execute-api.amazonaws.com", "lambda-url.amazonaws.com",
     "run.app", "a.run.app", "cloudfunctions.net", "chromatic.com", "ingest.sentry.io", "oast.fun", "oast.pro", "oast.live", "interact.sh",
     "burpcollaborator.net", "pipedream.net", "m.pipedream.net"}
)  # fmt: skip
_SECOND_LEVEL = frozenset({"co", "com", "net", "org", "gov", "ac", "edu", "ne", "or", "go"})


@lru_cache(maxsize=4096)
def registrable_domain(host: str) -> str:
    """The part of a name one party registered (`api.github.com` -> `github.com`;
    `x.co.uk` -> itself; `app.vercel.app` -> itself), without a public-suffix list: the
    common two-level country suffixes and the shared platforms above are known."""
    h = host.lower().rstrip(".")
    if parse_ip(h) is not None:
        return h
    labels = h.split(".")
    for size in (3, 4):  # a name directly under a shared platform suffix
        if len(labels) >= size and ".".join(labels[-(size - 1) :]) in _SHARED_SUFFIXES:
            return ".".join(labels[-size:])
    if len(labels) >= 3 and len(labels[-1]) == 2 and labels[-2] in _SECOND_LEVEL:
        return ".".join(labels[-3:])
    return ".".join(labels[-2:])


def tenant_host(host: str) -> bool:
    """A customer's name under a shared platform suffix (`bucket.s3.amazonaws.com`,
    `app.vercel.app`): what it serves is the customer's, not the platform's."""
    h = host.lower().rstrip(".")
    return h not in _SHARED_SUFFIXES and belongs_to(h, _SHARED_SUFFIXES)


def same_party(host: str, other: str) -> bool:
    return registrable_domain(host) == registrable_domain(other)


# Services agents use for work where documentation examples and test fixtures are normal
# content: code hosts, chat, LLM APIs and the SaaS in the tool table. A live credential
# sent there is still a leak; a documented example is flagged, not refused.
RECOGNISED_SERVICES = (
    "github.com", "*.github.com", "githubusercontent.com", "*.githubusercontent.com",
    "gitlab.com", "*.gitlab.com", "bitbucket.org", "*.bitbucket.org",
    "slack.com", "*.slack.com", "discord.com", "*.discord.com", "teams.microsoft.com",
    "api.openai.com", "api.anthropic.com", "generativelanguage.googleapis.com",
    "*-aiplatform.googleapis.com", "api.mistral.ai", "api.groq.com", "api.x.ai",
    "api.perplexity.ai", "openrouter.ai", "api.cohere.com", "api.cohere.ai",
    "api.together.xyz", "api.fireworks.ai", "api.deepseek.com", "*.openai.azure.com",
    "bedrock-runtime.*.amazonaws.com", "huggingface.co", "api-inference.huggingface.co",
    "api.notion.com", "*.atlassian.net", "api.linear.app", "gmail.googleapis.com",
    "stackoverflow.com", "api.stackexchange.com",
)  # fmt: skip


# Where card and bank data go for a payment: the processors' APIs.
PAYMENT_PROCESSORS = (
    "api.stripe.com", "*.braintreegateway.com", "*.adyen.com", "*.adyenpayments.com",
    "connect.squareup.com", "*.paypal.com", "api.checkout.com", "*.authorize.net",
    "api.mollie.com", "*.worldpay.com", "api.razorpay.com", "api.plaid.com",
)  # fmt: skip


def recognised_service(host: str) -> bool:
    return host_matches(host, RECOGNISED_SERVICES)


_AUTH_PATH = re.compile(
    r"(?i)(?:^|/)(?:o?auth2?|token|login|log-in|signin|sign-in|sign_in|session|sessions|"
    r"authenticate|authorize|access_token|users/sign_in|account/login|api/token)(?:/|\.|$|;|\?)"
)


def auth_endpoint(method: str, path: str) -> bool:
    """A request that presents credentials to the service that checks them: a login form,
    an OAuth token endpoint. The credential fields it carries are used at their issuer."""
    return method.upper() == "POST" and bool(_AUTH_PATH.search(path))
