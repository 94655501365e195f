"""WebSocket messages from the agent are judged like request bodies, one by one.

ALLOW passes a message, SANITIZE rewrites it, anything else (DENY, REQUIRE_APPROVAL, or
no verdict under fail-closed) drops that message; the connection stays open. Control
frames (see `addons.layers`) are counted, and logged at most once per kind and interval.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from mitmproxy import http

from addons.broker_response import count_scrubs
from addons.flow_record import FlowRecord
from addons.layers import ControlFrame
from sidecar.judge.authority import absolute_url
from sidecar.judge.judge import Judgement, Outbound
from sidecar.observability.counting import count_judgement
from sidecar.observability.decision_log import log_decision, loggable_host
from sidecar.observability.log_limit import RateLimitedLog

if TYPE_CHECKING:
    from addons.lifecycle import Lifecycle

logger = logging.getLogger("egress_sidecar")


class WebSocketGuard:
    def __init__(self, lifecycle: Lifecycle) -> None:
        self._life = lifecycle
        self._control_lines = RateLimitedLog(logger)  # only its `due` gate is used

    async def websocket_message(self, flow: http.HTTPFlow) -> None:
        assert flow.websocket is not None
        message = flow.websocket.messages[-1]
        if not message.from_client or message.dropped:
            return
        started = time.monotonic()
        runtime = self._life.runtime
        if runtime is None:
            judgement = Judgement.internal()
        else:
            scheme = "wss" if flow.request.scheme == "https" else "ws"
            record = FlowRecord.find(flow)
            # The target as judged: a brokered value put into the upgrade stays out.
            path = record.judged_path if record and record.judged_path else flow.request.path
            out = Outbound(
                method="WEBSOCKET",
                url=absolute_url(scheme, flow.request.host, flow.request.port, path),
                body=message.content,
                content_type="application/json" if message.is_text else "",
                message=True,
            )
            judgement = await runtime.judge.judge(out)
        enforcement = judgement.enforcement
        if not enforcement.forward:
            message.drop()
        elif enforcement.replacement_body is not None:
            message.content = enforcement.replacement_body
        action = "dropped" if not enforcement.forward else "forwarded"
        metrics = self._life.metrics
        count_judgement(metrics, judgement, "websocket")
        metrics.websocket_messages.labels(enforcement.decision.value, action).inc()
        log_decision(
            {
                "event_kind": "websocket_message",
                "trace_id": enforcement.trace_id,
                "decision": enforcement.decision.value,
                "would": enforcement.would,
                "forwarded": enforcement.forward,
                "reasons": enforcement.reasons,
                "tool": enforcement.tool,
                "error": enforcement.error_kind,
                "host": loggable_host(flow.request.host, enforcement.reasons),
                "port": flow.request.port,
                "scan_ms": round((time.monotonic() - started) * 1000, 2),
                "broker_refused": list(judgement.broker_refused) or None,
            }
        )

    def websocket_end(self, flow: http.HTTPFlow) -> None:
        """Echoes scrubbed from a brokered connection's upstream messages (in
        `addons.layers`, frame by frame), counted once it ends."""
        record = FlowRecord.find(flow)
        if record is not None and record.scrubber is not None:
            count_scrubs(self._life.metrics, record.scrubber)

    def egress_control_frame(self, frame: ControlFrame) -> None:
        """A WebSocket control frame from an agent: counted, and logged at most once per
        kind and interval (an agent can send thousands)."""
        self._life.metrics.websocket_control_frames.labels(frame.frame, frame.action).inc()
        folded = self._control_lines.due(f"{frame.frame}/{frame.action}")
        if folded is None:
            return
        log_decision(
            {
                "event_kind": "websocket_control",
                "frame": frame.frame,
                "action": frame.action,
                "host": loggable_host(frame.flow.request.host, []),
                "port": frame.flow.request.port,
                "folded": folded,
            }
        )
