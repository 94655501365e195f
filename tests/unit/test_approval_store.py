from __future__ import annotations

import stat

import pytest

from sidecar.approvals.store import ApprovalAlreadyDecided, ApprovalNotFound, ApprovalStore
from sidecar.engine.decisions import ApprovalStatus
from tests.support.clock import Clock

SUMMARY = {"method": "POST", "host": "api.github.com", "tool": "github", "operation": "create_pr",
           "reasons": ["POLICY:x"], "trace_id": "t"}  # fmt: skip


def test_lifecycle_and_persistence_across_restarts(tmp_path):
    clock = Clock()
    store = ApprovalStore(tmp_path, expiry=60, clock=clock)
    a = store.request("hash-a", **SUMMARY)
    assert store.status(a) is ApprovalStatus.PENDING
    assert stat.S_IMODE((tmp_path / "approvals.json").stat().st_mode) == 0o600

    restarted = ApprovalStore(tmp_path, expiry=60, clock=clock)
    assert [r["id"] for r in restarted.listing()] == [a]
    assert "request_hash" not in restarted.listing()[0]
    assert restarted.decide(a, approve=True)["status"] == "approved"
    with pytest.raises(ApprovalAlreadyDecided):
        restarted.decide(a, approve=False)
    assert ApprovalStore(tmp_path, 60, clock).status(a) is ApprovalStatus.APPROVED


def test_retries_reuse_the_open_approval_and_an_approval_is_used_once(tmp_path):
    store = ApprovalStore(tmp_path, expiry=60, clock=Clock())
    a = store.request("h", **SUMMARY)
    assert store.request("h", **SUMMARY) == a  # a retry while pending
    store.decide(a, approve=True)
    assert store.request("h", **SUMMARY) == a  # the retry after approval gets it...
    assert store.consume(a) is ApprovalStatus.APPROVED  # ...and the first to act uses it
    assert store.consume(a) is ApprovalStatus.EXPIRED  # any other: no longer valid
    assert store.request("h", **SUMMARY) != a  # a new retry needs a new approval


def test_expiry(tmp_path):
    clock = Clock()
    store = ApprovalStore(tmp_path, expiry=60, clock=clock)
    a = store.request("h", **SUMMARY)
    clock.now += 61
    assert store.status(a) is ApprovalStatus.EXPIRED
    assert store.listing() == []
    with pytest.raises(ApprovalAlreadyDecided):
        store.decide(a, approve=True)


def test_unknown_and_corrupt(tmp_path):
    store = ApprovalStore(tmp_path, expiry=60)
    with pytest.raises(ApprovalNotFound):
        store.status("nope")
    (tmp_path / "approvals.json").write_text("{not json")
    with pytest.raises(ValueError, match="unreadable approvals file"):
        ApprovalStore(tmp_path, expiry=60)
