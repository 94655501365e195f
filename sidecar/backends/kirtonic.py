"""Kirtonic (`POST /api/v1/classify`, `POST /api/v1/outcomes`), per its SDK reference.

The prompt is what its wrappers classify: for a recognised LLM call, the system and user
messages joined with blank lines; for anything else, the request line and body as text.
An LLM call is also classified as a whole request (assistant and tool turns, every other
field), because shape alone must not let text leave unjudged. `action` is authoritative
(allow forwards, block denies, review needs approval); `severity` is informational and
only recorded. Text over the control plane's 32 KiB limit is classified in overlapping
32 KiB windows (a string of up to 2 KiB is whole in one of them) and the strictest
action wins. The outcome is posted after the upstream answers, off the agent's path.
"""

from __future__ import annotations

import asyncio
from typing import Any

from pydantic import BaseModel, ConfigDict

from sidecar.approvals.store import ApprovalStore
from sidecar.backends.base import ObservedResponse
from sidecar.backends.breaker import BreakerState
from sidecar.backends.contract import ScanRequest, ScanVerdict
from sidecar.backends.errors import MalformedVerdict, ScanError
from sidecar.backends.governed import (
    HeldAtSidecar,
    body_text,
    destination,
    governed_verdict,
    reason_code,
    request_text,
)
from sidecar.backends.http import Connection, bearer_client, parse_answer
from sidecar.config.credentials import KirtonicCredentials
from sidecar.engine.decisions import Decision, RiskBand

PROMPT_LIMIT = 32 * 1024  # bytes of UTF-8, the control plane's documented maximum
WINDOW_OVERLAP = 2 * 1024  # bytes each window repeats of the previous one
MAX_CONCURRENT_WINDOWS = 8  # per request, so one huge body cannot take the whole pool
OUTCOME_LIMIT = 256 * 1024  # characters of response text recorded per outcome

_DECISIONS = {"allow": Decision.ALLOW, "review": Decision.REQUIRE_APPROVAL, "block": Decision.DENY}
_STRICTNESS = {"allow": 0, "review": 1, "block": 2}
_SEVERITY = {
    "clean": (0.0, RiskBand.LOW),
    "low": (0.25, RiskBand.LOW),
    "medium": (0.5, RiskBand.MEDIUM),
    "high": (0.8, RiskBand.HIGH),
}


