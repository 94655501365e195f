"""Connections are a shared budget: one agent must not spend it for all.

Inside a pod every agent connects from 127.0.0.1, so a per-source cap would not help:
the bound is on the total. At `max_connections` a new client takes the place of an
idle connection — no request in flight, no hook running, no raw stream open, no
WebSocket message moving within `idle_timeout` (PINGs, which the sidecar answers, do
not count) — the idlest of the oldest few, so a flood costs a few steps per connection
rather than one per open connection; when none is idle the new client is refused. A
client that has not sent a request head, CONNECT or TLS hello within `head_timeout` is
closed, and so is one idle for `idle_timeout` (mitmproxy's own limit is a fixed 10
minutes). The process's open-file limit is raised to its hard limit at start, and the
cap is kept below what it allows (each client may need an upstream connection too).
What this closes or refuses is counted and logged as rate-limited lines. Every ten
seconds, if the process is above its quiet level, what closed connections and refused
bodies freed is collected and handed back to the OS.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import resource
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mitmproxy import connection, ctx, http, tcp, tls

from addons.layers import MESSAGE_MOVED
from addons.tuning import MemoryKeeper, give_memory_back
from sidecar.judge.bodies import decoder_thread
from sidecar.observability.log_limit import RateLimitedLog

if TYPE_CHECKING:
    from addons.lifecycle import Lifecycle

logger = logging.getLogger("egress_sidecar")
FD_RESERVE = 64  # listening sockets, the admin server, the scan API, logs
SWEEP_INTERVAL = 1.0
TRIM_EVERY = 10  # sweeps between handing free memory back to the OS
EVICTION_CANDIDATES = 16  # idle connections compared when one must make room
EVICTION_SCAN = 256  # at most this many (oldest first) looked at for them


@dataclass
class _Client:
    connected: float
    open_flows: set[str] = field(default_factory=set)  # requests, WebSockets, raw streams
    websockets: dict[str, http.HTTPFlow] = field(default_factory=dict)  # open ones
    started: bool = False  # sent a request head, a CONNECT or a TLS hello


def raise_open_file_limit() -> int:
    """Soft limit up to the hard limit; returns the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
    return soft


