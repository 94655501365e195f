"""The one interface every scan backend implements."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from sidecar.backends.contract import ApprovalState, ScanRequest, ScanVerdict


@dataclass(frozen=True, slots=True)
class ObservedResponse:
    """What the upstream answered to a forwarded request, for classification.

    `body` is the decoded body as JSON or text (for a streamed LLM answer: the assembled
    text); `text` and `finish_reason` are set when the answer was an LLM reply.
    """

    trace_id: str
    body: Any
    status: int
    body_bytes: int
    latency_ms: int | None = None
    text: str | None = None
    finish_reason: str | None = None


class ScanBackend(Protocol):
    """Judges requests, classifies responses and reports on held approvals.

    Every method raises only `sidecar.backends.errors.ScanError` subclasses on failure.
    """

    name: str

    async def scan(self, request: ScanRequest) -> ScanVerdict: ...

    async def scan_response(self, response: ObservedResponse) -> None: ...

    async def approval_status(self, approval_id: str) -> ApprovalState: ...

    async def aclose(self) -> None: ...
