"""Recording servers that speak below HTTP: ground truth for "the server received nothing".

`TcpRecorder` accepts raw TCP and records every connection and every byte (optionally
answering an HTTP request head with a scripted reply, e.g. an unasked-for 101).
`WsRecorder` is a WebSocket server built on wsproto that records every frame event —
messages, pings, pongs, close codes and reasons — and can ping its client.
`H2Recorder` is an HTTPS server that speaks only HTTP/2 (hyper-h2) and records every
header block as received — pseudo-headers, headers and trailers — and every body byte.
All run on the test servers' event loop, on ephemeral ports of a loopback address.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from dataclasses import dataclass, field

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import trustme
import wsproto
import wsproto.events

from tests.support.servers import LoopThread, Recorder, serve_clear_of_sidecars


@dataclass
class TcpConnection:
    received: bytearray = field(default_factory=bytearray)


class TcpRecorder:
    """Raw TCP on `host`: every accepted connection and the bytes it carried."""

    def __init__(self, loop: LoopThread, host: str, reply_to_head: bytes | None = None) -> None:
        self.connections = Recorder()
        self.chunks = Recorder()  # every piece of data received, in order
        self.closed = Recorder()  # one item per connection that ended (a sync point)
        self._reply = reply_to_head
        self._loop = loop
        self._server, self.port, self._held = serve_clear_of_sidecars(
            loop, lambda: self._start(host)
        )
        self.host = host

    async def _start(self, host: str) -> asyncio.Server:
        return await asyncio.start_server(self._handle, host, 0)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = TcpConnection()
        self.connections.add(conn)
        replied = False
        try:
            while data := await reader.read(65536):
                conn.received += data
                self.chunks.add(bytes(data))
                if self._reply is not None and not replied and b"\r\n\r\n" in conn.received:
                    writer.write(self._reply)
                    await writer.drain()
                    replied = True
        except ConnectionError:
            pass
        finally:
            writer.close()
            self.closed.add(conn)

    @property
    def everything(self) -> bytes:
        return b"".join(self.chunks.items)

    def stop(self) -> None:
        self._held.close()
        self._server.close()


class WsRecorder:
    """A WebSocket server (ws://) recording every event its clients cause."""

    def __init__(self, loop: LoopThread, host: str = "127.0.0.2") -> None:
        self.events = (
            Recorder()
        )  # ("message", str|bytes) ("ping", b) ("pong", b) ("close", code, reason)
        self._loop = loop
        self._writers: list[tuple[wsproto.WSConnection, asyncio.StreamWriter]] = []
        self._server, self.port, self._held = serve_clear_of_sidecars(
            loop, lambda: asyncio.start_server(self._handle, host, 0)
        )
        self.host = host

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        ws = wsproto.WSConnection(wsproto.ConnectionType.SERVER)
        partial: list[str | bytes] = []
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(65536):
                ws.receive_data(data)
                for event in ws.events():
                    if isinstance(event, wsproto.events.Message) and not event.message_finished:
                        partial.append(event.data)
                        continue
                    if isinstance(event, wsproto.events.Message) and partial:
                        whole = type(event.data)().join([*partial, event.data])  # type: ignore[arg-type]
                        event = type(event)(data=whole)
                        partial.clear()
                    out = self._on(ws, event, writer)
                    if out:
                        writer.write(out)
                await writer.drain()
        writer.close()

    def _on(
        self, ws: wsproto.WSConnection, event: wsproto.events.Event, writer: asyncio.StreamWriter
    ) -> bytes:
        if isinstance(event, wsproto.events.Request):
            self._writers.append((ws, writer))
            return ws.send(wsproto.events.AcceptConnection())
        if isinstance(event, wsproto.events.Message):
            self.events.add(("message", event.data))
            return ws.send(wsproto.events.TextMessage(f"echo:{event.data!s}"))
        if isinstance(event, wsproto.events.Ping):
            self.events.add(("ping", bytes(event.payload)))
            return ws.send(event.response())
        if isinstance(event, wsproto.events.Pong):
            self.events.add(("pong", bytes(event.payload)))
            return b""
        if isinstance(event, wsproto.events.CloseConnection):
            self.events.add(("close", event.code, event.reason))
            return ws.send(event.response())
        return b""

    def ping_clients(self, payload: bytes) -> None:
        """Send a PING to every connected client (from the servers' loop)."""

        async def ping() -> None:
            for ws, writer in self._writers:
                writer.write(ws.send(wsproto.events.Ping(payload=payload)))
                await writer.drain()

        self._loop.run(ping())

    def stop(self) -> None:
        self._held.close()
        self._server.close()


class H2Recorder:
    """HTTP/2 over TLS on `host` (a certificate from `ca`): every header block and body
    byte as received; each stream is answered `200 ok` once it ends."""

    def __init__(
        self, loop: LoopThread, ca: trustme.CA, host: str = "127.0.0.2", names: tuple[str, ...] = ()
    ) -> None:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert(host, *names).configure_cert(ctx)
        ctx.set_alpn_protocols(["h2"])
        self.blocks = Recorder()  # (stream id, [(name, value), ...]) headers and trailers
        self.data = Recorder()  # body bytes, in order
        self.ended = Recorder()  # stream ids answered (a sync point)
        self._server, self.port, self._held = serve_clear_of_sidecars(
            loop, lambda: asyncio.start_server(self._handle, host, 0, ssl=ctx)
        )
        self.host = host

    @property
    def everything(self) -> bytes:
        """Every name, value and body byte received, as one blob to search."""
        parts = [n + b": " + v for _, block in self.blocks.items for n, v in block]
        return b"\n".join(parts + self.data.items)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        config = h2.config.H2Configuration(client_side=False, validate_inbound_headers=False)
        conn = h2.connection.H2Connection(config)
        conn.initiate_connection()
        writer.write(conn.data_to_send())
        with contextlib.suppress(ConnectionError, h2.exceptions.ProtocolError):
            while data := await reader.read(65536):
                for event in conn.receive_data(data):
                    self._on(conn, event)
                writer.write(conn.data_to_send())
                await writer.drain()
        writer.close()

    def _on(self, conn: h2.connection.H2Connection, event: h2.events.Event) -> None:
        if isinstance(event, (h2.events.RequestReceived, h2.events.TrailersReceived)):
            self.blocks.add((event.stream_id, [(bytes(n), bytes(v)) for n, v in event.headers]))
        elif isinstance(event, h2.events.DataReceived):
            self.data.add(bytes(event.data))
            conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
        if isinstance(event, h2.events.StreamEnded) or getattr(event, "stream_ended", None):
            if event.stream_id in self.ended.items:
                return
            conn.send_headers(event.stream_id, [(":status", "200"), ("content-length", "2")])
            conn.send_data(event.stream_id, b"ok", end_stream=True)
            self.ended.add(event.stream_id)

    def stop(self) -> None:
        self._held.close()
        self._server.close()
