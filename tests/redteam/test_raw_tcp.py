"""Class 1: raw TCP after CONNECT (or after TLS) must never be relayed unjudged.

Rule: every CONNECT is judged on its destination before the tunnel opens; only HTTP and
TLS (intercepted) are relayed; raw TCP is refused unless `raw_tcp_hosts` names the
destination, and then every byte is scanned as it flows.
"""

from __future__ import annotations

import ssl

import pytest

from tests.redteam import AWS_KEY
from tests.support.raw import closed_by_peer, connect, read_head, read_response
from tests.support.servers import UPSTREAM_HOST
from tests.support.waiting import eventually


@pytest.mark.parametrize(
    "payload",
    [
        b"\x00" + AWS_KEY.encode() + b"\n",  # binary junk carrying a key
        b"\r\nPOST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 20\r\n\r\n" + AWS_KEY.encode(),
        b"SSH-2.0-OpenSSH_9.6\r\n" + AWS_KEY.encode(),
        AWS_KEY.encode() * 3,  # no space at all
    ],
    ids=["binary", "leading-crlf", "ssh-banner", "bare-token"],
)
def test_raw_bytes_after_connect_are_refused(sidecar, tcp_recorder, payload):
    target = tcp_recorder()
    status, _, sock = connect(str(sidecar.info.proxy), f"{UPSTREAM_HOST}:{target.port}")
    assert status == 200  # the destination itself is allowed (internal) ...
    sock.sendall(payload)
    assert closed_by_peer(sock)  # ... but what follows is not HTTP: closed, not relayed
    assert target.connections.items == []  # the server was never even contacted
    assert sidecar.metric("egress_sidecar_refusals_total", stage="protocol", reason="raw_tcp") >= 1


def test_raw_bytes_inside_intercepted_tls_are_refused(sidecar, tcp_recorder):
    target = tcp_recorder()
    status, _, sock = connect(str(sidecar.info.proxy), f"{UPSTREAM_HOST}:{target.port}")
    assert status == 200
    ctx = ssl.create_default_context(cafile=str(sidecar.ca.bundle))
    tls = ctx.wrap_socket(sock, server_hostname=UPSTREAM_HOST)
    tls.sendall(b"\x01\x02" + AWS_KEY.encode())
    assert closed_by_peer(tls)
    assert target.connections.items == []


def test_connect_to_the_sidecars_own_admin_port_is_refused(sidecar):
    admin = sidecar.info.admin
    assert admin is not None
    for authority in (f"127.0.0.1:{admin.port}", f"[::ffff:127.0.0.1]:{admin.port}",
                      f"0x7f.1:{admin.port}", f"localhost:{admin.port}"):  # fmt: skip
        status, doc, sock = connect(str(sidecar.info.proxy), authority)
        sock.close()
        assert status == 403, authority
        assert "SSRF" in doc["reason_codes"], authority


@pytest.mark.parametrize("host", ["127.0.0.3", "10.0.0.5", "169.254.169.254", "[::1]"])
def test_connect_to_private_destinations_is_judged_before_the_tunnel(sidecar, host):
    status, doc, sock = connect(str(sidecar.info.proxy), f"{host}:9000")
    sock.close()
    assert status == 403
    assert doc["decision"] == "DENY"
    assert "SSRF" in doc["reason_codes"]
    assert sidecar.metric("egress_sidecar_tunnels_total", decision="DENY") == 1


def test_connect_judgement_makes_no_scan_api_call(sidecar, scan_api):
    status, _, sock = connect(str(sidecar.info.proxy), "127.0.0.3:9000")
    sock.close()
    assert status == 403
    assert scan_api.scans.items == []  # the scan API's budget is for requests


