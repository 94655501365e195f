"""Every connection the sidecar opens goes where it was judged to go.

The `server_connect` hook runs before mitmproxy opens any upstream socket — for a
request, a tunnel, a pass-through host, a raw TCP stream or a redirected connection.
Here the destination is judged on its own (as a CONNECT is, see `TunnelGuard`), its
name is resolved once, every address it resolves to is judged (no private, loopback,
link-local or metadata address unless listed as internal; never the sidecar's own
listeners), and the socket is opened to the address that was judged — so a name that
resolves differently a moment later (DNS rebinding) changes nothing.

mitmproxy opens the socket to `server.address`; the judged address is put there for the
connect and the name is put back once connected, so connection reuse and logs still
see the name. (`Server.__setattr__` refuses to change the address of an open
connection; the name is restored with `object.__setattr__`, pinned in `addons.layers`.)
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from mitmproxy.proxy.server_hooks import ServerConnectionHookData

from sidecar.authority import AuthorityError, normalise_host
from sidecar.decision_log import log_decision, loggable_host
from sidecar.endpoints import OWN_ENDPOINT, judge_addresses
from sidecar.resolver import ResolveError
from sidecar.verdict import Decision

if TYPE_CHECKING:
    from addons.egress_guard import EgressGuard

logger = logging.getLogger("egress_sidecar")
_NAMES_KEPT = 10_000  # connections between connect and connected; more means a leak


class ConnectGuard:
    """Judges and pins the address of every outbound connection."""

    def __init__(self, guard: EgressGuard) -> None:
        self._guard = guard
        self._names: dict[str, tuple[str, int]] = {}  # server id -> the name it was given

    async def server_connect(self, data: ServerConnectionHookData) -> None:
        server = data.server
        if server.error is not None or server.address is None:
            return
        guard = self._guard
        settings = guard.settings
        port = int(server.address[1])
        try:
            host = normalise_host(str(server.address[0]))
        except AuthorityError:
            self._refuse(data, str(server.address[0]), port, "destination_unparseable")
            return
        if settings is None or guard.destinations is None:
            self._refuse(data, host, port, "not_ready")
            return
        if settings.upstream_proxy is not None:
            # Chained: the upstream proxy resolves and connects; names were judged.
            return
        verdict = guard.destinations.judge_destination(host, port)
        if verdict.decision is Decision.DENY and not guard.shadow:
            self._refuse(data, host, port, "destination_refused", verdict.reason_codes)
            return
        try:
            addresses = await guard.resolver.resolve(host, port)
        except ResolveError:
            self._refuse(data, host, port, "unresolvable")
            return
        judged = judge_addresses(host, port, addresses, settings.internal_hosts, guard.listeners())
        if judged.refusal is not None:
            if guard.shadow and judged.refusal != OWN_ENDPOINT:
                guard.metrics.shadow_decisions.labels("DENY", "connect").inc()
            else:
                self._refuse(data, host, port, judged.refusal)
                return
        chosen = judged.address if judged.address is not None else addresses[0]
        if str(chosen) != host:
            if len(self._names) < _NAMES_KEPT:
                self._names[server.id] = (host, port)
            server.address = (str(chosen), port)

    def server_connected(self, data: ServerConnectionHookData) -> None:
        self._restore(data)

    def server_connect_error(self, data: ServerConnectionHookData) -> None:
        self._restore(data)

    def _restore(self, data: ServerConnectionHookData) -> None:
        name = self._names.pop(data.server.id, None)
        if name is not None:
            object.__setattr__(data.server, "address", name)

    def _refuse(
        self,
        data: ServerConnectionHookData,
        host: str,
        port: int,
        reason: str,
        reasons: list[str] | None = None,
    ) -> None:
        guard = self._guard
        guard.metrics.refusals.labels("connect", reason).inc()
        data.server.error = f"egress-sidecar refused the connection ({reason})"
        log_decision(
            {
                "event_kind": "connect_refused",
                "reason": reason,
                "host": loggable_host(host, reasons or []),
                "port": port,
            }
        )
