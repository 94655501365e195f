"""Every connection the sidecar opens goes where it was judged to go.

The `server_connect` hook runs before mitmproxy opens any upstream socket — for a
request, a tunnel, a pass-through host, a raw TCP stream or a redirected connection.
Here the destination is judged (`Destinations.judge_connection`: the name on its own, as a
CONNECT is, then every address it resolves to — no private, loopback, link-local or
metadata address unless listed as internal, never the sidecar's own listeners), and the
socket is opened to the address that was judged — so a name that resolves differently
a moment later (DNS rebinding) changes nothing. The upstream TLS handshake offers only
the ALPN ids `tunnel_guard` keeps, in its order.

mitmproxy opens the socket to `server.address`; the judged address is put there for the
connect and the name is put back once connected (or failed), so connection reuse and
logs still see the name. (`Server.__setattr__` refuses to change the address of an open
connection; the name is restored with `object.__setattr__`, pinned in `addons.layers`.)
"""

from __future__ import annotations

import logging
import weakref
from typing import TYPE_CHECKING

from mitmproxy.connection import Server
from mitmproxy.proxy.server_hooks import ServerConnectionHookData

from sidecar.judge.authority import AuthorityError, normalise_host
from sidecar.judge.endpoints import OWN_ENDPOINT
from sidecar.judge.request_surface import upstream_alpn
from sidecar.observability.decision_log import log_decision, loggable_host

if TYPE_CHECKING:
    from addons.lifecycle import Lifecycle

logger = logging.getLogger("egress_sidecar")


class ConnectGuard:
    """Judges and pins the address of every outbound connection."""

    def __init__(self, lifecycle: Lifecycle) -> None:
        self._life = lifecycle
        # The name each pinned connection was given; gone with the connection itself.
        self._names: weakref.WeakKeyDictionary[Server, tuple[str, int]] = (
            weakref.WeakKeyDictionary()
        )

    async def server_connect(self, data: ServerConnectionHookData) -> None:
        server = data.server
        if server.error is not None or server.address is None:
            return
        try:
            await self._judge(server)
        except Exception:  # a hook that raises lets mitmproxy connect unjudged: refuse
            logger.exception("egress-sidecar: internal error while judging a connection")
            self._refuse(server, str(server.address[0]), int(server.address[1]), "internal")

    async def _judge(self, server: Server) -> None:
        assert server.address is not None
        runtime = self._life.runtime
        port = int(server.address[1])
        if runtime is None:
            self._refuse(server, str(server.address[0]), port, "not_ready")
            return
        server.alpn_offers = upstream_alpn(
            server.alpn_offers, runtime.destinations.carries_raw_tcp(str(server.address[0]), port)
        )
        try:
            host = normalise_host(str(server.address[0]))
            if server.sni:  # the agent's own spelling (case, a trailing dot) stays here
                server.sni = normalise_host(server.sni)
        except AuthorityError:
            self._refuse(server, str(server.address[0]), port, "destination_unparseable")
            return
        if runtime.settings.upstream_proxy is not None:
            return  # chained: the upstream proxy resolves and connects; names were judged
        where = await runtime.destinations.judge_connection(host, port)
        if where.refusal is not None:
            own = where.refusal == OWN_ENDPOINT
            if runtime.shadow and not own:  # shadow: counted, not enforced
                runtime.metrics.shadow_decisions.labels("DENY", "connect").inc()
            else:
                self._refuse(server, host, port, where.refusal, where.reasons)
                return
        if where.address is not None and str(where.address) != host:
            self._names[server] = (host, port)
            server.address = (str(where.address), port)

    def server_connected(self, data: ServerConnectionHookData) -> None:
        self._restore(data.server)

    def server_connect_error(self, data: ServerConnectionHookData) -> None:
        self._restore(data.server)

    def _restore(self, server: Server) -> None:
        name = self._names.pop(server, None)
        if name is not None:
            object.__setattr__(server, "address", name)

    def _refuse(
        self, server: Server, host: str, port: int, reason: str, reasons: list[str] | None = None
    ) -> None:
        self._life.metrics.refusals.labels("connect", reason).inc()
        server.error = f"egress-sidecar refused the connection ({reason})"
        log_decision(
            {
                "event_kind": "connect_refused",
                "reason": reason,
                "host": loggable_host(host, reasons or []),
                "port": port,
            }
        )
