"""Class 7: pass-through binds to the destination connected to, never to client names.

Rule: a tunnel is passed through only when its CONNECT target is a pass-through host and
the TLS SNI names that same host; the connection then goes to the address that target
resolves to, which must still pass the address rules (no loopback, private or metadata
address unless internal). Anything else is intercepted and judged request by request.
"""

from __future__ import annotations

import ssl

import pytest

from tests.support.dns import ScriptedDns
from tests.support.raw import connect, read_response
from tests.support.servers import UPSTREAM_HOST


def _upstream_only(upstream) -> ssl.SSLContext:  # type: ignore[no-untyped-def]
    """Trusts the upstream's CA only: a handshake succeeds only if nothing intercepted."""
    ctx = ssl.create_default_context(cafile=str(upstream.ca_file))
    ctx.check_hostname = False
    return ctx


def test_a_passthrough_name_is_tunnelled_to_the_address_it_resolves_to(make_sidecar, upstream,
                                                                      scan_api):  # fmt: skip
    dns = ScriptedDns(mirror_test=[UPSTREAM_HOST])
    sidecar = make_sidecar(passthrough_hosts="mirror.test", resolver=dns.resolver())
    status, _, sock = connect(str(sidecar.info.proxy), f"mirror.test:{upstream.https_port}")
    assert status == 200
    tls = _upstream_only(upstream).wrap_socket(sock, server_hostname="mirror.test")
    tls.sendall(b"GET /allow/through HTTP/1.1\r\nHost: 127.0.0.2\r\nConnection: close\r\n\r\n")
    assert tls.recv(12).startswith(b"HTTP/1.1 200")
    tls.close()
    assert upstream.requests_to("/allow/through")
    assert scan_api.scans.items == []  # passed through unseen, as configured
    assert sidecar.metric("egress_sidecar_passthrough_connections_total") == 1


def test_a_passthrough_sni_on_another_destination_is_intercepted(make_sidecar, upstream):
    sidecar = make_sidecar(passthrough_hosts="mirror.test")
    status, _, sock = connect(str(sidecar.info.proxy), f"{UPSTREAM_HOST}:{upstream.https_port}")
    assert status == 200
    with pytest.raises(ssl.SSLCertVerificationError):  # the sidecar's certificate: intercepted
        _upstream_only(upstream).wrap_socket(sock, server_hostname="mirror.test")
    assert sidecar.metric("egress_sidecar_passthrough_connections_total") == 0


def test_a_passthrough_name_without_sni_is_intercepted(make_sidecar, upstream):
    dns = ScriptedDns(mirror_test=[UPSTREAM_HOST])
    sidecar = make_sidecar(passthrough_hosts="mirror.test", resolver=dns.resolver())
    status, _, sock = connect(str(sidecar.info.proxy), f"mirror.test:{upstream.https_port}")
    assert status == 200
    ctx = _upstream_only(upstream)
    with pytest.raises(ssl.SSLCertVerificationError):
        ctx.wrap_socket(sock, server_hostname=None)  # no SNI: CDN routing unknown
    assert sidecar.metric("egress_sidecar_passthrough_connections_total") == 0


def test_a_passthrough_name_resolving_inside_is_refused(make_sidecar, upstream, tcp_recorder):
    inside = tcp_recorder("127.0.0.3")
    dns = ScriptedDns(mirror_test=["127.0.0.3"])
    sidecar = make_sidecar(passthrough_hosts="mirror.test", resolver=dns.resolver())
    status, _, sock = connect(str(sidecar.info.proxy), f"mirror.test:{inside.port}")
    assert status == 200  # the name as written is fine ...
    ctx = _upstream_only(upstream)
    with pytest.raises((ssl.SSLError, ConnectionError)):  # passed through, then refused
        ctx.wrap_socket(sock, server_hostname="mirror.test")
    assert inside.connections.items == []  # ... where it leads is not
    kind = {"stage": "connect", "reason": "loopback"}
    assert sidecar.metric("egress_sidecar_refusals_total", **kind) == 1


def test_a_passthrough_host_header_on_another_destination_is_judged(make_sidecar, upstream,
                                                                    scan_api):  # fmt: skip
    sidecar = make_sidecar(passthrough_hosts="mirror.test")
    status, _, sock = connect(str(sidecar.info.proxy), f"{UPSTREAM_HOST}:{upstream.http_port}")
    assert status == 200
    sock.sendall(b"GET /allow/hosted HTTP/1.1\r\nHost: mirror.test\r\n\r\n")
    answer, _, _ = read_response(sock)
    sock.close()
    assert answer == 421  # not passed through: judged, and the names disagree
    assert upstream.requests_to("/allow/hosted") == []
    assert sidecar.metric("egress_sidecar_passthrough_connections_total") == 0