def connection_budget(wanted: int, open_files: int) -> int:
    """At most `wanted` clients, and no more than half the file descriptors left after
    the reserve (each client may hold an upstream connection)."""
    return max(1, min(wanted, (open_files - FD_RESERVE) // 2))


class ConnectionGuard:
    def __init__(self, lifecycle: Lifecycle) -> None:
        self._life = lifecycle
        self._clients: dict[str, _Client] = {}
        self._sweeper: asyncio.Task[None] | None = None
        self._log = RateLimitedLog(logger)
        self._memory = MemoryKeeper()
        self.limit = 0

    def running(self) -> None:
        settings = self._life.settings
        assert settings is not None
        self.limit = connection_budget(settings.max_connections, raise_open_file_limit())
        if self.limit < settings.max_connections:
            logger.warning(
                "max_connections lowered to %d: the open-file limit allows no more",
                self.limit,
            )
        self._sweeper = asyncio.get_running_loop().create_task(self._sweep_forever())

    def done(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None

    # --- what each client is doing ------------------------------------------------------

    def client_connected(self, client: connection.Client) -> None:
        if self.limit and len(self._clients) >= self.limit and not self._evict_one():
            self._life.metrics.connections_closed.labels("refused_at_capacity").inc()
            self._log.log(
                "refused_at_capacity",
                f"connection refused: {self.limit} connections open, none idle",
            )
            client.error = "too many connections"
            return
        self._clients[client.id] = _Client(time.monotonic())
        self._life.metrics.connections_open.set(len(self._clients))

    def client_disconnected(self, client: connection.Client) -> None:
        self._clients.pop(client.id, None)
        self._life.metrics.connections_open.set(len(self._clients))

    def _opened(self, client: connection.Client, flow_id: str) -> None:
        state = self._clients.get(client.id)
        if state is not None:
            state.started = True
            state.open_flows.add(flow_id)

    def _closed(self, client: connection.Client, flow_id: str) -> None:
        state = self._clients.get(client.id)
        if state is not None:
            state.open_flows.discard(flow_id)

    def http_connect(self, flow: http.HTTPFlow) -> None:
        self._started(flow.client_conn)

    def tls_clienthello(self, data: tls.ClientHelloData) -> None:
        self._started(data.context.client)

    def _started(self, client: connection.Client) -> None:
        state = self._clients.get(client.id)
        if state is not None:
            state.started = True

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        self._started(flow.client_conn)

    def request(self, flow: http.HTTPFlow) -> None:
        # In flight once its body is in: a request whose body trickles in (or stalls)
        # keeps no right to its connection slot.
        self._opened(flow.client_conn, flow.id)

    def response(self, flow: http.HTTPFlow) -> None:
        if flow.websocket is None:
            self._closed(flow.client_conn, flow.id)

    def error(self, flow: http.HTTPFlow) -> None:
        self._closed(flow.client_conn, flow.id)

    def websocket_start(self, flow: http.HTTPFlow) -> None:
        self._opened(flow.client_conn, flow.id)
        flow.metadata.setdefault(MESSAGE_MOVED, time.monotonic())
        state = self._clients.get(flow.client_conn.id)
        if state is not None:
            state.websockets[flow.id] = flow

    def websocket_end(self, flow: http.HTTPFlow) -> None:
        self._closed(flow.client_conn, flow.id)
        state = self._clients.get(flow.client_conn.id)
        if state is not None:
            state.websockets.pop(flow.id, None)

    def tcp_start(self, flow: tcp.TCPFlow) -> None:
        self._opened(flow.client_conn, flow.id)

    def tcp_end(self, flow: tcp.TCPFlow) -> None:
        self._closed(flow.client_conn, flow.id)

    def tcp_error(self, flow: tcp.TCPFlow) -> None:
        self._closed(flow.client_conn, flow.id)

    # --- closing what holds the budget --------------------------------------------------

    @staticmethod
    def _handler(client_id: str) -> Any:
        """mitmproxy's handler of a client connection (keyed by the client's id)."""
        return ctx.master.addons.get("proxyserver").connections.get(client_id)

    def _idle_since(self, client_id: str, handler: Any) -> float | None:
        """When the client went idle (monotonic), or None while it is busy."""
        state = self._clients.get(client_id)
        if state is None or handler.timeout_watchdog.blocker:
            return None
        if state.websockets:
            # Busy while messages move either way; PINGs (which the sidecar answers
            # itself) and pongs do not count.
            settings = self._life.settings
            if state.open_flows - state.websockets.keys() or settings is None:
                return None
            last = max(float(f.metadata.get(MESSAGE_MOVED, 0)) for f in state.websockets.values())
            return None if time.monotonic() - last < settings.idle_timeout else last
        if state.open_flows:
            return None
        quiet = time.time() - float(handler.timeout_watchdog.last_activity)
        return time.monotonic() - quiet

    def _evict_one(self) -> bool:
        """Close the idlest of the oldest few idle connections. Clients are kept in the
        order they connected, so under a flood this costs a few steps, not one per open
        connection."""
        best: tuple[float, str, Any] | None = None
        found = 0
        for scanned, cid in enumerate(self._clients):
            if scanned >= EVICTION_SCAN or found >= EVICTION_CANDIDATES:
                break
            handler = self._handler(cid)
            since = None if handler is None else self._idle_since(cid, handler)
            if since is None:
                continue
            found += 1
            if best is None or since < best[0]:
                best = (since, cid, handler)
        if best is None:
            return False
        self._close(best[2], best[1], "evicted_at_capacity")
        return True

    def _close(self, handler: Any, client_id: str, why: str) -> None:
        self._clients.pop(client_id, None)
        self._life.metrics.connections_open.set(len(self._clients))
        io = handler.transports.get(handler.client)
        if io is not None and io.handler is not None:
            io.handler.cancel(why)
        self._life.metrics.connections_closed.labels(why).inc()
        level = logging.INFO if why == "idle_timeout" else logging.WARNING  # idle is routine
        self._log.log(why, f"connection closed: {why.replace('_', ' ')}", level)

    async def _sweep_forever(self) -> None:
        loop = asyncio.get_running_loop()
        for sweeps in itertools.count(1):
            await asyncio.sleep(SWEEP_INTERVAL)
            try:
                self.sweep()
                if sweeps % TRIM_EVERY == 0 and self._memory.collect_if_grown():
                    # What closed connections and refused bodies freed goes back.
                    await loop.run_in_executor(decoder_thread(), give_memory_back)
                    self._memory.settle()
            except Exception:  # the sweeper must outlive a bug in one pass
                logger.exception("egress-sidecar: internal error while closing idle connections")

    def sweep(self) -> None:
        settings = self._life.settings
        if settings is None:
            return
        now = time.monotonic()
        for cid, state in list(self._clients.items()):
            handler = self._handler(cid)
            if handler is None:
                continue
            if not state.started and now - state.connected > settings.head_timeout:
                self._close(handler, cid, "head_timeout")
                continue
            since = self._idle_since(cid, handler)
            if since is not None and now - since > settings.idle_timeout:
                self._close(handler, cid, "idle_timeout")
