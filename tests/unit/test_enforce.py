from __future__ import annotations

import json

from sidecar.backends.contract import ScanVerdict
from sidecar.judge.enforce import approval_result, fail_open, from_verdict, local_block

BASE = {"risk_score": 0.9, "risk_band": "HIGH", "trace_id": "t-1", "reason_codes": ["SECRETS"]}


def test_allow_forwards_unchanged():
    e = from_verdict(ScanVerdict.model_validate({**BASE, "decision": "ALLOW"}))
    assert e.forward
    assert e.replacement_body is None
    assert e.headers() == {
        "X-Interven-Decision": "ALLOW",
        "X-Interven-Trace-Id": "t-1",
        "X-Interven-Reasons": "SECRETS",
    }


def test_deny_blocks_with_a_json_explanation():
    v = ScanVerdict.model_validate({**BASE, "decision": "DENY", "policy_name": "p"})
    e = from_verdict(v)
    assert not e.forward
    assert e.status == 403
    doc = json.loads(e.block_body())
    assert doc["decision"] == "DENY"
    assert doc["reason_codes"] == ["SECRETS"]
    assert doc["trace_id"] == "t-1"
    assert doc["policy_name"] == "p"
    assert doc["message"]


def test_sanitize_serialises_the_replacement():
    for body, expected in [
        ({"a": "[R]"}, b'{"a":"[R]"}'),
        (["x"], b'["x"]'),
        ("as is", b"as is"),
        ("", b""),
    ]:
        v = ScanVerdict.model_validate({**BASE, "decision": "SANITIZE", "sanitized_body": body})
        e = from_verdict(v)
        assert e.forward
        assert e.replacement_body == expected


def test_approval_outcomes():
    v = ScanVerdict.model_validate({**BASE, "decision": "REQUIRE_APPROVAL", "approval_id": "a"})
    assert approval_result(from_verdict(v), "approved").forward
    denied = approval_result(from_verdict(v), "denied")
    assert not denied.forward
    assert denied.status == 403
    assert denied.reasons == ["SECRETS", "APPROVAL_DENIED"]
    assert denied.headers()["X-Interven-Approval"] == "denied"


def test_sidecar_decided_outcomes_have_their_own_trace_ids():
    a, b = local_block("FAIL_CLOSED", "m", 503, "timeout"), fail_open("timeout")
    assert a.trace_id != b.trace_id
    assert a.reasons == ["FAIL_CLOSED", "SCAN_TIMEOUT"]
    assert not a.forward
    assert b.forward
    assert b.reasons == ["FAIL_OPEN", "SCAN_TIMEOUT"]
    assert not a.from_backend
    assert not b.from_backend
