"""Loopback doubles of three third-party governance APIs: Kirtonic, Inviolet and Velerian.

Like the scan-API double in `servers.py`: real tornado servers on 127.0.0.1 (ephemeral
ports) running on a `LoopThread`. Each checks `Authorization: Bearer <api_key>`, records
every request (rejected ones too) as `{"path", "headers", "json"}` (`json` is None when the
body is not JSON), validates the body per its contract, then answers with
`self.behaviour(doc)`, a `Reply` that tests can script (`script(...)`) to inject faults.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import tornado.web

from tests.support.servers import LoopThread, Recorder, Reply, _Base, _listen, scripted

Rule = Callable[[dict[str, Any]], Reply]
MAX_PROMPT_BYTES = 32 * 1024  # Kirtonic's control plane limit


def _hex() -> str:
    return uuid.uuid4().hex


_KINDS = {str: "a string", int: "an integer", bool: "a boolean", dict: "an object"}


def _optional(doc: dict[str, Any], **kinds: type) -> str | None:
    """The first optional field that is there, not null, and not of its kind (a bool is no int)."""
    for key, kind in kinds.items():
        value = doc.get(key)
        if value is not None and (
            not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool)
        ):
            return f"{key} must be {_KINDS[kind]}"
    return None


class _Handler(_Base):
    def initialize(self, api: _Double, route: str) -> None:  # type: ignore[override]
        self.api, self.route = api, route

    async def post(self, *args: str) -> None:
        try:
            doc = json.loads(self.request.body)
        except ValueError:
            doc = None
        request = {"path": self.request.path, "headers": dict(self.request.headers), "json": doc}
        await self.reply(self.api.answer(self.route, request, args))

    async def reply(self, reply: Reply) -> None:
        if reply.status == 204 and not reply.body:  # tornado refuses even b"" with a 204
            await asyncio.sleep(reply.delay)
            self.set_status(204)
            for k, v in reply.headers.items():
                self.set_header(k, v)
            self.finish()
        else:
            await super().reply(reply)


class _Double:
    """What the doubles share: the server, bearer auth and the rejection bodies."""

    invalid_status = 400  # for a body that breaks the contract

    def __init__(self, loop: LoopThread, api_key: str, routes: dict[str, str]) -> None:
        self.api_key = api_key
        handlers: list[Any] = [(p, _Handler, {"api": self, "route": r}) for p, r in routes.items()]
        self.port = loop.run(_listen(tornado.web.Application(handlers), "127.0.0.1", None))
        self.url = f"http://127.0.0.1:{self.port}"

    def answer(self, route: str, request: dict[str, Any], args: tuple[str, ...]) -> Reply:
        raise NotImplementedError

    def error(self, status: int, message: str) -> Reply:
        return Reply(status, {"error": message})

    def rejected(self, request: dict[str, Any], problem: str | None) -> Reply | None:
        """A 401 for a missing or wrong key, else a 400 (422) for an invalid body, else None."""
        if request["headers"].get("Authorization") != f"Bearer {self.api_key}":
            return self.error(401, "missing or invalid API key")
        return self.error(self.invalid_status, problem) if problem else None


# --- Kirtonic: POST /api/v1/classify and /api/v1/outcomes -------------------------------


def kirtonic_rule(doc: dict[str, Any]) -> Reply:
    """The prompt names the verdict: DENY-ME, HOLD-ME, RISKY-BUT-ALLOWED, else a clean allow."""
    prompt = doc["prompt"]
    action, severity, reason = "allow", "clean", "no policy matched"
    if "DENY-ME" in prompt:
        action, severity, reason = "block", "high", "prompt violates workspace policy"
    elif "HOLD-ME" in prompt:
        action, severity, reason = "review", "medium", "prompt needs a reviewer"
    elif "RISKY-BUT-ALLOWED" in prompt:
        action, severity, reason = "allow", "high", "risky, but the policy is permissive"
    now = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return Reply(body={
        "decision_id": f"dec_{_hex()}", "action": action, "severity": severity,
        "category": doc.get("category") or "general", "reason": reason, "classified_at": now,
    })  # fmt: skip


def _classify_problem(doc: Any) -> str | None:
    if not isinstance(doc, dict):
        return "body must be a JSON object"
    prompt = doc.get("prompt")
    if not isinstance(prompt, str) or not prompt:
        return "prompt must be a non-empty string"
    if len(prompt.encode()) > MAX_PROMPT_BYTES:
        return "prompt exceeds 32 KiB"
    return _optional(doc, category=str, user_id=str, metadata=dict)


def _outcome_problem(doc: Any) -> str | None:
    if not isinstance(doc, dict):
        return "body must be a JSON object"
    for key in ("decision_id", "response"):
        if not isinstance(doc.get(key), str):
            return f"{key} must be a string"
    return _optional(doc, finish_reason=str, latency_ms=int)


class KirtonicDouble(_Double):
    def __init__(self, loop: LoopThread, api_key: str) -> None:
        self.classifications = Recorder()
        self.outcomes = Recorder()
        self.behaviour: Rule = kirtonic_rule
        self.outcome_behaviour: Rule = lambda _doc: Reply(204)
        routes = {r"/api/v1/classify": "classify", r"/api/v1/outcomes": "outcomes"}
        super().__init__(loop, api_key, routes)

    def answer(self, route: str, request: dict[str, Any], args: tuple[str, ...]) -> Reply:
        doc = request["json"]
        if route == "classify":
            self.classifications.add(request)
            return self.rejected(request, _classify_problem(doc)) or self.behaviour(doc)
        self.outcomes.add(request)
        return self.rejected(request, _outcome_problem(doc)) or self.outcome_behaviour(doc)

    def script(self, *replies: Reply, then: Rule = kirtonic_rule) -> None:
        """Answer the next classifications with `replies` in order, then with `then`."""
        self.behaviour = scripted(replies, then)


# --- Inviolet: POST /v1/intent/evaluate ----------------------------------------------------


INVIOLET_MARKERS = (
    ("DENY-ME", "denied"),
    ("HOLD-ME", "pending_approval"),
    ("SHADOW-ME", "shadow_denied"),
    ("APPROVED-ME", "approved"),
)


def inviolet_rule(doc: dict[str, Any]) -> Reply:
    """The tool call's arguments name the outcome: DENY-ME, HOLD-ME, SHADOW-ME, APPROVED-ME."""
    call = doc["tool_call"]
    text = json.dumps(call["arguments"])
    outcome = next((o for marker, o in INVIOLET_MARKERS if marker in text), "allowed")
    body: dict[str, Any] = {
        "outcome": outcome, "intent_event_id": f"ie_{_hex()}",
        "intent_label": f"{call['name']}_request", "intent_class": "lookup", "confidence": 0.94,
        "data_elements": [f"arguments.{k}" for k in call["arguments"]],
        "shadow_mode": bool(doc.get("shadow_mode")), "processing_time_ms": 7,
    }  # fmt: skip
    if outcome == "pending_approval":
        body["approval_request_id"] = f"apr_{_hex()}"
    return Reply(body=body)


