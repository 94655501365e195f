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
  reported through the `egress_control_frame` hook. A message from the agent larger
  than the scan limit is dropped as it arrives (never assembled), and messages from the
  upstream are relayed frame by frame, never assembled; no message history is kept.
- `BoundedHttpStream`: a request body is refused (413) as soon as its declared or
  received size passes what will be scanned (`request_body_cap`), so at most that much
  is ever buffered (what the agent still sends is read and discarded, up to a bound, so
  it reads the answer instead of a reset); a response is never refused for its declared
  length (the guard streams every response body, keeping a bounded copy).
  Request bodies held at once share one budget (`HELD_BODIES`, 503 beyond it).
- `GuardedHttp1Server` / `GuardedHttp1Client`: mitmproxy's HTTP/1 layer raises on
  trailers, and buffers unparsed bytes without limit. Trailers on an agent's HTTP/1
  request are refused (400); trailers an HTTP/1 upstream sends, or that would have to be
  written to an HTTP/1 peer, are dropped; an agent's unparsed bytes are bounded and
  every request head is timed.
- `BoundedClientTLSLayer`: an agent's ClientHello is bounded in size and time.
- hyper-h2's CONTINUATION backlog is cut to a 64 KiB header block.
Each of these reports what it refused through the `egress_resource_refused` hook.

