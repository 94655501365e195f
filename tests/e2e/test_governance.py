"""Kirtonic, Inviolet and Velerian as backends: each contract on a loopback double.

Same proxy, headers and metrics as the scan API: what each API was asked, what the
agent got, what the upstream received, and how each API's errors meet the fail mode.
"""

from __future__ import annotations

import json
import ssl
import threading
from typing import Any

import httpx
import pytest

from tests.support.governance import InvioletDouble, KirtonicDouble, VelerianDouble
from tests.support.servers import LLM_SECRET, UPSTREAM_HOST, WAIT, LoopThread, Reply
from tests.support.sidecar import (
    GOVERNANCE_KEYS,
    VELERIAN_ABP,
    ClientResult,
    Sidecar,
    run_client,
)
from tests.support.waiting import eventually

JSON = {"Content-Type": "application/json"}


@pytest.fixture
def kirtonic(server_loop: LoopThread) -> KirtonicDouble:
    return KirtonicDouble(server_loop, GOVERNANCE_KEYS["kirtonic"])


@pytest.fixture
def inviolet(server_loop: LoopThread) -> InvioletDouble:
    return InvioletDouble(server_loop, GOVERNANCE_KEYS["inviolet"])


@pytest.fixture
def velerian(server_loop: LoopThread) -> VelerianDouble:
    return VelerianDouble(server_loop, GOVERNANCE_KEYS["velerian"], VELERIAN_ABP)


def _governed(make_sidecar, double, name: str, **settings: Any) -> Sidecar:  # type: ignore[no-untyped-def]
    return make_sidecar(backend=name, governance={name: double.url}, **settings)  # type: ignore[no-any-return]


def _in_background(fn: Any, *args: Any) -> tuple[threading.Thread, dict[str, Any]]:
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["result"] = fn(*args)
        except BaseException as e:
            box["error"] = e

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, box


def _held_then_decided(
    sidecar: Sidecar, url: str, body: bytes, verb: str
) -> tuple[ClientResult, dict[str, Any]]:
    """Send a request the backend holds, decide its approval at the sidecar, return both."""
    held, box = _in_background(run_client, sidecar, "requests", "POST", url, body, JSON)
    eventually(lambda: sidecar.metric("egress_sidecar_approvals_pending") == 1)
    (pending,) = sidecar.admin_get("/approvals").json()["approvals"]
    with httpx.Client(trust_env=False, headers=sidecar.admin_headers()) as c:
        r = c.post(f"http://{sidecar.info.admin}/approvals/{pending['id']}/{verb}")
    assert r.status_code == 200, r.text
    held.join(WAIT)
    assert "error" not in box, box.get("error")
    return box["result"], pending


# --- Kirtonic ---------------------------------------------------------------------------


def test_kirtonic_classifies_the_request_and_records_the_outcome(make_sidecar, kirtonic, upstream):
    sidecar = _governed(make_sidecar, kirtonic, "kirtonic")
    body = b'{"channel":"#ops","text":"deploy finished"}'  # compact: the prompt re-serialises
    result = run_client(sidecar, "requests", "POST", upstream.https + "/kt/allow", body, JSON)

    assert result.status == 200
    assert result.headers["x-interven-decision"] == "ALLOW"
    call = kirtonic.classifications.wait_for(lambda c: "/kt/allow" in c["json"]["prompt"])
    assert call["headers"]["Authorization"] == f"Bearer {GOVERNANCE_KEYS['kirtonic']}"
    # Not an LLM call: the request line and the body, as text.
    assert call["json"]["prompt"] == f"POST {upstream.https}/kt/allow\n\n{body.decode()}"
    assert call["json"]["category"] == "agent"
    assert call["json"]["metadata"]["host"] == UPSTREAM_HOST
    assert upstream.received.wait_for(lambda r: r.path == "/kt/allow").body == body

    decision_id = result.headers["x-interven-trace-id"]
    assert decision_id.startswith("dec_")
    outcome = kirtonic.outcomes.wait_for(lambda o: o["json"]["decision_id"] == decision_id)
    assert json.loads(outcome["json"]["response"])["path"] == "/kt/allow"
    assert isinstance(outcome["json"]["latency_ms"], int)
    assert "finish_reason" not in outcome["json"]  # not an LLM answer
    eventually(lambda: sidecar.metric("egress_sidecar_response_scans_posted_total") == 1)


