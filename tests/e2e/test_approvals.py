"""REQUIRE_APPROVAL: holds that never stall other flows, and every way a hold ends."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import threading
from typing import Any

from tests.support.servers import WAIT
from tests.support.sidecar import CLIENTS_DIR, run_client
from tests.support.waiting import eventually

JSON = {"Content-Type": "application/json"}


def _in_background(fn: Any, *args: Any, **kwargs: Any) -> tuple[threading.Thread, dict[str, Any]]:
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["result"] = fn(*args, **kwargs)
        except BaseException as e:
            box["error"] = e

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, box


def test_held_request_does_not_delay_others_and_forwards_when_approved(sidecar, upstream, scan_api):
    body = b'{"action": "wire $10,000"}'
    held, box = _in_background(
        run_client, sidecar, "requests", "POST", upstream.https + "/approve/a1", body, JSON
    )
    scan_api.approval_polls.wait_for(lambda approval_id: approval_id == "a1")
    assert sidecar.metric("egress_sidecar_approvals_pending") == 1

    # While a1 is held, another request goes through end to end.
    other = run_client(sidecar, "curl", "GET", upstream.https + "/allow/while-held")
    assert other.status == 200
    assert held.is_alive(), "the held request finished before it was approved"
    assert upstream.requests_to("/approve/a1") == []

    scan_api.approvals["a1"] = "approved"
    held.join(WAIT)
    assert "error" not in box, box.get("error")
    result = box["result"]
    assert result.status == 200
    assert result.headers["x-interven-decision"] == "REQUIRE_APPROVAL"
    assert result.headers["x-interven-approval"] == "approved"
    received = upstream.received.wait_for(lambda r: r.path == "/approve/a1")
    assert received.body == body
    assert sidecar.metric("egress_sidecar_approvals_pending") == 0
    assert sidecar.metric("egress_sidecar_approval_wait_seconds_count", outcome="approved") == 1


def test_denied_approval_is_refused(sidecar, upstream, scan_api):
    scan_api.approvals["a2"] = "denied"
    result = run_client(sidecar, "requests", "POST", upstream.https + "/approve/a2", b"{}", JSON)
    assert result.status == 403
    assert result.headers["x-interven-decision"] == "REQUIRE_APPROVAL"
    assert result.headers["x-interven-approval"] == "denied"
    assert result.json()["reason_codes"] == ["SECRETS", "APPROVAL_DENIED"]
    assert upstream.requests_to("/approve/a2") == []
    assert sidecar.metric("egress_sidecar_approval_wait_seconds_count", outcome="denied") == 1


def test_expired_approval_is_refused(sidecar, upstream, scan_api):
    scan_api.approvals["a3"] = "expired"
    result = run_client(sidecar, "requests", "POST", upstream.https + "/approve/a3", b"{}", JSON)
    assert result.status == 403
    assert "APPROVAL_EXPIRED" in result.json()["reason_codes"]
    assert upstream.requests_to("/approve/a3") == []


def test_approval_timeout_refuses(make_sidecar, upstream, scan_api):
    sidecar = make_sidecar(approval_timeout=0.3)
    result = run_client(sidecar, "requests", "POST", upstream.https + "/approve/a4", b"{}", JSON)
    assert result.status == 403
    assert result.headers["x-interven-approval"] == "timed_out"
    assert upstream.requests_to("/approve/a4") == []
    assert sidecar.metric("egress_sidecar_approval_wait_seconds_count", outcome="timed_out") == 1


def test_hold_ends_when_the_agent_hangs_up(sidecar, upstream, scan_api):
    spec = {
        "method": "POST",
        "url": upstream.https + "/approve/a5",
        "headers": JSON,
        "body": "{}",
        "http2": False,
    }
    agent = subprocess.Popen(
        [
            "bash",
            "-c",
            f"{sidecar.env_command()} && exec {shlex.quote(sys.executable)} "
            f"{CLIENTS_DIR / 'py_client.py'} requests",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={k: v for k, v in os.environ.items() if "proxy" not in k.lower()},
    )
    assert agent.stdin is not None
    agent.stdin.write(json.dumps(spec).encode())
    agent.stdin.close()
    scan_api.approval_polls.wait_for(lambda approval_id: approval_id == "a5")
    agent.send_signal(signal.SIGKILL)
    agent.wait(WAIT)

    eventually(
        lambda: (
            sidecar.metric("egress_sidecar_approval_wait_seconds_count", outcome="abandoned") == 1
        )
    )
    assert sidecar.metric("egress_sidecar_approvals_pending") == 0
    # Approving afterwards sends nothing: the request is gone.
    scan_api.approvals["a5"] = "approved"
    run_client(sidecar, "requests", "GET", upstream.https + "/allow/after-hangup")
    upstream.received.wait_for(lambda r: r.path == "/allow/after-hangup")
    assert upstream.requests_to("/approve/a5") == []


def test_held_requests_are_bounded(make_sidecar, upstream, scan_api):
    sidecar = make_sidecar(max_pending_approvals=1)
    held, box = _in_background(
        run_client, sidecar, "requests", "POST", upstream.https + "/approve/a6", b"{}", JSON
    )
    scan_api.approval_polls.wait_for(lambda approval_id: approval_id == "a6")
    second = run_client(sidecar, "requests", "POST", upstream.https + "/approve/a7", b"{}", JSON)
    assert second.status == 503
    assert second.json()["reason_codes"] == ["APPROVAL_CAPACITY"]
    scan_api.approvals["a6"] = "approved"
    held.join(WAIT)
    assert box["result"].status == 200
    assert upstream.requests_to("/approve/a7") == []
