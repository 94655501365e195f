"""The mitmproxy internals the guards extend are the ones they were written against."""

from __future__ import annotations

from importlib.metadata import version

import h2.frame_buffer
from mitmproxy import connection, http, options
from mitmproxy.addons import next_layer
from mitmproxy.addons.proxyserver import Proxyserver
from mitmproxy.proxy import commands, context, events
from mitmproxy.proxy import layers as mitm_layers
from mitmproxy.proxy.layers import http as http_layers
from mitmproxy.proxy.layers import websocket
from mitmproxy.proxy.mode_specs import ProxyMode

from addons.layers import (
    H2_CONTINUATION_FRAMES,
    HELD_BODIES,
    BoundedClientTLSLayer,
    BoundedHttpStream,
    GuardedHttp1Client,
    GuardedHttp1Server,
    GuardedWebsocketLayer,
    ResourceRefusedHook,
    install,
    pinned_sources,
    request_body_cap,
)

# Digests of mitmproxy 11.0.2 / wsproto 1.2.0 as pinned in constraints.txt. When an
# upgrade changes one, read the new upstream code against `addons/layers.py` and the
# guards that use it (the docstrings say what each relies on), then update the digest.
PINNED = {
    "mitmproxy.proxy.layers.websocket.WebsocketLayer": "094cd5f8cf031433",
    "mitmproxy.proxy.layers.websocket.WebsocketConnection": "9c6f5dd6ece0042e",
    "mitmproxy.proxy.layers.tcp.TCPLayer": "5e842b94cd4425b0",
    "mitmproxy.proxy.layers.http.HttpStream.flow_done": "ad9969744785c572",
    "mitmproxy.proxy.layers.http.HttpStream": "92e73a60d11e5fef",
    "mitmproxy.proxy.layers.http._http1.Http1Connection": "503729facd16a512",
    "mitmproxy.proxy.layers.http._http1.Http1Server": "00a914b27f3f2d46",
    "mitmproxy.proxy.layers.http._http1.Http1Client": "c004ed8ad85245cb",
    "mitmproxy.proxy.server.TimeoutWatchdog": "95c9f187c70d4d09",
    "mitmproxy.addons.next_layer.NextLayer": "5b34344ea76cc42c",
    "h2.frame_buffer.FrameBuffer": "e787434bc390aa93",
    "mitmproxy.proxy.server.ConnectionHandler.handle_client": "330b831a7616cf98",
    "mitmproxy.addons.proxyserver.Proxyserver.register_connection": "d79bb91554a8bda2",
    "mitmproxy.connection.Server.__setattr__": "9b26de861c3e1f75",
    "mitmproxy.proxy.layer.Layer.__init__": "fd5121f4df9d0eba",
    "mitmproxy.proxy.layer.NextLayer._ask": "4d8ace76d8488336",
    "mitmproxy.addons.next_layer.NextLayer._next_layer": "ed22cb84e2f72df2",
    "mitmproxy.proxy.layers.tls.ClientTLSLayer.receive_handshake_data": "a0ee021f92f6d0ff",
    "mitmproxy.proxy.server.ConnectionHandler.open_connection": "5e0b3cbaf7a4030a",
    "wsproto.connection.Connection.events": "5e90213d9bc53ef3",
    "wsproto.connection.Connection.receive_data": "3e17be36df96032b",
}


def test_the_extended_mitmproxy_code_is_the_pinned_version():
    assert version("mitmproxy") == "11.0.2"
    changed = {k: v for k, v in pinned_sources().items() if PINNED.get(k) != v}
    assert not changed, f"mitmproxy/wsproto code the guards rely on changed: {sorted(changed)}"


def test_install_makes_mitmproxy_start_the_guarded_layers():
    install()
    install()  # idempotent
    assert websocket.WebsocketLayer is GuardedWebsocketLayer
    assert http_layers.HttpStream is BoundedHttpStream
    assert http_layers.Http1Server is GuardedHttp1Server  # type: ignore[attr-defined]
    assert http_layers.Http1Client is GuardedHttp1Client  # type: ignore[attr-defined]
    assert mitm_layers.ClientTLSLayer is BoundedClientTLSLayer
    assert next_layer.ClientTLSLayer is BoundedClientTLSLayer  # type: ignore[attr-defined]
    assert h2.frame_buffer.CONTINUATION_BACKLOG == H2_CONTINUATION_FRAMES


def test_the_request_body_cap_leaves_room_for_framing_only():
    assert request_body_cap(256 * 1024) == 256 * 1024 + 64 * 1024
    assert request_body_cap(64 * 1024 * 1024) == 64 * 1024 * 1024 + 1024 * 1024


def test_refused_bodies_leave_no_stream_behind_on_a_keep_alive_connection():
    """mitmproxy's own HTTP layer, driven by hand: each refused request's stream (flow,
    head, answer) must be dropped once its body ends, not kept for the connection's life."""
    install()
    opts = options.Options()
    Proxyserver().load(opts)
    opts.add_option("egress_max_body_bytes", int, 256 * 1024, "")
    client = connection.Client(
        peername=("127.0.0.1", 1234), sockname=("127.0.0.1", 8080), timestamp_start=0,
        proxy_mode=ProxyMode.parse("regular"), state=connection.ConnectionState.OPEN,
    )  # fmt: skip
    http_layer = http_layers.HttpLayer(context.Context(client, opts), http_layers.HTTPMode.regular)

    def feed(event: events.Event) -> bytes:
        sent, pending = b"", [event]
        while pending:
            for command in http_layer.handle_event(pending.pop(0)):
                if isinstance(command, commands.SendData):
                    sent += command.data
                elif isinstance(command, commands.StartHook):
                    if isinstance(command, ResourceRefusedHook) and command.data.flow:
                        command.data.flow.response = http.Response.make(413, b"refused")
                    pending.append(events.HookCompleted(command, None))
        return sent

    feed(events.Start())
    held_before = HELD_BODIES.held
    for i in range(5):
        body = b"a" * 400_000
        head = f"POST http://example.com/x{i} HTTP/1.1\r\nHost: example.com\r\n"
        data = f"{head}Content-Length: {len(body)}\r\n\r\n".encode() + body
        answer = b"".join(feed(events.DataReceived(client, data[o : o + 65536]))
                          for o in range(0, len(data), 65536))  # fmt: skip
        assert answer.startswith(b"HTTP/1.1 413")
    assert http_layer.streams == {}
    assert HELD_BODIES.held == held_before