class KirtonicVerdict(BaseModel):
    """`POST /api/v1/classify` 200 body; unknown fields (model_reasoning...) ignored."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    decision_id: str
    action: str
    severity: str = "clean"
    category: str = ""
    reason: str = ""


def prompt_windows(
    prompt: str, limit: int = PROMPT_LIMIT, overlap: int = WINDOW_OVERLAP
) -> list[str]:
    """Pieces of at most `limit` UTF-8 bytes cut on character boundaries, each repeating
    about `overlap` bytes of the previous one, so a short string is whole in one piece."""
    data = prompt.encode()
    if len(data) <= limit:
        return [prompt]
    back = min(overlap, limit // 2)
    windows, start = [], 0
    while True:
        end = _char_start(data, min(start + limit, len(data)))
        if end <= start:  # one character longer than the limit: take it whole
            end = start + 1
            while end < len(data) and (data[end] & 0xC0) == 0x80:
                end += 1
        windows.append(data[start:end].decode())
        if end >= len(data):
            return windows
        following = _char_start(data, end - back)
        start = following if following > start else end


def _char_start(data: bytes, i: int) -> int:
    """The first byte of the character that byte `i` belongs to."""
    while 0 < i < len(data) and (data[i] & 0xC0) == 0x80:
        i -= 1
    return i


class KirtonicBackend(HeldAtSidecar):
    name = "kirtonic"

    def __init__(
        self,
        credentials: KirtonicCredentials,
        approvals: ApprovalStore,
        conn: Connection,
    ) -> None:
        if credentials.api_key is None:
            raise ValueError("KIRTONIC_API_KEY is not set")
        self._credentials = credentials
        self.approvals = approvals
        self._http = bearer_client(
            str(credentials.endpoint), credentials.api_key, "KIRTONIC_API_KEY", conn
        )

    async def scan(self, request: ScanRequest) -> ScanVerdict:
        dest = destination(request)
        call = request.llm
        prompt = call.prompt() if call is not None else ""
        if not prompt.strip():
            prompt = request_text(request)
        metadata: dict[str, Any] = {"host": dest.host, "method": request.method, "tool": dest.tool}
        if call is not None:
            metadata.update(provider=call.provider, model=call.model)
        base: dict[str, Any] = {
            "category": "chat" if call is not None else self._credentials.category,
            "metadata": metadata,
        }
        if self._credentials.user_id:
            base["user_id"] = self._credentials.user_id
        windows = prompt_windows(prompt)
        if call is not None:  # the whole request too: shape must not exempt any text
            windows += prompt_windows(request_text(request))
        answers = await self._classify_all(windows, base)
        worst = max(answers, key=lambda v: _STRICTNESS[v.action])
        decision = _DECISIONS[worst.action]
        reasons = [] if decision is Decision.ALLOW else [reason_code("KIRTONIC", worst.action)]
        if worst.category and decision is not Decision.ALLOW:
            reasons.append(reason_code(worst.category))
        approval_id = None
        if decision is Decision.REQUIRE_APPROVAL:
            approval_id = self.hold_here(
                worst.decision_id, request, dest, reasons, worst.decision_id
            )
        verdict = governed_verdict(
            decision, worst.decision_id, dest, reasons, approval_id, _SEVERITY.get(worst.severity)
        )
        return verdict.with_notes(message=worst.reason or None)

    async def _classify_all(
        self, windows: list[str], base: dict[str, Any]
    ) -> list[KirtonicVerdict]:
        """One call per window, concurrently; the first failure cancels the rest."""
        first: list[KirtonicVerdict] = []
        breaker = self._http.breaker
        if len(windows) == 1 or (breaker is not None and breaker.state is not BreakerState.CLOSED):
            # One call first: a half-open circuit admits a single trial call.
            first = [await self._classify({"prompt": windows[0], **base})]
            windows = windows[1:]
            if not windows:
                return first
        gate = asyncio.Semaphore(MAX_CONCURRENT_WINDOWS)

        async def classify(window: str) -> KirtonicVerdict:
            async with gate:
                return await self._classify({"prompt": window, **base})

        try:
            async with asyncio.TaskGroup() as group:
                tasks = [group.create_task(classify(w)) for w in windows]
        except BaseExceptionGroup as failed:
            problem = failed.exceptions[0]
            if isinstance(problem, ScanError):
                raise problem from None
            raise
        return first + [t.result() for t in tasks]

    async def _classify(self, payload: dict[str, Any]) -> KirtonicVerdict:
        data = await self._http.request_json("POST", "/api/v1/classify", "classify", json=payload)
        verdict = parse_answer(KirtonicVerdict, data, "classify")
        if verdict.action not in _DECISIONS:
            raise MalformedVerdict("classify: action is not allow, review or block")
        return verdict

    async def scan_response(self, response: ObservedResponse) -> None:
        """Record the outcome against the decision (idempotent on decision_id)."""
        text = response.text if response.text is not None else body_text(response.body)
        payload: dict[str, Any] = {
            "decision_id": response.trace_id,
            "response": text[:OUTCOME_LIMIT],
        }
        if response.finish_reason:
            payload["finish_reason"] = response.finish_reason
        if response.latency_ms is not None:
            payload["latency_ms"] = response.latency_ms
        await self._http.request_json("POST", "/api/v1/outcomes", "outcome", json=payload)

    async def aclose(self) -> None:
        await self._http.aclose()
