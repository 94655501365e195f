"""The engine's worst case is bounded: a counted budget, never a clock.

Bodies made of near-matches stop at the scan's budget with the documented verdict
(DENY, `SCAN_LIMIT`), the same way every time; dense but ordinary bodies stay below
it and find what they always found; deep JSON never raises. No test here measures
time: `python -m bench.engine_bench` does.
"""

from __future__ import annotations

import base64
import json
import random

import pytest
from mnemonic import Mnemonic

from bench.corpora import generated as corpus
from sidecar.engine import Engine, checks
from sidecar.engine.budget import MIN_CANDIDATES, Budget, ScanLimit
from sidecar.engine.decisions import Decision
from sidecar.engine.detectors import BY_ID
from sidecar.engine.fields import MAX_JSON_DEPTH, MAX_LOCATION, request_fields
from sidecar.engine.matcher import Matcher, value_hash
from sidecar.engine.outcomes import SCAN_LIMIT
from sidecar.engine.policy_file import default_policy
from sidecar.engine.redact import Redaction, redact_text
from sidecar.judge.bodies import body_for_scan

URL = "https://api.example.com/v1/upload"
TEXT = {"Content-Type": "text/plain"}
JSON = {"Content-Type": "application/json"}
FLOOD = "a@b.cd " * 40_000  # 280 KB of one email: a candidate every 7 characters


@pytest.fixture
def engine() -> Engine:
    return Engine(default_policy())


def test_a_body_of_near_matches_is_refused_with_scan_limit(engine):
    v = engine.decide("POST", "https://api.openai.com/v1/chat/completions", TEXT, FLOOD)
    assert v.decision is Decision.DENY
    assert v.reason_codes == [SCAN_LIMIT] == ["SCAN_LIMIT"]
    assert v.risk_score == 1.0
    assert v.findings == []
    assert v.signals == [{"engine": "local", "kind": "scan_limit"}]
    assert (v.tool_name, v.operation) == ("openai", "chat_completion")
    assert v.sanitized_body is None
    assert v.rule_id is None


@pytest.mark.parametrize(
    "body",
    [
        FLOOD,
        "10.0.0.1 " * 30_000,
        "4111 1111 1111 1111 " * 13_000,
        "".join(f"u{i}@c{i}.io " for i in range(25_000)),  # a new value every time
        "ghp_" + " ghp_".join(f"{i:036d}" for i in range(9_000)),
    ],
    ids=["same-email", "same-ip", "same-card", "distinct-emails", "distinct-github"],
)
def test_the_budget_trips_deterministically(engine, body):
    verdicts = {
        (v.decision, tuple(v.reason_codes))
        for v in (engine.decide("POST", URL, TEXT, body) for _ in range(3))
    }
    assert verdicts == {(Decision.DENY, (SCAN_LIMIT,))}


def test_the_budget_boundary_is_exact(engine):
    # Each copy is one email candidate; the value, found once, is one finding more.
    unit, cost = "ops@corp.io ", BY_ID["email"].cost
    fits = (MIN_CANDIDATES - 1) // cost
    assert engine.decide("POST", URL, TEXT, unit * fits).reason_codes == ["PII"]
    assert engine.decide("POST", URL, TEXT, unit * (fits + 1)).reason_codes == [SCAN_LIMIT]


def test_the_budget_is_counted_in_candidates_in_proportion_to_size():
    assert Budget.for_chars(10).candidates == MIN_CANDIDATES
    assert Budget.for_chars(100 * MIN_CANDIDATES).candidates > MIN_CANDIDATES
    budget = Budget(2)
    budget.spend(2)
    assert not budget.exhausted
    with pytest.raises(ScanLimit):
        budget.spend()
    assert budget.exhausted


def test_a_budget_passed_to_the_matcher_stops_it_and_none_does_not():
    matcher = Matcher()
    text = "ops@corp.io " * 100
    assert len(list(matcher.find(text))) == 100
    with pytest.raises(ScanLimit):
        list(matcher.find(text, Budget(50)))


