"""Upstream response bodies go to the backend for classification (read-then-write
exfiltration is caught on the way out), queued off the agent's path."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from mitmproxy import http

from addons.flow_record import FlowRecord
from sidecar.judge.responses import ResponseScanJob

if TYPE_CHECKING:
    from addons.lifecycle import Lifecycle


class ResponseReporter:
    def __init__(self, lifecycle: Lifecycle) -> None:
        self._life = lifecycle

    def response(self, flow: http.HTTPFlow) -> None:
        record = FlowRecord.find(flow)
        runtime = self._life.runtime
        if record is None or record.judgement is None or runtime is None:
            return
        enforcement = record.judgement.enforcement
        if not enforcement.forward or not enforcement.from_backend or flow.response is None:
            return
        raw = flow.response.raw_content
        if raw is None and record.tap is not None:
            raw = record.tap.captured
        if raw is None:
            return
        latency = None
        if record.forwarded_at is not None:
            finished = flow.response.timestamp_end or time.time()
            latency = max(0, round((finished - record.forwarded_at) * 1000))
        runtime.responses.submit(
            ResponseScanJob(
                trace_id=enforcement.trace_id,
                raw_body=raw,
                content_encoding=flow.response.headers.get("content-encoding", ""),
                content_type=flow.response.headers.get("content-type", ""),
                status=flow.response.status_code,
                latency_ms=latency,
                llm_provider=record.judgement.llm,
            )
        )
