"""The rules an HTTP request must pass before it is worth a verdict.

A destination that parses, written one way; every name in the request (Host, HTTP/2
`:authority`, the TLS SNI) agreeing with it; a method that is a short HTTP token; no
protocol switch the sidecar cannot follow. A redirected (transparent-mode) connection
takes the name the agent asked for as its destination. The headers meant for the proxy
itself never leave.
"""

from __future__ import annotations

import hashlib
import re

from mitmproxy import http
from mitmproxy.proxy.mode_specs import TransparentMode

from addons.flow_record import FlowRecord
from sidecar.judge.authority import (
    AuthorityError,
    absolute_url,
    mismatch,
    normalise_host,
    parse_authority,
)
from sidecar.judge.enforce import (
    DESTINATION_MISMATCH,
    DESTINATION_UNPARSEABLE,
    HEADERS_TOO_LARGE,
    REQUEST_MALFORMED,
    Enforcement,
    local_block,
    method_and_upgrade,
)
from sidecar.judge.judge import Outbound
from sidecar.judge.request_surface import (
    PROXY_ONLY_HEADERS,
    Upgrade,
    is_volatile,
    scannable,
)

HTTP_VERSIONS = frozenset({"HTTP/1.0", "HTTP/1.1", "HTTP/2.0", "HTTP/3"})
MAX_HEADER_BYTES = 64 * 1024  # headers and trailers together; more is not a real request
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")  # C0 but HTAB, and DEL
_TARGET_CONTROL = re.compile(r"[\x00-\x20\x7f]")  # a request target has no space either


def framing_problem(req: http.Request) -> str | None:
    """Why a part of the request could end a line once written as HTTP/1, or carry
    bytes outside what is scanned, or None."""
    if req.http_version not in HTTP_VERSIONS:  # `HTTP/9.9` would leave as written
        return "an HTTP version the sidecar does not speak"
    if _TARGET_CONTROL.search(req.path) or _TARGET_CONTROL.search(sent_authority(req)):
        return "a control character or space in the request target"
    for name, value in [*req.headers.items(multi=True), *_trailer_items(req)]:
        if _CONTROL.search(name) or _CONTROL.search(value):
            return "a control character in a header"
    return None


def sent_method(req: http.Request) -> str:
    """The method as it leaves (mitmproxy's `Request.method` is upper-cased; the request
    line and `:method` are not)."""
    return req.data.method.decode("utf-8", "surrogateescape")


def sent_authority(req: http.Request) -> str:
    """HTTP/2 `:authority` (or an HTTP/1 absolute-form authority) as it leaves:
    mitmproxy's `Request.authority` is IDNA-decoded, so `xn--AKIA…` would be read as a
    lower-case Unicode name while the upstream receives it as written."""
    return req.data.authority.decode("utf-8", "surrogateescape")


def sent_digest(req: http.Request, volatile: frozenset[str]) -> str:
    """The request's bytes as they leave (target, every header and trailer but the
    volatile ones, the body as encoded), digested: an approval is tied to these."""
    digest = hashlib.sha256()
    fields = [(b":method", req.data.method), (b":authority", req.data.authority),
              (b":path", req.data.path), *req.headers.fields, *_trailer_fields(req)]  # fmt: skip
    for name, value in fields:
        if is_volatile(name.decode("latin-1"), value.decode("latin-1"), volatile):
            continue
        for part in (name, value):
            digest.update(len(part).to_bytes(4, "big") + part)
    digest.update(req.raw_content or b"")
    return digest.hexdigest()


def header_bytes(req: http.Request) -> int:
    return sum(len(n) + len(v) + 4 for n, v in [*req.headers.fields, *_trailer_fields(req)])


def _trailer_items(req: http.Request) -> list[tuple[str, str]]:
    return list(req.trailers.items(multi=True)) if req.trailers else []


def _trailer_fields(req: http.Request) -> list[tuple[bytes, bytes]]:
    return list(req.trailers.fields) if req.trailers else []


def drop_proxy_headers(req: http.Request) -> None:
    """`Proxy-Authorization` and `Proxy-Connection` are for the proxy, never forwarded,
    as headers or as trailers (in shadow mode a refused request is still forwarded: they
    go first)."""
    for name in PROXY_ONLY_HEADERS:
        req.headers.pop(name, None)
        if req.trailers:
            req.trailers.pop(name, None)


