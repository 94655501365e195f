"""Class 4: every part of a request that is forwarded is scanned.

Rule: the scan sees every forwarded header (hop-by-hop ones too), header names, the
method, HTTP/2 `:authority` and trailers; the two headers meant for the proxy itself are
removed before the request leaves. Ground truth: the scan API double's record of what it
was asked, and the recording upstream.
"""

from __future__ import annotations

import ssl

import h2.config
import h2.connection
import h2.events
import pytest

from tests.redteam import AWS_KEY
from tests.support.dns import ScriptedDns
from tests.support.raw import connect, exchange, proxy_socket, read_response
from tests.support.recorders import H2Recorder
from tests.support.servers import UPSTREAM_HOST, WAIT


def _raw_request(sidecar, upstream, head: str, body: bytes = b"") -> tuple[int, bytes]:  # type: ignore[no-untyped-def]
    sock = proxy_socket(str(sidecar.info.proxy))
    sock.sendall(head.encode("latin-1") + b"\r\n" + body)
    status, _, payload = read_response(sock)
    sock.close()
    return status, payload


def test_hop_by_hop_headers_are_scanned_and_proxy_headers_never_leave(sidecar, upstream, scan_api):
    target = f"{UPSTREAM_HOST}:{upstream.http_port}"
    status, _ = _raw_request(sidecar, upstream, (
        f"GET http://{target}/allow/hop HTTP/1.1\r\nHost: {target}\r\n"
        f"Connection: keep-alive, X-Smuggle\r\nKeep-Alive: timeout=5, k={AWS_KEY}\r\n"
        f"TE: trailers\r\nX-Smuggle: s1\r\nProxy-Authorization: Basic YWdlbnQ6cHc=\r\n"
        f"Proxy-Connection: keep-alive\r\n"
    ))  # fmt: skip
    assert status == 200
    scan = scan_api.scans.wait_for(lambda s: s["json"]["url"].endswith("/allow/hop"))
    scanned = {k.lower(): v for k, v in scan["json"]["headers"].items()}
    for name in ("connection", "keep-alive", "te", "x-smuggle"):
        assert name in scanned, name  # forwarded, so scanned
    assert AWS_KEY in scanned["keep-alive"]
    (received,) = upstream.requests_to("/allow/hop")
    names = {k.lower() for k in received.headers}
    assert "proxy-authorization" not in names
    assert "proxy-connection" not in names


@pytest.mark.parametrize(
    "where",
    ["header-name", "keep-alive", "te", "connection", "method"],
)
def test_a_key_hidden_in_any_forwarded_part_is_denied(make_sidecar, upstream, where):
    sidecar = make_sidecar(backend="local")
    target = f"{UPSTREAM_HOST}:{upstream.http_port}"
    method, extra = "GET", ""
    if where == "header-name":
        extra = f"X-{AWS_KEY}: 1\r\n"
    elif where == "keep-alive":
        extra = f"Connection: keep-alive\r\nKeep-Alive: {AWS_KEY}\r\n"
    elif where == "te":
        extra = f"TE: {AWS_KEY}\r\n"
    elif where == "connection":
        extra = f"Connection: {AWS_KEY}\r\n"
    else:
        method = AWS_KEY
    path = f"/leak/{where}"
    status, body = _raw_request(
        sidecar, upstream, f"{method} http://{target}{path} HTTP/1.1\r\nHost: {target}\r\n{extra}"
    )
    assert status == 403, body
    assert b"SECRET_EXFILTRATION" in body
    assert upstream.requests_to(path) == []


def test_overlong_or_odd_methods_never_leave(sidecar, upstream):
    target = f"{UPSTREAM_HOST}:{upstream.http_port}"
    for method in ("X" * 40, "GE\x01T"):
        status, _ = _raw_request(
            sidecar, upstream, f"{method} http://{target}/m1 HTTP/1.1\r\nHost: {target}\r\n"
        )
        assert status in (0, 400)  # mitmproxy's HTTP/1 parser already closes on these
    assert upstream.requests_to("/m1") == []


