"""One typed record per HTTP flow, under one metadata key: what every hook needs to know
about the flow, and the two log lines it yields — the decision line when the verdict is
enforced, and the close line when the flow ends (with its outcome)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from mitmproxy import http

from addons.stream_tap import ResponseTap
from sidecar.broker.scrub import Scrubber
from sidecar.judge.enforce import Enforcement
from sidecar.judge.judge import Judgement
from sidecar.observability.decision_log import loggable_host, loggable_method

RECORD_KEY = "egress_sidecar"


@dataclass(slots=True)
class FlowRecord:
    started: float = field(default_factory=time.monotonic)
    written_host: str | None = None  # the destination as written, before normalisation
    websocket: bool = False  # a WebSocket upgrade was judged and sent
    judgement: Judgement | None = None  # set when the verdict is enforced
    forwarded_at: float | None = None  # wall clock: when the request left
    tap: ResponseTap | None = None  # the bounded copy of a streamed response body
    substituted: list[str] = field(default_factory=list)  # brokered credentials put in
    judged_path: str | None = None  # the target as judged, before a value was put in
    scrubber: Scrubber | None = None  # takes real values out of what comes back
    closed: bool = False

    @staticmethod
    def of(flow: http.HTTPFlow) -> FlowRecord:
        record = flow.metadata.get(RECORD_KEY)
        if not isinstance(record, FlowRecord):
            record = flow.metadata[RECORD_KEY] = FlowRecord()
        return record

    @staticmethod
    def find(flow: http.HTTPFlow) -> FlowRecord | None:
        record = flow.metadata.get(RECORD_KEY)
        return record if isinstance(record, FlowRecord) else None

    @property
    def enforcement(self) -> Enforcement | None:
        return self.judgement.enforcement if self.judgement is not None else None

    def decision_line(self, flow: http.HTTPFlow) -> dict[str, Any]:
        assert self.judgement is not None
        j, e = self.judgement, self.judgement.enforcement
        return {
            "trace_id": e.trace_id,
            "decision": e.decision.value,
            "would": e.would,
            "forwarded": e.forward,
            "status": None if e.forward else e.status,
            "reasons": e.reasons,
            "tool": e.tool,
            "operation": e.operation,
            "policy": e.policy_name,
            "approval": e.approval,
            "error": e.error_kind,
            "method": loggable_method(flow.request.method),
            "scheme": flow.request.scheme,
            "host": loggable_host(flow.request.host, e.reasons),
            "port": flow.request.port,
            "client": flow.client_conn.peername[0] if flow.client_conn.peername else None,
            "scan_ms": _ms(j.scan_seconds),
            "total_ms": _ms(time.monotonic() - self.started),
            "llm": j.llm,
            "brokered": self.substituted or None,
            "broker_refused": list(j.broker_refused) or None,
        }

    def close_line(self, flow: http.HTTPFlow, outcome: str) -> dict[str, Any]:
        """The flow's end: `outcome` is response, error, client_gone, websocket_end or
        shutdown; sizes are what went each way through the sidecar."""
        assert self.judgement is not None
        e = self.judgement.enforcement
        response = flow.response
        down = None
        if response is not None:
            down = self.tap.total if self.tap is not None else len(response.raw_content or b"")
        upstream_ms = None
        if self.forwarded_at is not None and response is not None and e.forward:
            end = response.timestamp_end or response.timestamp_start
            upstream_ms = _ms(max(0.0, end - self.forwarded_at)) if end else None
        return {
            "event_kind": "close",
            "trace_id": e.trace_id,
            "outcome": outcome,
            "forwarded": e.forward,
            "upstream_status": response.status_code if response is not None and e.forward else None,
            "bytes_up": len(flow.request.raw_content or b"") if e.forward else 0,
            "bytes_down": down,
            "upstream_ms": upstream_ms,
            "approval_wait_ms": _ms(self.judgement.approval_seconds),
            "duration_ms": _ms(time.monotonic() - self.started),
            "host": loggable_host(flow.request.host, e.reasons),
            "port": flow.request.port,
        }


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 2)
