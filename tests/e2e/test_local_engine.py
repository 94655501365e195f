"""The embedded engine (default backend) with the built-in default policy, end to end."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.corpora.generated import github
from tests.support.raw import connect
from tests.support.servers import PII_SSN, UPSTREAM_HOST, WAIT
from tests.support.sidecar import Sidecar, run_client
from tests.support.waiting import eventually

JSON = {"Content-Type": "application/json"}
EXE = str(Path(sys.executable).parent / "egress-sidecar")


@pytest.fixture
def local(make_sidecar, tmp_path):
    """A local-engine sidecar; the test upstream's address is declared internal."""

    def make(**settings):
        return make_sidecar(backend="local", internal_hosts=UPSTREAM_HOST,
                            confdir=tmp_path / "conf", **settings)  # fmt: skip

    return make


def test_clean_request_is_allowed_classified_and_its_response_fingerprinted(local, upstream):
    sidecar = local()
    result = run_client(sidecar, "node", "POST", upstream.https + "/allow/local",
                        json.dumps({"text": "build passed"}).encode(), JSON)  # fmt: skip
    assert result.status == 200
    assert result.headers["x-interven-decision"] == "ALLOW"
    assert result.headers["x-interven-trace-id"]
    upstream.received.wait_for(lambda r: r.path == "/allow/local")
    eventually(lambda: sidecar.metric("egress_sidecar_response_scans_posted_total") == 1)
    assert (
        sidecar.metric("egress_sidecar_requests_total", decision="ALLOW", tool="custom_proxy") == 1
    )
    assert sidecar.metric("egress_sidecar_scan_duration_seconds_count", backend="local") == 1


def test_secret_in_the_body_is_denied(local, upstream):
    sidecar = local()
    token = github(__import__("random").Random(3))
    result = run_client(sidecar, "curl", "POST", upstream.https + "/deny-by-engine",
                        json.dumps({"note": f"use {token}"}).encode(), JSON)  # fmt: skip
    assert result.status == 403
    doc = result.json()
    assert doc["decision"] == "DENY"
    assert "SECRET_EXFILTRATION" in doc["reason_codes"]
    assert "POLICY:deny-secret-exfiltration" in doc["reason_codes"]
    assert token not in result.body.decode()
    run_client(sidecar, "curl", "GET", upstream.https + "/allow/after")
    upstream.received.wait_for(lambda r: r.path == "/allow/after")
    assert upstream.requests_to("/deny-by-engine") == []


def test_high_risk_pii_is_redacted_before_it_leaves(local, upstream):
    sidecar = local()
    body = {"patient": {"name": "Ada", "ssn": "219-48-3307"}, "visits": 3}
    result = run_client(sidecar, "requests", "POST", upstream.https + "/records",
                        json.dumps(body).encode(), JSON)  # fmt: skip
    assert result.status == 200
    assert result.headers["x-interven-decision"] == "SANITIZE"
    received = upstream.received.wait_for(lambda r: r.path == "/records")
    assert json.loads(received.body) == {
        "patient": {"name": "Ada", "ssn": "[REDACTED:US_SSN]"},
        "visits": 3,
    }


def test_ssrf_destinations_are_denied_without_contact(local):
    sidecar = local()
    for url in ("http://169.254.169.254/latest/meta-data/", "http://127.0.0.3:9/admin"):
        result = run_client(sidecar, "curl", "GET", url)
        assert result.status == 403
        assert "SSRF" in result.json()["reason_codes"]
    # Over TLS the CONNECT itself is judged, before any tunnel opens.
    status, doc, sock = connect(str(sidecar.info.proxy), "127.0.0.3:9")
    sock.close()
    assert status == 403
    assert "SSRF" in doc["reason_codes"]


def test_read_then_write_is_denied(local, upstream):
    sidecar = local()
    read = run_client(sidecar, "requests", "GET", upstream.https + "/pii/customer")
    assert read.status == 200
    assert PII_SSN in read.body.decode()  # the agent read it legitimately
    eventually(lambda: sidecar.metric("egress_sidecar_response_scans_posted_total") == 1)
    # Carrying it to another destination (denied before any contact) is flagged.
    write = run_client(sidecar, "requests", "POST", "http://127.0.0.3:9/collect",
                       json.dumps({"data": f"ssn {PII_SSN}"}).encode(), JSON)  # fmt: skip
    assert write.status == 403
    assert "READ_THEN_WRITE" in write.json()["reason_codes"]


