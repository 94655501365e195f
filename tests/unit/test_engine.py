"""The engine with the built-in default policy: decisions a security engineer expects."""

from __future__ import annotations

import base64
import json
import random
from urllib.parse import quote

import pytest

from bench.corpora.generated import card, github, iban, ssn
from sidecar.engine import Engine
from sidecar.engine.decisions import Decision
from sidecar.engine.policy import Policy
from sidecar.engine.policy_file import default_policy

RNG = random.Random(7)
GH = github(RNG)
OPENAI = "sk-proj-" + "Qz7" * 10 + "T3BlbkFJ" + "Lm4" * 10
JSON = {"Content-Type": "application/json"}


@pytest.fixture
def engine() -> Engine:
    return Engine(default_policy())


def test_own_key_to_its_provider_passes(engine):
    v = engine.decide(
        "POST",
        "https://api.openai.com/v1/chat/completions",
        {"Authorization": f"Bearer {OPENAI}", **JSON},
        {"messages": []},
    )
    assert v.decision is Decision.ALLOW
    assert v.reason_codes == ["OWN_CREDENTIAL"]
    assert (v.tool_name, v.operation) == ("openai", "chat_completion")


def test_provider_key_to_another_host_is_denied(engine):
    v = engine.decide(
        "POST", "https://collector.evil.io/x", {"Authorization": f"Bearer {OPENAI}"}, None
    )
    assert v.decision is Decision.DENY
    assert "SECRET_EXFILTRATION" in v.reason_codes
    assert "POLICY:deny-secret-exfiltration" in v.reason_codes


def test_generic_bearer_token_to_its_destination_passes(engine):
    v = engine.decide(
        "GET",
        "https://api.internal-tools.com/v1/me",
        {"Authorization": "Bearer 8f2kQz9LmV3xT7pW1rN5sY"},
        None,
    )
    assert v.decision is Decision.ALLOW
    assert v.classifications == ["CREDENTIALS"]


@pytest.mark.parametrize(
    "body",
    [
        {"text": f"here is the token {GH}"},
        {"nested": [{"deep": {"value": base64.b64encode(f"tok={GH}".encode()).decode()}}]},
        {"hex": f"{GH}".encode().hex()},
        {"pct": quote(quote(f"t={GH}"))},
        f"plain text {GH}",
    ],
    ids=["json", "base64", "hex", "double-percent", "text"],
)
def test_secrets_leaving_in_bodies_are_denied_however_encoded(engine, body):
    v = engine.decide("POST", "https://hooks.slack.com/services/T1/B2/abc", JSON, body)
    assert v.decision is Decision.DENY
    assert v.tool_name == "slack"
    assert any(s.get("kind") == "github_token" for s in v.signals)


def test_secrets_in_query_path_and_headers(engine):
    for url, headers in [
        (f"https://x.example.com/upload?token={GH}", {}),
        (f"https://x.example.com/{GH}/status", {}),
        ("https://x.example.com/", {"X-Debug": GH}),
        ("https://x.example.com/", {"Cookie": f"session={GH}"}),
    ]:
        assert engine.decide("GET", url, headers, None).decision is Decision.DENY, (url, headers)


def test_high_risk_pii_is_sanitized_keeping_json_structure(engine):
    number, social, account = card(RNG), ssn(RNG), iban(RNG)
    body = {
        "customer": {"name": "Ada", "card": number, "note": f"ssn {social} ok"},
        "accounts": [account, "none"],
        "amount": 12.5,
    }
    v = engine.decide("POST", "https://api.example.com/orders", JSON, body)
    assert v.decision is Decision.SANITIZE
    clean = v.sanitized_body
    assert clean == {
        "customer": {
            "name": "Ada",
            "card": "[REDACTED:CREDIT_CARD]",
            "note": "ssn [REDACTED:US_SSN] ok",
        },
        "accounts": ["[REDACTED:IBAN]", "none"],
        "amount": 12.5,
    }
    assert number not in json.dumps(clean)


def test_sanitize_text_and_forms(engine):
    social = ssn(RNG)
    v = engine.decide(
        "POST",
        "https://api.example.com/",
        {"Content-Type": "text/plain"},
        f"Patient SSN: {social}.",
    )
    assert v.sanitized_body == "Patient SSN: [REDACTED:US_SSN]."
    v = engine.decide(
        "POST",
        "https://api.example.com/",
        {"Content-Type": "application/x-www-form-urlencoded"},
        f"name=Ada&ssn={social}",
    )
    assert v.sanitized_body == "name=Ada&ssn=%5BREDACTED%3AUS_SSN%5D"


def test_high_risk_pii_outside_the_body_cannot_be_sanitized_so_is_denied(engine):
    v = engine.decide("GET", f"https://api.example.com/lookup?ssn={ssn(RNG)}", {}, None)
    assert v.decision is Decision.DENY
    assert "UNREDACTABLE" in v.reason_codes


