"""Property-based tests (hypothesis) for body decoding, verdict parsing and redaction."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from sidecar.backends.contract import ScanVerdict
from sidecar.engine import Engine
from sidecar.engine.decisions import Decision
from sidecar.engine.policy_file import default_policy, parse_policy
from sidecar.engine.redact import Redaction, redact_body
from sidecar.judge.bodies import (
    BodyTooLarge,
    BodyUndecodable,
    archive_kind,
    body_for_scan,
    decode_body,
)
from tests.support.codecs import ENCODERS

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(st.binary(max_size=4096), st.sampled_from(sorted(ENCODERS)), st.integers(1, 8192))
def test_decode_roundtrips_or_refuses_but_never_exceeds_the_limit(data, coding, limit):
    encoded = ENCODERS[coding](data)
    try:
        out = decode_body(encoded, coding, limit)
    except BodyTooLarge:
        assert len(data) > limit
    else:
        assert out == data
    assert decode_body(encoded, coding, limit, truncate=True) == data[:limit]


@FAST
@given(st.binary(max_size=2048), st.sampled_from(["gzip", "deflate", "br", "zstd", "x-none"]))
def test_garbage_never_escapes_the_two_documented_errors(data, coding):
    try:
        out = decode_body(data, coding, 4096)
    except (BodyTooLarge, BodyUndecodable):
        return
    assert len(out) <= 4096


@FAST
@given(st.binary(max_size=2048), st.sampled_from(["application/json", "text/plain", ""]))
def test_body_for_scan_accepts_any_bytes(data, content_type):
    try:
        value = body_for_scan(data, content_type)
    except BodyUndecodable:
        # only what starts like an archive and cannot be read as one (refused, 400)
        assert archive_kind(data) is not None
        return
    assert value is None or isinstance(value, (str, dict, list, int, float, bool))
    json.dumps(value)  # always serialisable for the scan API


JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda k: st.lists(k, max_size=4) | st.dictionaries(st.text(max_size=8), k, max_size=4),
    max_leaves=20,
)  # fmt: skip


@FAST
@given(st.dictionaries(st.text(max_size=20), JSONISH, max_size=12))
def test_verdict_parsing_raises_only_validation_errors(doc):
    try:
        verdict = ScanVerdict.model_validate(doc)
    except ValidationError:
        return
    assert isinstance(verdict.decision, Decision)


@FAST
@given(
    st.sampled_from(["ALLOW", "DENY", "SANITIZE", "REQUIRE_APPROVAL"]),
    st.floats(0, 1),
    st.sampled_from(["LOW", "MED", "MEDIUM", "HIGH", "CRITICAL"]),
    JSONISH,
    st.dictionaries(st.text(max_size=10), JSONISH, max_size=4),
)
def test_valid_verdicts_parse_with_any_extra_fields(decision, score, band, body, extra):
    doc = {"decision": decision, "risk_score": score, "risk_band": band, "trace_id": "t",
           "sanitized_body": body if body is not None else "x", "approval_id": "a"}  # fmt: skip
    doc.update({f"x_{k}": v for k, v in extra.items()})
    assert ScanVerdict.model_validate(doc).decision.value == decision


def _shape(value):  # type: ignore[no-untyped-def]
    if isinstance(value, dict):
        return {k: _shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_shape(v) for v in value]
    return type(value).__name__ if not isinstance(value, (int, float)) else "scalar"


SSN = st.builds(lambda a, g, s: f"{a:03d}-{g:02d}-{s:04d}", st.integers(1, 665),
                st.integers(1, 99), st.integers(1, 9999))  # fmt: skip


@FAST
@given(st.dictionaries(st.text(st.characters(codec="ascii", categories=["L", "N"]), min_size=1,
                                max_size=8), st.text(max_size=30), min_size=1, max_size=6),
       SSN, st.data())  # fmt: skip
def test_sanitize_keeps_json_structure_and_removes_the_value(doc, ssn, data):
    engine = Engine(default_policy())
    # Random text may itself hold a finding (`akia0000000000001abg` reads as a disguised
    # AWS key id): the property is about an otherwise clean document.
    assume(not engine.decide("POST", "https://api.example.com/x", {}, doc).findings)
    key = data.draw(st.sampled_from(sorted(doc)))
    doc[key] = f"{doc[key]} ssn {ssn} "
    verdict = engine.decide("POST", "https://api.example.com/x", {}, doc)
    if ssn in ("078-05-1120", "219-09-9999", "123-45-6789"):
        return  # documented advertising numbers are not findings
    assert verdict.decision is Decision.SANITIZE
    clean = verdict.sanitized_body
    assert _shape(clean) == _shape(doc)
    assert ssn not in json.dumps(clean)
    assert "[REDACTED:US_SSN]" in clean[key]


@FAST
@given(
    st.text(max_size=200), st.lists(st.tuples(st.integers(0, 200), st.integers(0, 20)), max_size=5)
)
def test_text_redaction_never_crashes_and_keeps_what_is_outside_the_spans(text, spans):
    redactions = [Redaction("body", min(a, len(text)), min(a + n, len(text)), "X", False)
                  for a, n in spans]  # fmt: skip
    out = redact_body(text, redactions)
    assert isinstance(out, str)
    if not redactions:
        assert out == text


TUNNEL_POLICY = """
name: tunnels
rules:
  - {rule_id: own-ok, match: {hosts: [api.x.com]}, condition: {has_reason: [OWN_CREDENTIAL]},
     action: ALLOW, priority: 5}
  - {rule_id: deny-x, match: {hosts: [api.x.com, "*.paste.com"]}, action: DENY, priority: 4}
  - {rule_id: posts, match: {methods: [POST], hosts: [post.x.com]}, action: DENY, priority: 3}
  - {rule_id: pii, condition: {has_data_class: [PII]}, action: SANITIZE, priority: 2}
  - {rule_id: allowlist, condition: {destination_not_in: ["*.x.com", "*.paste.com"]},
     action: DENY, priority: 1}
"""
DEFAULT_ENGINE = Engine(default_policy())
TUNNEL_ENGINE = Engine(parse_policy(TUNNEL_POLICY, "tunnels.yaml"))
HOSTS = ["api.x.com", "post.x.com", "a.paste.com", "elsewhere.com", "127.0.0.1", "10.0.0.5",
         "169.254.169.254", "4141414b4951583452585a54374e4d32.x.com", "metadata"]  # fmt: skip


@FAST
@given(
    st.sampled_from(HOSTS),
    st.sampled_from(["GET", "POST", "PUT"]),
    st.text(max_size=200),
    st.sampled_from(["", "AKIAQX4RZT7NM2VBK5WJ", "ssn 219-48-3307", "grace@navy.mil"]),
    st.booleans(),
)
def test_a_refused_tunnel_means_every_request_there_is_refused(
    host, method, text, finding, default
):
    """judge_destination (CONNECT) may only say DENY when decide (each request) would."""
    engine = DEFAULT_ENGINE if default else TUNNEL_ENGINE
    tunnel = engine.judge_destination(host, 443)
    request = engine.decide(method, f"https://{host}/p", {}, f"{text} {finding}")
    if tunnel.decision is Decision.DENY:
        assert request.decision is Decision.DENY, (host, method, finding)