def test_kirtonic_gets_the_chat_prompt_and_the_llm_answer(make_sidecar, kirtonic, upstream):
    sidecar = _governed(make_sidecar, kirtonic, "kirtonic")
    chat = {
        "model": "gpt-4o",
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "Summarise the incident."},
            {"role": "assistant", "content": "Which incident?"},
            {"role": "user", "content": [{"type": "text", "text": "INC-42"}]},
        ],
    }
    url = upstream.https + "/openai/v1/chat/completions"
    result = run_client(sidecar, "httpx", "POST", url, json.dumps(chat).encode(), JSON)
    assert result.status == 200

    calls = [c["json"] for c in kirtonic.classifications.items]
    # Kirtonic's prompt: system and user messages, blank-line separated, no assistant turn...
    (prompt,) = [
        c for c in calls if c["prompt"] == "You are terse.\n\nSummarise the incident.\n\nINC-42"
    ]
    assert prompt["category"] == "chat"
    assert prompt["metadata"]["provider"] == "openai"
    assert prompt["metadata"]["model"] == "gpt-4o"
    # ...and the whole request too: a chat shape must not exempt any turn from judgement.
    (whole,) = [c for c in calls if c is not prompt]
    assert "Which incident?" in whole["prompt"]
    decision_id = result.headers["x-interven-trace-id"]
    outcome = kirtonic.outcomes.wait_for(lambda o: o["json"]["decision_id"] == decision_id)
    assert outcome["json"]["response"] == "Hello from the model"
    assert outcome["json"]["finish_reason"] == "stop"


def test_kirtonic_outcome_of_a_streamed_answer_is_the_assembled_text(
    make_sidecar, kirtonic, upstream
):
    sidecar = _governed(make_sidecar, kirtonic, "kirtonic")
    chat = {"model": "gpt-4o", "stream": True, "user": "kt-stream",
            "messages": [{"role": "user", "content": "Tell me the key"}]}  # fmt: skip
    verify = ssl.create_default_context(cafile=str(sidecar.ca.bundle))
    with (
        httpx.Client(proxy=f"http://{sidecar.info.proxy}", verify=verify, trust_env=False,
                     timeout=WAIT) as client,
        client.stream("POST", upstream.https + "/openai/v1/chat/completions", json=chat) as r,
    ):  # fmt: skip
        lines = (line for line in r.iter_lines() if line)
        assert next(lines).startswith("data: ")  # delivered before the stream ends
        assert kirtonic.outcomes.items == []
        upstream.open_gate("kt-stream")
        assert list(lines)[-1] == "data: [DONE]"
    decision_id = r.headers["x-interven-trace-id"]
    outcome = kirtonic.outcomes.wait_for(lambda o: o["json"]["decision_id"] == decision_id)
    assert outcome["json"]["response"] == f"The key is {LLM_SECRET}"
    assert outcome["json"]["finish_reason"] == "length"


def test_kirtonic_block_denies_with_its_reason_and_severity_is_informational(
    make_sidecar, kirtonic, upstream
):
    sidecar = _governed(make_sidecar, kirtonic, "kirtonic")
    blocked = run_client(sidecar, "requests", "POST", upstream.https + "/kt/block",
                         b'{"text": "DENY-ME"}', JSON)  # fmt: skip
    assert blocked.status == 403
    assert blocked.headers["x-interven-decision"] == "DENY"
    assert blocked.json()["message"] == "prompt violates workspace policy"
    assert blocked.json()["reason_codes"] == ["KIRTONIC_BLOCK", "AGENT"]

    risky = run_client(sidecar, "requests", "POST", upstream.https + "/kt/risky",
                       b'{"text": "RISKY-BUT-ALLOWED"}', JSON)  # fmt: skip
    assert risky.status == 200  # severity "high", action "allow": the action decides
    upstream.received.wait_for(lambda r: r.path == "/kt/risky")
    assert upstream.requests_to("/kt/block") == []
    decision_id = blocked.headers["x-interven-trace-id"]
    assert all(o["json"]["decision_id"] != decision_id for o in kirtonic.outcomes.items)


