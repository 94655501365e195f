"""Everything about a request that leaves with it, so that all of it is judged.

What is forwarded is what is scanned: every header (hop-by-hop ones included, since
mitmproxy forwards them), header names, trailers and the method. The two headers meant
for the proxy itself (`Proxy-Authorization`, `Proxy-Connection`) are removed before the
request leaves instead. Methods must be HTTP tokens of sane length, and protocol
upgrades are allowed only where the sidecar can inspect what follows. Pure: no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from enum import StrEnum

# Meant for the proxy, never for the upstream: removed before forwarding.
PROXY_ONLY_HEADERS = frozenset({"proxy-authorization", "proxy-connection"})
MAX_METHOD_LENGTH = 32
_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")


# The ALPN ids the sidecar relays itself, then the others registered with IANA (offered
# only to raw_tcp_hosts destinations). Nothing else is repeated upstream: any other value
# would be agent-chosen bytes in the sidecar's own, unscanned handshake.
HTTP_ALPN = (b"h2", b"http/1.1", b"http/1.0")
REGISTERED_ALPN = (
    *HTTP_ALPN,
    b"http/0.9", b"spdy/1", b"spdy/2", b"spdy/3", b"stun.turn", b"stun.nat-discovery",
    b"h2c", b"webrtc", b"c-webrtc", b"ftp", b"imap", b"pop3", b"managesieve", b"coap",
    b"xmpp-client", b"xmpp-server", b"acme-tls/1", b"mqtt", b"dot", b"ntske/1", b"sunrpc",
    b"smb", b"irc", b"nntp", b"nnsp", b"doq", b"sip/2", b"tds/8.0", b"dicom",
    b"postgresql", b"radius/1.0", b"radius/1.1",
)  # fmt: skip


def upstream_alpn(offers: Iterable[bytes], other_protocols: bool) -> list[bytes]:
    """The ALPN offers repeated upstream: known ids only, each once, in one fixed order
    (the agent's choice of order would be bits it sends unscanned). `h3` is never kept:
    this is TCP."""
    offered = set(offers)
    known = REGISTERED_ALPN if other_protocols else HTTP_ALPN
    return [alpn for alpn in known if alpn in offered]


class Upgrade(StrEnum):
    NONE = "none"
    WEBSOCKET = "websocket"  # RFC 6455 version 13: the sidecar reads every message
    STRIP = "strip"  # h2c: an optional upgrade the server may ignore; removed
    REFUSE = "refuse"  # anything else would become an unscanned pipe


def method_problem(method: str) -> str | None:
    """Why a method cannot be forwarded, or None."""
    if len(method) > MAX_METHOD_LENGTH:
        return f"method longer than {MAX_METHOD_LENGTH} characters"
    if not _TOKEN.match(method):
        return "method is not an HTTP token"
    return None


def _tokens(values: Iterable[str]) -> list[str]:
    return [t.strip().lower() for v in values for t in v.split(",") if t.strip()]


def classify_upgrade(
    method: str,
    http_version: str,
    upgrade: list[str],
    websocket_version: list[str],
) -> Upgrade:
    """What to do with a request's `Upgrade` (all header values as sent)."""
    wanted = _tokens(upgrade)
    if not wanted:
        return Upgrade.NONE  # a 101 without an upgrade asked for is refused on arrival
    if wanted == ["websocket"]:
        if method == "GET" and http_version == "HTTP/1.1" and websocket_version == ["13"]:
            return Upgrade.WEBSOCKET
        return Upgrade.REFUSE
    if wanted == ["h2c"]:
        return Upgrade.STRIP
    return Upgrade.REFUSE


def scannable(text: str) -> str:
    """Text as the engines can read it: bytes that were not UTF-8 (kept by mitmproxy as
    surrogate escapes) become replacement characters. Secrets are ASCII and survive."""
    if text.isascii():
        return text
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def scanned_headers(
    headers: Iterable[tuple[str, str]], trailers: Iterable[tuple[str, str]] = ()
) -> dict[str, str]:
    """Every header and trailer given, repeated names joined (as the scan API takes
    them); names keep the case the agent sent. Nothing is left out: what the proxy
    removes is removed before this."""
    out: dict[str, str] = {}
    seen: dict[str, str] = {}
    for raw_name, raw_value in [*headers, *trailers]:
        name, value = scannable(raw_name), scannable(raw_value)
        key = seen.setdefault(name.lower(), name)
        out[key] = f"{out[key]}, {value}" if key in out else value
    return out


_UUID = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
_HTTP_DATE = r"[A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} GMT"
# The shape each known volatile header must have to be left out of an approval's key: a
# value of another shape (free text, a smuggled payload) is part of the key after all.
VOLATILE_FORMATS = {
    "date": _HTTP_DATE,
    "x-amz-date": r"\d{8}T\d{6}Z",
    "x-request-id": _UUID,
    "x-correlation-id": _UUID,
    "idempotency-key": r"[A-Za-z-]{0,32}" + _UUID,
    "x-retry-count": r"\d{1,3}",
    "x-stainless-retry-count": r"\d{1,3}",
    "x-stainless-timeout": r"\d{1,6}(?:\.\d{1,3})?",
    "traceparent": r"[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}",
    "sentry-trace": r"[0-9a-f]{32}-[0-9a-f]{16}(?:-[01])?",
    "x-amzn-trace-id": r"Root=1-[0-9a-f]{8}-[0-9a-f]{24}"
    r"(?:;Parent=[0-9a-f]{16})?(?:;Sampled=[01])?",
    "x-b3-traceid": r"[0-9a-f]{16}|[0-9a-f]{32}",
    "x-b3-spanid": r"[0-9a-f]{16}",
    "x-b3-sampled": r"[01d]",
    "x-datadog-trace-id": r"\d{1,20}",
    "x-datadog-parent-id": r"\d{1,20}",
}
_VOLATILE = {name: re.compile(f"(?:{shape})") for name, shape in VOLATILE_FORMATS.items()}
_SHORT_TOKEN = re.compile(r"[A-Za-z0-9._:/+=-]{1,64}")  # a header named by the operator


def is_volatile(name: str, value: str, volatile: frozenset[str]) -> bool:
    """A header that may change between retries of an approved request: named volatile,
    and of the shape such a header has (bounded: it cannot carry much)."""
    lower = name.lower()
    if lower not in volatile:
        return False
    shape = _VOLATILE.get(lower, _SHORT_TOKEN)
    if shape.fullmatch(value.strip()):
        return True
    return all(shape.fullmatch(part.strip()) for part in value.split(","))  # repeated


def volatile_free(headers: dict[str, str], volatile: Iterable[str]) -> dict[str, str]:
    """The headers that tie an approval to its request: all but the volatile ones."""
    names = frozenset(volatile)
    return {k: v for k, v in headers.items() if not is_volatile(k, v, names)}
