"""Every way the scan API can fail, under both fail modes.

closed: the request never reaches the upstream and the agent gets a 503 naming the
cause. open: the request is forwarded, marked FAIL_OPEN, logged and counted.
"""

from __future__ import annotations

import socket

import pytest

from bench.servers import verdict
from tests.support.servers import Reply
from tests.support.sidecar import run_client, start_sidecar

SLOW = {"scan_timeout": 0.5, "scan_retries": 0}

FAULTS: dict[str, tuple[list[Reply], str, dict[str, object]]] = {
    "5xx": ([Reply(status=500)] * 3, "server_error", {}),
    "timeout_before_headers": ([Reply(body=verdict(), delay=3)], "timeout", SLOW),
    "timeout_mid_body": ([Reply(body=verdict(), body_delay=3)], "timeout", SLOW),
    "429_without_retry_after": ([Reply(status=429)] * 3, "rate_limited", {}),
    "429_retry_after_too_long": ([Reply(status=429, headers={"Retry-After": "600"})],
                                 "rate_limited", {}),
    "malformed_json": ([Reply(body="{not json")], "malformed_verdict", {}),
    "missing_decision": ([Reply(body={k: v for k, v in verdict().items() if k != "decision"})],
                         "malformed_verdict", {}),
    "unknown_decision": ([Reply(body=verdict("QUARANTINE"))], "malformed_verdict", {}),
    "sanitize_without_body": ([Reply(body=verdict("SANITIZE"))], "malformed_verdict", {}),
    "approval_without_id": ([Reply(body=verdict("REQUIRE_APPROVAL"))], "malformed_verdict", {}),
    "401": ([Reply(status=401)], "auth", {}),
}  # fmt: skip


@pytest.mark.parametrize("fail_mode", ["closed", "open"])
@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_fault(fault, fail_mode, make_sidecar, upstream, scan_api):
    replies, kind, settings = FAULTS[fault]
    sidecar = make_sidecar(fail_mode=fail_mode, **settings)
    scan_api.script(*replies)
    path = f"/allow/fault-{fault}-{fail_mode}"
    result = run_client(sidecar, "requests", "POST", upstream.https + path, b'{"x": 1}',
                        {"Content-Type": "application/json"})  # fmt: skip
    assert sidecar.metric("egress_sidecar_scan_errors_total", kind=kind) == 1
    if fail_mode == "closed":
        assert result.status == 503
        assert result.json()["reason_codes"] == ["FAIL_CLOSED", f"SCAN_{kind.upper()}"]
        assert sidecar.metric("egress_sidecar_fail_closed_blocks_total", kind=kind) == 1
        assert upstream.requests_to(path) == []
    else:
        assert result.status == 200
        assert result.headers["x-interven-reasons"] == f"FAIL_OPEN,SCAN_{kind.upper()}"
        assert sidecar.metric("egress_sidecar_fail_open_forwards_total", kind=kind) == 1
        assert upstream.requests_to(path)[0].body == b'{"x": 1}'


@pytest.mark.parametrize("fail_mode", ["closed", "open"])
def test_connection_refused(fail_mode, confdir, upstream):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    sidecar = start_sidecar(confdir, f"http://127.0.0.1:{port}", upstream.ca_file,
                            fail_mode=fail_mode)  # fmt: skip
    try:
        path = f"/allow/refused-{fail_mode}"
        result = run_client(sidecar, "requests", "GET", upstream.https + path)
        assert sidecar.metric("egress_sidecar_scan_errors_total", kind="unavailable") == 1
        if fail_mode == "closed":
            assert result.status == 503
            assert upstream.requests_to(path) == []
        else:
            assert result.status == 200
            assert len(upstream.requests_to(path)) == 1
    finally:
        sidecar.stop()


def test_approval_status_failing_mid_hold_keeps_holding(make_sidecar, upstream, scan_api):
    """A failed poll is not a decision: the hold continues and a later answer counts."""
    polls: list[str] = []

    def flaky(approval_id: str) -> Reply:
        polls.append(approval_id)
        if len(polls) <= 3:
            return Reply(status=500)
        return Reply(body={"status": "approved"})

    scan_api.approval_behaviour = flaky
    sidecar = make_sidecar(scan_retries=0)
    result = run_client(sidecar, "requests", "POST", upstream.https + "/approve/flaky", b"{}")
    assert result.status == 200
    assert result.headers["x-interven-approval"] == "approved"
    assert len(polls) >= 4
    assert len(upstream.requests_to("/approve/flaky")) == 1


def test_approval_status_failing_until_the_deadline_refuses(make_sidecar, upstream, scan_api):
    scan_api.approval_behaviour = lambda approval_id: Reply(status=503)
    sidecar = make_sidecar(scan_retries=0, approval_timeout=0.5)
    result = run_client(sidecar, "requests", "POST", upstream.https + "/approve/down", b"{}")
    assert result.status == 403
    assert result.headers["x-interven-approval"] == "timed_out"
    assert upstream.requests_to("/approve/down") == []