def test_dense_ordinary_bodies_stay_below_the_budget_and_find_what_they_did(engine):
    records = [{"id": i, "mail": f"user{i}@corp.io", "note": "renewal due"} for i in range(5000)]
    v = engine.decide("POST", URL, JSON, records)
    assert v.decision is Decision.ALLOW
    assert v.reason_codes == ["PII"]
    assert len(v.findings) == 5000
    assert {f.location for f in v.findings} == {f"body.$[{i}].mail" for i in range(5000)}

    log = "".join(f"{i} GET /x from 10.1.{i % 200}.7 by ops@corp.io\n" for i in range(4000))
    v = engine.decide("POST", URL, TEXT, log)
    assert v.decision is Decision.ALLOW
    kinds = [f.kind for f in v.findings]
    assert kinds.count("email") == 1
    assert kinds.count("ip_address") == 200


def test_a_response_over_budget_is_fingerprinted_as_far_as_the_scan_got(engine):
    observation = engine.observe_response("api.example.com", FLOOD)
    assert observation.scan_limited
    assert observation.data_classes == ["PII"]  # the one email, found before the limit
    assert engine.fingerprints.source(value_hash("a@b.cd")) == "api.example.com"
    assert not engine.observe_response("api.example.com", "mail ops@corp.io").scan_limited


def test_hidden_secrets_over_budget_are_reported_as_scan_limit(engine):
    flood = "AKIAAAAAAAAAAAAAAAAA " * 40_000
    assert engine.hidden_secrets(flood, "") == ["scan_limit"]


def test_multipart_parsing_is_charged_before_it_runs(engine):
    multipart = {"Content-Type": "multipart/form-data; boundary=b"}
    part = '--b\r\nContent-Disposition: form-data; name="a"\r\n\r\nx\r\n'
    v = engine.decide("POST", URL, multipart, part * 5000 + "--b--\r\n")
    assert v.reason_codes == [SCAN_LIMIT]
    many_headers = part[:-5] + "X: y\r\n" * 40_000 + "\r\nv\r\n--b--\r\n"
    assert engine.decide("POST", URL, multipart, many_headers).reason_codes == [SCAN_LIMIT]
    parts = part * 20 + part.replace("\r\nx", "\r\nssn 219-48-3307") + "--b--\r\n"
    v = engine.decide("POST", URL, multipart, parts)
    assert [f.location for f in v.findings] == ["part:a"]


def test_forms_keep_the_values_that_can_hold_a_finding(engine):
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    v = engine.decide("POST", URL, form, "k=v&" * 60_000 + "ssn=219-48-3307&x=")
    assert [(f.kind, f.location) for f in v.findings] == [("us_ssn", "form:ssn")]
    assert v.sanitized_body.endswith("ssn=%5BREDACTED%3AUS_SSN%5D&x=")
    assert (
        engine.decide("POST", URL, form, "no pairs here: ssn 219-48-3307").findings[0].location
        == "body"
    )


def test_findings_raises_scan_limit_over_budget(engine):
    with pytest.raises(ScanLimit):
        engine.findings(URL, TEXT, FLOOD, "api.example.com")


def _nested(depth: int, inner: str) -> str:
    return "[" * depth + inner + "]" * depth


def test_json_too_deep_for_python_is_scanned_as_text(engine):
    raw = _nested(100_000, "")
    body = body_for_scan(raw.encode(), "application/json")
    assert body == raw
    assert engine.decide("POST", URL, JSON, body).decision is Decision.ALLOW
    key = "AKIAQX4RZT7NM2VBK5WJ"
    body = body_for_scan(_nested(50_000, f'"{key}"').encode(), "application/json")
    assert isinstance(body, str)
    assert engine.decide("POST", URL, JSON, body).decision is Decision.DENY


def test_json_deeper_than_the_engine_walks_is_refused_without_raising(engine):
    body = body_for_scan(_nested(MAX_JSON_DEPTH + 1, '"x"').encode(), "application/json")
    assert isinstance(body, list)  # Python parses it; walking it is what is refused
    v = engine.decide("POST", URL, JSON, body)
    assert (v.decision, v.reason_codes) == (Decision.DENY, [SCAN_LIMIT])
    key = "AKIAQX4RZT7NM2VBK5WJ"
    v = engine.decide("POST", URL, JSON, json.loads(_nested(MAX_JSON_DEPTH, f'"{key}"')))
    assert "SECRET_EXFILTRATION" in v.reason_codes


