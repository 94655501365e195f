"""`--enforcement shadow`: nothing blocked, rewritten or held; every would-be decision
logged and counted, with every backend."""

from __future__ import annotations

import asyncio
import json
import random

import pytest

from bench.corpora.generated import github
from bench.servers import verdict
from tests.support.governance import InvioletDouble, KirtonicDouble, VelerianDouble
from tests.support.servers import UPSTREAM_HOST, WAIT, Reply
from tests.support.sidecar import API_KEY, GOVERNANCE_KEYS, VELERIAN_ABP, run_client

JSON = {"Content-Type": "application/json"}
BACKENDS = ["local", "interven", "kirtonic", "inviolet", "velerian"]


@pytest.fixture
def shadow(make_sidecar, server_loop, tmp_path):  # type: ignore[no-untyped-def]
    """A shadow-mode sidecar on the named backend, and a body that backend would deny."""

    def make(name: str, **settings):  # type: ignore[no-untyped-def]
        doubles = {
            "kirtonic": lambda: KirtonicDouble(server_loop, GOVERNANCE_KEYS["kirtonic"]),
            "inviolet": lambda: InvioletDouble(server_loop, GOVERNANCE_KEYS["inviolet"]),
            "velerian": lambda: VelerianDouble(
                server_loop, GOVERNANCE_KEYS["velerian"], VELERIAN_ABP
            ),
        }
        governance = {name: doubles[name]().url} if name in doubles else {}
        extra = {"internal_hosts": UPSTREAM_HOST} if name == "local" else {}
        sidecar = make_sidecar(backend=name, enforcement="shadow", governance=governance,
                               confdir=tmp_path / name, **extra, **settings)  # fmt: skip
        secret = github(random.Random(7))
        denied = {"note": f"DENY-ME use {secret}"}  # the doubles' marker; a secret for local
        return sidecar, json.dumps(denied, separators=(",", ":")).encode()

    return make


@pytest.mark.parametrize("name", BACKENDS)
def test_a_would_be_deny_is_forwarded_untouched_logged_and_counted(shadow, upstream, name, caplog):
    caplog.set_level("INFO", logger="egress_sidecar")
    sidecar, body = shadow(name)
    path = f"/deny/shadow-{name}"
    result = run_client(sidecar, "requests", "POST", upstream.https + path, body, JSON)

    assert result.status == 200
    assert result.headers["x-interven-decision"] == "ALLOW"
    assert result.headers["x-interven-shadow-decision"] == "DENY"
    assert upstream.received.wait_for(lambda r: r.path == path).body == body
    assert sidecar.metric("egress_sidecar_shadow_decisions_total", would="DENY") == 1
    lines = [json.loads(r.getMessage()) for r in caplog.records
             if r.name == "egress_sidecar.decisions"]  # fmt: skip
    (line,) = [
        x
        for x in lines
        if x.get("trace_id") == result.headers["x-interven-trace-id"] and x["event"] == "decision"
    ]
    assert (line["decision"], line["would"], line["forwarded"]) == ("ALLOW", "DENY", True)


def test_shadow_neither_rewrites_nor_holds(shadow, upstream, scan_api):
    sidecar, _ = shadow("interven")
    original = b'{"text":"card 4111 1111 1111 1111"}'
    sanitized = run_client(sidecar, "httpx", "POST", upstream.https + "/sanitize/shadow",
                           original, JSON)  # fmt: skip
    assert sanitized.headers["x-interven-shadow-decision"] == "SANITIZE"
    assert upstream.received.wait_for(lambda r: r.path == "/sanitize/shadow").body == original

    held = run_client(sidecar, "curl", "POST", upstream.https + "/approve/shadow-a1", b"{}", JSON)
    assert held.status == 200
    assert held.headers["x-interven-shadow-decision"] == "REQUIRE_APPROVAL"
    upstream.received.wait_for(lambda r: r.path == "/approve/shadow-a1")
    assert scan_api.approval_polls.items == []  # never held, so never polled
    assert sidecar.metric("egress_sidecar_approvals_pending") == 0
    assert sidecar.metric("egress_sidecar_shadow_decisions_total", would="SANITIZE") == 1
    assert sidecar.metric("egress_sidecar_shadow_decisions_total", would="REQUIRE_APPROVAL") == 1