These subclass mitmproxy internals pinned in constraints.txt. `pinned_sources()` digests
every piece of mitmproxy, wsproto and hyper-h2 code the sidecar's guards rely on (these
classes, and the internals `protocol_guard`, `tunnel_guard` and `connect_guard` lean
on); `tests/unit/test_layers.py` holds the digests of the pinned versions and fails
loudly when an upgrade changes any of it. `install()` puts the layers in place.
"""

from __future__ import annotations

import hashlib
import inspect
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import h2.frame_buffer
import h11
import wsproto.connection
import wsproto.events
from h11._receivebuffer import ReceiveBuffer
from mitmproxy import flow as mitm_flow
from mitmproxy import http
from mitmproxy.addons import next_layer as next_layer_addon
from mitmproxy.connection import Server
from mitmproxy.net.http.http1 import expected_http_body_size
from mitmproxy.proxy import commands, events, layer
from mitmproxy.proxy import layers as mitm_layers
from mitmproxy.proxy.commands import StartHook
from mitmproxy.proxy.layers import http as http_layers
from mitmproxy.proxy.layers import tcp, tls, websocket
from mitmproxy.proxy.layers.http import DropStream, SendHttp, _http1
from mitmproxy.proxy.layers.http._base import ReceiveHttp
from mitmproxy.proxy.layers.http._events import (
    RequestData,
    RequestEndOfMessage,
    RequestProtocolError,
    RequestTrailers,
    ResponseData,
    ResponseEndOfMessage,
    ResponseHeaders,
    ResponseProtocolError,
    ResponseTrailers,
)
from mitmproxy.proxy.layers.http._hooks import HttpErrorHook, HttpRequestHeadersHook
from mitmproxy.proxy.layers.http._http1 import make_error_response
from mitmproxy.proxy.server import ConnectionHandler
from mitmproxy.utils import human

from addons.flow_record import FlowRecord
from sidecar.broker.scrub import Scrubber, StreamScrubber
from sidecar.config.settings import SCAN_API_MAX_BODY_BYTES, request_body_cap

# RFC 6455 §7.4.1 codes an endpoint may send; anything else (incl. the 3000-4999 ranges
# an application could use as a covert channel) becomes 1000.
ALLOWED_CLOSE_CODES = frozenset({1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011})
SERVER_PINGS_REMEMBERED = 8
MESSAGE_MOVED = "egress_ws_message_moved"  # flow metadata: when a message last went by
REFUSED_BODY_DRAINED = 16 * 1024 * 1024  # read after a 413 before the connection is closed
HELD_BODIES_DEFAULT = 64 * 1024 * 1024  # when mitmproxy's body_size_limit is unset
MAX_CLIENT_HELLO = 64 * 1024  # a real one is under 2 KiB (post-quantum key shares included)
H2_CONTINUATION_FRAMES = 3  # after HEADERS: a header block of at most 4 x 16 KiB
MAX_UNPARSED = 128 * 1024  # an agent's HTTP/1 bytes held unparsed (a head, pipelining)
BODY_REFUSED = "Request body is larger than the scan limit."
BODIES_HELD = "The sidecar holds as many request bodies as it may; try again."
TRAILERS_REFUSED = "Trailers on an HTTP/1 request are not relayed."


@dataclass
class ControlFrame:
    """A WebSocket control frame from the agent, and what the sidecar did with it."""

    flow: http.HTTPFlow
    frame: str  # "ping", "pong", "close"
    action: str  # "answered", "forwarded", "dropped", "stripped"


@dataclass
class ResourceRefusal:
    """Something a layer refused or dropped to keep a bound (see the module docstring)."""

    # body_too_large, bodies_held, head_too_large, head_timeout, pipelined_too_large,
    # client_hello_too_large, http1_trailers, trailers_dropped, websocket_message_too_large
    reason: str
    flow: http.HTTPFlow | None = None
    size: int = 0


@dataclass
class ResourceRefusedHook(StartHook):
    """A layer refused or dropped something to keep a bound."""

    name = "egress_resource_refused"
    data: ResourceRefusal


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
    data out, message sizes bounded, and no history (see the module docstring)."""

    def __init__(self, context: Any, flow: http.HTTPFlow) -> None:
        super().__init__(context, flow)
        self._server_pings: deque[bytes] = deque(maxlen=SERVER_PINGS_REMEMBERED)
        self._agent_message = 0  # bytes of the agent's message being assembled
        self._dropping = False  # the rest of an oversized message is discarded
        self._echoes: StreamScrubber | None = None  # the upstream message being scrubbed

    def relay_messages(self, event: events.Event) -> layer.CommandGenerator[None]:
        if isinstance(event, events.DataReceived):
            # Frames are parsed here first; what may pass is queued back unchanged for
            # mitmproxy's relay, which then sees no new bytes.
            if event.connection == self.context.client:
                yield from self._screen_agent(event.data)
            else:
                yield from self._relay_upstream(event.data)
            event = events.DataReceived(event.connection, b"")
        yield from super().relay_messages(event)
        # mitmproxy keeps every message for the connection's life; the guard needs none
        # once its hook has run.
        assert self.flow.websocket is not None
        self.flow.websocket.messages.clear()

    def _message_cap(self) -> int:
        limit = int(getattr(self.context.options, "egress_max_body_bytes", 0))
        return limit or SCAN_API_MAX_BODY_BYTES

    def _screen_agent(self, data: bytes) -> layer.CommandGenerator[None]:
        ws = self.client_ws
        ws.receive_data(data)
        kept: list[wsproto.events.Event] = []
        started = 0 if self._agent_message else None  # where the open message begins
        for ev in ws.events():
            if isinstance(ev, wsproto.events.Message):
                if self._dropping:
                    self._dropping = not ev.message_finished
                    continue
                if started is None:
                    started = len(kept)
                data = ev.data.encode() if isinstance(ev.data, str) else ev.data
                self._agent_message += len(data)
                if self._agent_message > self._message_cap():
                    # Larger than what is scanned: refused like an oversized body, and
                    # discarded as it arrives instead of being assembled.
                    size, self._agent_message = self._agent_message, 0
                    kept = kept[:started] + [
                        e for e in kept[started:] if not isinstance(e, wsproto.events.Message)
                    ]
                    ws.frame_buf = [b""]
                    self._dropping = not ev.message_finished
                    started = None
                    yield ResourceRefusedHook(
                        ResourceRefusal("websocket_message_too_large", self.flow, size)
                    )
                    continue
                kept.append(ev)
                self.flow.metadata[MESSAGE_MOVED] = time.monotonic()
                if ev.message_finished:
                    self._agent_message, started = 0, None
            elif isinstance(ev, wsproto.events.Ping):
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

    def _relay_upstream(self, data: bytes) -> layer.CommandGenerator[None]:
        """Upstream messages go to the agent frame by frame as they arrive (mitmproxy
        would assemble each whole, copying it once per frame); pings are remembered."""
        ws = self.server_ws
        ws.receive_data(data)
        kept: list[wsproto.events.Event] = []
        record = FlowRecord.find(self.flow)
        scrubber = record.scrubber if record is not None else None
        for ev in ws.events():
            if isinstance(ev, wsproto.events.Message):
                if scrubber is not None:  # a brokered connection: echoes taken out
                    ev = self._scrubbed(ev, scrubber)
                if ev.data or ev.message_finished:
                    yield self.client_ws.send2(ev)
                    self.flow.metadata[MESSAGE_MOVED] = time.monotonic()
                continue
            if isinstance(ev, wsproto.events.Ping):
                self._server_pings.append(bytes(ev.payload))
                if scrubber is not None:  # answered by the agent: kept as scrubbed
                    ev = wsproto.events.Ping(payload=scrubber.scrub(bytes(ev.payload)))
                    self._server_pings[-1] = bytes(ev.payload)
            elif isinstance(ev, wsproto.events.CloseConnection) and scrubber and ev.reason:
                ev = wsproto.events.CloseConnection(code=ev.code, reason=scrubber.text(ev.reason))
            kept.append(ev)
        ws._events.extend(kept)

    def _scrubbed(
        self, ev: wsproto.events.Message[Any], scrubber: Scrubber
    ) -> wsproto.events.Message[Any]:
        """A frame of an upstream message, scrubbed as one stream per message (an echo
        may be cut across frames); what could be the start of one waits for the next."""
        if self._echoes is None:
            self._echoes = StreamScrubber(scrubber)
        text = isinstance(ev.data, str)
        raw = ev.data.encode() if isinstance(ev.data, str) else bytes(ev.data)
        out = self._echoes(raw) if raw else b""
        if ev.message_finished:
            out += self._echoes(b"")
            self._echoes = None
        data: Any = out.decode() if text else out  # cut only before ASCII: still UTF-8
        return type(ev)(
            data=data, frame_finished=ev.frame_finished, message_finished=ev.message_finished
        )

    def _report(self, frame: str, action: str) -> layer.CommandGenerator[None]:
        yield ControlFrameHook(ControlFrame(self.flow, frame, action))


