"""What the layers refused to keep a bound (see `addons.layers`), made visible; and
WebSocket compression kept out of the relay.

An oversized request body is answered like any body over the scan limit (`413
BODY_TOO_LARGE` with the decision headers, in every mode: it was never buffered, so
there is nothing to forward); one that would pass the budget of bodies held at once
gets `503 SIDECAR_BUSY`. Each refusal is counted by reason; repeated ones are
logged as rate-limited lines. permessage-deflate is never negotiated: the agent's offer
is removed from its upgrade request (and an upstream's unasked-for acceptance from the
101), so no WebSocket frame is ever inflated by the relay.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from mitmproxy import http

from addons.layers import ResourceRefusal
from addons.runtime import refusal_response
from sidecar.judge.enforce import BODY_TOO_LARGE, SIDECAR_BUSY, local_block
from sidecar.observability.decision_log import log_decision, loggable_host, loggable_method
from sidecar.observability.log_limit import RateLimitedLog

if TYPE_CHECKING:
    from addons.lifecycle import Lifecycle

logger = logging.getLogger("egress_sidecar")
WS_EXTENSIONS = "Sec-WebSocket-Extensions"
_WHAT = {
    "body_too_large": "request body refused: larger than the scan limit",
    "bodies_held": "request body refused: the sidecar holds as many bodies as it may",
    "http1_trailers": "request refused: trailers on an HTTP/1 request",
    "trailers_dropped": "trailers dropped: they cannot be written to an HTTP/1 peer",
    "websocket_message_too_large": "WebSocket message dropped: larger than the scan limit",
    "head_too_large": "connection closed: request head larger than 128 KiB",
    "head_timeout": "connection closed: request head not complete within the head timeout",
    "pipelined_too_large": "connection closed: over 128 KiB pipelined behind a request",
    "client_hello_too_large": "connection closed: TLS ClientHello larger than 64 KiB",
}


class ResourceGuard:
    def __init__(self, lifecycle: Lifecycle) -> None:
        self._life = lifecycle
        self._log = RateLimitedLog(logger)

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        flow.request.headers.pop(WS_EXTENSIONS, None)

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        if flow.response is not None and flow.response.status_code == 101:
            flow.response.headers.pop(WS_EXTENSIONS, None)

    def egress_resource_refused(self, refusal: ResourceRefusal) -> None:
        self._life.metrics.bounded.labels(refusal.reason).inc()
        flow = refusal.flow
        self._log.log(refusal.reason, _WHAT.get(refusal.reason, refusal.reason))
        if refusal.reason in ("body_too_large", "bodies_held") and flow is not None:
            self._refuse_body(flow, refusal)
        elif refusal.reason == "websocket_message_too_large" and flow is not None:
            self._life.metrics.websocket_messages.labels("DENY", "dropped").inc()

    def _refuse_body(self, flow: http.HTTPFlow, refusal: ResourceRefusal) -> None:
        settings = self._life.settings
        if refusal.reason == "bodies_held":
            enforcement = local_block(
                SIDECAR_BUSY, "Blocked by egress-sidecar: too many request bodies held.", 503
            )
        else:
            limit = settings.max_body_bytes if settings is not None else 0
            enforcement = local_block(
                BODY_TOO_LARGE, f"Request body is larger than the scan limit ({limit} B).", 413
            )
        flow.response = refusal_response(enforcement)
        self._life.metrics.requests.labels("DENY", "unknown").inc()
        log_decision(
            {
                "trace_id": enforcement.trace_id,
                "decision": "DENY",
                "forwarded": False,
                "status": enforcement.status,
                "reasons": enforcement.reasons,
                "method": loggable_method(flow.request.method),
                "scheme": flow.request.scheme,
                "host": loggable_host(flow.request.host, enforcement.reasons),
                "port": flow.request.port,
                "body_bytes_seen": refusal.size,
            }
        )