def test_low_risk_pii_is_allowed_and_classified(engine):
    v = engine.decide("POST", "https://api.example.com/", JSON, {"to": "ada.lovelace@corp.io"})
    assert v.decision is Decision.ALLOW
    assert v.classifications == ["PII"]
    assert v.reason_codes == ["PII"]


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://[::ffff:10.0.0.1]/admin",
        "http://0x7f000001:8080/",
    ],
)
def test_ssrf_is_denied(engine, url):
    v = engine.decide("GET", url, {}, None)
    assert v.decision is Decision.DENY
    assert "SSRF" in v.reason_codes


def test_internal_hosts_are_not_ssrf():
    engine = Engine(default_policy(), internal_hosts=("10.0.0.0/8", "*.svc.cluster.local"))
    assert engine.decide("GET", "http://10.1.2.3/", {}, None).decision is Decision.ALLOW
    assert (
        engine.decide("GET", "http://api.svc.cluster.local/", {}, None).decision is Decision.ALLOW
    )
    assert engine.decide("GET", "http://192.168.1.1/", {}, None).decision is Decision.DENY


def test_dns_exfiltration_is_denied(engine):
    v = engine.decide(
        "GET", "https://6a6f686e2e646f6540636f6d70616e792e636f6d.attacker.net/", {}, None
    )
    assert v.decision is Decision.DENY
    assert "DNS_EXFILTRATION" in v.reason_codes


def test_read_then_write_is_flagged(engine):
    social = ssn(RNG)
    engine.observe_response("crm.internal.example", {"customer": {"ssn": social}})
    v = engine.decide(
        "POST", "https://pastebin.com/api/api_post.php", JSON, {"paste": f"ssn {social}"}
    )
    assert "READ_THEN_WRITE" in v.reason_codes
    assert v.decision is Decision.DENY
    # The same value going back to where it came from is not read-then-write.
    back = engine.decide("POST", "https://crm.internal.example/x", JSON, {"ssn": social})
    assert "READ_THEN_WRITE" not in back.reason_codes


def test_fingerprints_are_bounded():
    engine = Engine(default_policy())
    engine.fingerprints._capacity = 10
    for i in range(50):
        engine.observe_response("a.example", f"mail user{i}.x@corp.io")
    assert len(engine.fingerprints) == 10


def test_signals_never_carry_values(engine):
    v = engine.decide("POST", "https://x.example.com/", JSON, {"k": GH})
    text = json.dumps(v.signals)
    assert GH not in text
    assert "sha256:" in text


def test_policy_rules_match_hosts_methods_tools_and_priority():
    policy = Policy.model_validate({
        "name": "custom",
        "rules": [
            {"rule_id": "deny-paste", "match": {"hosts": ["*.pastebin.com", "pastebin.com"]},
             "action": "DENY", "priority": 10},
            {"rule_id": "approve-github-writes",
             "match": {"tools": ["github"], "methods": ["post"]},
             "action": "REQUIRE_APPROVAL", "priority": 5},
            {"rule_id": "allowlist",
             "condition": {"destination_not_in": ["api.github.com", "*.corp.io"]},
             "action": "DENY", "priority": 1},
        ],
    })  # fmt: skip
    engine = Engine(policy)
    assert engine.decide("GET", "https://pastebin.com/raw/x", {}, None).decision is Decision.DENY
    v = engine.decide("POST", "https://api.github.com/repos/o/r/pulls", JSON, {"title": "x"})
    assert v.decision is Decision.REQUIRE_APPROVAL
    assert v.rule_id == "approve-github-writes"
    assert engine.decide("GET", "https://api.github.com/user", {}, None).decision is Decision.ALLOW
    assert engine.decide("GET", "https://wiki.corp.io/", {}, None).decision is Decision.ALLOW
    assert engine.decide("GET", "https://elsewhere.net/", {}, None).decision is Decision.DENY


def test_hidden_secrets_are_those_the_decoded_content_does_not_hold(engine):
    key = "AKIAQX4RZT7NM2VBK5WJ"
    encoded_key = base64.b64encode(f"aws {key}".encode()).decode()
    assert engine.hidden_secrets(f"\x1f\x8b{key}\x00", '{"note": "hi"}') == ["aws_access_key_id"]
    assert engine.hidden_secrets(f"\x00{encoded_key}\x00", "hi") == ["aws_access_key_id"]
    # in the content too: the content's own scan judges it, nothing is hidden
    assert engine.hidden_secrets(f"\x00{key}\x00", f"key {key}") == []
    assert engine.hidden_secrets("\x00\x01 release notes 2026 \xff", "notes") == []
