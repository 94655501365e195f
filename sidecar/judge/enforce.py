"""What a verdict (or the lack of one) does to a request, without touching mitmproxy.

The addon asks these functions what to do and applies the answer to the flow: forward
unchanged, forward a replacement body, or answer the agent locally (never contacting
the upstream). Every answer carries the `X-Interven-*` headers agents already read.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from typing import Any

from sidecar.backends.contract import ScanVerdict
from sidecar.backends.errors import INTERNAL_ERROR_KIND
from sidecar.engine.decisions import Decision
from sidecar.judge.endpoints import OWN_ENDPOINT
from sidecar.judge.request_surface import Upgrade, classify_upgrade, method_problem

HEADER_DECISION = "X-Interven-Decision"
HEADER_TRACE = "X-Interven-Trace-Id"
HEADER_REASONS = "X-Interven-Reasons"
HEADER_APPROVAL = "X-Interven-Approval"
HEADER_SHADOW = "X-Interven-Shadow-Decision"

# Reason codes the sidecar itself adds (the backend's own codes pass through unchanged).
FAIL_OPEN = "FAIL_OPEN"
FAIL_CLOSED = "FAIL_CLOSED"
BODY_TOO_LARGE = "BODY_TOO_LARGE"
BODY_UNDECODABLE = "BODY_UNDECODABLE"
HIDDEN_SECRET = "HIDDEN_SECRET"  # noqa: S105 (a reason code: a secret where decoders skip)
SIDECAR_CREDENTIAL = "SIDECAR_CREDENTIAL"
# A brokered credential's placeholder outside its bindings; its real value sent by the
# agent itself. Access control, not detection: refused in every mode, like the above.
BROKERED_CREDENTIAL_UNBOUND = "BROKERED_CREDENTIAL_UNBOUND"
BROKERED_CREDENTIAL_VALUE = "BROKERED_CREDENTIAL_VALUE"
NEVER_SHADOWED = frozenset(
    {SIDECAR_CREDENTIAL, BROKERED_CREDENTIAL_UNBOUND, BROKERED_CREDENTIAL_VALUE}
)
APPROVAL_CAPACITY = "APPROVAL_CAPACITY"
SIDECAR_BUSY = "SIDECAR_BUSY"  # the budget of request bodies held at once is spent
APPROVAL_REQUIRED = "APPROVAL_REQUIRED"
DESTINATION_UNPARSEABLE = "DESTINATION_UNPARSEABLE"
DESTINATION_MISMATCH = "DESTINATION_MISMATCH"
METHOD_INVALID = "METHOD_INVALID"
REQUEST_MALFORMED = "REQUEST_MALFORMED"
HEADERS_TOO_LARGE = "HEADERS_TOO_LARGE"
UPGRADE_REFUSED = "UPGRADE_REFUSED"
SSRF = "SSRF"
SIDECAR_ENDPOINT = "SIDECAR_ENDPOINT"
DESTINATION_UNRESOLVABLE = "DESTINATION_UNRESOLVABLE"
DESTINATION_REFUSED = "DESTINATION_REFUSED"


@dataclass(slots=True)
class Enforcement:
    """The outcome for one request: what the agent sees and what the log records."""

    decision: Decision
    trace_id: str
    reasons: list[str]
    forward: bool
    replacement_body: bytes | None = None
    status: int = 200
    message: str = ""
    tool: str = "unknown"
    operation: str = "unknown"
    policy_name: str | None = None
    approval: str | None = None
    from_backend: bool = True
    error_kind: str | None = None
    extra_body: dict[str, Any] = field(default_factory=dict)
    # Shadow: forwarded untouched although the verdict (or the lack of one) said this.
    would: Decision | None = None

    def headers(self) -> dict[str, str]:
        h = {HEADER_DECISION: self.decision.value, HEADER_TRACE: self.trace_id}
        if self.reasons:
            h[HEADER_REASONS] = ",".join(self.reasons)
        if self.approval:
            h[HEADER_APPROVAL] = self.approval
        if self.would is not None:
            h[HEADER_SHADOW] = self.would.value
        return h

    def block_body(self) -> bytes:
        """The JSON the agent gets when the request was not forwarded."""
        doc: dict[str, Any] = {
            "decision": self.decision.value,
            "reason_codes": self.reasons,
            "trace_id": self.trace_id,
            "message": self.message,
        }
        if self.policy_name:
            doc["policy_name"] = self.policy_name
        if self.approval:
            doc["approval"] = self.approval
        doc.update(self.extra_body)
        return json.dumps(doc).encode()


def local_trace_id() -> str:
    """A trace id for outcomes decided without a backend verdict."""
    return str(uuid.uuid4())


def from_verdict(verdict: ScanVerdict) -> Enforcement:
    """ALLOW forwards, DENY blocks, SANITIZE forwards the redacted body.

    REQUIRE_APPROVAL comes back as a block; the caller holds the request and turns it
    into a forward with `approved()` when a human approves.
    """
    e = Enforcement(
        decision=verdict.decision,
        trace_id=verdict.trace_id,
        reasons=list(verdict.reason_codes),
        forward=verdict.decision in (Decision.ALLOW, Decision.SANITIZE),
        tool=verdict.tool_name,
        operation=verdict.operation,
        policy_name=verdict.policy_name,
        would=verdict.would,
    )
    if verdict.decision is Decision.SANITIZE:
        e.replacement_body = sanitized_content(verdict.sanitized_body)
    elif verdict.decision is Decision.DENY:
        e.status = 403
        e.message = verdict.message or "Blocked by egress-sidecar: the scan verdict was DENY."
    return e


def shadowed(e: Enforcement) -> Enforcement:
    """Shadow mode: forward untouched whatever would have been blocked, rewritten or held,
    and remember what that was. A request carrying the sidecar's own credential is still
    refused, and so is a brokered credential sent where it does not belong: those
    invariants do not depend on the roll-out stage."""
    changes = not e.forward or e.replacement_body is not None
    if not changes or NEVER_SHADOWED & set(e.reasons):
        return e
    e.would = e.decision
    e.decision = Decision.ALLOW
    e.forward = True
    e.replacement_body = None
    e.status = 200
    e.approval = None
    return e


def approval_refused(pending: Enforcement, approval_id: str) -> Enforcement:
    """`--approval-mode refuse`: answer now with the id a reviewer can approve."""
    pending.forward = False
    pending.status = 403
    pending.approval = "required"
    pending.reasons = [*pending.reasons, APPROVAL_REQUIRED]
    pending.message = f"Blocked by egress-sidecar: approval {approval_id} is required."
    pending.extra_body = {"approval_id": approval_id}
    return pending


def approval_result(pending: Enforcement, outcome: str) -> Enforcement:
    """Turn a held request into a forward (approved) or a 403 (anything else)."""
    pending.approval = outcome
    if outcome == "approved":
        pending.forward = True
        return pending
    pending.forward = False
    pending.status = 403
    pending.reasons = [*pending.reasons, f"APPROVAL_{outcome.upper()}"]
    pending.message = f"Blocked by egress-sidecar: approval {outcome}."
    return pending


def sanitized_content(body: Any) -> bytes:
    """JSON objects and arrays as JSON text, strings as they are."""
    if isinstance(body, str):
        return body.encode()
    return json.dumps(body, separators=(",", ":")).encode()


def local_block(
    reason: str, message: str, status: int, error_kind: str | None = None
) -> Enforcement:
    """A refusal decided by the sidecar itself (fail closed, body too large, ...)."""
    return Enforcement(
        decision=Decision.DENY,
        trace_id=local_trace_id(),
        reasons=[reason] + ([f"SCAN_{error_kind.upper()}"] if error_kind else []),
        forward=False,
        status=status,
        message=message,
        from_backend=False,
        error_kind=error_kind,
    )


def address_refused(
    refusal: str, trace_id: str | None = None, reasons: list[str] | None = None
) -> Enforcement:
    """The destination's name passed the verdict, but it is refused locally: the
    destination rules (`reasons` say which), a private, loopback, link-local or metadata
    address (SSRF), the sidecar itself, or nowhere at all."""
    if refusal == OWN_ENDPOINT:
        reason, status, why = SIDECAR_ENDPOINT, 403, "the destination is the sidecar itself"
    elif refusal == "unresolvable":
        reason, status, why = DESTINATION_UNRESOLVABLE, 502, "the destination does not resolve"
    elif refusal == "destination_refused":
        reason, status, why = DESTINATION_REFUSED, 403, "this destination is refused"
    else:
        reason, status, why = SSRF, 403, f"the destination resolves to a {refusal} address"
    block = local_block(reason, f"Blocked by egress-sidecar: {why}.", status)
    if reasons:
        block.reasons = [*reasons, reason]
    if trace_id is not None:
        block.trace_id = trace_id
    return block


def fail_open(error_kind: str) -> Enforcement:
    """A forward without a verdict: explicit, logged and counted by the caller."""
    return Enforcement(
        decision=Decision.ALLOW,
        trace_id=local_trace_id(),
        reasons=[FAIL_OPEN, f"SCAN_{error_kind.upper()}"],
        forward=True,
        from_backend=False,
        error_kind=error_kind,
    )


def sidecar_key_refused() -> Enforcement:
    """Refused in every mode: the request carries one of the sidecar's own keys."""
    return local_block(SIDECAR_CREDENTIAL, "Carries the sidecar's own credential.", 403)


