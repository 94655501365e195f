"""The judge on its own: no proxy, no sockets, the real embedded engine as backend."""

from __future__ import annotations

import asyncio
import gzip
from pathlib import Path

import pytest

from sidecar.approvals.store import ApprovalStore
from sidecar.backends.contract import ScanRequest, ScanVerdict
from sidecar.backends.errors import ScanUnavailable
from sidecar.backends.local import LocalBackend
from sidecar.config.settings import load_settings
from sidecar.engine import Engine, Policy
from sidecar.engine.decisions import Decision
from sidecar.engine.known_secrets import KnownSecrets
from sidecar.engine.policy_file import default_policy
from sidecar.judge.destination import Destinations
from sidecar.judge.enforce import local_block
from sidecar.judge.judge import Judge, Judgement, Outbound
from tests.support.dns import ScriptedDns

OWN_KEY = "iv_live_Q8h2Zr7KpW4xTn9LmC3vB6abcd"
AWS_KEY = "AKIAQX4RXZT7NM2YB5CW"
URL = "https://api.example.com/v1/notes"


class DownBackend(LocalBackend):
    """The embedded engine, unreachable: every scan fails as a scan API outage would."""

    async def scan(self, request: ScanRequest) -> ScanVerdict:
        raise ScanUnavailable("down")


APPROVE_DELETES = Policy.model_validate({
    "name": "approve-deletes",
    "rules": [{"rule_id": "approve-deletes", "match": {"methods": ["delete"]},
               "action": "REQUIRE_APPROVAL", "priority": 5}],
})  # fmt: skip


def _judge(tmp_path: Path, backend_class: type[LocalBackend] = LocalBackend,
           dns: ScriptedDns | None = None, policy: Policy | None = None,
           **settings: object) -> Judge:  # fmt: skip
    loaded = load_settings(listen="127.0.0.1:0", admin="off", confdir=str(tmp_path), **settings)
    engine = Engine(policy or default_policy(), tuple(loaded.internal_hosts))
    backend = backend_class(engine, ApprovalStore(tmp_path, loaded.approval_expiry))
    known = KnownSecrets([OWN_KEY])
    resolver = dns.resolver() if dns is not None else None
    return Judge(loaded, backend, Destinations(loaded, engine, resolver, known), known)


def _run(judge: Judge, out: Outbound) -> Judgement:
    return asyncio.run(judge.judge(out))


def _post(body: bytes, **fields: object) -> Outbound:
    return Outbound("POST", URL, body=body, content_type="application/json", **fields)  # type: ignore[arg-type]


def test_a_benign_request_is_allowed_with_the_verdict_behind_it(tmp_path):
    j = _run(_judge(tmp_path), _post(b'{"note": "lunch at noon"}'))
    assert j.enforcement.decision is Decision.ALLOW
    assert j.enforcement.forward
    assert j.verdict is not None
    assert j.backend == "local"
    assert j.scan_seconds is not None
    assert j.error is None


def test_the_sidecars_own_key_is_refused_even_in_shadow_mode(tmp_path):
    j = _run(_judge(tmp_path, enforcement="shadow"), _post(f'{{"k": "{OWN_KEY}"}}'.encode()))
    assert j.enforcement.reasons == ["SIDECAR_CREDENTIAL"]
    assert not j.enforcement.forward
    assert j.verdict is None  # never shown to a backend


def test_the_own_key_check_comes_before_a_protocol_refusal(tmp_path):
    refusal = (local_block("METHOD_INVALID", "bad method", 400), "method_invalid")
    clean = _run(_judge(tmp_path), _post(b"{}", refusal=refusal))
    assert clean.enforcement.reasons == ["METHOD_INVALID"]
    assert clean.refusal == "method_invalid"
    carrying = _run(_judge(tmp_path), _post(OWN_KEY.encode(), refusal=refusal))
    assert carrying.enforcement.reasons == ["SIDECAR_CREDENTIAL"]


def test_a_key_inside_a_gzip_body_is_found(tmp_path):
    body = gzip.compress(f'{{"creds": "{AWS_KEY}"}}'.encode())
    j = _run(_judge(tmp_path), _post(body, content_encoding="gzip"))
    assert j.enforcement.decision is Decision.DENY
    assert "SECRETS" in j.enforcement.reasons


def test_an_unreadable_coding_is_refused_before_the_backend(tmp_path):
    j = _run(_judge(tmp_path), _post(b"not gzip", content_encoding="gzip"))
    assert j.enforcement.reasons == ["BODY_UNDECODABLE"]
    assert j.enforcement.status == 400
    assert j.verdict is None


