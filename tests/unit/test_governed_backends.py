"""Kirtonic, Inviolet and Velerian mappings against answers the e2e doubles never give:
malformed verdicts, edge sizes, and what the sidecar itself adds (shadow, refuse)."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from sidecar.approvals.store import ApprovalReused, ApprovalStore
from sidecar.backends.contract import ScanRequest
from sidecar.backends.errors import MalformedVerdict, ScanAuthError, ScanServerError
from sidecar.backends.factory import BackendConfigError, backend_name
from sidecar.backends.governed import reason_code
from sidecar.backends.http import Connection
from sidecar.backends.inviolet import InvioletBackend
from sidecar.backends.kirtonic import KirtonicBackend, prompt_windows
from sidecar.backends.velerian import VelerianBackend
from sidecar.config.credentials import (
    Credentials,
    IntervenCredentials,
    InvioletCredentials,
    KirtonicCredentials,
    VelerianCredentials,
)
from sidecar.config.settings import load_settings
from sidecar.engine.decisions import Decision
from sidecar.judge.enforce import approval_refused, from_verdict, shadowed
from sidecar.llm import recognise

REQUEST = ScanRequest(method="POST", url="https://hooks.slack.com/services/T/B/x",
                      body={"text": "hi"})  # fmt: skip


def _scan(backend, request=REQUEST):  # type: ignore[no-untyped-def]
    async def go():  # type: ignore[no-untyped-def]
        try:
            return await backend.scan(request)
        finally:
            await backend.aclose()

    return asyncio.run(go())


def _transport(*answers: httpx.Response) -> tuple[httpx.MockTransport, list[httpx.Request]]:
    calls: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return answers[min(len(calls), len(answers)) - 1]

    return httpx.MockTransport(handler), calls


def _kirtonic(tmp_path, *answers):  # type: ignore[no-untyped-def]
    transport, calls = _transport(*answers)
    creds = KirtonicCredentials(api_key="kt", endpoint="https://k.test")  # type: ignore[arg-type]
    store = ApprovalStore(tmp_path, 60)
    return KirtonicBackend(creds, store, Connection(5, 0, transport=transport)), calls


def _inviolet(tmp_path, *answers, shadow=False):  # type: ignore[no-untyped-def]
    transport, calls = _transport(*answers)
    creds = InvioletCredentials(api_key="iv", base_url="https://i.test")  # type: ignore[arg-type]
    backend = InvioletBackend(
        creds, ApprovalStore(tmp_path, 60), Connection(5, 0, transport=transport)
    )
    backend.shadow = shadow
    return backend, calls


def _velerian(tmp_path, *answers):  # type: ignore[no-untyped-def]
    transport, calls = _transport(*answers)
    creds = VelerianCredentials(api_key="vk", abp_id="abp/1")  # type: ignore[arg-type]
    return VelerianBackend(
        creds, ApprovalStore(tmp_path, 60), Connection(5, 0, transport=transport)
    ), calls


KIRTONIC_OK = {"decision_id": "dec_1", "action": "allow", "severity": "clean"}


@pytest.mark.parametrize(
    "answer",
    [
        {**KIRTONIC_OK, "action": "escalate"},  # not one of the three actions
        {"action": "allow"},  # no decision_id
        ["allow"],
    ],
)
def test_kirtonic_malformed_verdicts(tmp_path, answer):
    backend, _ = _kirtonic(tmp_path, httpx.Response(200, json=answer))
    with pytest.raises(MalformedVerdict):
        _scan(backend)


def test_kirtonic_auth_error_names_its_own_variable(tmp_path):
    backend, _ = _kirtonic(tmp_path, httpx.Response(401, json={"error": "no"}))
    with pytest.raises(ScanAuthError, match="KIRTONIC_API_KEY"):
        _scan(backend)


def test_kirtonic_slack_webhook_is_classified_as_the_agent_category(tmp_path):
    backend, calls = _kirtonic(tmp_path, httpx.Response(200, json=KIRTONIC_OK))
    verdict = _scan(backend)
    assert (verdict.decision, verdict.tool_name, verdict.trace_id) == (
        Decision.ALLOW,
        "slack",
        "dec_1",
    )
    sent = json.loads(calls[0].content)
    assert sent["category"] == "agent"
    assert sent["metadata"] == {"host": "hooks.slack.com", "method": "POST", "tool": "slack"}
    assert calls[0].url == "https://k.test/api/v1/classify"


@given(st.text(max_size=3000), st.integers(min_value=16, max_value=700), st.data())
def test_prompt_windows_respect_the_limit_and_keep_short_strings_whole(prompt, limit, data):
    overlap = limit // 4
    windows = prompt_windows(prompt, limit, overlap)
    assert all(len(w.encode()) <= limit for w in windows)
    assert prompt.startswith(windows[0])
    assert prompt.endswith(windows[-1])
    if len(windows) == 1:
        assert windows == [prompt]
    elif prompt:
        # Any string of up to `overlap` - 3 bytes (here: whole characters) sits whole in
        # one window, wherever it falls: padding cannot push a secret across a cut.
        chars = max(1, (overlap - 3) // 4)
        i = data.draw(st.integers(0, len(prompt) - 1))
        piece = prompt[i : i + chars]
        assert any(piece in w for w in windows)


@pytest.mark.parametrize(
    ("answer", "problem"),
    [
        ({"outcome": "maybe", "intent_event_id": "ie_1"}, "unknown outcome"),
        ({"outcome": "pending_approval", "intent_event_id": "ie_1"}, "approval_request_id"),
        ({"outcome": "allowed"}, "intent_event_id"),
    ],
)
def test_inviolet_malformed_decisions(tmp_path, answer, problem):
    backend, _ = _inviolet(tmp_path, httpx.Response(200, json=answer))
    with pytest.raises(MalformedVerdict, match=problem):
        _scan(backend)


def test_inviolet_tool_call_for_a_known_tool_and_a_text_body(tmp_path):
    answer = {"outcome": "allowed", "intent_event_id": "ie_1"}
    backend, calls = _inviolet(tmp_path, httpx.Response(200, json=answer), shadow=True)
    request = ScanRequest(method="POST", url="https://api.github.com/repos/o/r/issues",
                          body="plain text")  # fmt: skip
    _scan(backend, request)
    sent = json.loads(calls[0].content)
    assert sent["tool_call"] == {
        "name": "github.create_issue",
        "arguments": {
            "body": "plain text",
            "_http_request": {"method": "POST", "path": "/repos/o/r/issues", "query": {}},
        },
    }
    assert sent["shadow_mode"] is True
    assert "user_id" not in sent  # not configured: not invented


def test_inviolet_shadow_denied_is_an_allow_that_remembers_the_deny(tmp_path):
    answer = {"outcome": "shadow_denied", "intent_event_id": "ie_2"}
    backend, _ = _inviolet(tmp_path, httpx.Response(200, json=answer))
    verdict = _scan(backend)
    assert (verdict.decision, verdict.would) == (Decision.ALLOW, Decision.DENY)
    e = from_verdict(verdict)
    assert (e.forward, e.would, e.headers()["X-Interven-Shadow-Decision"]) == (True, "DENY", "DENY")


def test_velerian_requires_human_without_an_approval_id_is_malformed(tmp_path):
    answer = {"invocation_id": "inv_1", "outcome": "pending_human", "is_allowed": False,
              "requires_human": True}  # fmt: skip
    backend, calls = _velerian(tmp_path, httpx.Response(200, json=answer))
    with pytest.raises(MalformedVerdict, match="approval_id"):
        _scan(backend)
    assert calls[0].url.raw_path == b"/api/v2/abps/abp%2F1/invoke"  # the id is one segment


def test_velerian_allowed_and_denied(tmp_path):
    allowed = {"invocation_id": "inv_1", "outcome": "allowed", "is_allowed": True,
               "requires_human": False}  # fmt: skip
    denied = {**allowed, "outcome": "blocked", "is_allowed": False}
    backend, _ = _velerian(tmp_path, httpx.Response(200, json=allowed))
    assert _scan(backend).decision is Decision.ALLOW
    backend, _ = _velerian(tmp_path, httpx.Response(200, json=denied))
    verdict = _scan(backend)
    assert (verdict.decision, verdict.reason_codes) == (Decision.DENY, ["VELERIAN_BLOCKED"])


def test_backend_name_says_which_variables_are_missing():
    empty = Credentials(
        interven=IntervenCredentials(api_key=None),
        kirtonic=KirtonicCredentials(api_key=None),
        inviolet=InvioletCredentials(api_key="x", base_url=None),
        velerian=VelerianCredentials(api_key=None, abp_id=None),
    )
    with pytest.raises(BackendConfigError, match=r"^--backend inviolet needs INVIOLET_BASE_URL"):
        backend_name(load_settings(backend="inviolet"), empty)
    with pytest.raises(BackendConfigError, match="VELERIAN_API_KEY and VELERIAN_ABP_ID"):
        backend_name(load_settings(backend="velerian"), empty)
    assert backend_name(load_settings(), empty) == "local"


def test_shadowed_forwards_everything_but_the_sidecars_own_key():
    deny = from_verdict(_verdict("DENY"))
    assert shadowed(deny).forward
    assert (deny.would, deny.decision, deny.status) == (Decision.DENY, Decision.ALLOW, 200)
    sanitize = shadowed(from_verdict(_verdict("SANITIZE", sanitized_body="x")))
    assert (sanitize.replacement_body, sanitize.would) == (None, Decision.SANITIZE)
    allow = shadowed(from_verdict(_verdict("ALLOW")))
    assert allow.would is None  # nothing withheld: not a shadow decision
    own = from_verdict(_verdict("DENY"))
    own.reasons = ["SIDECAR_CREDENTIAL"]
    assert not shadowed(own).forward


def test_refused_approval_tells_the_agent_which_id_to_get_approved():
    e = approval_refused(from_verdict(_verdict("REQUIRE_APPROVAL", approval_id="a-1")), "a-1")
    assert (e.forward, e.status, e.approval) == (False, 403, "required")
    assert json.loads(e.block_body())["approval_id"] == "a-1"


def test_tracked_approvals_keep_the_backends_id(tmp_path):
    store = ApprovalStore(tmp_path, 60)
    summary = {"method": "POST", "host": "h", "tool": "t", "operation": "o", "reasons": [],
               "trace_id": "dec_9"}  # fmt: skip
    assert store.track("dec_9", "hash", **summary) == "dec_9"
    assert store.track("dec_9", "hash", **summary) == "dec_9"  # idempotent
    assert [r["id"] for r in ApprovalStore(tmp_path, 60).listing()] == ["dec_9"]
    with pytest.raises(ApprovalReused):  # the same id for a different request
        store.track("dec_9", "other-hash", **summary)
    store.decide("dec_9", approve=True)
    store.consume("dec_9")
    with pytest.raises(ApprovalReused):  # an approval lets one request through
        store.track("dec_9", "hash", **summary)


def test_an_approval_id_the_backend_repeats_cannot_approve_twice(tmp_path):
    pending = {"outcome": "pending_approval", "intent_event_id": "ie_1",
               "approval_request_id": "apr_same"}  # fmt: skip
    backend, _ = _inviolet(tmp_path, httpx.Response(200, json=pending))
    assert _scan(backend).approval_id == "apr_same"
    backend.approvals.decide("apr_same", approve=True)
    asyncio.run(backend.approval_status("apr_same"))  # the held request goes: used
    other = ScanRequest(method="POST", url="https://elsewhere.test/", body={"x": 1})
    backend, _ = _inviolet(tmp_path, httpx.Response(200, json=pending))
    with pytest.raises(MalformedVerdict, match="already used"):
        _scan(backend, other)


def test_reason_codes_are_header_safe():
    assert reason_code("KIRTONIC", "prompt injection / jailbreak") == (
        "KIRTONIC_PROMPT_INJECTION_JAILBREAK"
    )
    assert reason_code("") == "UNSPECIFIED"


def test_llm_recognition_feeds_the_prompt(tmp_path):
    body = {"model": "m", "messages": [{"role": "system", "content": "S"},
                                       {"role": "user", "content": "U"}]}  # fmt: skip
    call = recognise("api.openai.com", "/v1/chat/completions", body)
    assert call is not None
    backend, calls = _kirtonic(tmp_path, httpx.Response(200, json=KIRTONIC_OK))
    request = ScanRequest(method="POST", url="https://api.openai.com/v1/chat/completions",
                          body=body, llm=call)  # fmt: skip
    _scan(backend, request)
    sent = [json.loads(c.content) for c in calls]
    (prompt,) = [d for d in sent if d["prompt"] == "S\n\nU"]
    assert prompt["category"] == "chat"
    assert prompt["metadata"]["provider"] == "openai"


def _verdict(decision: str, **extra):  # type: ignore[no-untyped-def]
    from sidecar.backends.contract import ScanVerdict

    doc = {"decision": decision, "risk_score": 0.5, "risk_band": "MEDIUM", "trace_id": "t"}
    return ScanVerdict.model_validate({**doc, **extra})


def test_kirtonic_one_failed_window_is_the_scans_typed_error(tmp_path):
    backend, calls = _kirtonic(
        tmp_path, httpx.Response(200, json=KIRTONIC_OK), httpx.Response(502, text="bad gateway")
    )
    request = ScanRequest(method="POST", url="https://x.test/", body="a" * (40 * 1024))
    with pytest.raises(ScanServerError):
        _scan(backend, request)
    assert len(calls) == 2  # two windows, no retries configured


def test_an_llm_call_is_classified_as_a_prompt_and_as_a_whole_request(tmp_path):
    body = {"model": "m", "messages": [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "the secret is hunter2"},
    ], "exfil": "more"}  # fmt: skip
    call = recognise("evil.example", "/a/chat/completions", body)
    backend, calls = _kirtonic(tmp_path, httpx.Response(200, json=KIRTONIC_OK))
    request = ScanRequest(method="POST", url="https://evil.example/a/chat/completions",
                          body=body, llm=call)  # fmt: skip
    _scan(backend, request)
    prompts = sorted(json.loads(c.content)["prompt"] for c in calls)
    assert prompts[1] == "hi"  # Kirtonic's prompt rule...
    assert "hunter2" in prompts[0]  # ...and everything else the request carries
    assert "exfil" in prompts[0]