def refuse_before_scan(flow: http.HTTPFlow) -> tuple[Enforcement, str] | None:
    """(the refusal, its metric reason), or None when the request may be judged."""
    req = flow.request
    if (why := framing_problem(req)) is not None:
        # A byte that ends a line in HTTP/1 would let the upstream read a second request
        # the sidecar never judged (HTTP/2 to HTTP/1 smuggling, obs-fold, bare CR).
        return local_block(REQUEST_MALFORMED, f"Blocked by egress-sidecar: {why}.", 400), (
            "request_malformed"
        )
    if (size := header_bytes(req)) > MAX_HEADER_BYTES:
        message = f"Blocked by egress-sidecar: {size} bytes of headers (limit {MAX_HEADER_BYTES})."
        return local_block(HEADERS_TOO_LARGE, message, 431), "headers_too_large"
    FlowRecord.of(flow).written_host = req.host
    try:
        # One spelling of the destination for the judge and for the connection.
        req.data.host = normalise_host(req.host) if req.host else ""
    except AuthorityError:
        req.data.host = ""
    if not req.host:
        message = "Blocked by egress-sidecar: the request names no destination it can read."
        return local_block(DESTINATION_UNPARSEABLE, message, 400), "destination_unparseable"
    if isinstance(flow.client_conn.proxy_mode, TransparentMode):
        adopt_named_destination(flow)
    hosts = req.headers.get_all("host")
    names = [("Host", v) for v in hosts]
    if req.authority:  # HTTP/2 :authority, or an HTTP/1 absolute-form request target
        names.append((":authority" if req.is_http2 or req.is_http3 else "authority", req.authority))
    if flow.client_conn.tls and flow.client_conn.sni:
        names.append(("SNI", flow.client_conn.sni))
    problem = "more than one Host header" if len(hosts) > 1 else None
    problem = problem or mismatch(req.host, req.port, names)
    if problem is not None:
        message = (
            f"Blocked by egress-sidecar: {problem} (the destination judged must be the "
            "destination used)."
        )
        return local_block(DESTINATION_MISMATCH, message, 421), "destination_mismatch"
    if req.authority and not (req.is_http2 or req.is_http3):
        req.authority = ""  # forwarded in origin-form: the authority checked is not resent
    upgrade, refused = method_and_upgrade(
        sent_method(req),
        req.http_version,
        req.headers.get_all("upgrade"),
        req.headers.get_all("sec-websocket-version"),
    )
    if refused is not None:
        return refused
    if upgrade is Upgrade.STRIP:
        strip_upgrade(req)
    FlowRecord.of(flow).websocket = upgrade is Upgrade.WEBSOCKET
    return None


def adopt_named_destination(flow: http.HTTPFlow) -> None:
    """A redirected connection arrives with only the address the agent dialled; the name
    it asked for (SNI, else Host or :authority) becomes the destination, which is then
    judged, resolved by the sidecar and connected to. The names must agree (checked by
    the caller), so the agent cannot have one judged and another used."""
    req = flow.request
    sni = flow.client_conn.sni if flow.client_conn.tls else None
    written = req.host_header
    try:
        if sni:
            name = normalise_host(sni)
        elif written:
            name = parse_authority(written).host
        else:
            return
    except AuthorityError:
        return  # left to the mismatch check, which refuses it
    req.data.host = name


def strip_upgrade(req: http.Request) -> None:
    """h2c is optional for the server: drop the offer instead of refusing the request."""
    req.headers.pop("upgrade", None)
    req.headers.pop("http2-settings", None)
    tokens = [
        t.strip()
        for v in req.headers.get_all("connection")
        for t in v.split(",")
        if t.strip() and t.strip().lower() not in ("upgrade", "http2-settings")
    ]
    req.headers.pop("connection", None)
    if tokens:
        req.headers["connection"] = ", ".join(tokens)


def written_host(flow: http.HTTPFlow) -> str:
    """The destination as the agent wrote it — case kept, since a key in a DNS label is
    still a key — taken from a name that agrees with the destination judged; else the
    destination itself."""
    req = flow.request
    record = FlowRecord.find(flow)
    recorded = record.written_host if record is not None else None
    for written in (req.authority, req.headers.get("host"), recorded):
        if not written or written.startswith("["):
            continue
        host, colon, port = written.rpartition(":")
        host = host if colon and port.isdigit() else written
        if host.isascii() and host.lower().rstrip(".") == req.host:
            return host
    return req.host


def websocket_switch(flow: http.HTTPFlow) -> bool:
    """A 101 the sidecar can follow: a WebSocket upgrade it judged, answered in kind."""
    assert flow.response is not None
    answered = flow.response.headers.get("upgrade", "").strip().lower() == "websocket"
    record = FlowRecord.find(flow)
    return record is not None and record.websocket and answered


def outbound(flow: http.HTTPFlow, volatile: frozenset[str]) -> Outbound:
    """The request as the judge sees it: every part as sent, the proxy-only headers
    dropped, and the protocol rules it breaks (checked after the sidecar's own keys)."""
    req = flow.request
    drop_proxy_headers(req)
    method = scannable(sent_method(req))
    pseudo = [(":authority", sent_authority(req))] if req.is_http2 or req.is_http3 else []
    headers = (*pseudo, *req.headers.items(multi=True))
    trailers = tuple(_trailer_items(req))
    body = req.raw_content or b""
    url_as_sent = scannable(req.url)
    refused = refuse_before_scan(flow)
    if refused is not None:
        return Outbound(method, url_as_sent, headers=headers, trailers=trailers, body=body,
                        refusal=refused)  # fmt: skip
    return Outbound(
        method=method,
        url=absolute_url(req.scheme, written_host(flow), req.port, scannable(req.path)),
        url_as_sent=url_as_sent,
        headers=headers,
        trailers=trailers,
        body=body,
        content_encoding=req.headers.get("content-encoding", ""),
        transfer_encoding=req.headers.get("transfer-encoding", ""),
        content_type=req.headers.get("content-type", ""),
        llm_at=(req.pretty_host.lower(), req.path),
        sent_digest=sent_digest(req, volatile),
        destination=(req.host, req.port),
    )