class HeldBodies:
    """Request body bytes held by the whole process, against one budget: each body is
    bounded, but many at once (HTTP/2 multiplies them by its streams, and by every
    connection) must be bounded too."""

    def __init__(self) -> None:
        self.held = 0

    def take(self, size: int, budget: int) -> bool:
        if self.held + size > budget:
            return False
        self.held += size
        return True

    def give_back(self, size: int) -> None:
        self.held = max(0, self.held - size)


HELD_BODIES = HeldBodies()


class BoundedHttpStream(http_layers.HttpStream):
    """mitmproxy's HTTP stream with body buffering bounded per direction (see the module
    docstring). `check_body_size` runs before the request/response headers hooks and on
    every chunk buffered; the bytes a request holds count against `HELD_BODIES` until the
    stream ends."""

    _held = 0

    def _handle_event(self, event: events.Event) -> layer.CommandGenerator[None]:
        yield from super()._handle_event(event)
        if self._held and (
            # a protocol error (the agent reset the stream or hung up mid-body) always
            # ends the stream, whatever state it was in
            isinstance(event, (RequestProtocolError, ResponseProtocolError))
            or self.client_state == self.state_errored
            or self.server_state in (self.state_done, self.state_errored)
        ):
            HELD_BODIES.give_back(self._held)
            self._held = 0

    def check_body_size(self, request: bool) -> layer.CommandGenerator[bool]:
        if not request:
            if not self.response_body_buf:
                return False  # a declared length is no reason to refuse: it is streamed
            return (yield from super().check_body_size(request))
        options = self.context.options
        cap = request_body_cap(int(getattr(options, "egress_max_body_bytes", 0)))
        size: int | None = len(self.request_body_buf)
        if not size:
            try:
                size = expected_http_body_size(self.flow.request)
            except ValueError:
                size = None
            if size is None or size <= cap:
                return False
        elif size <= cap:
            budget = human.parse_size(options.body_size_limit) or HELD_BODIES_DEFAULT
            if HELD_BODIES.take(size - self._held, budget):
                self._held = size
                return False
            yield from self._refuse_body(size, "bodies_held")
            return True
        yield from self._refuse_body(size, "body_too_large")
        return True

    def _refuse_body(self, size: int, reason: str) -> layer.CommandGenerator[None]:
        if not self.request_body_buf:
            yield HttpRequestHeadersHook(self.flow)
        self.request_body_buf.clear()
        HELD_BODIES.give_back(self._held)
        self._held = 0
        message, status = (BODY_REFUSED, 413) if reason == "body_too_large" else (BODIES_HELD, 503)
        self.flow.error = mitm_flow.Error(message)
        yield HttpErrorHook(self.flow)
        yield ResourceRefusedHook(ResourceRefusal(reason, self.flow, size))
        response = self.flow.response
        if response is None or response.raw_content is None:
            yield SendHttp(
                ResponseProtocolError(self.stream_id, message, status), self.context.client
            )
            self.client_state = self.state_errored
        else:
            # The guard's answer (413 with the decision headers). The agent is still
            # sending: closing now would reset the connection before it reads the answer,
            # so what follows is read and discarded (never buffered) up to a bound.
            yield SendHttp(ResponseHeaders(self.stream_id, response, False), self.context.client)
            yield SendHttp(ResponseData(self.stream_id, response.raw_content), self.context.client)
            yield SendHttp(ResponseEndOfMessage(self.stream_id), self.context.client)
            self._discarded = 0
            self.client_state = self._state_discard_body
        self.flow.live = False

    def _state_discard_body(self, event: events.Event) -> layer.CommandGenerator[None]:
        """What a refused agent still sends. The stream ends (and is dropped, so a
        keep-alive connection carries no refused stream along) when its body does, or
        past `REFUSED_BODY_DRAINED`: HTTP/1 then closes the connection, HTTP/2 resets
        the stream."""
        if isinstance(event, RequestData):
            self._discarded += len(event.data)
            if self._discarded <= REFUSED_BODY_DRAINED:
                return
            if self.flow.request.is_http2:
                yield SendHttp(
                    ResponseProtocolError(self.stream_id, "refused body", 413),
                    self.context.client,
                )
            else:
                yield commands.CloseConnection(self.context.client)
        elif not isinstance(event, RequestEndOfMessage):
            return  # trailers of a refused body: discarded too
        self.client_state = self.server_state = self.state_done
        yield DropStream(self.stream_id)


