"""DENY and SANITIZE end to end: what the upstream, the client and /metrics see."""

from __future__ import annotations

import gzip
import json

from bench.servers import verdict
from tests.support.servers import Reply
from tests.support.sidecar import run_client
from tests.support.waiting import eventually

JSON = {"Content-Type": "application/json"}


def test_deny_never_reaches_upstream(sidecar, upstream, scan_api):
    body = b'{"text": "AKIA... leaked"}'
    result = run_client(sidecar, "requests", "POST", upstream.https + "/deny/secret", body, JSON)

    assert result.status == 403
    assert result.headers["x-interven-decision"] == "DENY"
    assert result.headers["x-interven-reasons"] == "SECRETS"
    doc = result.json()
    assert doc["decision"] == "DENY"
    assert doc["reason_codes"] == ["SECRETS"]
    assert doc["trace_id"] == result.headers["x-interven-trace-id"]
    assert doc["policy_name"] == "block-secrets-egress"
    assert "Blocked" in doc["message"]

    scan_api.scans.wait_for(lambda s: s["json"]["url"].endswith("/deny/secret"))
    # A later allowed request on the same upstream is recorded; the denied one never is.
    run_client(sidecar, "requests", "GET", upstream.https + "/allow/after-deny")
    upstream.received.wait_for(lambda r: r.path == "/allow/after-deny")
    assert upstream.requests_to("/deny/secret") == []

    assert (
        sidecar.metric("egress_sidecar_requests_total", decision="DENY", tool="custom_proxy") == 1
    )
    assert sidecar.metric("egress_sidecar_requests_total", decision="ALLOW", tool="slack") == 1
    # Only the forwarded request's response is posted for classification.
    scan_api.response_posts.wait_for(
        lambda p: p["json"]["response_body"]["path"] == "/allow/after-deny"
    )
    eventually(lambda: sidecar.metric("egress_sidecar_response_scans_posted_total") == 1)


def test_sanitize_forwards_the_redacted_json(sidecar, upstream, scan_api):
    original = json.dumps({"text": "card 4111 1111 1111 1111"}).encode()
    result = run_client(sidecar, "httpx", "POST", upstream.https + "/sanitize/json", original, JSON)

    assert result.status == 200
    assert result.headers["x-interven-decision"] == "SANITIZE"
    received = upstream.received.wait_for(lambda r: r.path == "/sanitize/json")
    assert json.loads(received.body) == {"text": "[REDACTED:SECRETS]"}
    assert int(received.headers["Content-Length"]) == len(received.body)
    assert b"4111" not in received.body
    assert (
        sidecar.metric("egress_sidecar_requests_total", decision="SANITIZE", tool="custom_proxy")
        == 1
    )


def test_sanitize_with_a_string_body_forwards_it_as_is(sidecar, upstream, scan_api):
    scan_api.script(Reply(body=verdict("SANITIZE", sanitized_body="name=[REDACTED:PII]")))
    result = run_client(
        sidecar,
        "curl",
        "POST",
        upstream.https + "/form",
        b"name=Jane+Doe",
        {"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert result.status == 200
    received = upstream.received.wait_for(lambda r: r.path == "/form")
    assert received.body == b"name=[REDACTED:PII]"
    assert received.headers["Content-Length"] == str(len(b"name=[REDACTED:PII]"))


def test_compressed_request_is_scanned_decoded_and_sanitized_reencoded(sidecar, upstream, scan_api):
    plain = json.dumps({"text": "ssn 123-45-6789"}).encode()
    result = run_client(
        sidecar,
        "requests",
        "POST",
        upstream.https + "/sanitize/gzip",
        gzip.compress(plain),
        {"Content-Type": "application/json", "Content-Encoding": "gzip"},
    )
    assert result.status == 200
    scan = scan_api.scans.wait_for(lambda s: s["json"]["url"].endswith("/sanitize/gzip"))
    assert scan["json"]["body"] == {"text": "ssn 123-45-6789"}  # decoded before scanning
    received = upstream.received.wait_for(lambda r: r.path == "/sanitize/gzip")
    assert received.headers["Content-Encoding"] == "gzip"
    assert json.loads(gzip.decompress(received.body)) == {"text": "[REDACTED:SECRETS]"}


def test_compressed_response_is_posted_decoded(sidecar, upstream, scan_api):
    result = run_client(
        sidecar, "curl", "GET", upstream.https + "/allow/gzip", headers={"Accept-Encoding": "gzip"}
    )
    assert result.status == 200
    assert result.headers["content-encoding"] == "gzip"  # the agent gets what upstream sent
    trace_id = result.headers["x-interven-trace-id"]
    post = scan_api.response_posts.wait_for(lambda p: p["json"]["trace_id"] == trace_id)
    assert post["json"]["response_body"] == {
        "ok": True,
        "path": "/allow/gzip",
        "secret_looking": "upstream-says-hello",
    }


def test_text_bodies_are_sent_as_text(sidecar, upstream, scan_api):
    run_client(
        sidecar,
        "requests",
        "PUT",
        upstream.https + "/allow/text",
        b"plain words",
        {"Content-Type": "text/plain"},
    )
    scan = scan_api.scans.wait_for(lambda s: s["json"]["url"].endswith("/allow/text"))
    assert scan["json"]["method"] == "PUT"
    assert scan["json"]["body"] == "plain words"


def test_body_over_the_scan_limit_is_refused_unseen(make_sidecar, upstream, scan_api):
    sidecar = make_sidecar(max_body_bytes=2048)
    result = run_client(sidecar, "requests", "POST", upstream.https + "/allow/big", b"x" * 4096)
    assert result.status == 413
    assert result.headers["x-interven-decision"] == "DENY"
    assert result.json()["reason_codes"] == ["BODY_TOO_LARGE"]
    run_client(sidecar, "requests", "GET", upstream.https + "/allow/small")
    upstream.received.wait_for(lambda r: r.path == "/allow/small")
    assert upstream.requests_to("/allow/big") == []
    assert all(not s["json"]["url"].endswith("/allow/big") for s in scan_api.scans.items)