@pytest.mark.parametrize(
    ("mode", "forward", "reason"), [("closed", False, "FAIL_CLOSED"), ("open", True, "FAIL_OPEN")]
)
def test_without_a_verdict_the_fail_mode_decides(tmp_path, mode, forward, reason):
    j = _run(_judge(tmp_path, DownBackend, fail_mode=mode), _post(b"{}"))
    assert j.enforcement.forward is forward
    assert j.enforcement.reasons[0] == reason
    assert (j.error, j.fail) == ("unavailable", mode)


def test_shadow_mode_forwards_a_fail_closed_block_as_a_would_be_deny(tmp_path):
    j = _run(_judge(tmp_path, DownBackend, enforcement="shadow"), _post(b"{}"))
    assert j.enforcement.forward
    assert j.enforcement.would is Decision.DENY
    assert j.fail == "closed"


def test_a_name_resolving_to_a_metadata_address_is_refused_after_the_verdict(tmp_path):
    dns = ScriptedDns(api_example_com=["169.254.169.254"])
    out = _post(b"{}", destination=("api.example.com", 443))
    j = _run(_judge(tmp_path, dns=dns), out)
    assert not j.enforcement.forward
    assert "SSRF" in j.enforcement.reasons
    assert j.refusal is not None
    assert dns.lookups == ["api.example.com"]


def test_a_denied_request_is_never_resolved(tmp_path):
    dns = ScriptedDns(api_example_com=["203.0.113.7"])
    out = _post(f'{{"k": "{AWS_KEY}"}}'.encode(), destination=("api.example.com", 443))
    j = _run(_judge(tmp_path, dns=dns), out)
    assert j.enforcement.decision is Decision.DENY
    assert dns.lookups == []


def test_a_message_larger_than_the_scan_limit_is_refused(tmp_path):
    out = Outbound("WEBSOCKET", "wss://api.example.com/ws", body=b"x" * 2048, message=True)
    j = _run(_judge(tmp_path, max_body_bytes=1024), out)
    assert j.enforcement.reasons == ["BODY_TOO_LARGE"]


def test_a_request_needing_approval_is_refused_with_its_id_in_refuse_mode(tmp_path):
    out = Outbound("DELETE", "https://api.github.com/repos/acme/app")
    j = _run(_judge(tmp_path, policy=APPROVE_DELETES, approval_mode="refuse"), out)
    assert j.verdict is not None
    assert j.verdict.decision is Decision.REQUIRE_APPROVAL
    assert j.enforcement.approval == "required"
    assert not j.enforcement.forward
    assert "APPROVAL_REQUIRED" in j.enforcement.reasons


def test_a_bug_is_a_refusal_never_a_forward(tmp_path, monkeypatch):
    judge = _judge(tmp_path)

    def broken(*_: object) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(judge, "scan_request", broken)
    j = _run(judge, _post(b"{}"))
    assert not j.enforcement.forward
    assert j.error == "internal"


@pytest.mark.parametrize("method", ["TCP", "WEBSOCKET"])
def test_an_http_request_whose_method_names_a_stream_is_judged_as_a_request(tmp_path, method):
    """The agent chooses the method: a request line `TCP http://...` is still a request,
    with its headers searched and its protocol refusal kept."""
    keyed = Outbound(method, URL, headers=(("authorization", f"Bearer {OWN_KEY}"),))
    assert _run(_judge(tmp_path), keyed).enforcement.reasons == ["SIDECAR_CREDENTIAL"]
    refusal = (local_block("REQUEST_MALFORMED", "smuggled", 400), "request_malformed")
    refused = _run(_judge(tmp_path), Outbound(method, URL, refusal=refusal))
    assert refused.enforcement.reasons == ["REQUEST_MALFORMED"]
    hidden = gzip.compress(f'{{"k": "{AWS_KEY}"}}'.encode())
    gzipped = Outbound(method, URL, body=hidden, content_encoding="gzip",
                       content_type="application/json")  # fmt: skip
    decoded = _run(_judge(tmp_path), gzipped)
    assert "SECRETS" in decoded.enforcement.reasons


def test_the_sidecars_own_key_in_rot13_is_refused(tmp_path):
    """The engine reads ROT13; so does the own-key check (a red team's probe)."""
    rot13 = OWN_KEY.translate(str.maketrans(
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz",
        "NOPQRSTUVWXYZABCDEFGHIJKLMnopqrstuvwxyzabcdefghijklm"))  # fmt: skip
    for out in (_post(f'{{"note": "{rot13}"}}'.encode()),
                Outbound("POST", URL, headers=(("x-a", rot13),)),
                Outbound("WEBSOCKET", "wss://api.example.com/ws", body=rot13.encode(),
                         message=True)):  # fmt: skip
        assert _run(_judge(tmp_path), out).enforcement.reasons == ["SIDECAR_CREDENTIAL"]
