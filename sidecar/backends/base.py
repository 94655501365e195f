"""The one interface every scan backend implements."""

from __future__ import annotations

from typing import Any, Protocol

from sidecar.verdict import ApprovalState, ScanRequest, ScanVerdict


class ScanBackend(Protocol):
    """Judges requests, classifies responses and reports on held approvals.

    Every method raises only `sidecar.backends.errors.ScanError` subclasses on failure.
    """

    name: str

    async def scan(self, request: ScanRequest) -> ScanVerdict: ...

    async def scan_response(
        self, trace_id: str, body: Any, status: int, body_bytes: int | None = None
    ) -> None:
        """`body_bytes`: the decoded size, so a backend can pick how to scan it cheaply."""
        ...

    async def approval_status(self, approval_id: str) -> ApprovalState: ...

    async def aclose(self) -> None: ...
