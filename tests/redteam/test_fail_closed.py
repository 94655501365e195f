"""A bug in a guard never becomes a way out: every hook fails closed.

mitmproxy logs an exception raised in an addon hook and carries on as if the hook had
not run — opening the tunnel, sending the message, connecting unjudged. Each guard
catches its own errors and refuses instead. Here each guard's judgement is broken on
purpose, on the running sidecar, and the recording server must receive nothing.
"""

from __future__ import annotations

from typing import Any, NoReturn

from tests.redteam import AWS_KEY
from tests.support.raw import closed_by_peer, connect, proxy_socket, read_response
from tests.support.servers import UPSTREAM_HOST


def _broken(*_args: Any, **_kwargs: Any) -> NoReturn:
    raise RuntimeError("a bug in the sidecar")


async def _broken_async(*_args: Any, **_kwargs: Any) -> NoReturn:
    raise RuntimeError("a bug in the sidecar")


def test_a_bug_judging_a_connect_refuses_the_tunnel(sidecar, monkeypatch, tcp_recorder):
    target = tcp_recorder()
    engine = sidecar.info.lifecycle.runtime.destinations.engine
    monkeypatch.setattr(engine, "judge_destination", _broken)
    status, doc, sock = connect(str(sidecar.info.proxy), f"{UPSTREAM_HOST}:{target.port}")
    sock.close()
    assert status == 500
    assert "FAIL_CLOSED" in doc["reason_codes"]
    assert target.connections.items == []


def test_a_bug_judging_a_connection_refuses_it(sidecar, monkeypatch, upstream):
    destinations = sidecar.info.lifecycle.runtime.destinations
    monkeypatch.setattr(destinations, "judge_connection", _broken_async)
    target = f"{UPSTREAM_HOST}:{upstream.http_port}"
    sock = proxy_socket(str(sidecar.info.proxy))
    sock.sendall(f"GET http://{target}/allow/bug-connect HTTP/1.1\r\nHost: {target}\r\n\r\n"
                 .encode())  # fmt: skip
    status, _, _ = read_response(sock)
    sock.close()
    assert status in (500, 502)
    assert upstream.requests_to("/allow/bug-connect") == []


def test_a_bug_choosing_a_protocol_refuses_the_connection(make_sidecar, monkeypatch,
                                                          tcp_recorder):  # fmt: skip
    target = tcp_recorder()
    sidecar = make_sidecar(raw_tcp_hosts=f"{UPSTREAM_HOST}:{target.port}")
    guard = sidecar.master.addons.get("protocolguard")
    monkeypatch.setattr(guard, "_raw_tcp_allowed", _broken)
    status, _, sock = connect(str(sidecar.info.proxy), f"{UPSTREAM_HOST}:{target.port}")
    assert status == 200
    sock.sendall(b"\x00" + AWS_KEY.encode())
    assert closed_by_peer(sock)
    assert target.connections.items == []


def test_a_bug_judging_a_tcp_stream_ends_it(make_sidecar, monkeypatch, tcp_recorder):
    target = tcp_recorder()
    sidecar = make_sidecar(backend="local", raw_tcp_hosts=f"{UPSTREAM_HOST}:{target.port}")
    status, _, sock = connect(str(sidecar.info.proxy), f"{UPSTREAM_HOST}:{target.port}")
    assert status == 200
    sock.sendall(b"\x00first")
    target.chunks.wait_for(lambda c: b"first" in c)
    monkeypatch.setattr(sidecar.info.lifecycle.runtime.judge, "_carries_sidecar_key", _broken_async)
    sock.sendall(b"\x00" + AWS_KEY.encode())
    assert closed_by_peer(sock)
    target.closed.wait_for(lambda _: True)
    assert AWS_KEY.encode() not in target.everything