def head_clock(context: Any, started: float | None) -> tuple[float, bool]:
    """When an agent's request head (or ClientHello) began — now, at its first bytes —
    and whether it is still incomplete past `head_timeout`."""
    now = time.monotonic()
    if started is None:
        return now, False
    limit = float(getattr(context.options, "egress_head_timeout", 0) or 0)
    return started, bool(limit) and now - started > limit


class _TrailerCatcher:
    """Wraps h11's body reader: trailers are taken off the end-of-message event (which
    mitmproxy's HTTP/1 layer would raise on) and remembered."""

    def __init__(self, reader: Callable[..., Any]) -> None:
        self.reader = reader
        self.seen = False

    def __call__(self, buf: Any) -> Any:
        event = self.reader(buf)
        return self._strip(event)

    def read_eof(self) -> Any:
        return self._strip(self.reader.read_eof())  # type: ignore[attr-defined]

    def _strip(self, event: Any) -> Any:
        if isinstance(event, h11.EndOfMessage) and event.headers:
            self.seen = True
            return h11.EndOfMessage()
        return event


def _catch_trailers(conn: _http1.Http1Connection) -> _TrailerCatcher:
    current: Any = conn.body_reader
    if isinstance(current, _TrailerCatcher):
        return current
    catcher = _TrailerCatcher(current)
    conn.body_reader = catcher  # type: ignore[assignment]
    return catcher


def _drop_trailers(event: Any) -> layer.CommandGenerator[bool]:
    """Trailers cannot be written to an HTTP/1 peer by mitmproxy (it would raise)."""
    if isinstance(event, (RequestTrailers, ResponseTrailers)):
        yield ResourceRefusedHook(ResourceRefusal("trailers_dropped"))
        return True
    return False


