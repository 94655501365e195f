"""The embedded engine as a backend: no network, same verdict contract as the scan API.

Scans of large bodies run on one worker thread so a 256 KB body never stalls the proxy's
event loop; small ones run inline, where a thread hop would cost more than the scan. One
worker, not more: the engine is mostly Python, so workers share the GIL, and a second one
measured more CPU per scan and fewer scans per second (`bench/`). Approvals live in the
confdir (see `ApprovalStore`).
"""

from __future__ import annotations

import asyncio
import uuid
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

from sidecar.approvals.store import (
    ApprovalStore,
    coarse_location,
    request_hash,
    reviewed_destination,
)
from sidecar.backends.base import ObservedResponse
from sidecar.backends.contract import STREAM_METHODS, ScanRequest, ScanVerdict
from sidecar.backends.errors import ScanError, ScanRejected
from sidecar.backends.governed import HeldAtSidecar
from sidecar.engine import Engine, LocalVerdict
from sidecar.engine.decisions import Decision

INLINE_LIMIT = 16 * 1024  # characters; larger requests are scanned off the event loop
MAX_TRACKED_TRACES = 10_000


class EngineError(ScanError):
    """The embedded engine failed on this input."""

    kind = "engine_error"


def _size(request: ScanRequest) -> int:
    """What there is to scan — URL, headers and body — without serialising the body again
    on the event loop (64 KiB of headers cost as much as a 64 KiB body)."""
    size = len(request.url) + sum(len(k) + len(v) for k, v in request.headers.items())
    if request.body_bytes is not None:
        return size + request.body_bytes
    if isinstance(request.body, str):
        return size + len(request.body)
    return size if request.body is None else INLINE_LIMIT + 1  # unknown: assume large


class LocalBackend(HeldAtSidecar):
    name = "local"

    def __init__(self, engine: Engine, approvals: ApprovalStore, threads: int = 1) -> None:
        self.engine = engine
        self.approvals = approvals
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="scan")
        self._hosts: OrderedDict[str, str] = OrderedDict()

    async def scan(self, request: ScanRequest) -> ScanVerdict:
        if _size(request) > INLINE_LIMIT:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._pool, self.verdict_for, request)
        return self.verdict_for(request)

    def verdict_for(self, request: ScanRequest) -> ScanVerdict:
        try:
            local = self.engine.decide(request.method, request.url, request.headers, request.body)
        except Exception as e:  # a bug or a pathological input: the fail mode decides
            raise EngineError(f"engine failed: {type(e).__name__}") from None
        trace_id = str(uuid.uuid4())
        host = (urlsplit(request.url).hostname or "").lower()
        self._remember(trace_id, host)
        approval_id = None
        stream = request.method in STREAM_METHODS
        if local.decision is Decision.REQUIRE_APPROVAL and (self.shadow or stream):
            approval_id = trace_id  # reported, never held or recorded (refused if a message)
        elif local.decision is Decision.REQUIRE_APPROVAL:
            approval_id = self.approvals.request(
                request_hash(
                    request,
                    self.approvals.volatile_headers,
                    ((f.kind, f.location, f.value_hash) for f in local.findings),
                ),
                method=request.method,
                host=host,
                tool=local.tool_name,
                operation=local.operation,
                reasons=local.reason_codes,
                trace_id=trace_id,
                rule_id=local.rule_id,
                destination=reviewed_destination(request),
                findings=[
                    {
                        "kind": f.kind,
                        "location": coarse_location(f.location),
                        "encoding": f.encoding,
                    }
                    for f in local.findings
                ],
            )
        return to_scan_verdict(local, trace_id, approval_id)

    def _remember(self, trace_id: str, host: str) -> None:
        self._hosts[trace_id] = host
        while len(self._hosts) > MAX_TRACKED_TRACES:
            self._hosts.popitem(last=False)

    async def scan_response(self, response: ObservedResponse) -> None:
        host = self._hosts.pop(response.trace_id, None)
        if host is None:
            raise ScanRejected("scan_response: unknown trace id", 404)
        body = response.body
        try:
            if response.body_bytes <= INLINE_LIMIT:
                self.engine.observe_response(host, body)  # a thread hop would cost more
            else:
                loop = asyncio.get_running_loop()
                await loop.run_in_executor(self._pool, self.engine.observe_response, host, body)
        except Exception as e:
            raise EngineError(f"engine failed on a response: {type(e).__name__}") from None

    async def aclose(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def to_scan_verdict(local: LocalVerdict, trace_id: str, approval_id: str | None) -> ScanVerdict:
    return ScanVerdict(
        decision=local.decision,
        risk_score=local.risk_score,
        risk_band=local.risk_band,
        reason_codes=local.reason_codes,
        trace_id=trace_id,
        tool_name=local.tool_name,
        operation=local.operation,
        classifications=local.classifications,
        signals=local.signals,
        sanitized_body=local.sanitized_body,
        approval_id=approval_id,
        policy_id=local.policy_id,
        policy_name=local.policy_name,
    )