def test_overlong_http2_methods_are_refused(sidecar, upstream):
    authority = f"{UPSTREAM_HOST}:{upstream.https_port}"
    status = _h2_request(sidecar, upstream.https_port, _h2_headers("X" * 40, authority, "/m2x"),
                         b"", [("x-n", "1")])  # fmt: skip
    assert status == 400
    assert upstream.requests_to("/m2x") == []


def _h2_request(
    sidecar,  # type: ignore[no-untyped-def]
    port: int,
    headers: list[tuple[str, str]],
    body: bytes,
    trailers: list[tuple[str, str]] | None,
    validate: bool = True,
    host: str = UPSTREAM_HOST,
) -> int:
    """One HTTP/2 request through a CONNECT tunnel to `host:port`, with whatever
    pseudo-headers and trailers the caller writes (no client library would send these);
    the status, or 0 when the proxy resets the stream or closes the connection."""
    status, _, sock = connect(str(sidecar.info.proxy), f"{host}:{port}")
    assert status == 200
    ctx = ssl.create_default_context(cafile=str(sidecar.ca.bundle))
    ctx.set_alpn_protocols(["h2"])
    tls = ctx.wrap_socket(sock, server_hostname=host)
    assert tls.selected_alpn_protocol() == "h2"
    config = h2.config.H2Configuration(
        client_side=True, validate_outbound_headers=validate, normalize_outbound_headers=validate
    )
    conn = h2.connection.H2Connection(config)
    conn.initiate_connection()
    conn.send_headers(1, headers)
    if body:
        conn.send_data(1, body, end_stream=trailers is None)
    if trailers is not None:
        conn.send_headers(1, trailers, end_stream=True)
    elif not body:
        conn.end_stream(1)
    tls.sendall(conn.data_to_send())
    tls.settimeout(WAIT)
    while True:
        data = tls.recv(65536)
        if not data:
            return 0
        for event in conn.receive_data(data):
            if isinstance(event, h2.events.ResponseReceived):
                tls.close()
                return int(dict(event.headers)[b":status"])
            if isinstance(event, (h2.events.StreamReset, h2.events.ConnectionTerminated)):
                tls.close()
                return 0
        tls.sendall(conn.data_to_send())


def _h2_headers(method: str, authority: str, path: str) -> list[tuple[str, str]]:
    return [(":method", method), (":scheme", "https"), (":authority", authority),
            (":path", path), ("content-type", "text/plain")]  # fmt: skip


def test_http2_trailers_are_scanned(make_sidecar, upstream):
    sidecar = make_sidecar(backend="local")
    authority = f"{UPSTREAM_HOST}:{upstream.https_port}"
    status = _h2_request(sidecar, upstream.https_port, _h2_headers("POST", authority, "/t2"),
                         b"hello", [("x-checksum", AWS_KEY)])  # fmt: skip
    assert status == 403
    assert upstream.requests_to("/t2") == []


def test_http2_method_is_scanned(make_sidecar, upstream):
    sidecar = make_sidecar(backend="local")
    authority = f"{UPSTREAM_HOST}:{upstream.https_port}"
    status = _h2_request(sidecar, upstream.https_port, _h2_headers(AWS_KEY, authority, "/m2"),
                         b"", [("x-n", "1")])  # fmt: skip
    assert status == 403
    assert upstream.requests_to("/m2") == []


def test_http2_authority_must_name_the_tunnel(sidecar, upstream):
    headers = _h2_headers("POST", "evil.example:443", "/redteam-a2")
    status = _h2_request(sidecar, upstream.https_port, headers, b"x", [("x-n", "1")])
    assert status == 421
    assert upstream.requests_to("/redteam-a2") == []


