"""Running mitmproxy in-process with the sidecar's addons: what `egress-sidecar run` does.

The settings object is handed to the addons directly (no round trip through options).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mitmproxy import ctx
from mitmproxy.addons import default_addons
from mitmproxy.addons.errorcheck import ErrorCheck
from mitmproxy.master import Master
from mitmproxy.options import Options

from addons.assembly import Sidecar
from addons.ca import CaFiles
from addons.in_flight import InFlight
from addons.lifecycle import Lifecycle
from sidecar.config.credentials import Credentials
from sidecar.config.settings import HostPort, SidecarSettings
from sidecar.judge.resolver import Resolver

ADDRESS_FILE = "proxy-address"
logger = logging.getLogger("egress_sidecar")


@dataclass(frozen=True)
class ReadyInfo:
    """Where the running sidecar can be reached."""

    proxy: HostPort
    admin: HostPort | None
    ca: CaFiles
    lifecycle: Lifecycle
    transparent: HostPort | None = None


def mitmproxy_option_values(settings: SidecarSettings) -> dict[str, Any]:
    """mitmproxy's own options for our settings.

    `lazy` means no upstream connection is opened before the verdict: a denied request
    never contacts its destination at all. Request bodies are never streamed.
    """
    values: dict[str, Any] = {
        "listen_host": settings.listen.host,
        "listen_port": settings.listen.port,
        "connection_strategy": "lazy",
        "stream_large_bodies": None,
        # The hard cap on what is buffered per body: larger requests get 413 before they
        # are forwarded; larger responses with a declared length get 502.
        "body_size_limit": str(settings.max_buffered_bytes),
        # No raw TCP relay: bytes that are not HTTP get a 400 (the protocol guard lets
        # raw TCP through only to `raw_tcp_hosts`, scanned), and a 101 for anything but
        # a WebSocket closes the connection. Pass-through is the guard's, not ignore_hosts.
        "rawtcp": False,
    }
    if settings.proxy_auth is not None:
        values["proxyauth"] = settings.proxy_auth.get_secret_value()
    modes = [f"upstream:{settings.upstream_proxy}" if settings.upstream_proxy else "regular"]
    if settings.transparent_listen is not None:
        t = settings.transparent_listen
        modes.append(f"transparent@{t}")
    values["mode"] = modes
    if settings.upstream_ca is not None:
        values["ssl_verify_upstream_trusted_ca"] = str(settings.upstream_ca)
    return values


class _ReadyNotifier:
    """Runs last at startup: the proxy is listening and the guard is running."""

    def __init__(self, lifecycle: Lifecycle, ca: CaFiles, on_ready: Callable[[ReadyInfo], None]):
        self._life = lifecycle
        self._ca = ca
        self._on_ready = on_ready

    def running(self) -> None:
        bound: dict[str, HostPort] = {}
        for server in ctx.master.addons.get("proxyserver").servers:
            host, port = server.listen_addrs[0][:2]
            bound[server.mode.type_name] = HostPort(host=host, port=port)
        proxy = bound.get("regular") or bound["upstream"]
        runtime = self._life.runtime
        admin = runtime.admin.address if runtime is not None and runtime.admin else None
        info = ReadyInfo(proxy, admin, self._ca, self._life, bound.get("transparent"))
        self._on_ready(info)


# mitmproxy's default addons the sidecar never uses: replay, rewriting, saving, scripts,
# the console's helpers, and the mitm.it onboarding app (it would answer agents from
# inside the proxy, unscanned). Each would still be handed every hook of every connection
# (a per-event cost on the request path), and none can be turned on to rewrite or replay
# traffic around the judge. Under `mitmdump -s` mitmproxy loads them all.
UNUSED_ADDONS = frozenset({
    "Browser", "AntiCache", "AntiComp", "ClientPlayback", "CommandHistory", "Comment",
    "Cut", "Export", "Onboarding", "ScriptLoader", "ServerPlayback", "MapRemote",
    "MapLocal", "ModifyBody", "ModifyHeaders", "StickyAuth", "StickyCookie", "Save",
    "SaveHar",
})  # fmt: skip


def build_master(
    settings: SidecarSettings,
    credentials: Credentials,
    ca: CaFiles,
    on_ready: Callable[[ReadyInfo], None],
    resolver: Resolver | None = None,
) -> Master:
    """A mitmproxy master with the guards loaded and their options set (must run on a loop).
    `resolver`: how destination names are resolved (default: the system's)."""
    master = Master(Options(confdir=str(settings.confdir)), with_termlog=False)
    wanted = [a for a in default_addons() if type(a).__name__ not in UNUSED_ADDONS]
    master.addons.add(*wanted, ErrorCheck())
    sidecar = Sidecar(settings, credentials, resolver)
    master.addons.add(sidecar, _ReadyNotifier(sidecar.lifecycle, ca, on_ready))
    master.options.update(**mitmproxy_option_values(settings))
    return master


async def drain_and_stop(master: Master, grace: float) -> None:
    """Graceful stop: no new connections, in-flight requests finish (within `grace`),
    then the addons' `done` hooks flush the response queue and close the backend."""
    logger.warning("stopping: no new connections; draining in-flight requests (%gs)", grace)
    master.options.update(server=False)  # closes the listening sockets only
    in_flight = master.addons.get("inflight")
    if isinstance(in_flight, InFlight):
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(grace):
                await in_flight.idle.wait()
        if in_flight.flows:
            logger.warning("grace period over: %d requests cut off", len(in_flight.flows))
    master.shutdown()


async def serve(
    settings: SidecarSettings,
    credentials: Credentials,
    ca: CaFiles,
    on_ready: Callable[[ReadyInfo], None],
) -> None:
    """Run until SIGINT/SIGTERM (or `master.shutdown()`); SIGTERM drains first."""
    master = build_master(settings, credentials, ca, on_ready)
    loop = asyncio.get_running_loop()
    stopping: list[asyncio.Task[None]] = []

    def on_sigterm() -> None:
        if not stopping:
            stopping.append(loop.create_task(drain_and_stop(master, settings.shutdown_grace)))

    loop.add_signal_handler(signal.SIGTERM, on_sigterm)
    loop.add_signal_handler(signal.SIGINT, master.shutdown)
    try:
        await master.run()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
