"""Where mitmproxy 11.0.2 has no hook: small extensions of its own layer classes.

- `RefusedLayer`: what a connection gets when the sidecar will not relay its protocol
  (raw TCP, DNS, UDP, QUIC): the client connection is closed before a byte leaves.
- `ScannedTcpLayer`: raw TCP to a destination allowed to carry it. Every message from
  the agent goes through the `tcp_message` hook (where it is scanned); a message the
  hook killed the flow for is never sent, and both connections close.
- `GuardedWebsocketLayer`: mitmproxy relays WebSocket control frames without a hook, so
  an agent could carry data out in PING payloads, unsolicited PONGs or CLOSE reasons.
  Here the agent's PINGs are answered by the sidecar (never forwarded), its PONGs are
  forwarded only as the answer to a PING the upstream sent (with that PING's payload),
  and its CLOSE keeps a registered status code and loses its reason text. Each frame is
  reported through the `egress_control_frame` hook.

These subclass mitmproxy internals pinned in constraints.txt. `pinned_sources()` digests
every piece of mitmproxy and wsproto code the sidecar's guards rely on (these classes,
and the internals `protocol_guard`, `tunnel_guard` and `connect_guard` lean on);
`tests/unit/test_layers.py` holds the digests of the pinned versions and fails loudly
when an upgrade changes any of it. `install()` puts the WebSocket layer in place.
"""

from __future__ import annotations

import hashlib
import inspect
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import wsproto.connection
import wsproto.events
from mitmproxy import http
from mitmproxy.connection import Server
from mitmproxy.proxy import commands, events, layer
from mitmproxy.proxy.commands import StartHook
from mitmproxy.proxy.layers import tcp, websocket
from mitmproxy.proxy.server import ConnectionHandler

# RFC 6455 §7.4.1 codes an endpoint may send; anything else (incl. the 3000-4999 ranges
# an application could use as a covert channel) becomes 1000.
ALLOWED_CLOSE_CODES = frozenset({1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011})
SERVER_PINGS_REMEMBERED = 8


@dataclass
class ControlFrame:
    """A WebSocket control frame from the agent, and what the sidecar did with it."""

    flow: http.HTTPFlow
    frame: str  # "ping", "pong", "close"
    action: str  # "answered", "forwarded", "dropped", "stripped"


@dataclass
class ControlFrameHook(StartHook):
    """An agent's WebSocket control frame was handled (see `GuardedWebsocketLayer`)."""

    name = "egress_control_frame"
    data: ControlFrame


class RefusedLayer(layer.Layer):
    """Closes the client's connection at once; nothing is relayed."""

    def _handle_event(self, event: events.Event) -> layer.CommandGenerator[None]:
        if isinstance(event, events.Start):
            yield commands.CloseConnection(self.context.client)


class ScannedTcpLayer(tcp.TCPLayer):
    """mitmproxy's TCP relay, except that a message whose flow the hook killed is not
    sent: the connection ends there."""

    def relay_messages(self, event: events.Event) -> layer.CommandGenerator[None]:
        for command in super().relay_messages(event):
            if isinstance(command, commands.SendData) and self.flow and self.flow.error:
                yield commands.CloseConnection(self.context.server)
                yield commands.CloseConnection(self.context.client)
                self._handle_event = self.done
                return
            yield command