class GuardedHttp1Server(_http1.Http1Server):
    """The agent's HTTP/1 connection. mitmproxy buffers whatever arrives before it parses
    it — a request head that never ends, or bytes pipelined behind a request in flight —
    without limit ("FIXME: protect against header size DoS"). Here unparsed bytes are
    bounded (`MAX_UNPARSED`: 431, or the connection closed), every request head must be
    complete within `head_timeout` of its first byte (408), and a request with trailers
    is refused (400)."""

    def __init__(self, context: Any) -> None:
        super().__init__(context)
        self._head_started: float | None = None

    def _handle_event(self, event: events.Event) -> layer.CommandGenerator[None]:
        if isinstance(event, events.DataReceived) and self.state in (self.read_headers, self.wait):
            refused = self._past_bounds(len(event.data))  # (a body is consumed as it comes)
            if refused is not None:
                yield from self._refuse(*refused)
                return
        yield from super()._handle_event(event)
        if self.state != self.read_headers or not self.buf:
            self._head_started = None

    def _past_bounds(self, arriving: int) -> tuple[int, str, str] | None:
        reading_head = self.state == self.read_headers
        if len(self.buf) + arriving > MAX_UNPARSED:
            if reading_head:
                return 431, "head_too_large", "Request head too large."
            return 0, "pipelined_too_large", ""
        if reading_head:
            self._head_started, late = head_clock(self.context, self._head_started)
            if late:
                return 408, "head_timeout", "Request head not complete in time."
        return None

    def _refuse(self, status: int, reason: str, message: str) -> layer.CommandGenerator[None]:
        if status:
            yield commands.SendData(self.conn, make_error_response(status, message))
        yield commands.CloseConnection(self.conn)
        yield ResourceRefusedHook(ResourceRefusal(reason))
        self.buf = ReceiveBuffer()  # what was held goes now; the close is handled as usual

    def read_body(self, event: events.Event) -> layer.CommandGenerator[None]:
        trailers = _catch_trailers(self)
        for command in super().read_body(event):
            if (
                trailers.seen
                and isinstance(command, ReceiveHttp)
                and isinstance(command.event, RequestEndOfMessage)
            ):
                assert self.stream_id is not None
                yield commands.SendData(self.conn, make_error_response(400, TRAILERS_REFUSED))
                yield commands.CloseConnection(self.conn)
                yield ReceiveHttp(RequestProtocolError(self.stream_id, TRAILERS_REFUSED, 400))
                yield ResourceRefusedHook(ResourceRefusal("http1_trailers"))
                self.state = self.done
                return
            yield command

    def send(self, event: Any) -> layer.CommandGenerator[None]:
        if (yield from _drop_trailers(event)):
            return
        yield from super().send(event)


class GuardedHttp1Client(_http1.Http1Client):
    """An HTTP/1 upstream: trailers it sends, or that would be sent to it, are dropped."""

    def read_body(self, event: events.Event) -> layer.CommandGenerator[None]:
        trailers = _catch_trailers(self)
        yield from super().read_body(event)
        if trailers.seen:
            trailers.seen = False
            yield ResourceRefusedHook(ResourceRefusal("trailers_dropped"))

    def send(self, event: Any) -> layer.CommandGenerator[None]:
        if (yield from _drop_trailers(event)):
            return
        yield from super().send(event)


class BoundedClientTLSLayer(tls.ClientTLSLayer):
    """mitmproxy buffers an agent's ClientHello without limit and parses all of it again
    on every arrival (quadratic: 16 MiB stalled every agent for seconds). Here it must
    fit `MAX_CLIENT_HELLO` and complete within `head_timeout` of its first byte."""

    _hello_started: float | None = None

    def receive_handshake_data(
        self, data: bytes
    ) -> layer.CommandGenerator[tuple[bool, str | None]]:
        if not self.client_hello_parsed:
            refused = None
            self._hello_started, late = head_clock(self.context, self._hello_started)
            if len(self.recv_buffer) + len(data) > MAX_CLIENT_HELLO:
                refused = "client_hello_too_large"
            elif late:
                refused = "head_timeout"
            if refused is not None:
                self.recv_buffer = bytearray()
                yield ResourceRefusedHook(ResourceRefusal(refused))
                return False, f"ClientHello refused ({refused.replace('_', ' ')})"
        return (yield from super().receive_handshake_data(data))


