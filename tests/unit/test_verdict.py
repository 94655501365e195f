from __future__ import annotations

import pytest
from pydantic import ValidationError

from sidecar.backends.contract import ScanVerdict
from sidecar.engine.decisions import Decision, RiskBand

BASE = {
    "decision": "ALLOW",
    "risk_score": 0.12,
    "risk_band": "LOW",
    "reason_codes": [],
    "trace_id": "f1e2d3c4",
    "tool_name": "slack",
    "operation": "post_message",
    "classifications": [],
    "signals": [],
}


def test_parses_the_documented_example_and_ignores_unknown_fields():
    v = ScanVerdict.model_validate({**BASE, "new_field_from_the_future": {"x": 1}})
    assert v.decision is Decision.ALLOW
    assert v.tool_name == "slack"
    assert v.sanitized_body is None


@pytest.mark.parametrize("band", ["MED", "MEDIUM"])
def test_accepts_both_spellings_of_the_medium_band(band):
    assert ScanVerdict.model_validate({**BASE, "risk_band": band}).risk_band is RiskBand.MEDIUM


@pytest.mark.parametrize(
    "change",
    [
        {"decision": "MAYBE"},
        {"decision": None},
        {"risk_score": 1.5},
        {"trace_id": ""},
        {"risk_band": "SEVERE"},
        {"decision": "SANITIZE"},  # without sanitized_body
        {"decision": "REQUIRE_APPROVAL"},  # without approval_id
    ],
)
def test_malformed_verdicts_are_rejected(change):
    with pytest.raises(ValidationError):
        ScanVerdict.model_validate({**BASE, **change})


def test_missing_decision_is_rejected():
    doc = dict(BASE)
    del doc["decision"]
    with pytest.raises(ValidationError):
        ScanVerdict.model_validate(doc)


def test_payload_carrying_decisions():
    s = ScanVerdict.model_validate({**BASE, "decision": "SANITIZE", "sanitized_body": ""})
    assert s.sanitized_body == ""
    a = ScanVerdict.model_validate({**BASE, "decision": "REQUIRE_APPROVAL", "approval_id": "ap-1"})
    assert a.approval_id == "ap-1"