def _cli(*args: str, sidecar: Sidecar) -> subprocess.CompletedProcess[str]:
    """`egress-sidecar approvals ...`: the admin token is read from the confdir."""
    where = ["--admin", str(sidecar.info.admin), "--confdir", str(sidecar.confdir)]
    return subprocess.run([EXE, *args, *where], capture_output=True, text=True,
                          timeout=WAIT, check=False)  # fmt: skip


def test_local_approvals_cli_and_restart(local, upstream, tmp_path):
    policy = tmp_path / "approve.yaml"
    policy.write_text(
        "name: approve-writes\nrules:\n"
        "  - rule_id: approve-reports\n    match: {paths: ['/reports*']}\n"
        "    action: REQUIRE_APPROVAL\n    priority: 10\n"
    )
    sidecar = local(policy=str(policy), approval_timeout=30)
    from tests.e2e.test_approvals import _in_background

    held, box = _in_background(run_client, sidecar, "requests", "POST",
                               upstream.https + "/reports/q3", b'{"q": 3}', JSON)  # fmt: skip
    eventually(lambda: sidecar.metric("egress_sidecar_approvals_pending") == 1)
    listing = _cli("approvals", "list", sidecar=sidecar)
    assert listing.returncode == 0, listing.stderr
    approval_id, status = listing.stdout.split()[:2]
    assert status == "pending"
    assert f"POST https://127.0.0.2:{upstream.https_port}/reports/q3" in listing.stdout
    assert "POLICY:approve-reports" in listing.stdout

    approved = _cli("approvals", "approve", approval_id, sidecar=sidecar)
    assert approved.stdout.strip() == f"{approval_id}: approved"
    held.join(WAIT)
    assert box["result"].status == 200
    assert box["result"].headers["x-interven-approval"] == "approved"
    assert upstream.requests_to("/reports/q3")[0].body == b'{"q": 3}'
    again = _cli("approvals", "approve", approval_id, sidecar=sidecar)
    assert again.returncode == 2
    assert "already approved" in again.stderr

    # A pending approval survives a restart; the agent's retry then goes through once.
    held2, _ = _in_background(run_client, sidecar, "requests", "POST",
                                 upstream.https + "/reports/q4", b'{"q": 4}', JSON)  # fmt: skip
    eventually(lambda: sidecar.metric("egress_sidecar_approvals_pending") == 1)
    sidecar.stop()
    held2.join(WAIT)
    restarted = local(policy=str(policy), approval_timeout=30)
    pending = _cli("approvals", "list", sidecar=restarted).stdout.split()
    assert pending[1] == "pending"
    assert _cli("approvals", "approve", pending[0], sidecar=restarted).returncode == 0
    retry = run_client(restarted, "requests", "POST", upstream.https + "/reports/q4",
                       b'{"q": 4}', JSON)  # fmt: skip
    assert retry.status == 200
    assert retry.headers["x-interven-approval"] == "approved"
    assert len(upstream.requests_to("/reports/q4")) == 1
    denied = _cli("approvals", "deny", "no-such-id", sidecar=restarted)
    assert denied.returncode == 2
    assert "no approval no-such-id" in denied.stderr


def test_refuse_mode_answers_at_once_and_lets_the_retry_through_once_approved(
    local, upstream, tmp_path
):
    policy = tmp_path / "approve.yaml"
    policy.write_text(
        "name: approve-writes\nrules:\n"
        "  - rule_id: approve-reports\n    match: {paths: ['/reports*']}\n"
        "    action: REQUIRE_APPROVAL\n    priority: 10\n"
    )
    sidecar = local(policy=str(policy), approval_mode="refuse")
    url, body = upstream.https + "/reports/refused", b'{"q": 5}'
    first = run_client(sidecar, "curl", "POST", url, body, JSON)
    assert first.status == 403
    assert first.headers["x-interven-approval"] == "required"
    approval_id = first.json()["approval_id"]
    assert sidecar.metric("egress_sidecar_approvals_pending") == 0  # nothing was held
    assert upstream.requests_to("/reports/refused") == []

    assert _cli("approvals", "approve", approval_id, sidecar=sidecar).returncode == 0
    retry = run_client(sidecar, "curl", "POST", url, body, JSON)
    assert retry.status == 200
    assert retry.headers["x-interven-approval"] == "approved"
    assert upstream.received.wait_for(lambda r: r.path == "/reports/refused").body == body
    # An approval lets one request through: the next identical one needs a new one.
    again = run_client(sidecar, "curl", "POST", url, body, JSON)
    assert again.status == 403
    assert again.json()["approval_id"] != approval_id
    assert len(upstream.requests_to("/reports/refused")) == 1