def test_shadow_forwards_without_a_verdict_and_counts_it(shadow, upstream, scan_api):
    scan_api.script(*[Reply(503, "down")] * 3)
    sidecar, _ = shadow("interven")
    result = run_client(sidecar, "requests", "POST", upstream.https + "/shadow-outage", b"{}", JSON)
    assert result.status == 200
    # Fail-closed would have refused it: a would-deny, with the reason it had no verdict.
    assert result.headers["x-interven-shadow-decision"] == "DENY"
    assert result.headers["x-interven-reasons"] == "FAIL_CLOSED,SCAN_SERVER_ERROR"
    upstream.received.wait_for(lambda r: r.path == "/shadow-outage")
    assert sidecar.metric("egress_sidecar_scan_errors_total", kind="server_error") == 1
    assert sidecar.metric("egress_sidecar_shadow_decisions_total", would="DENY") == 1
    assert sidecar.metric("egress_sidecar_fail_closed_blocks_total", kind="server_error") == 0


def test_shadow_still_refuses_the_sidecars_own_key(shadow, upstream, scan_api):
    sidecar, _ = shadow("interven")
    result = run_client(sidecar, "requests", "POST", upstream.https + "/shadow-key",
                        json.dumps({"k": API_KEY}).encode(), JSON)  # fmt: skip
    assert result.status == 403
    assert result.json()["reason_codes"] == ["SIDECAR_CREDENTIAL"]
    assert upstream.requests_to("/shadow-key") == []


def test_shadow_scan_verdicts_reach_the_scan_api_unchanged(shadow, upstream, scan_api):
    scan_api.script(Reply(body=verdict("DENY")))
    sidecar, _ = shadow("interven")
    result = run_client(sidecar, "requests", "POST", upstream.https + "/shadow-post", b"{}", JSON)
    trace_id = result.headers["x-interven-trace-id"]
    # The forwarded request's response is still classified, under the verdict's trace id.
    post = scan_api.response_posts.wait_for(lambda p: p["json"]["trace_id"] == trace_id)
    assert post["json"]["response_body"]["path"] == "/shadow-post"


def test_enforcement_is_fixed_while_running_other_options_are_not(sidecar, upstream, scan_api):
    from mitmproxy.exceptions import OptionsError

    async def update(**values: object) -> None:
        sidecar.master.options.update(**values)

    def run(**values: object) -> None:
        asyncio.run_coroutine_threadsafe(update(**values), sidecar.master.event_loop).result(WAIT)

    # The backend was built for enforce mode (Inviolet's shadow_mode flag, approval holds):
    # switching under it would half-apply, so it is refused and nothing changes.
    with pytest.raises(OptionsError, match="restart to change egress_enforcement"):
        run(egress_enforcement="shadow")
    assert sidecar.master.options.egress_enforcement == "enforce"
    denied = run_client(sidecar, "requests", "POST", upstream.https + "/deny/still", b"{}", JSON)
    assert denied.status == 403

    run(egress_fail_mode="open")  # read per request: may change while running
    scan_api.script(*[Reply(503, "down")] * 3)
    opened = run_client(sidecar, "requests", "POST", upstream.https + "/now-open", b"{}", JSON)
    assert opened.status == 200
    assert opened.headers["x-interven-reasons"] == "FAIL_OPEN,SCAN_SERVER_ERROR"


@pytest.mark.parametrize("name", ["local", "kirtonic"])
def test_shadow_holds_nothing_and_records_no_approval(shadow, upstream, tmp_path, name):
    policy = tmp_path / "approve.yaml"
    policy.write_text(
        "name: approve-all\nrules:\n"
        "  - rule_id: approve-everything\n    match: {paths: ['/*']}\n"
        "    action: REQUIRE_APPROVAL\n    priority: 10\n"
    )
    extra = {"policy": str(policy)} if name == "local" else {}
    sidecar, _ = shadow(name, **extra)
    path = f"/shadow-review/{name}"
    result = run_client(sidecar, "requests", "POST", upstream.https + path,
                        b'{"note": "HOLD-ME"}', JSON)  # fmt: skip
    assert result.status == 200
    assert result.headers["x-interven-shadow-decision"] == "REQUIRE_APPROVAL"
    upstream.received.wait_for(lambda r: r.path == path)
    assert sidecar.admin_get("/approvals?all=1").json()["approvals"] == []