def test_kirtonic_review_is_held_until_approved_at_the_sidecar(
    make_sidecar, kirtonic, upstream, tmp_path
):
    sidecar = _governed(make_sidecar, kirtonic, "kirtonic", confdir=tmp_path)
    body = b'{"text": "HOLD-ME please"}'
    result, pending = _held_then_decided(sidecar, upstream.https + "/kt/review", body, "approve")
    (call,) = kirtonic.classifications.items
    assert call["json"]["prompt"].endswith('HOLD-ME please"}')
    assert pending["id"] == result.headers["x-interven-trace-id"]  # the decision_id
    assert pending["id"].startswith("dec_")
    # Recorded next to the CA, in the configured confdir (a restart keeps it).
    stored = json.loads((tmp_path / "approvals.json").read_text())["approvals"]
    assert [a["id"] for a in stored] == [pending["id"]]
    assert result.status == 200
    assert result.headers["x-interven-approval"] == "approved"
    assert upstream.received.wait_for(lambda r: r.path == "/kt/review").body == body


def test_kirtonic_review_is_refused_at_once_when_approvals_refuse(make_sidecar, kirtonic, upstream):
    sidecar = _governed(make_sidecar, kirtonic, "kirtonic", approval_mode="refuse")
    result = run_client(sidecar, "curl", "POST", upstream.https + "/kt/refuse",
                        b'{"text": "HOLD-ME"}', JSON)  # fmt: skip
    assert result.status == 403
    assert result.headers["x-interven-decision"] == "REQUIRE_APPROVAL"
    assert result.headers["x-interven-approval"] == "required"
    doc = result.json()
    assert doc["approval_id"] == result.headers["x-interven-trace-id"]
    assert "APPROVAL_REQUIRED" in doc["reason_codes"]
    assert sidecar.metric("egress_sidecar_approvals_pending") == 0
    assert upstream.requests_to("/kt/refuse") == []


def test_kirtonic_prompts_over_32_kib_are_classified_in_windows(make_sidecar, kirtonic, upstream):
    sidecar = _governed(make_sidecar, kirtonic, "kirtonic")
    filler = "é" * 20_000  # 40,000 bytes of UTF-8 before the marker
    doc = {"text": filler + " DENY-ME"}
    body = json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode()
    result = run_client(sidecar, "requests", "POST", upstream.https + "/kt/long", body,
                        {"Content-Type": "application/json; charset=utf-8"})  # fmt: skip
    assert result.status == 403  # the marker sits in the second window: strictest wins
    calls = [c["json"]["prompt"] for c in kirtonic.classifications.items]
    assert len(calls) == 2
    assert all(len(p.encode()) <= 32 * 1024 for p in calls)
    calls.sort(key=lambda p: not p.startswith("POST "))  # classified concurrently
    whole = f"POST {upstream.https}/kt/long\n\n{body.decode()}"
    assert whole.startswith(calls[0])
    assert whole.endswith(calls[1])
    assert len(calls[0]) + len(calls[1]) > len(whole)  # they overlap: nothing falls between
    assert upstream.requests_to("/kt/long") == []


# --- Inviolet ---------------------------------------------------------------------------


def test_inviolet_evaluates_the_request_as_a_tool_call(make_sidecar, inviolet, upstream):
    sidecar = _governed(make_sidecar, inviolet, "inviolet")
    body = b'{"customer_id": "12345"}'
    result = run_client(sidecar, "httpx", "POST", upstream.https + "/crm/lookup?fields=name",
                        body, JSON)  # fmt: skip
    assert result.status == 200
    assert result.headers["x-interven-trace-id"].startswith("ie_")
    (call,) = inviolet.evaluations.items
    assert call["headers"]["Authorization"] == f"Bearer {GOVERNANCE_KEYS['inviolet']}"
    assert call["json"] == {
        "tool_call": {
            "name": f"{UPSTREAM_HOST}.write",
            "arguments": {
                "customer_id": "12345",
                "_http_request": {
                    "method": "POST",
                    "path": "/crm/lookup",
                    "query": {"fields": "name"},
                },
            },
        },
        "data_source_id": UPSTREAM_HOST,
        "shadow_mode": False,
        "user_id": "agent-user-7",
    }
    assert upstream.received.wait_for(lambda r: r.path.startswith("/crm/lookup")).body == body


