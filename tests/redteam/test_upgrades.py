"""Class 2: a protocol switch must not turn the connection into an unscanned pipe.

Rule: only WebSocket version 13 upgrades are sent on (every message is then scanned);
h2c offers are removed; any other `Upgrade` is refused before the upstream is contacted;
and a 101 the upstream sends for anything but the WebSocket upgrade it was asked for
ends the connection, so no byte after it is relayed.
"""

from __future__ import annotations

import contextlib

import pytest

from tests.redteam import AWS_KEY
from tests.support.raw import closed_by_peer, connect, read_response
from tests.support.servers import UPSTREAM_HOST

SWITCH = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: foo\r\nConnection: Upgrade\r\n\r\n"


def _tunnel(sidecar, port):  # type: ignore[no-untyped-def]
    status, _, sock = connect(str(sidecar.info.proxy), f"{UPSTREAM_HOST}:{port}")
    assert status == 200
    return sock


@pytest.mark.parametrize(
    "headers",
    [
        "Upgrade: foo\r\nConnection: Upgrade\r\n",
        "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: x\r\n",  # no version
        "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 8\r\n",
        "Upgrade: websocket, foo\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n",
        "Upgrade: TLS/1.2\r\nConnection: Upgrade\r\n",
    ],
    ids=["foo", "websocket-no-version", "websocket-v8", "websocket-and-foo", "tls"],
)
def test_upgrades_the_sidecar_cannot_follow_are_refused(sidecar, tcp_recorder, headers):
    evil = tcp_recorder(reply_to_head=SWITCH)
    sock = _tunnel(sidecar, evil.port)
    sock.sendall(f"GET /up HTTP/1.1\r\nHost: {UPSTREAM_HOST}:{evil.port}\r\n{headers}\r\n".encode())
    status, _, body = read_response(sock)
    sock.close()
    assert status == 403
    assert b"UPGRADE_REFUSED" in body
    assert evil.connections.items == []


def test_an_unasked_for_101_ends_the_connection(sidecar, tcp_recorder):
    evil = tcp_recorder(reply_to_head=SWITCH)
    sock = _tunnel(sidecar, evil.port)
    # An ordinary request (allowed); the colluding server answers 101 anyway.
    sock.sendall(f"GET /allow/x HTTP/1.1\r\nHost: {UPSTREAM_HOST}:{evil.port}\r\n\r\n".encode())
    evil.chunks.wait_for(lambda c: b"GET /allow/x" in c)
    with contextlib.suppress(OSError):  # (the proxy may have closed already)
        sock.sendall(b"\x00" + AWS_KEY.encode())  # would flow through a raw pipe
    assert closed_by_peer(sock)
    evil.closed.wait_for(lambda _: True)  # the upstream side ended: all it got is in
    assert AWS_KEY.encode() not in evil.everything
    kind = {"stage": "protocol", "reason": "unrequested_switch"}
    assert sidecar.metric("egress_sidecar_refusals_total", **kind) == 1


def test_h2c_offers_are_removed_not_followed(sidecar, upstream):
    sock = _tunnel(sidecar, upstream.http_port)
    sock.sendall(
        f"GET /allow/h2c HTTP/1.1\r\nHost: {UPSTREAM_HOST}:{upstream.http_port}\r\n"
        "Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
        "HTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n".encode()
    )
    status, _, _ = read_response(sock)
    sock.close()
    assert status == 200
    (received,) = upstream.requests_to("/allow/h2c")
    names = {k.lower() for k in received.headers}
    assert "upgrade" not in names
    assert "http2-settings" not in names