def test_alpn_offers_do_not_carry_data_upstream(sidecar, tcp_recorder):
    """mitmproxy repeats the agent's ALPN offers in its own handshake with the upstream:
    neither their values nor their order may be the agent's."""
    target = tcp_recorder()  # not a TLS server: it records the sidecar's ClientHello as sent
    status, _, sock = connect(str(sidecar.info.proxy), f"{UPSTREAM_HOST}:{target.port}")
    assert status == 200
    ctx = ssl.create_default_context(cafile=str(sidecar.ca.bundle))
    ctx.set_alpn_protocols(["http/1.1", AWS_KEY, "postgresql", "h2"])
    tls = ctx.wrap_socket(sock, server_hostname=UPSTREAM_HOST)
    tls.sendall(f"GET /alpn HTTP/1.1\r\nHost: {UPSTREAM_HOST}:{target.port}\r\n\r\n".encode())
    target.chunks.wait_for(lambda c: b"http/1.1" in c)  # the upstream hello arrived
    tls.close()
    assert AWS_KEY.encode() not in target.everything
    # ALPN list as sent: length-prefixed ids, the sidecar's order, HTTP only
    assert b"\x00\x0c\x02h2\x08http/1.1" in target.everything
    assert b"postgresql" not in target.everything
    assert (
        sidecar.metric("egress_sidecar_refusals_total", stage="tunnel", reason="alpn_trimmed") == 1
    )


@pytest.mark.parametrize(
    ("where", "value"),
    [(":path", "/p HTTP/1.1\r\nX-Inj: 1\r\n\r\nGET /smuggled"), (":path", "/p\x00x"),
     ("x-note", "a\r\nX-Inj: 1"), ("x-note", "a\nb"), ("x-note", "a\rb"), ("x-note", "a\x00b")],
    ids=["path-crlf", "path-nul", "header-crlf", "header-lf", "header-cr", "header-nul"],
)  # fmt: skip
def test_line_breaks_in_http2_fields_never_reach_an_http1_upstream(sidecar, upstream, where,
                                                                   value):  # fmt: skip
    authority = f"{UPSTREAM_HOST}:{upstream.https_port}"
    headers = _h2_headers("POST", authority, "/crlf")
    if where == ":path":
        headers[3] = (":path", value)
    else:
        headers.append((where, value))
    status = _h2_request(sidecar, upstream.https_port, headers, b"x", [("x-n", "1")],
                         validate=False)  # fmt: skip
    assert status in (0, 400)
    assert not [r for r in upstream.received.items if "crlf" in r.path or "smuggled" in r.path]


@pytest.mark.parametrize(
    "header",
    ["X-Note: a\r\n folded", "X-Note: a\rb", "X-Note: a\x00b"],
    ids=["obs-fold", "bare-cr", "nul"],
)
def test_line_breaks_in_http1_header_values_are_refused(sidecar, upstream, header):
    target = f"{UPSTREAM_HOST}:{upstream.http_port}"
    status, _ = _raw_request(
        sidecar,
        upstream,
        f"GET http://{target}/allow/fold HTTP/1.1\r\nHost: {target}\r\n{header}\r\n",
    )
    assert status in (0, 400)
    assert upstream.requests_to("/allow/fold") == []


def test_an_http2_body_without_length_is_framed_for_an_http1_upstream(sidecar, upstream):
    """HTTP/2 needs no Content-Length; written as HTTP/1 without one, the body would be read
    by the upstream as a second request that was never judged."""
    authority = f"{UPSTREAM_HOST}:{upstream.https_port}"
    smuggled = b"GET /smuggled-h2 HTTP/1.1\r\nHost: x\r\n\r\n"
    status = _h2_request(sidecar, upstream.https_port, _h2_headers("POST", authority, "/framed"),
                         smuggled, None)  # fmt: skip
    assert status == 200
    (received,) = upstream.requests_to("/framed")
    assert received.body == smuggled  # a body, framed by length
    assert upstream.requests_to("/smuggled-h2") == []


def test_an_ipv6_zone_id_is_not_a_destination(sidecar, upstream):
    headers = _h2_headers("POST", f"[::1%25{AWS_KEY}]:443", "/zone")
    status = _h2_request(sidecar, upstream.https_port, headers, b"x", None)
    assert status in (0, 400, 421)
    assert upstream.requests_to("/zone") == []


