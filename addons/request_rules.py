"""The rules an HTTP request must pass before it is worth a verdict.

A destination that parses, written one way; every name in the request (Host, HTTP/2
`:authority`, the TLS SNI) agreeing with it; a method that is a short HTTP token; no
protocol switch the sidecar cannot follow. A redirected (transparent-mode) connection
takes the name the agent asked for as its destination. The headers meant for the proxy
itself never leave.
"""

from __future__ import annotations

from mitmproxy import http
from mitmproxy.proxy.mode_specs import TransparentMode

from sidecar.authority import AuthorityError, mismatch, normalise_host, parse_authority
from sidecar.enforce import (
    DESTINATION_MISMATCH,
    DESTINATION_UNPARSEABLE,
    METHOD_INVALID,
    UPGRADE_REFUSED,
    Enforcement,
    local_block,
)
from sidecar.request_surface import (
    PROXY_ONLY_HEADERS,
    Upgrade,
    classify_upgrade,
    method_problem,
)

UPGRADE_KEY = "egress_sidecar_upgrade"  # True when a WebSocket upgrade was judged and sent


def drop_proxy_headers(req: http.Request) -> None:
    """`Proxy-Authorization` and `Proxy-Connection` are for the proxy, never forwarded
    (in shadow mode a refused request is still forwarded: they go first)."""
    for name in PROXY_ONLY_HEADERS:
        req.headers.pop(name, None)


def refuse_before_scan(flow: http.HTTPFlow) -> tuple[Enforcement, str] | None:
    """(the refusal, its metric reason), or None when the request may be judged."""
    req = flow.request
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
    if (req.is_http2 or req.is_http3) and req.authority:
        names.append((":authority", req.authority))
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
    if (why := method_problem(req.method)) is not None:
        return local_block(METHOD_INVALID, f"Blocked by egress-sidecar: {why}.", 400), (
            "method_invalid"
        )
    upgrade = classify_upgrade(
        req.method,
        req.http_version,
        req.headers.get_all("upgrade"),
        req.headers.get_all("sec-websocket-version"),
    )
    if upgrade is Upgrade.REFUSE:
        message = (
            "Blocked by egress-sidecar: only WebSocket (version 13) upgrades are allowed; "
            "other protocols cannot be inspected."
        )
        return local_block(UPGRADE_REFUSED, message, 403), "upgrade_refused"
    if upgrade is Upgrade.STRIP:
        strip_upgrade(req)
    flow.metadata[UPGRADE_KEY] = upgrade is Upgrade.WEBSOCKET
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


def websocket_switch(flow: http.HTTPFlow) -> bool:
    """A 101 the sidecar can follow: a WebSocket upgrade it judged, answered in kind."""
    assert flow.response is not None
    answered = flow.response.headers.get("upgrade", "").strip().lower() == "websocket"
    return bool(flow.metadata.get(UPGRADE_KEY)) and answered