class GuardedWebsocketLayer(websocket.WebsocketLayer):
    """mitmproxy's WebSocket relay with the agent's control frames kept from carrying
    data out (see the module docstring)."""

    def __init__(self, context: Any, flow: http.HTTPFlow) -> None:
        super().__init__(context, flow)
        self._server_pings: deque[bytes] = deque(maxlen=SERVER_PINGS_REMEMBERED)

    def relay_messages(self, event: events.Event) -> layer.CommandGenerator[None]:
        if isinstance(event, events.DataReceived):
            # Frames are parsed here first; what may pass is queued back unchanged for
            # mitmproxy's relay, which then sees no new bytes.
            if event.connection == self.context.client:
                yield from self._screen_agent(event.data)
            else:
                self._note_server_pings(event.data)
            event = events.DataReceived(event.connection, b"")
        yield from super().relay_messages(event)

    def _screen_agent(self, data: bytes) -> layer.CommandGenerator[None]:
        ws = self.client_ws
        ws.receive_data(data)
        kept: list[wsproto.events.Event] = []
        for ev in ws.events():
            if isinstance(ev, wsproto.events.Ping):
                yield ws.send2(ev.response())  # the agent's liveness check ends here
                yield from self._report("ping", "answered")
            elif isinstance(ev, wsproto.events.Pong):
                payload = bytes(ev.payload)
                if payload in self._server_pings:
                    self._server_pings.remove(payload)
                    kept.append(ev)
                    yield from self._report("pong", "forwarded")
                else:
                    yield from self._report("pong", "dropped")
            elif isinstance(ev, wsproto.events.CloseConnection):
                code = ev.code if ev.code in ALLOWED_CLOSE_CODES else 1000
                kept.append(wsproto.events.CloseConnection(code=code, reason=None))
                stripped = bool(ev.reason) or code != ev.code
                yield from self._report("close", "stripped" if stripped else "forwarded")
            else:
                kept.append(ev)
        ws._events.extend(kept)

    def _note_server_pings(self, data: bytes) -> None:
        ws = self.server_ws
        ws.receive_data(data)
        queued = list(ws.events())
        for ev in queued:
            if isinstance(ev, wsproto.events.Ping):
                self._server_pings.append(bytes(ev.payload))
        ws._events.extend(queued)

    def _report(self, frame: str, action: str) -> layer.CommandGenerator[None]:
        yield ControlFrameHook(ControlFrame(self.flow, frame, action))


def install() -> None:
    """Make mitmproxy's HTTP layer start our WebSocket layer (it looks the class up in
    its `websocket` module each time). Safe to call more than once."""
    websocket.WebsocketLayer = GuardedWebsocketLayer  # type: ignore[misc]


def _digest(obj: Callable[..., Any] | type) -> str:
    return hashlib.sha256(inspect.getsource(obj).encode()).hexdigest()[:16]


def pinned_sources() -> dict[str, str]:
    """Digests of the upstream code the extensions above rely on, as installed now."""
    from mitmproxy.addons.next_layer import NextLayer
    from mitmproxy.proxy.layers import ClientTLSLayer
    from mitmproxy.proxy.layers import http as http_layers

    original_ws = GuardedWebsocketLayer.__mro__[1]
    return {
        "mitmproxy.proxy.layers.websocket.WebsocketLayer": _digest(original_ws),
        "mitmproxy.proxy.layers.websocket.WebsocketConnection": _digest(
            websocket.WebsocketConnection
        ),
        "mitmproxy.proxy.layers.tcp.TCPLayer": _digest(tcp.TCPLayer),
        "mitmproxy.proxy.layers.http.HttpStream.flow_done": _digest(
            http_layers.HttpStream.flow_done
        ),
        "mitmproxy.connection.Server.__setattr__": _digest(Server.__setattr__),
        "mitmproxy.proxy.layer.Layer.__init__": _digest(layer.Layer.__init__),
        "mitmproxy.proxy.layer.NextLayer._ask": _digest(layer.NextLayer._ask),
        "mitmproxy.addons.next_layer.NextLayer._next_layer": _digest(NextLayer._next_layer),
        "mitmproxy.proxy.layers.tls.ClientTLSLayer.receive_handshake_data": _digest(
            ClientTLSLayer.receive_handshake_data
        ),
        "mitmproxy.proxy.server.ConnectionHandler.open_connection": _digest(
            ConnectionHandler.open_connection
        ),
        "wsproto.connection.Connection.events": _digest(wsproto.connection.Connection.events),
        "wsproto.connection.Connection.receive_data": _digest(
            wsproto.connection.Connection.receive_data
        ),
    }