def test_locations_stay_short_and_redaction_still_finds_them(engine):
    long_key = "k" * 100_000
    body = {long_key: [f"ssn 219-48-{3300 + i}" for i in range(50)]}
    fields = request_fields(URL, JSON, body)
    assert max(len(f.location) for f in fields) <= MAX_LOCATION + 8
    v = engine.decide("POST", URL, JSON, body)
    assert v.decision is Decision.SANITIZE
    assert v.sanitized_body == {long_key: ["ssn [REDACTED:US_SSN]"] * 50}
    deep = json.loads(_nested(200, '"ssn 219-48-3307"'))
    clean = engine.decide("POST", URL, JSON, deep).sanitized_body
    assert json.dumps(clean) == _nested(200, '"ssn [REDACTED:US_SSN]"')


def test_every_copy_of_a_value_is_redacted(engine):
    text = "SSN 219-48-3307, again 219-48-3307 and é 219-48-3307."
    v = engine.decide("POST", URL, TEXT, text)
    assert len(v.findings) == 1
    assert v.sanitized_body == (
        "SSN [REDACTED:US_SSN], again [REDACTED:US_SSN] and é [REDACTED:US_SSN]."
    )
    v = engine.decide("POST", URL, JSON, {"a": [text]})
    assert v.sanitized_body == {"a": [v.sanitized_body["a"][0]]}
    assert "219-48" not in json.dumps(v.sanitized_body)


def test_an_encoded_copy_of_a_value_is_redacted_with_the_plain_one(engine):
    number = corpus.card(random.Random(3))
    copy = base64.b64encode(number.encode()).decode()
    v = engine.decide("POST", URL, JSON, {"note": f"card {number} and again {copy}"})
    assert v.decision is Decision.SANITIZE
    out = json.dumps(v.sanitized_body)
    assert number not in out
    assert copy not in out


def test_overlapping_redactions_leave_nothing_of_the_longer():
    text = "0123456789abcdef"
    spans = [Redaction("body", 2, 6, "x", False), Redaction("body", 4, 12, "y", False)]
    assert redact_text(text, spans) == "01[REDACTED:X]cdef"


def test_numbers_too_small_to_be_card_numbers_are_not_scanned(engine):
    embedding = [0.4111111111111111, -0.5555555555554444, 0.123456789012345] * 1000
    assert engine.decide("POST", URL, JSON, {"input": embedding}).findings == []
    fields = request_fields(URL, {}, {"tokens": list(range(50_000)), "text": "hi"})
    assert not [f for f in fields if f.in_body and f.location != "body~keys"]
    for card in (4012888888881881, 4012888888881881.0):
        v = engine.decide("POST", URL, JSON, {"card": card})
        assert [f.kind for f in v.findings] == ["credit_card"]


def test_offsets_are_characters_for_non_ascii_text():
    text = "日本語 ünïcode mail ops@corp.io, 😀 ssn 219-48-3307"
    hits = {h.detector.id: h for h in Matcher().find(text)}
    assert text[hits["email"].start : hits["email"].end] == "ops@corp.io"
    assert text[hits["us_ssn"].start : hits["us_ssn"].end] == "219-48-3307"


def test_seed_phrase_check_agrees_with_the_reference():
    rng = random.Random(11)
    mnemonic = Mnemonic("english")
    for _ in range(300):
        strength = rng.choice([128, 160, 192, 224, 256])
        words = mnemonic.to_mnemonic(rng.randbytes(strength // 8)).split()  # reproducible
        if rng.random() < 0.5:
            words[rng.randrange(len(words))] = rng.choice(mnemonic.wordlist)
        phrase = " ".join(words)
        assert checks.seed_phrase(phrase) == mnemonic.check(phrase), phrase
    assert not checks.seed_phrase("abandon " * 11 + "zzz")


def test_bech32_checksums():
    assert checks.bech32("bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq")
    assert checks.bech32("BC1QW508D6QEJXTDG4Y5R3ZARVARY0C5XW7KV8F3T4")
    assert not checks.bech32("bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdp")