def test_inviolet_outcomes_map_onto_the_verdict(make_sidecar, inviolet, upstream):
    sidecar = _governed(make_sidecar, inviolet, "inviolet")
    denied = run_client(sidecar, "requests", "POST", upstream.https + "/iv/denied",
                        b'{"q": "DENY-ME"}', JSON)  # fmt: skip
    assert denied.status == 403
    assert denied.json()["reason_codes"] == ["INVIOLET_DENIED", "INTENT_LOOKUP"]
    approved = run_client(sidecar, "requests", "POST", upstream.https + "/iv/approved",
                          b'{"q": "APPROVED-ME"}', JSON)  # fmt: skip
    assert approved.status == 200

    shadow = run_client(sidecar, "requests", "POST", upstream.https + "/iv/shadow",
                        b'{"q": "SHADOW-ME"}', JSON)  # fmt: skip
    assert shadow.status == 200  # shadow_denied forwards...
    assert shadow.headers["x-interven-decision"] == "ALLOW"
    assert shadow.headers["x-interven-shadow-decision"] == "DENY"  # ...as a would-deny
    assert sidecar.metric("egress_sidecar_shadow_decisions_total", would="DENY") == 1
    upstream.received.wait_for(lambda r: r.path == "/iv/shadow")
    upstream.received.wait_for(lambda r: r.path == "/iv/approved")
    assert upstream.requests_to("/iv/denied") == []


def test_inviolet_pending_approval_is_held_under_its_request_id(
    make_sidecar, inviolet, upstream, tmp_path
):
    sidecar = _governed(make_sidecar, inviolet, "inviolet", confdir=tmp_path)
    result, pending = _held_then_decided(
        sidecar, upstream.https + "/iv/hold", b'{"q": "HOLD-ME"}', "deny"
    )
    assert pending["id"].startswith("apr_")  # the approval_request_id
    assert result.status == 403
    assert result.headers["x-interven-approval"] == "denied"
    assert upstream.requests_to("/iv/hold") == []


def test_inviolet_is_told_when_the_sidecar_runs_in_shadow(make_sidecar, inviolet, upstream):
    sidecar = _governed(make_sidecar, inviolet, "inviolet", enforcement="shadow")
    result = run_client(sidecar, "requests", "POST", upstream.https + "/iv/in-shadow",
                        b'{"q": "DENY-ME"}', JSON)  # fmt: skip
    assert result.status == 200
    assert result.headers["x-interven-shadow-decision"] == "DENY"
    assert inviolet.evaluations.items[0]["json"]["shadow_mode"] is True
    upstream.received.wait_for(lambda r: r.path == "/iv/in-shadow")


# --- Velerian ---------------------------------------------------------------------------


def test_velerian_invokes_the_deployed_package_per_request(make_sidecar, velerian, upstream):
    sidecar = _governed(make_sidecar, velerian, "velerian")
    body = b'{"text":"weekly report"}'
    result = run_client(sidecar, "node", "POST", upstream.https + "/vl/ok", body, JSON)
    assert result.status == 200
    assert result.headers["x-interven-trace-id"].startswith("inv_")
    (call,) = velerian.invocations.items
    assert call["path"] == f"/api/v2/abps/{VELERIAN_ABP}/invoke"
    assert call["headers"]["Authorization"] == f"Bearer {GOVERNANCE_KEYS['velerian']}"
    payload = call["json"]["payload"]
    assert payload["request"] == {"method": "POST", "url": upstream.https + "/vl/ok",
                                  "tool": "custom_proxy", "operation": "write",
                                  "body": {"text": "weekly report"}}  # fmt: skip
    assert payload["prompt"] == f"POST {upstream.https}/vl/ok\n\n{body.decode()}"
    assert upstream.received.wait_for(lambda r: r.path == "/vl/ok").body == body


def test_velerian_blocks_and_holds_for_a_human(make_sidecar, velerian, upstream, tmp_path):
    sidecar = _governed(make_sidecar, velerian, "velerian", confdir=tmp_path)
    blocked = run_client(sidecar, "requests", "POST", upstream.https + "/vl/block",
                         b'{"t": "DENY-ME"}', JSON)  # fmt: skip
    assert blocked.status == 403
    assert blocked.json()["reason_codes"] == ["VELERIAN_BLOCKED"]

    result, pending = _held_then_decided(
        sidecar, upstream.https + "/vl/hold", b'{"t": "HOLD-ME"}', "approve"
    )
    assert pending["id"].startswith("appr_")
    assert result.status == 200
    upstream.received.wait_for(lambda r: r.path == "/vl/hold")
    assert upstream.requests_to("/vl/block") == []


