"""The tunnel and connect guards on mitmproxy's own hook data, without sockets.

These cover what the end-to-end suite cannot reach here: redirected (transparent-mode)
connections, which need iptables, and the paths where a connection is refused or fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from types import SimpleNamespace
from typing import Any

from mitmproxy import tls
from mitmproxy.connection import Client, Server
from mitmproxy.proxy.context import Context
from mitmproxy.proxy.layers import ClientTLSLayer, ServerTLSLayer
from mitmproxy.proxy.layers.tls import parse_client_hello
from mitmproxy.proxy.mode_specs import ProxyMode
from mitmproxy.proxy.server_hooks import ServerConnectionHookData
from mitmproxy.test import taddons

from addons.connect_guard import ConnectGuard
from addons.tunnel_guard import TunnelGuard
from sidecar.config.settings import load_settings
from sidecar.engine import Engine
from sidecar.engine.known_secrets import KnownSecrets
from sidecar.engine.policy_file import default_policy
from sidecar.judge.destination import Destinations
from sidecar.observability.metrics import SidecarMetrics
from tests.support.dns import ScriptedDns


def _guard(dns: ScriptedDns, **settings: Any) -> SimpleNamespace:
    values = {"listen": "127.0.0.1:0", "admin": "off", **settings}
    loaded = load_settings(**values)
    destinations = Destinations(
        loaded,
        Engine(default_policy(), tuple(settings.get("internal_hosts", ()))),
        dns.resolver(),
        KnownSecrets(["iv_live_Q8h2Zr7KpW4xTn9LmC3vB6abcd"]),
    )
    metrics = SidecarMetrics()
    runtime = SimpleNamespace(
        settings=loaded, destinations=destinations, metrics=metrics, shadow=False
    )
    return SimpleNamespace(runtime=runtime, metrics=metrics)


def _connect(guard: ConnectGuard, host: str, port: int = 443) -> Server:
    server = Server(address=(host, port))
    data = ServerConnectionHookData(client=Client(peername=("127.0.0.1", 1), sockname=("", 0)),
                                    server=server)  # fmt: skip
    asyncio.run(guard.server_connect(data))
    return server


def test_the_connection_goes_to_the_address_judged_and_keeps_its_name():
    dns = ScriptedDns(api_example=["93.184.216.34"])
    guard = ConnectGuard(_guard(dns))  # type: ignore[arg-type]
    server = _connect(guard, "api.example")
    assert server.error is None
    assert server.address == ("93.184.216.34", 443)  # what the socket is opened to
    data = ServerConnectionHookData(client=Client(peername=("a", 1), sockname=("", 0)),
                                    server=server)  # fmt: skip
    guard.server_connect_error(data)  # failed (or connected): the name is back
    assert server.address == ("api.example", 443)


def test_a_name_leading_inside_is_refused_before_the_socket():
    dns = ScriptedDns(inside_example=["169.254.169.254"])
    server = _connect(ConnectGuard(_guard(dns)), "inside.example")  # type: ignore[arg-type]
    assert server.error is not None
    assert "metadata" in server.error


def test_a_data_carrying_name_is_refused_without_a_lookup():
    dns = ScriptedDns()
    guard = ConnectGuard(_guard(dns))  # type: ignore[arg-type]
    server = _connect(guard, "4141414b4951583452585a54374e4d32.3f9a1c7e2b5d8046.evil.example")
    assert server.error is not None
    assert dns.lookups == []


def test_a_bug_refuses_the_connection():
    class Broken(ScriptedDns):
        async def lookup(self, host: str, port: int) -> list[Any]:
            raise RuntimeError("a bug")

    server = _connect(ConnectGuard(_guard(Broken())), "api.example")  # type: ignore[arg-type]
    assert server.error is not None


def _hello(sni: str | None, alpn: list[str]) -> tls.ClientHello:
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    ctx = ssl.create_default_context()
    ctx.check_hostname = sni is not None
    ctx.set_alpn_protocols(alpn)
    tls_obj = ctx.wrap_bio(incoming, outgoing, server_hostname=sni)
    with contextlib.suppress(ssl.SSLWantReadError):
        tls_obj.do_handshake()
    hello = parse_client_hello(outgoing.read())
    assert hello is not None
    return hello


def _hello_data(mode: str, address: tuple[str, int], sni: str | None,
                alpn: list[str]) -> tls.ClientHelloData:  # fmt: skip
    client = Client(peername=("127.0.0.1", 1), sockname=("127.0.0.1", 2),
                    proxy_mode=ProxyMode.parse(mode))  # fmt: skip
    hello = _hello(sni, alpn)
    client.alpn_offers = hello.alpn_protocols
    context = Context(client, taddons.context().options)
    context.server = Server(address=address)
    ServerTLSLayer(context)  # the stack as mitmproxy builds it for TLS ...
    ClientTLSLayer(context)  # ... with the layer that asks on top
    return tls.ClientHelloData(context, hello)


def test_a_redirected_connection_to_a_passthrough_sni_goes_to_that_name():
    guard = TunnelGuard(_guard(ScriptedDns(), passthrough_hosts="mirror.test"))  # type: ignore[arg-type]
    data = _hello_data("transparent", ("93.184.216.34", 443), "mirror.test", ["h2"])
    guard.tls_clienthello(data)
    assert data.ignore_connection is True
    assert data.context.server.address == ("mirror.test", 443)  # resolved, judged at connect


def test_a_redirected_connection_to_another_sni_is_intercepted():
    guard = TunnelGuard(_guard(ScriptedDns(), passthrough_hosts="mirror.test"))  # type: ignore[arg-type]
    data = _hello_data("transparent", ("93.184.216.34", 443), "other.test", ["h2"])
    guard.tls_clienthello(data)
    assert data.ignore_connection is False


def test_alpn_offers_are_cut_to_registered_ids():
    guard = TunnelGuard(_guard(ScriptedDns()))  # type: ignore[arg-type]
    data = _hello_data("regular", ("api.example", 443), "api.example", ["h2", "AKIAQX4RZT7N"])
    guard.tls_clienthello(data)
    assert data.context.client.alpn_offers == [b"h2"]
