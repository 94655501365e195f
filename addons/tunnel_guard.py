"""Tunnels are judged before they open; pass-through binds to the destination used.

A CONNECT is judged on its destination alone — the sidecar's own keys, SSRF, data in
DNS labels, the policy's destination rules — locally, with no scan API call, so the
scan API's rate budget is spent on requests. A refused CONNECT gets a 403 and no tunnel.

In every TLS ClientHello the agent's ALPN offers are cut down to the HTTP ids the sidecar
relays (any registered id to a raw_tcp_hosts destination), each once, in one fixed
order: mitmproxy would repeat them in its own handshake with the upstream, where their
values and their order would carry bits the agent chose, unscanned.

Pass-through hosts (tunnelled uninspected) are matched on the destination the sidecar
connects to — the CONNECT target — never on names the client chooses, and the TLS SNI
must name that same host; a redirected connection's SNI becomes its destination (and
is resolved and judged when the connection is made, see `addons.connect_guard`).
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from mitmproxy import http, tls
from mitmproxy.proxy.layers import ClientTLSLayer
from mitmproxy.proxy.mode_specs import TransparentMode

from addons.runtime import refusal_response
from sidecar.engine.destinations import host_matches, parse_ip
from sidecar.judge.authority import AuthorityError, normalise_host
from sidecar.judge.enforce import (
    DESTINATION_UNPARSEABLE,
    Enforcement,
    internal_error,
    local_block,
    shadowed,
)
from sidecar.judge.judge import Judgement
from sidecar.judge.request_surface import upstream_alpn
from sidecar.observability.counting import count_judgement
from sidecar.observability.decision_log import log_decision, loggable_host

if TYPE_CHECKING:
    from addons.lifecycle import Lifecycle

logger = logging.getLogger("egress_sidecar")


class TunnelGuard:
    """Judges CONNECT destinations, trims ALPN offers, and decides pass-through on the
    destination used."""

    def __init__(self, lifecycle: Lifecycle) -> None:
        self._life = lifecycle

    def http_connect(self, flow: http.HTTPFlow) -> None:
        if flow.response is not None or flow.error is not None:
            return  # e.g. proxy authentication already answered
        started = time.monotonic()
        try:
            judgement = Judgement(self._judge(flow))
        except Exception:  # a hook that raises lets mitmproxy open the tunnel: refuse
            logger.exception("egress-sidecar: internal error while judging a CONNECT")
            judgement = Judgement.internal()
        runtime = self._life.runtime
        if runtime is not None and runtime.shadow:
            judgement.enforcement = shadowed(judgement.enforcement)
        enforcement = judgement.enforcement
        metrics = self._life.metrics
        count_judgement(metrics, judgement, "tunnel")
        metrics.tunnels.labels(enforcement.decision.value).inc()
        if not enforcement.forward:
            flow.response = refusal_response(enforcement)
        log_decision(
            {
                "event_kind": "tunnel",
                "trace_id": enforcement.trace_id,
                "decision": enforcement.decision.value,
                "would": enforcement.would,
                "forwarded": enforcement.forward,
                "reasons": enforcement.reasons,
                "host": loggable_host(flow.request.host, enforcement.reasons),
                "port": flow.request.port,
                "client": flow.client_conn.peername[0] if flow.client_conn.peername else None,
                "total_ms": round((time.monotonic() - started) * 1000, 2),
            }
        )

    def _judge(self, flow: http.HTTPFlow) -> Enforcement:
        runtime = self._life.runtime
        if runtime is None:
            return internal_error()
        try:  # the tunnel goes to the spelling judged (mitmproxy reads it after this hook)
            flow.request.data.host = normalise_host(flow.request.host)
        except AuthorityError:
            flow.request.data.host = ""
        host, port = flow.request.host, flow.request.port
        if not host:
            message = "Blocked by egress-sidecar: no destination it can read."
            return local_block(DESTINATION_UNPARSEABLE, message, 400)
        return runtime.destinations.judge_tunnel(host, flow.request.authority, port)

    def tls_clienthello(self, data: tls.ClientHelloData) -> None:
        try:
            self._trim_alpn(data)
            self._passthrough(data)
        except Exception:  # nothing was changed to let anything through: intercept
            logger.exception("egress-sidecar: internal error on a TLS ClientHello")

    def _trim_alpn(self, data: tls.ClientHelloData) -> None:
        client, server = data.context.client, data.context.server
        runtime = self._life.runtime
        other = (
            runtime is not None
            and server.address is not None
            and runtime.destinations.carries_raw_tcp(str(server.address[0]), int(server.address[1]))
        )
        offers = client.alpn_offers
        kept = upstream_alpn(offers, other_protocols=other)
        if kept != list(offers):
            self._life.metrics.refusals.labels("tunnel", "alpn_trimmed").inc()
            client.alpn_offers = kept

    def _passthrough(self, data: tls.ClientHelloData) -> None:
        """Pass-through is decided here, on the destination, once the SNI is known."""
        guard = self._life
        runtime = guard.runtime
        server = data.context.server
        if runtime is None or not runtime.settings.passthrough_hosts or server.address is None:
            return
        if sum(isinstance(x, ClientTLSLayer) for x in data.context.layers) > 1:
            return  # TLS inside TLS: only the outer hello decides pass-through
        host, port = str(server.address[0]), int(server.address[1])
        sni = data.client_hello.sni
        try:
            sni_host = normalise_host(sni) if sni else None
            dest = normalise_host(host)
        except AuthorityError:
            return
        transparent = isinstance(data.context.client.proxy_mode, TransparentMode)
        if transparent and sni_host is not None:
            dest = sni_host  # the name asked for; resolved and judged at connect
        if not host_matches(dest, runtime.settings.passthrough_hosts):
            return
        named = parse_ip(dest) is None
        if sni_host != (dest if named else None):
            # The upstream routes on the SNI: passing through a hello for another name
            # (or none, for a name) would tunnel unseen to whatever that name is. Such a
            # connection is intercepted instead, and judged request by request.
            guard.metrics.refusals.labels("tunnel", "passthrough_sni_mismatch").inc()
            logger.warning("pass-through refused: the TLS SNI does not name the destination")
            return
        if transparent:
            server.address = (dest, port)
        data.ignore_connection = True
        guard.metrics.passthrough_connections.inc()
        logger.warning("pass-through (not inspected): connection to %s", loggable_host(dest, []))
        log_decision({"event_kind": "passthrough", "host": loggable_host(dest, []), "port": port})
