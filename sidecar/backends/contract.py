"""The verdict contract: what every backend is asked and answers inside the sidecar.

Field names follow the scan API reference exactly. Unknown fields are ignored; an
unknown decision, or a decision missing the field it needs (SANITIZE without
`sanitized_body`, REQUIRE_APPROVAL without `approval_id`), is a malformed verdict.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

from sidecar.engine.decisions import ApprovalStatus, Decision, RiskBand
from sidecar.llm import LlmCall

# Methods of scan requests for a message of a stream (not an HTTP request): there is no
# retry of a message to hold or to let through later, so no approval is recorded.
STREAM_METHODS = frozenset({"WEBSOCKET", "TCP"})


class ScanRequest(BaseModel):
    """What the sidecar asks about one outbound request (`POST /v1/scan`)."""

    model_config = ConfigDict(frozen=True)

    method: str
    url: str
    headers: dict[str, str] = Field(default_factory=dict)
    body: Any = None
    agent_id: str | None = None
    agent_name: str | None = None
    runtime_type: str | None = None
    context: str | None = None
    # Local only, never serialised to a scan API: the decoded body's size, and the LLM
    # call the request was recognised as (backends that classify prompts read it).
    body_bytes: int | None = Field(default=None, exclude=True)
    llm: LlmCall | None = Field(default=None, exclude=True)
    # The request's bytes as sent (every header and trailer but volatile ones, the body as
    # encoded), digested: what an approval is tied to (set by the proxy; None elsewhere).
    sent_digest: str | None = Field(default=None, exclude=True)


class ScanVerdict(BaseModel):
    """A backend's answer about one request."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    decision: Decision
    risk_score: float = Field(ge=0.0, le=1.0)
    risk_band: RiskBand
    reason_codes: list[str] = Field(default_factory=list)
    trace_id: str = Field(min_length=1, max_length=200)
    tool_name: str = "unknown"
    operation: str = "unknown"
    classifications: list[str] = Field(default_factory=list)
    signals: list[Any] = Field(default_factory=list)
    sanitized_body: Any = None
    approval_id: str | None = None
    policy_id: str | None = None
    policy_name: str | None = None

    # Set only by backends in-process, never read from an answer (private attributes are
    # not validated from input): the decision a backend's own shadow mode withheld, and a
    # message for the agent when the backend gives one.
    _would: Decision | None = PrivateAttr(default=None)
    _message: str | None = PrivateAttr(default=None)

    @property
    def would(self) -> Decision | None:
        return self._would

    @property
    def message(self) -> str | None:
        return self._message

    def with_notes(self, would: Decision | None = None, message: str | None = None) -> ScanVerdict:
        self._would = would
        self._message = message
        return self

    @field_validator("risk_band", mode="before")
    @classmethod
    def _accept_med(cls, value: object) -> object:
        # The SDK reference says MED, the API reference MEDIUM; both mean the same band.
        return "MEDIUM" if value == "MED" else value

    @field_validator("tool_name", "operation", mode="before")
    @classmethod
    def _none_is_unknown(cls, value: object) -> object:
        return "unknown" if value is None else value

    @model_validator(mode="after")
    def _decision_has_its_payload(self) -> ScanVerdict:
        if self.decision is Decision.SANITIZE and self.sanitized_body is None:
            raise ValueError("SANITIZE verdict without sanitized_body")
        if self.decision is Decision.REQUIRE_APPROVAL and not self.approval_id:
            raise ValueError("REQUIRE_APPROVAL verdict without approval_id")
        return self


class ApprovalState(BaseModel):
    """`GET /v1/approvals/{id}/status`."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    status: ApprovalStatus
    reason: str | None = None