def install() -> None:
    """Make mitmproxy's HTTP layer start our layers (it looks each class up in its module
    when it creates one). Safe to call more than once."""
    websocket.WebsocketLayer = GuardedWebsocketLayer  # type: ignore[misc]
    http_layers.HttpStream = BoundedHttpStream  # type: ignore[misc]
    http_layers.Http1Server = GuardedHttp1Server  # type: ignore[attr-defined]
    http_layers.Http1Client = GuardedHttp1Client  # type: ignore[attr-defined]
    # Where mitmproxy's protocol chooser finds the TLS layer it starts for an agent.
    mitm_layers.ClientTLSLayer = BoundedClientTLSLayer  # type: ignore[misc]
    next_layer_addon.ClientTLSLayer = BoundedClientTLSLayer  # type: ignore[attr-defined]
    # hyper-h2 buffers up to 64 CONTINUATION frames (1 MiB) of one header block and then
    # decodes it on the event loop: 4 frames (64 KiB) hold any header list we accept.
    h2.frame_buffer.CONTINUATION_BACKLOG = H2_CONTINUATION_FRAMES


def _digest(obj: Callable[..., Any] | type) -> str:
    return hashlib.sha256(inspect.getsource(obj).encode()).hexdigest()[:16]


def pinned_sources() -> dict[str, str]:
    """Digests of the upstream code the extensions above rely on, as installed now."""
    from mitmproxy.addons.next_layer import NextLayer
    from mitmproxy.addons.proxyserver import Proxyserver
    from mitmproxy.proxy.server import TimeoutWatchdog

    original_ws = GuardedWebsocketLayer.__mro__[1]
    original_stream: type[http_layers.HttpStream] = BoundedHttpStream.__bases__[0]
    return {
        "mitmproxy.proxy.layers.websocket.WebsocketLayer": _digest(original_ws),
        "mitmproxy.proxy.layers.websocket.WebsocketConnection": _digest(
            websocket.WebsocketConnection
        ),
        "mitmproxy.proxy.layers.tcp.TCPLayer": _digest(tcp.TCPLayer),
        "mitmproxy.proxy.layers.http.HttpStream.flow_done": _digest(original_stream.flow_done),
        "mitmproxy.proxy.layers.http.HttpStream": _digest(original_stream),
        "mitmproxy.proxy.layers.http._http1.Http1Connection": _digest(_http1.Http1Connection),
        "mitmproxy.proxy.layers.http._http1.Http1Server": _digest(_http1.Http1Server),
        "mitmproxy.proxy.layers.http._http1.Http1Client": _digest(_http1.Http1Client),
        "mitmproxy.proxy.server.TimeoutWatchdog": _digest(TimeoutWatchdog),
        "mitmproxy.addons.next_layer.NextLayer": _digest(NextLayer),
        "h2.frame_buffer.FrameBuffer": _digest(h2.frame_buffer.FrameBuffer),
        "mitmproxy.proxy.server.ConnectionHandler.handle_client": _digest(
            ConnectionHandler.handle_client
        ),
        "mitmproxy.addons.proxyserver.Proxyserver.register_connection": _digest(
            Proxyserver.register_connection
        ),
        "mitmproxy.connection.Server.__setattr__": _digest(Server.__setattr__),
        "mitmproxy.proxy.layer.Layer.__init__": _digest(layer.Layer.__init__),
        "mitmproxy.proxy.layer.NextLayer._ask": _digest(layer.NextLayer._ask),
        "mitmproxy.addons.next_layer.NextLayer._next_layer": _digest(NextLayer._next_layer),
        "mitmproxy.proxy.layers.tls.ClientTLSLayer.receive_handshake_data": _digest(
            tls.ClientTLSLayer.receive_handshake_data
        ),
        "mitmproxy.proxy.server.ConnectionHandler.open_connection": _digest(
            ConnectionHandler.open_connection
        ),
        "wsproto.connection.Connection.events": _digest(wsproto.connection.Connection.events),
        "wsproto.connection.Connection.receive_data": _digest(
            wsproto.connection.Connection.receive_data
        ),
    }
