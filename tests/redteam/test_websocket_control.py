"""Class 6: WebSocket control frames must not carry data out.

Rule (`addons.layers.GuardedWebsocketLayer`): the agent's PINGs are answered by the
sidecar and never forwarded; its PONGs are forwarded only as the answer to a PING the
upstream sent; its CLOSE keeps a registered code and loses its reason. Ground truth: a
wsproto server that records every frame event it receives.
"""

from __future__ import annotations

import contextlib

import wsproto
import wsproto.connection
import wsproto.events

from tests.redteam import AWS_KEY
from tests.support.raw import connect
from tests.support.servers import UPSTREAM_HOST, WAIT
from tests.support.waiting import eventually


class Agent:
    """A WebSocket client speaking through a CONNECT tunnel, frame by frame."""

    def __init__(self, sidecar, recorder) -> None:  # type: ignore[no-untyped-def]
        status, _, self.sock = connect(str(sidecar.info.proxy), f"{UPSTREAM_HOST}:{recorder.port}")
        assert status == 200
        self.sock.settimeout(WAIT)
        self.ws = wsproto.WSConnection(wsproto.ConnectionType.CLIENT)
        self.send(wsproto.events.Request(host=f"{UPSTREAM_HOST}:{recorder.port}", target="/ws"))
        assert isinstance(self.next_event(), wsproto.events.AcceptConnection)

    def send(self, event: wsproto.events.Event) -> None:
        self.sock.sendall(self.ws.send(event))

    def raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def next_event(self) -> wsproto.events.Event:
        while True:
            for event in self.ws.events():
                return event
            data = self.sock.recv(65536)
            assert data, "connection closed"
            self.ws.receive_data(data)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


def _frame(opcode: int, payload: bytes, fin: bool = True) -> bytes:
    """A masked client frame, written by hand (libraries will not write odd ones)."""
    head = bytes([(0x80 if fin else 0) | opcode, 0x80 | len(payload)])
    mask = b"\x01\x02\x03\x04"
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def test_agent_pings_are_answered_here_and_never_forwarded(sidecar, ws_recorder):
    agent = Agent(sidecar, ws_recorder)
    agent.send(wsproto.events.Ping(payload=AWS_KEY.encode()))
    pong = agent.next_event()
    assert isinstance(pong, wsproto.events.Pong)
    assert bytes(pong.payload) == AWS_KEY.encode()  # the agent's keep-alive still works
    agent.send(wsproto.events.TextMessage("after the ping"))
    ws_recorder.events.wait_for(lambda e: e[0] == "message")
    assert not [e for e in ws_recorder.events.items if e[0] == "ping"]
    eventually(lambda: sidecar.metric("egress_sidecar_websocket_control_frames_total",
                                      frame="ping", action="answered") == 1)  # fmt: skip
    agent.close()


def test_unsolicited_pongs_are_dropped_answers_go_through(sidecar, ws_recorder):
    agent = Agent(sidecar, ws_recorder)
    agent.send(wsproto.events.Pong(payload=AWS_KEY.encode()))  # nobody asked
    ws_recorder.ping_clients(b"server-ping-1")
    ping = agent.next_event()
    assert isinstance(ping, wsproto.events.Ping)
    agent.send(ping.response())  # the answer the server asked for
    ws_recorder.events.wait_for(lambda e: e == ("pong", b"server-ping-1"))
    pongs = [e for e in ws_recorder.events.items if e[0] == "pong"]
    assert pongs == [("pong", b"server-ping-1")]
    agent.close()


def test_close_reasons_and_odd_codes_are_stripped(sidecar, ws_recorder):
    agent = Agent(sidecar, ws_recorder)
    agent.send(wsproto.events.CloseConnection(code=4321, reason=AWS_KEY))
    close = ws_recorder.events.wait_for(lambda e: e[0] == "close")
    assert close == ("close", 1000, "")
    agent.close()


def test_pings_inside_a_fragmented_message_are_not_forwarded(sidecar, ws_recorder):
    agent = Agent(sidecar, ws_recorder)
    agent.raw(_frame(0x1, b"part one, ", fin=False))
    agent.raw(_frame(0x9, AWS_KEY.encode()))  # PING between fragments
    agent.raw(_frame(0x0, b"part two", fin=True))
    message = ws_recorder.events.wait_for(lambda e: e[0] == "message")
    assert message == ("message", "part one, part two")
    assert not [e for e in ws_recorder.events.items if e[0] == "ping"]
    agent.close()


def test_messages_still_flow_and_are_still_judged(make_sidecar, ws_recorder):
    sidecar = make_sidecar(backend="local")
    agent = Agent(sidecar, ws_recorder)
    agent.send(wsproto.events.TextMessage(f"key {AWS_KEY}"))
    agent.send(wsproto.events.TextMessage("harmless"))
    ws_recorder.events.wait_for(lambda e: e == ("message", "harmless"))
    assert ("message", f"key {AWS_KEY}") not in ws_recorder.events.items
    agent.close()


def test_the_hand_written_frames_are_what_a_server_parses() -> None:
    server = wsproto.connection.Connection(wsproto.ConnectionType.SERVER)
    server.receive_data(_frame(0x9, b"abc"))
    (event,) = list(server.events())
    assert isinstance(event, wsproto.events.Ping)
    assert bytes(event.payload) == b"abc"
