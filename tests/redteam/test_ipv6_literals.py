"""Class 3: IPv6 literals (and every other spelling of an address) reach the judge intact.

Rule: the URL the judge sees keeps IPv6 brackets; a destination that does not parse is
refused, never "no finding"; and whatever the spelling, the address connected to is the
address judged (`addons.connect_guard`), so loopback, link-local, ULA and metadata
addresses are refused with any backend — here the scan API double, which allows all.
"""

from __future__ import annotations

import pytest

from tests.support.raw import connect, proxy_socket, read_response

V6_TARGETS = [
    "[::1]",
    "[::ffff:127.0.0.5]",
    "[::ffff:169.254.169.254]",
    "[fd00:ec2::254]",
    "[fe80::1]",
    "[::]",
    "[0:0:0:0:0:ffff:7f00:1]",
    "[2002:a9fe:a9fe::]",  # 6to4: carries to 169.254.169.254
    "[64:ff9b::a9fe:a9fe]",  # NAT64: the same
]


@pytest.mark.parametrize("host", V6_TARGETS)
def test_plain_http_to_ipv6_literals_is_refused(sidecar, scan_api, tcp_recorder, host):
    v6 = tcp_recorder("::1")
    port = v6.port
    sock = proxy_socket(str(sidecar.info.proxy))
    sock.sendall(
        f"GET http://{host}:{port}/allow/v6 HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode()
    )
    status, _, body = read_response(sock)
    sock.close()
    assert status == 403, body
    assert b"SSRF" in body
    assert v6.connections.items == []
    for scan in scan_api.scans.items:  # the judge saw the address with its brackets
        assert "[" in scan["json"]["url"]


@pytest.mark.parametrize("host", V6_TARGETS)
def test_connect_to_ipv6_literals_is_refused(sidecar, tcp_recorder, host):
    v6 = tcp_recorder("::1")
    status, doc, sock = connect(str(sidecar.info.proxy), f"{host}:{v6.port}")
    sock.close()
    assert status == 403
    assert "SSRF" in doc["reason_codes"]
    assert v6.connections.items == []


@pytest.mark.parametrize(
    "host", ["0x7f.0.0.1", "2130706433", "0177.0.0.1", "127.1", "0x7f000001", "0.0.0.0"]
)
def test_other_spellings_of_loopback_are_refused(sidecar, host):
    sock = proxy_socket(str(sidecar.info.proxy))
    sock.sendall(f"GET http://{host}:9/allow/spelled HTTP/1.1\r\nHost: {host}:9\r\n\r\n".encode())
    status, _, body = read_response(sock)
    sock.close()
    assert status == 403, (host, body)


def test_the_admin_server_is_not_reachable_through_an_ipv6_spelling(sidecar):
    admin = sidecar.info.admin
    assert admin is not None
    sock = proxy_socket(str(sidecar.info.proxy))
    target = f"[::ffff:127.0.0.1]:{admin.port}"
    sock.sendall(
        f"POST http://{target}/approvals/x/approve HTTP/1.1\r\nHost: {target}\r\n"
        "Content-Length: 0\r\n\r\n".encode()
    )
    status, _, _ = read_response(sock)
    sock.close()
    assert status == 403


def test_an_unparseable_destination_is_refused(sidecar, scan_api):
    sock = proxy_socket(str(sidecar.info.proxy))
    sock.sendall(b"GET http://[::1/x HTTP/1.1\r\nHost: [::1\r\n\r\n")
    status, _, _ = read_response(sock)
    sock.close()
    assert status in (400, 403)
    assert scan_api.scans.items == []
