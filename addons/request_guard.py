"""HTTP requests: judged before anything leaves, the verdict enforced on the flow.

`request` hands the request to the judge (`sidecar.judge`) and applies the answer:
forward unchanged, forward a replacement body, or answer the agent locally without
contacting the upstream. `responseheaders` stamps the decision headers, ends a protocol
switch nobody asked for, and streams every response body to the agent as it arrives,
keeping a bounded copy for classification (large downloads work; no response body is
buffered whole).
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from mitmproxy import http

from addons.broker_request import substitute_request
from addons.broker_response import count_scrubs, scrub_response, scrubbed_headers
from addons.flow_record import FlowRecord
from addons.request_rules import outbound, websocket_switch
from addons.runtime import refusal_response
from addons.stream_tap import ResponseTap
from sidecar.broker.masking import unmask
from sidecar.judge.bodies import encode_body
from sidecar.judge.enforce import Enforcement
from sidecar.judge.judge import Judgement
from sidecar.observability.counting import count_judgement
from sidecar.observability.decision_log import log_decision

if TYPE_CHECKING:
    from addons.lifecycle import Lifecycle

logger = logging.getLogger("egress_sidecar")


class RequestGuard:
    def __init__(self, lifecycle: Lifecycle) -> None:
        self._life = lifecycle

    async def request(self, flow: http.HTTPFlow) -> None:
        if flow.response is not None or flow.error is not None or not flow.live:
            return
        record = FlowRecord.of(flow)
        runtime = self._life.runtime
        if runtime is None:
            judgement = Judgement.internal()
        else:
            try:
                out = outbound(flow, frozenset(runtime.settings.approval_volatile_headers))
            except Exception:  # never forward what could not be read
                logger.exception("egress-sidecar: internal error while reading a request")
                judgement = Judgement.internal()
            else:
                judgement = await runtime.judge.judge(
                    out, still_wanted=lambda: flow.client_conn.connected and flow.live
                )
        record.judgement = judgement
        try:
            if judgement.bound and judgement.broker is not None:
                unmask(judgement.enforcement, judgement.broker, judgement.bound)
            self._apply(flow, record, judgement.enforcement)
            if judgement.enforcement.forward:
                self._broker(flow, record, judgement)
        except Exception:  # e.g. a rewritten body that cannot be encoded: never forward
            logger.exception("egress-sidecar: internal error while applying a verdict")
            record.judgement = judgement = Judgement.internal()
            self._apply(flow, record, judgement.enforcement)
        metrics = self._life.metrics
        count_judgement(metrics, judgement, "request")
        tool = metrics.tool_label(judgement.enforcement.tool)
        metrics.requests.labels(judgement.enforcement.decision.value, tool).inc()
        log_decision(record.decision_line(flow))

    def _broker(self, flow: http.HTTPFlow, record: FlowRecord, judgement: Judgement) -> None:
        """The real values, now that the request is judged and will be forwarded; and the
        scrubber for whatever comes back from a brokered credential's host."""
        runtime = self._life.runtime
        if runtime is None or runtime.judge.broker is None:
            return
        state = judgement.broker or runtime.judge.broker.current
        record.judged_path = flow.request.path  # a WebSocket's messages name it as judged
        record.substituted = substitute_request(
            flow.request, judgement, runtime.settings.max_body_bytes
        )
        for name in record.substituted:
            self._life.metrics.broker_substitutions.labels(name).inc()
        if names := state.hosts_of(flow.request.host) | frozenset(record.substituted):
            record.scrubber = state.scrubber(names)

    @staticmethod
    def _apply(flow: http.HTTPFlow, record: FlowRecord, enforcement: Enforcement) -> None:
        if enforcement.forward:
            record.forwarded_at = time.time()
            req = flow.request
            if enforcement.replacement_body is not None:
                # Content-Encoding is applied again (cheaply: mitmproxy's `.content` would
                # use brotli's slowest quality, on the event loop); transfer codings go
                # (the body is re-framed by length).
                req.headers.pop("transfer-encoding", None)
                req.raw_content = encode_body(
                    enforcement.replacement_body, req.headers.get("content-encoding", "")
                )
                req.headers["content-length"] = str(len(req.raw_content))
            if req.raw_content and not {"content-length", "transfer-encoding"} & {
                name.lower() for name in req.headers
            }:
                # HTTP/2 frames a body without either; written as HTTP/1 (mitmproxy adds
                # neither) the upstream would read the body as the next request, unjudged.
                req.headers["content-length"] = str(len(req.raw_content))
            return
        if enforcement.approval == "abandoned":
            flow.kill()
            return
        flow.response = refusal_response(enforcement)

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        if flow.response is None:
            return
        if flow.response.status_code == 101 and not websocket_switch(flow):
            # What would follow is a raw pipe the sidecar cannot read.
            self._life.metrics.refusals.labels("protocol", "unrequested_switch").inc()
            logger.warning("upstream answered 101 without a WebSocket upgrade: connection closed")
            flow.kill()
            return
        record = FlowRecord.find(flow)
        enforcement = record.enforcement if record is not None else None
        if enforcement is not None:
            flow.response.headers.update(enforcement.headers())
        if record is not None and record.scrubber is not None:
            runtime = self._life.runtime
            limit = runtime.settings.max_body_bytes if runtime is not None else 0
            record.tap = ResponseTap()
            scrub_response(flow, record.scrubber, limit, record.tap)
            count_scrubs(self._life.metrics, record.scrubber)
            if not flow.response.stream:  # no body follows (HEAD, 204, 304, 101)
                flow.response.stream = record.tap
            return
        if flow.response.stream:
            return
        if record is None or enforcement is None:
            flow.response.stream = True
            return
        record.tap = ResponseTap()
        flow.response.stream = record.tap

    def response(self, flow: http.HTTPFlow) -> None:
        record = FlowRecord.find(flow)
        if record is not None and record.scrubber is not None and flow.response is not None:
            if flow.response.trailers:
                flow.response.trailers = scrubbed_headers(flow.response.trailers, record.scrubber)
            count_scrubs(self._life.metrics, record.scrubber)
        if record is not None and record.enforcement is not None and flow.response is not None:
            # Idempotent (set in responseheaders); a local answer gets them here.
            flow.response.headers.update(record.enforcement.headers())
