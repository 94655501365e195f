"""Inviolet (`POST /v1/intent/evaluate`), per its Intent API reference.

Each request is evaluated as one tool call: the name is `<tool>.<operation>` from the
destination (the engine's table of well-known APIs, else the host), the arguments are
the body's JSON object (other bodies as `{"body": text}`) plus `_http_request` (method,
path and query, which carry a GET's data). The
outcome maps onto the verdict: allowed/approved forward, denied blocks, pending_approval
is held under its approval request id, and shadow_denied forwards but is logged and
counted as a would-deny. `--enforcement shadow` sets the API's own `shadow_mode`.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlsplit

from pydantic import BaseModel, ConfigDict

from sidecar.approvals.store import ApprovalStore
from sidecar.backends.base import ObservedResponse
from sidecar.backends.contract import ScanRequest, ScanVerdict
from sidecar.backends.errors import MalformedVerdict
from sidecar.backends.governed import (
    Destination,
    HeldAtSidecar,
    body_text,
    destination,
    governed_verdict,
    reason_code,
)
from sidecar.backends.http import Connection, bearer_client, parse_answer
from sidecar.config.credentials import InvioletCredentials
from sidecar.engine.decisions import Decision

_OUTCOMES = {
    "allowed": Decision.ALLOW,
    "approved": Decision.ALLOW,
    "denied": Decision.DENY,
    "pending_approval": Decision.REQUIRE_APPROVAL,
    "shadow_denied": Decision.ALLOW,
}


REQUEST_ARGUMENT = "_http_request"


class IntentDecision(BaseModel):
    """`POST /v1/intent/evaluate` 200 body; unknown fields ignored."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    outcome: str
    intent_event_id: str
    intent_class: str | None = None
    approval_request_id: str | None = None


def tool_call(request: ScanRequest, dest: Destination) -> dict[str, Any]:
    tool = dest.host if dest.tool == "custom_proxy" else dest.tool
    body = request.body
    if isinstance(body, dict):
        arguments: dict[str, Any] = dict(body)
    else:
        text = body_text(body)
        arguments = {"body": text} if text else {}
    # Where the call goes, under a name no body field can shadow: a GET carries its data
    # in the path and query, and those must be judged too.
    parts = urlsplit(request.url)
    arguments[REQUEST_ARGUMENT] = {
        "method": request.method,
        "path": parts.path or "/",
        "query": dict(parse_qsl(parts.query, keep_blank_values=True)),
    }
    return {"name": f"{tool}.{dest.operation}", "arguments": arguments}


class InvioletBackend(HeldAtSidecar):
    name = "inviolet"

    def __init__(
        self,
        credentials: InvioletCredentials,
        approvals: ApprovalStore,
        conn: Connection,
    ) -> None:
        if credentials.api_key is None or credentials.base_url is None:
            raise ValueError("INVIOLET_API_KEY and INVIOLET_BASE_URL must be set")
        self._credentials = credentials
        self.approvals = approvals
        self._http = bearer_client(
            str(credentials.base_url), credentials.api_key, "INVIOLET_API_KEY", conn
        )

    async def scan(self, request: ScanRequest) -> ScanVerdict:
        dest = destination(request)
        payload: dict[str, Any] = {
            "tool_call": tool_call(request, dest),
            "data_source_id": self._credentials.data_source_id or dest.host,
            "shadow_mode": self.shadow,
        }
        if self._credentials.user_id:
            payload["user_id"] = self._credentials.user_id
        data = await self._http.request_json(
            "POST", "/v1/intent/evaluate", "evaluate", json=payload
        )
        answer = parse_answer(IntentDecision, data, "evaluate")
        decision = _OUTCOMES.get(answer.outcome)
        if decision is None:
            raise MalformedVerdict("evaluate: unknown outcome")
        trace_id = answer.intent_event_id
        reasons = (
            []
            if answer.outcome in ("allowed", "approved")
            else [reason_code("INVIOLET", answer.outcome)]
        )
        if reasons and answer.intent_class:
            reasons.append(reason_code("INTENT", answer.intent_class))
        approval_id = None
        if decision is Decision.REQUIRE_APPROVAL:
            if not answer.approval_request_id:
                raise MalformedVerdict("evaluate: pending_approval without approval_request_id")
            approval_id = self.hold_here(
                answer.approval_request_id, request, dest, reasons, trace_id
            )
        verdict = governed_verdict(decision, trace_id, dest, reasons, approval_id)
        if answer.outcome == "shadow_denied":
            return verdict.with_notes(would=Decision.DENY)
        return verdict

    async def scan_response(self, response: ObservedResponse) -> None:
        """The Intent API takes no response bodies: nothing to post."""

    async def aclose(self) -> None:
        await self._http.aclose()