def test_velerian_retries_after_a_429_as_its_sdk_does(make_sidecar, velerian, upstream):
    sidecar = _governed(make_sidecar, velerian, "velerian")
    velerian.script(Reply(429, {"detail": "slow down"}, {"Retry-After": "0"}),
                    Reply(503, {"detail": "busy"}))  # fmt: skip
    result = run_client(sidecar, "requests", "POST", upstream.https + "/vl/retry", b"{}", JSON)
    assert result.status == 200
    assert len(velerian.invocations.items) == 3
    upstream.received.wait_for(lambda r: r.path == "/vl/retry")


def test_velerian_undeployed_package_follows_the_fail_mode(make_sidecar, velerian, upstream):
    velerian.abp_id = "abp_other"  # ours is no longer deployed: 409
    sidecar = _governed(make_sidecar, velerian, "velerian")
    result = run_client(sidecar, "requests", "POST", upstream.https + "/vl/409", b"{}", JSON)
    assert result.status == 503
    assert "SCAN_REJECTED" in result.json()["reason_codes"]
    assert len(velerian.invocations.items) == 1  # a 409 is not retried
    assert sidecar.metric("egress_sidecar_scan_errors_total", kind="rejected") == 1


# --- The error model, every backend -----------------------------------------------------

FAULTS = {
    "401": (Reply(401, {"error": "bad key"}), "auth"),
    "403": (Reply(403, {"error": "no scope"}), "auth"),
    "429": (Reply(429, {"error": "later"}, {"Retry-After": "3600"}), "rate_limited"),
    "5xx": (Reply(502, "bad gateway"), "server_error"),
}


@pytest.mark.parametrize("fault", sorted(FAULTS))
@pytest.mark.parametrize("name", ["kirtonic", "inviolet", "velerian"])
@pytest.mark.parametrize("fail_mode", ["closed", "open"])
def test_api_errors_follow_the_fail_mode(
    make_sidecar, upstream, name, fault, fail_mode, kirtonic, inviolet, velerian
):
    double = {"kirtonic": kirtonic, "inviolet": inviolet, "velerian": velerian}[name]
    reply, kind = FAULTS[fault]
    double.script(*[reply] * 3)  # the first try and both retries (where retried)
    sidecar = _governed(make_sidecar, double, name, fail_mode=fail_mode)
    path = f"/fault/{name}/{fault}/{fail_mode}"
    result = run_client(sidecar, "requests", "POST", upstream.https + path, b"{}", JSON)

    assert sidecar.metric("egress_sidecar_scan_errors_total", kind=kind) == 1
    if fail_mode == "closed":
        assert result.status == 503
        assert f"SCAN_{kind.upper()}" in result.json()["reason_codes"]
        assert upstream.requests_to(path) == []
    else:
        assert result.status == 200
        assert result.headers["x-interven-reasons"] == f"FAIL_OPEN,SCAN_{kind.upper()}"
        upstream.received.wait_for(lambda r: r.path == path)
    recorded = {"kirtonic": kirtonic.classifications, "inviolet": inviolet.evaluations,
                "velerian": velerian.invocations}[name].items  # fmt: skip
    # 401/403 and a Retry-After past the deadline are not retried; 5xx is.
    assert len(recorded) == (3 if fault == "5xx" else 1)


def test_every_backend_key_is_refused_in_a_request(make_sidecar, kirtonic, upstream):
    sidecar = _governed(make_sidecar, kirtonic, "kirtonic")
    for key in GOVERNANCE_KEYS.values():
        result = run_client(sidecar, "requests", "POST", upstream.https + "/own-key",
                            json.dumps({"k": key}).encode(), JSON)  # fmt: skip
        assert result.status == 403
        assert result.json()["reason_codes"] == ["SIDECAR_CREDENTIAL"]
    assert upstream.requests_to("/own-key") == []
    assert kirtonic.classifications.items == []  # refused before anyone is asked
