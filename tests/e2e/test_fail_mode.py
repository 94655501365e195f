"""No verdict: fail closed by default (nothing leaves), fail open only when configured."""

from __future__ import annotations

import logging
import socket

import pytest
import trustme

from bench.servers import verdict
from tests.support.servers import Reply, ScanApiDouble
from tests.support.sidecar import run_client

JSON = {"Content-Type": "application/json"}


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


FAULTS = {
    "server_error": [Reply(status=500, body="boom")] * 3,
    "malformed_verdict": [Reply(body={"decision": "MAYBE", "risk_score": 0.5})],
    "auth": [Reply(status=401, body={"error": "invalid key"})],
    "rejected": [Reply(status=413, body={"error": "too large"})],
}


@pytest.mark.parametrize("kind", sorted(FAULTS))
def test_fail_closed_blocks_without_a_verdict(kind, sidecar, upstream, scan_api):
    scan_api.script(*FAULTS[kind])
    path = f"/allow/closed-{kind}"
    result = run_client(sidecar, "requests", "POST", upstream.https + path, b"{}", JSON)

    assert result.status == 503
    assert result.headers["x-interven-decision"] == "DENY"
    doc = result.json()
    assert doc["reason_codes"] == ["FAIL_CLOSED", f"SCAN_{kind.upper()}"]
    assert kind in doc["message"]
    assert sidecar.metric("egress_sidecar_scan_errors_total", kind=kind) == 1
    assert sidecar.metric("egress_sidecar_fail_closed_blocks_total", kind=kind) == 1
    assert upstream.requests_to(path) == []


def test_5xx_is_retried_then_recovers(sidecar, upstream, scan_api):
    scan_api.script(Reply(status=502), Reply(status=503))
    result = run_client(sidecar, "requests", "GET", upstream.https + "/allow/recovers")
    assert result.status == 200
    assert result.headers["x-interven-decision"] == "ALLOW"
    assert len([s for s in scan_api.scans.items if s["json"]["url"].endswith("/recovers")]) == 3


def test_4xx_is_not_retried(sidecar, upstream, scan_api):
    scan_api.script(Reply(status=401))
    run_client(sidecar, "requests", "GET", upstream.https + "/allow/no-retry")
    assert len([s for s in scan_api.scans.items if s["json"]["url"].endswith("/no-retry")]) == 1


def test_429_honours_retry_after(sidecar, upstream, scan_api):
    scan_api.script(Reply(status=429, headers={"Retry-After": "0"}))
    result = run_client(sidecar, "requests", "GET", upstream.https + "/allow/rate-limited")
    assert result.status == 200
    assert len([s for s in scan_api.scans.items if s["json"]["url"].endswith("/rate-limited")]) == 2


def test_429_with_retry_after_past_the_deadline_fails_fast(make_sidecar, upstream, scan_api):
    sidecar = make_sidecar(scan_timeout=2.0)
    scan_api.script(Reply(status=429, headers={"Retry-After": "3600"}))
    result = run_client(sidecar, "requests", "GET", upstream.https + "/allow/rl-long")
    assert result.status == 503
    assert result.json()["reason_codes"] == ["FAIL_CLOSED", "SCAN_RATE_LIMITED"]
    assert len([s for s in scan_api.scans.items if s["json"]["url"].endswith("/rl-long")]) == 1


def test_scan_timeout_fails_closed(make_sidecar, upstream, scan_api):
    sidecar = make_sidecar(scan_timeout=0.3, scan_retries=0)
    scan_api.script(Reply(body=verdict("ALLOW"), delay=5))
    result = run_client(sidecar, "requests", "GET", upstream.https + "/allow/slow")
    assert result.status == 503
    assert result.json()["reason_codes"] == ["FAIL_CLOSED", "SCAN_TIMEOUT"]
    assert upstream.requests_to("/allow/slow") == []


def test_unreachable_scan_api_fails_closed(confdir, upstream, tmp_path):
    from tests.support.sidecar import start_sidecar

    sidecar = start_sidecar(confdir, f"http://127.0.0.1:{_closed_port()}", upstream.ca_file)
    try:
        result = run_client(sidecar, "requests", "GET", upstream.https + "/allow/unreachable")
        assert result.status == 503
        assert result.json()["reason_codes"] == ["FAIL_CLOSED", "SCAN_UNAVAILABLE"]
        assert sidecar.metric("egress_sidecar_scan_errors_total", kind="unavailable") == 1
        assert upstream.requests_to("/allow/unreachable") == []
    finally:
        sidecar.stop()


def test_scan_api_behind_a_private_ca(confdir, upstream, server_loop, tmp_path):
    """A self-hosted gateway: trusted with --scan-api-ca; without it, TLS fails closed."""
    from tests.support.sidecar import start_sidecar

    gateway_ca = trustme.CA()
    gateway = ScanApiDouble(server_loop, tls=gateway_ca)
    ca_file = tmp_path / "gateway-ca.pem"
    gateway_ca.cert_pem.write_to_path(str(ca_file))
    trusting = start_sidecar(confdir, gateway.url, upstream.ca_file, scan_api_ca=str(ca_file))
    try:
        result = run_client(trusting, "curl", "GET", upstream.https + "/allow/private-gateway")
        assert result.status == 200
        assert result.headers["x-interven-decision"] == "ALLOW"
        gateway.scans.wait_for(lambda s: s["json"]["url"].endswith("/allow/private-gateway"))
    finally:
        trusting.stop()
    untrusting = start_sidecar(confdir, gateway.url, upstream.ca_file)
    try:
        result = run_client(untrusting, "curl", "GET", upstream.https + "/allow/unverified")
        assert result.status == 503
        assert result.json()["reason_codes"] == ["FAIL_CLOSED", "SCAN_UNAVAILABLE"]
        assert upstream.requests_to("/allow/unverified") == []
        assert not any(s["json"]["url"].endswith("/unverified") for s in gateway.scans.items)
    finally:
        untrusting.stop()