def test_headers_larger_than_any_real_request_are_refused(sidecar, upstream):
    target = f"{UPSTREAM_HOST}:{upstream.http_port}"
    decoys = "".join(f"X-Decoy-{i}: {'A' * 4000}\r\n" for i in range(20))
    status, body = _raw_request(
        sidecar, upstream, f"GET http://{target}/allow/big HTTP/1.1\r\nHost: {target}\r\n{decoys}"
    )
    assert status == 431
    assert b"HEADERS_TOO_LARGE" in body
    assert upstream.requests_to("/allow/big") == []


def test_proxy_headers_sent_as_http2_trailers_never_leave(make_sidecar, h2_recorder):
    sidecar = make_sidecar(backend="local")
    authority = f"{UPSTREAM_HOST}:{h2_recorder.port}"
    trailers = [("proxy-authorization", f"Basic {AWS_KEY}"), ("x-checksum", "1")]
    status = _h2_request(sidecar, h2_recorder.port, _h2_headers("POST", authority, "/pt"),
                         b"hello", trailers)  # fmt: skip
    assert status == 200
    (_, trailer_block) = h2_recorder.blocks.wait_for(lambda b: (b"x-checksum", b"1") in b[1])
    assert trailer_block == [(b"x-checksum", b"1")]  # trailers are forwarded, minus that one
    assert AWS_KEY.encode() not in h2_recorder.everything


def test_the_method_is_scanned_as_written(make_sidecar, tcp_recorder):
    """mitmproxy reads methods upper-cased; the request line leaves as the agent wrote
    it, and a case-sensitive token (`glpat-...`) is only found as written."""
    target = tcp_recorder()
    sidecar = make_sidecar(backend="local")
    authority = f"{UPSTREAM_HOST}:{target.port}"
    status, headers, answer = exchange(
        str(sidecar.info.proxy),
        f"glpat-Zk3pQ8vR2mXt7LwN4bYc http://{authority}/m HTTP/1.1\r\nHost: {authority}\r\n",
    )
    assert status == 403, answer
    assert "SECRETS" in headers["x-interven-reasons"]
    assert target.connections.items == []


def test_an_http_version_the_sidecar_does_not_speak_is_refused(sidecar, tcp_recorder):
    target = tcp_recorder()
    authority = f"{UPSTREAM_HOST}:{target.port}"
    status, _, answer = exchange(
        str(sidecar.info.proxy), f"GET http://{authority}/v HTTP/9.9\r\nHost: {authority}\r\n"
    )
    assert status == 400
    assert b"HTTP version" in answer
    assert target.connections.items == []


def test_http2_authority_is_scanned_as_sent(make_sidecar, server_loop, upstream):
    """mitmproxy reads `:authority` IDNA-decoded (a lower-cased Unicode name); the
    upstream receives it as written, where `xn--AKIA...` keeps the key's case."""
    carrier = "xn--" + f"{AWS_KEY}-{'z' * 24}\u00e9".encode("punycode").decode()
    clean = "xn--" + "caf\u00e9".encode("punycode").decode()
    names = [f"{label.lower()}.example" for label in (carrier, clean)]
    dns = ScriptedDns(**{name: [UPSTREAM_HOST] for name in names})
    recorder = H2Recorder(server_loop, upstream.ca, names=tuple(names))
    sidecar = make_sidecar(backend="local", resolver=dns.resolver())
    try:
        # The lower-cased name alone gives the key away (lower-cased AWS key ids are
        # recognised): refused at CONNECT, before the authority is even sent.
        status, _, sock = connect(str(sidecar.info.proxy), f"{names[0]}:{recorder.port}")
        sock.close()
        assert status == 403
        # Sent inside a tunnel opened for the clean name, the carrier is refused too
        # (another name than the tunnel's: 421, before it is forwarded).
        for label, expected in ((carrier, {403, 421}), (clean, {200})):
            headers = _h2_headers("GET", f"{label}.example:{recorder.port}", f"/{min(expected)}")
            status = _h2_request(sidecar, recorder.port, headers, b"", None, host=names[1])
            assert status in expected
        assert AWS_KEY.encode() not in recorder.everything
        assert b"/200" in recorder.everything  # the clean name went through
    finally:
        server_loop.loop.call_soon_threadsafe(recorder.stop)