def brokered_refused(reason: str, names: list[str]) -> Enforcement:
    """Refused in every mode: a placeholder sent outside its credential's bindings, or a
    brokered credential's real value sent by the agent. Names, never values."""
    listed = ", ".join(names)
    if reason == BROKERED_CREDENTIAL_UNBOUND:
        why = f"brokered credential {listed} may not be sent to this destination"
    else:
        why = f"the request carries the real value of brokered credential {listed}"
    block = local_block(reason, f"Blocked by egress-sidecar: {why}.", 403)
    block.extra_body = {"credentials": names}
    return block


def internal_error() -> Enforcement:
    """A bug while judging is a refusal, never a fail-open."""
    message = "Blocked by egress-sidecar: internal error while judging."
    return local_block(FAIL_CLOSED, message, 500, error_kind=INTERNAL_ERROR_KIND)


def method_and_upgrade(
    method: str, http_version: str, upgrades: list[str], versions: list[str]
) -> tuple[Upgrade, tuple[Enforcement, str] | None]:
    """The request line's rules, for the proxy and the dry run alike: a method that is a
    short HTTP token, and no protocol switch but WebSocket 13. Returns what to do with
    an upgrade, and the refusal with its metric reason (or None)."""
    if (why := method_problem(method)) is not None:
        refusal = local_block(METHOD_INVALID, f"Blocked by egress-sidecar: {why}.", 400)
        return Upgrade.NONE, (refusal, "method_invalid")
    upgrade = classify_upgrade(method.upper(), http_version, upgrades, versions)
    if upgrade is Upgrade.REFUSE:
        message = (
            "Blocked by egress-sidecar: only WebSocket (version 13) upgrades are allowed; "
            "other protocols cannot be inspected."
        )
        return upgrade, (local_block(UPGRADE_REFUSED, message, 403), "upgrade_refused")
    return upgrade, None
