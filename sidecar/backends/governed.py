"""What the third-party governance backends (kirtonic, inviolet, velerian) share.

Their answers are translated into the sidecar's verdict vocabulary here, so each backend
module is only its API's request and response mapping. Reviews that the API offers no
way to poll for are held at the sidecar: recorded in the confdir approval store under
the backend's own id and decided with `egress-sidecar approvals approve|deny ID` (or the
admin endpoint, which a webhook relay can call).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from sidecar.approvals.store import (
    ApprovalNotFound,
    ApprovalReused,
    ApprovalStore,
    request_hash,
    reviewed_destination,
)
from sidecar.backends.contract import STREAM_METHODS, ApprovalState, ScanRequest, ScanVerdict
from sidecar.backends.errors import MalformedVerdict, ScanRejected
from sidecar.engine.decisions import Decision, RiskBand
from sidecar.engine.destinations import recognise_tool
from sidecar.engine.fields import json_text

# These APIs give no risk score; the band follows the decision so dashboards stay coherent.
_RISK = {
    Decision.ALLOW: (0.0, RiskBand.LOW),
    Decision.SANITIZE: (0.5, RiskBand.MEDIUM),
    Decision.REQUIRE_APPROVAL: (0.5, RiskBand.MEDIUM),
    Decision.DENY: (1.0, RiskBand.HIGH),
}


@dataclass(frozen=True, slots=True)
class Destination:
    host: str
    path: str
    tool: str
    operation: str


def destination(request: ScanRequest) -> Destination:
    """Where the request goes and which well-known tool that is (the engine's table)."""
    parts = urlsplit(request.url)
    host = (parts.hostname or "").lower()
    path = parts.path or "/"
    tool, operation = recognise_tool(request.method.upper(), host, path)
    return Destination(host, path, tool, operation)


def reason_code(*words: str) -> str:
    """`KIRTONIC_BLOCK`-style codes: upper case, safe in a header."""
    joined = "_".join(w for w in words if w)
    return re.sub(r"[^A-Z0-9]+", "_", joined.upper()).strip("_")[:64] or "UNSPECIFIED"


def body_text(body: Any) -> str:
    if body is None:
        return ""
    if isinstance(body, str):
        return body
    return json_text(body)


def request_text(request: ScanRequest) -> str:
    """A non-LLM request as text: the request line, then the body."""
    text = body_text(request.body)
    line = f"{request.method} {request.url}"
    return f"{line}\n\n{text}" if text else line


def governed_verdict(
    decision: Decision,
    trace_id: str,
    dest: Destination,
    reasons: list[str],
    approval_id: str | None = None,
    risk: tuple[float, RiskBand] | None = None,
) -> ScanVerdict:
    score, band = risk if risk is not None else _RISK[decision]
    return ScanVerdict(
        decision=decision,
        risk_score=score,
        risk_band=band,
        reason_codes=reasons,
        trace_id=trace_id,
        tool_name=dest.tool,
        operation=dest.operation,
        approval_id=approval_id,
    )


class HeldAtSidecar:
    """Approval status for approvals decided at the sidecar (see the module docstring)."""

    approvals: ApprovalStore
    # Shadow mode (set by `create_backend`): nothing is held, so no review is recorded.
    shadow: bool = False

    def hold_here(
        self,
        approval_id: str,
        request: ScanRequest,
        dest: Destination,
        reasons: list[str],
        trace_id: str,
    ) -> str:
        if self.shadow or request.method in STREAM_METHODS:
            return approval_id  # nothing to hold: shadow mode, or a message of a stream
        try:
            return self.approvals.track(
                approval_id,
                request_hash(request, self.approvals.volatile_headers),
                method=request.method,
                host=dest.host,
                tool=dest.tool,
                operation=dest.operation,
                reasons=reasons,
                trace_id=trace_id,
                destination=reviewed_destination(request),
            )
        except ApprovalReused:
            raise MalformedVerdict("the backend named an approval that was already used") from None

    async def approval_status(self, approval_id: str) -> ApprovalState:
        try:
            status = self.approvals.consume(approval_id)
        except ApprovalNotFound:
            raise ScanRejected("approval_status: unknown approval", 404) from None
        return ApprovalState(status=status)
