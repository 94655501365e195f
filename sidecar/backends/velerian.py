"""Velerian: each request is a governed invocation of one deployed package (ABP).

`POST /api/v2/abps/{abp_id}/invoke` with `{"payload": ...}`, as its Python SDK sends it;
the payload carries the request (method, URL, destination tool, body) and a `prompt`
(the LLM prompt when the request is an LLM call, else the request as text). `is_allowed`
forwards; `requires_human` with `approval_id` needs approval; anything else is denied.
Errors follow the SDK's model (401 auth, 403 scope, 409 not deployed, 422 schema, 429
with Retry-After, 5xx) and its retry policy: 429 and 5xx retried with Retry-After or
full-jitter backoff (`sidecar.backends.http`).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from pydantic import BaseModel, ConfigDict

from sidecar.approvals.store import ApprovalStore
from sidecar.backends.base import ObservedResponse
from sidecar.backends.contract import ScanRequest, ScanVerdict
from sidecar.backends.errors import MalformedVerdict
from sidecar.backends.governed import (
    HeldAtSidecar,
    destination,
    governed_verdict,
    reason_code,
    request_text,
)
from sidecar.backends.http import Connection, bearer_client, parse_answer
from sidecar.config.credentials import VelerianCredentials
from sidecar.engine.decisions import Decision


class InvokeResult(BaseModel):
    """The governance fields of the InvokeResponse; the rest is ignored."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    invocation_id: str
    outcome: str
    is_allowed: bool
    requires_human: bool
    withheld: bool = False
    approval_id: str | None = None


class VelerianBackend(HeldAtSidecar):
    name = "velerian"

    def __init__(
        self,
        credentials: VelerianCredentials,
        approvals: ApprovalStore,
        conn: Connection,
    ) -> None:
        if credentials.api_key is None or not credentials.abp_id:
            raise ValueError("VELERIAN_API_KEY and VELERIAN_ABP_ID must be set")
        self.approvals = approvals
        self._path = f"/api/v2/abps/{quote(credentials.abp_id, safe='')}/invoke"
        self._http = bearer_client(
            str(credentials.base_url), credentials.api_key, "VELERIAN_API_KEY", conn
        )

    async def scan(self, request: ScanRequest) -> ScanVerdict:
        dest = destination(request)
        call = request.llm
        invocation: dict[str, Any] = {
            "prompt": call.prompt() if call is not None else request_text(request),
            "request": {
                "method": request.method,
                "url": request.url,
                "tool": dest.tool,
                "operation": dest.operation,
                "body": request.body,
            },
        }
        if call is not None:
            invocation["llm"] = {"provider": call.provider, "model": call.model}
        if request.context:
            invocation["context"] = request.context
        data = await self._http.request_json(
            "POST", self._path, "invoke", json={"payload": invocation}
        )
        result = parse_answer(InvokeResult, data, "invoke")
        trace_id = result.invocation_id
        if result.is_allowed:
            return governed_verdict(Decision.ALLOW, trace_id, dest, [])
        reasons = [reason_code("VELERIAN", result.outcome)]
        if result.requires_human:
            if not result.approval_id:
                raise MalformedVerdict("invoke: requires_human without approval_id")
            approval_id = self.hold_here(result.approval_id, request, dest, reasons, trace_id)
            return governed_verdict(Decision.REQUIRE_APPROVAL, trace_id, dest, reasons, approval_id)
        return governed_verdict(Decision.DENY, trace_id, dest, reasons)

    async def scan_response(self, response: ObservedResponse) -> None:
        """Evidence is recorded by the invocation itself: nothing to post."""

    async def aclose(self) -> None:
        await self._http.aclose()