def test_raw_tcp_to_a_named_destination_is_scanned_as_a_stream(make_sidecar, tcp_recorder):
    target = tcp_recorder()
    sidecar = make_sidecar(backend="local", raw_tcp_hosts=f"{UPSTREAM_HOST}:{target.port}")
    status, _, sock = connect(str(sidecar.info.proxy), f"{UPSTREAM_HOST}:{target.port}")
    assert status == 200
    sock.sendall(b"\x00\x01hello database\n")
    target.chunks.wait_for(lambda c: b"hello database" in c)
    assert sidecar.metric("egress_sidecar_raw_tcp_connections_total") == 1
    # A key split across two writes is whole in the scan window: the stream ends there.
    sock.sendall(b"\x00 " + AWS_KEY[:10].encode())
    target.chunks.wait_for(lambda c: AWS_KEY[:10].encode() in c)
    sock.sendall(AWS_KEY[10:].encode() + b" more")
    assert closed_by_peer(sock)
    target.closed.wait_for(lambda _: True)  # the upstream side ended: all it got is in
    assert AWS_KEY[10:].encode() not in target.everything


def test_raw_tcp_to_a_destination_not_named_is_refused(make_sidecar, tcp_recorder):
    allowed, other = tcp_recorder(), tcp_recorder()
    sidecar = make_sidecar(backend="local", raw_tcp_hosts=f"{UPSTREAM_HOST}:{allowed.port}")
    status, _, sock = connect(str(sidecar.info.proxy), f"{UPSTREAM_HOST}:{other.port}")
    assert status == 200
    sock.sendall(b"\x00\x01hello")
    assert closed_by_peer(sock)
    assert other.connections.items == []


def test_plain_http_through_a_tunnel_is_still_judged(sidecar, upstream, scan_api):
    status, _, sock = connect(str(sidecar.info.proxy), f"{UPSTREAM_HOST}:{upstream.http_port}")
    assert status == 200
    sock.sendall(b"GET /deny/tunnelled HTTP/1.1\r\nHost: " + UPSTREAM_HOST.encode()
                 + f":{upstream.http_port}".encode() + b"\r\n\r\n")  # fmt: skip
    status, headers, _ = read_head(sock)
    sock.close()
    assert status == 403
    assert headers["x-interven-decision"] == "DENY"
    eventually(lambda: any(s["json"]["url"].endswith("/deny/tunnelled")
                           for s in scan_api.scans.items))  # fmt: skip
    assert upstream.requests_to("/deny/tunnelled") == []


@pytest.mark.parametrize("raw", [False, True], ids=["http", "raw-tcp"])
def test_the_sidecars_own_ports_stay_refused_when_loopback_is_internal(make_sidecar, raw):
    extra = {"raw_tcp_hosts": "127.0.0.1"} if raw else {}
    sidecar = make_sidecar(backend="local", internal_hosts="127.0.0.0/8", **extra)
    admin = sidecar.info.admin
    assert admin is not None
    status, _, sock = connect(str(sidecar.info.proxy), f"127.0.0.1:{admin.port}")
    assert status == 200  # the name is internal ...
    opening = b"\x00raw approve" if raw else b"POST /approvals/x/approve HTTP/1.1\r\n"
    sock.sendall(opening + b"Host: 127.0.0.1\r\nContent-Length: 0\r\n\r\n")
    answer, _, body = read_response(sock)
    sock.close()
    assert answer in ((0,) if raw else (403,)), body  # ... the address is the sidecar itself
    stage = "connect" if raw else "request"
    kind = {"stage": stage, "reason": "own_endpoint"}
    assert sidecar.metric("egress_sidecar_refusals_total", **kind) == 1


def test_a_message_larger_than_the_scan_limit_is_scanned_whole(make_sidecar, tcp_recorder):
    target = tcp_recorder()
    sidecar = make_sidecar(backend="local", max_body_bytes=4096,
                           raw_tcp_hosts=f"{UPSTREAM_HOST}:{target.port}")  # fmt: skip
    status, _, sock = connect(str(sidecar.info.proxy), f"{UPSTREAM_HOST}:{target.port}")
    assert status == 200
    sock.sendall(b"\x00 " + AWS_KEY.encode() + b" " + b"\x01" * 20_000)  # key, then padding
    assert closed_by_peer(sock)
    assert AWS_KEY.encode() not in target.everything