def test_fail_open_forwards_logs_and_counts(make_sidecar, upstream, scan_api, caplog):
    caplog.set_level(logging.INFO, logger="egress_sidecar")
    sidecar = make_sidecar(fail_mode="open")
    scan_api.script(*[Reply(status=500)] * 3)
    result = run_client(sidecar, "requests", "POST", upstream.https + "/allow/open", b"{}", JSON)

    assert result.status == 200
    assert result.headers["x-interven-decision"] == "ALLOW"
    assert result.headers["x-interven-reasons"] == "FAIL_OPEN,SCAN_SERVER_ERROR"
    upstream.received.wait_for(lambda r: r.path == "/allow/open")
    assert sidecar.metric("egress_sidecar_fail_open_forwards_total", kind="server_error") == 1
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("fail-open forward" in m for m in warnings)
    decisions = [r.getMessage() for r in caplog.records if r.name == "egress_sidecar.decisions"]
    assert any('"FAIL_OPEN"' in line and '"error":"server_error"' in line for line in decisions)
    # Fail-open forwards have no backend trace: their responses are not posted.
    assert sidecar.metric("egress_sidecar_response_scans_posted_total") == 0


@pytest.mark.parametrize("fail_mode", ["closed", "open"])
def test_a_bug_in_the_sidecar_never_lets_a_request_through(fail_mode, make_sidecar, upstream):
    sidecar = make_sidecar(fail_mode=fail_mode)
    backend = sidecar.info.lifecycle.runtime.judge.backend

    async def broken_scan(request):
        raise RuntimeError("simulated bug")

    backend.scan = broken_scan  # fault injection into the running sidecar
    result = run_client(sidecar, "requests", "GET", upstream.https + f"/allow/bug-{fail_mode}")
    assert result.status == 500
    assert result.json()["reason_codes"] == ["FAIL_CLOSED", "SCAN_INTERNAL"]
    assert "simulated bug" not in result.body.decode()
    assert sidecar.metric("egress_sidecar_scan_errors_total", kind="internal") == 1
    assert upstream.requests_to(f"/allow/bug-{fail_mode}") == []


def test_dead_scan_api_costs_one_fast_failure_then_recovers(make_sidecar, upstream, scan_api):
    sidecar = make_sidecar(breaker_threshold=2, breaker_cooldown=3600, scan_retries=0)
    scan_api.script(Reply(status=503), Reply(status=503))
    for i in range(2):
        result = run_client(sidecar, "requests", "GET", upstream.https + f"/allow/outage{i}")
        assert result.json()["reason_codes"] == ["FAIL_CLOSED", "SCAN_SERVER_ERROR"]
    assert sidecar.metric("egress_sidecar_scan_circuit_open") == 1
    assert sidecar.metric("egress_sidecar_scan_circuit_opens_total") == 1
    seen = len(scan_api.scans.items)
    fast = run_client(sidecar, "requests", "GET", upstream.https + "/allow/while-open")
    assert fast.status == 503
    assert fast.json()["reason_codes"] == ["FAIL_CLOSED", "SCAN_CIRCUIT_OPEN"]
    assert len(scan_api.scans.items) == seen  # not even attempted
    assert upstream.requests_to("/allow/while-open") == []

    # The scan API is back (the double now allows). Let the cooldown elapse (rather than
    # wait an hour): the next request is the trial, and its success closes the circuit.
    sidecar.info.lifecycle.runtime.judge.backend._http.breaker._cooldown = 0
    result = run_client(sidecar, "requests", "GET", upstream.https + "/allow/recovered")
    assert result.status == 200
    assert sidecar.metric("egress_sidecar_scan_circuit_open") == 0


@pytest.mark.parametrize("fail_mode", ["closed", "open"])
def test_circuit_open_follows_the_fail_mode(fail_mode, make_sidecar, upstream, scan_api):
    sidecar = make_sidecar(fail_mode=fail_mode, breaker_threshold=1, breaker_cooldown=3600,
                           scan_retries=0)  # fmt: skip
    scan_api.script(Reply(status=500))
    run_client(sidecar, "requests", "GET", upstream.https + f"/allow/trip-{fail_mode}")
    result = run_client(sidecar, "requests", "GET", upstream.https + f"/allow/co-{fail_mode}")
    if fail_mode == "closed":
        assert result.status == 503
        assert upstream.requests_to(f"/allow/co-{fail_mode}") == []
    else:
        assert result.status == 200
        assert result.headers["x-interven-reasons"] == "FAIL_OPEN,SCAN_CIRCUIT_OPEN"
        assert sidecar.metric("egress_sidecar_fail_open_forwards_total", kind="circuit_open") == 1