def _evaluate_problem(doc: Any) -> str | None:
    if not isinstance(doc, dict) or not isinstance(doc.get("tool_call"), dict):
        return "tool_call must be an object"
    name = doc["tool_call"].get("name")
    if not isinstance(name, str) or not name:
        return "tool_call.name must be a non-empty string"
    if not isinstance(doc["tool_call"].get("arguments"), dict):
        return "tool_call.arguments must be an object"
    return _optional(doc, user_id=str, session_id=str, data_source_id=str, shadow_mode=bool)


class InvioletDouble(_Double):
    def __init__(self, loop: LoopThread, api_key: str) -> None:
        self.evaluations = Recorder()
        self.behaviour: Rule = inviolet_rule
        super().__init__(loop, api_key, {r"/v1/intent/evaluate": "evaluate"})

    def answer(self, route: str, request: dict[str, Any], args: tuple[str, ...]) -> Reply:
        self.evaluations.add(request)
        doc = request["json"]
        return self.rejected(request, _evaluate_problem(doc)) or self.behaviour(doc)

    def script(self, *replies: Reply, then: Rule = inviolet_rule) -> None:
        """Answer the next evaluations with `replies` in order, then with `then`."""
        self.behaviour = scripted(replies, then)


# --- Velerian: POST /api/v2/abps/{abp_id}/invoke (a FastAPI service) ------------------------


def velerian_rule(doc: dict[str, Any]) -> Reply:
    """The payload names the outcome: DENY-ME (blocked), HOLD-ME (pending_human), else allowed."""
    text = json.dumps(doc["payload"])
    denied = "DENY-ME" in text
    held = not denied and "HOLD-ME" in text
    outcome = "blocked" if denied else "pending_human" if held else "allowed"
    conditions = ["matched DENY-ME"] if denied else ["human approval required"] if held else []
    return Reply(body={
        "invocation_id": f"inv_{_hex()}", "outcome": outcome, "is_allowed": outcome == "allowed",
        "requires_human": held, "withheld": outcome != "allowed",
        "constraint_count": 2, "aggregated_conditions": conditions,
        "output": None if denied or held else {"text": "done"},
        "approval_id": f"appr_{_hex()}" if held else None,
        "evidence_pack_id": f"ev_{_hex()}", "evidence_pack_s3_key": None,
        "evidence_pack_chain_hash": None, "model_error": None,
    })  # fmt: skip


class VelerianDouble(_Double):
    invalid_status = 422  # FastAPI request validation

    def __init__(self, loop: LoopThread, api_key: str, abp_id: str) -> None:
        self.abp_id = abp_id
        self.invocations = Recorder()
        self.behaviour: Rule = velerian_rule
        super().__init__(loop, api_key, {r"/api/v2/abps/([^/]+)/invoke": "invoke"})

    def error(self, status: int, message: str) -> Reply:
        if status == 422:  # FastAPI's validation errors: a list, not a string
            return Reply(
                422, {"detail": [{"type": "value_error", "loc": ["body"], "msg": message}]}
            )
        return Reply(status, {"detail": message})

    def answer(self, route: str, request: dict[str, Any], args: tuple[str, ...]) -> Reply:
        request["abp_id"] = args[0]
        self.invocations.add(request)
        doc = request["json"]
        ok = isinstance(doc, dict) and isinstance(doc.get("payload"), dict)
        rejected = self.rejected(request, None if ok else 'body must be {"payload": {...}}')
        if rejected:
            return rejected
        if args[0] != self.abp_id:
            return self.error(409, f"ABP {args[0]} is not deployed")
        return self.behaviour(doc)

    def script(self, *replies: Reply, then: Rule = velerian_rule) -> None:
        """Answer the next invocations with `replies` in order, then with `then`."""
        self.behaviour = scripted(replies, then)
