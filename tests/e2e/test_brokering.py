"""Brokered credentials through the running proxy: real clients hold only what
`egress-sidecar env` exports (placeholders); the bound upstream receives the real value,
any other destination receives nothing, and echoes come back scrubbed."""

from __future__ import annotations

import base64
import json
import shlex
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from websockets.sync.client import connect as ws_connect

from sidecar.broker.bindings import load_bindings
from tests.support import leaks
from tests.support.brokered import (
    REAL_VALUES,
    NamedUpstream,
    SecretMount,
    bindings_file,
    brokered_dns,
)
from tests.support.governance import InvioletDouble, KirtonicDouble, VelerianDouble
from tests.support.servers import Reply
from tests.support.sidecar import GOVERNANCE_KEYS, VELERIAN_ABP, Sidecar, run_client
from tests.support.waiting import eventually

OPENAI, ROTATED, WEBHOOK, WS_TOKEN = REAL_VALUES
JSON_KEY = "jk-REALjsonfield-key-5b8d2c9e0f1a"
CLIENTS = ["curl", "httpx", "requests", "node"]
VALUES = {"openai-api-key": OPENAI, "webhook-secret": WEBHOOK, "json-key": JSON_KEY,
          "ws-token": WS_TOKEN}  # fmt: skip

for value in (*REAL_VALUES, JSON_KEY):
    leaks.register_brokered(value)


@pytest.fixture(scope="module")
def bound(server_loop, upstream) -> NamedUpstream:
    return NamedUpstream(server_loop, upstream.ca, "api.bound.test")


@pytest.fixture(scope="module")
def other(server_loop, upstream) -> NamedUpstream:
    return NamedUpstream(server_loop, upstream.ca, "hooks.other.test")


@pytest.fixture
def mount(tmp_path) -> SecretMount:
    m = SecretMount(tmp_path / "secret")
    m.update(VALUES)
    return m


@pytest.fixture
def start(make_sidecar, tmp_path, mount, bound):
    """A sidecar brokering the three credentials of `bindings_file`."""

    def make(**settings) -> Sidecar:
        path = bindings_file(tmp_path, mount, bound)
        sidecar = make_sidecar(
            brokered_credentials=str(path), resolver=brokered_dns().resolver(), **settings
        )
        sidecar.env_args = ("--brokered-credentials", str(path))
        return sidecar

    return make


def placeholder(sidecar: Sidecar, name: str) -> str:
    path = Path(sidecar.env_args[1])
    return {c.name: c.placeholder for c in load_bindings(path).credentials}[name]


def proxied(sidecar: Sidecar, **kw) -> httpx.Client:
    return httpx.Client(
        proxy=f"http://{sidecar.info.proxy}", verify=str(sidecar.ca.bundle), trust_env=False, **kw
    )


def since(upstream: NamedUpstream, n: int):
    return upstream.requests[n:]


@pytest.mark.parametrize("client", CLIENTS)
@pytest.mark.parametrize("backend", ["local", "interven"])
def test_bound_upstream_gets_the_value_and_no_other_destination_does(
    start, bound, other, scan_api, client, backend
):
    sidecar = start(backend=backend)
    before_bound, before_other = len(bound.requests), len(other.requests)
    auth = {"Authorization": "Bearer $OPENAI_API_KEY"}  # the agent shell's variable
    ok = run_client(sidecar, client, "GET", f"{bound.base}/v1/models", headers=auth,
                    expand_env=True)  # fmt: skip
    assert ok.status == 200, ok.body
    got = since(bound, before_bound)
    assert [r.headers["Authorization"] for r in got] == [f"Bearer {OPENAI}"]
    # The same placeholder posted to a webhook: refused, nothing reaches it.
    body = b'{"text": "my key is $OPENAI_API_KEY"}'
    refused = run_client(sidecar, client, "POST", f"{other.base}/collect", body,
                         {"Content-Type": "application/json"}, expand_env=True)  # fmt: skip
    assert refused.status == 403
    assert refused.json()["reason_codes"] == ["BROKERED_CREDENTIAL_UNBOUND"]
    assert refused.json()["credentials"] == ["openai"]
    assert since(other, before_other) == []
    assert sidecar.metric("egress_sidecar_broker_substitutions_total", credential="openai") == 1
    assert sidecar.metric("egress_sidecar_broker_refusals_total", credential="openai",
                          reason="unbound") == 1  # fmt: skip
    if backend == "interven":
        # The scan API was told which placeholder was bound, and saw no key at all.
        scans = json.dumps([s for s in scan_api.scans.items])
        assert "[brokered:openai]" in scans
        assert placeholder(sidecar, "openai") not in scans
        assert OPENAI not in scans


def test_agent_environment_holds_placeholders_never_values(start):
    sidecar = start()
    out = subprocess.run(["bash", "-c", sidecar.env_command() + " && env"],
                         capture_output=True, text=True, check=True)  # fmt: skip
    leaks.record(out.stdout)
    env = dict(line.split("=", 1) for line in out.stdout.splitlines() if "=" in line)
    assert env["OPENAI_API_KEY"] == placeholder(sidecar, "openai")
    assert env["OPENAI_API_KEY"].startswith("sk-proj-PHOLD0")
    assert env["WEBHOOK_SECRET"] == placeholder(sidecar, "webhook")
    for value in (*REAL_VALUES, JSON_KEY):
        assert value not in out.stdout


@pytest.mark.parametrize(
    ("where", "expect"),
    [
        ("query", "unbound"),  # a placeholder in the query of another host
        ("header", "unbound"),
        ("base64-body", "unbound"),  # encoded: still recognised
        ("reversed-body", "unbound"),
        ("real-value", "value"),  # the agent learned the real value somehow
        ("real-value-base64", "value"),
    ],
)
def test_refused_in_every_form_and_every_mode(start, other, where, expect):
    for sidecar in (start(enforcement="shadow"), start(fail_mode="open")):
        ph = placeholder(sidecar, "openai")
        url, headers, body = f"{other.base}/x", {}, b""
        if where == "query":
            url += f"?k={ph}"
        elif where == "header":
            headers = {"X-Api-Key": ph}
        elif where == "base64-body":
            body = base64.b64encode(ph.encode())
        elif where == "reversed-body":
            body = ph[::-1].encode()
        elif where == "real-value":
            body = f"key={OPENAI}".encode()
        else:
            body = base64.b64encode(OPENAI.encode())
        before = len(other.requests)
        with proxied(sidecar) as c:
            r = c.post(url, content=body, headers=headers)
        leaks.record(r.text)
        assert r.status_code == 403, (where, r.text)
        reason = {"unbound": "BROKERED_CREDENTIAL_UNBOUND", "value": "BROKERED_CREDENTIAL_VALUE"}
        assert reason[expect] in r.json()["reason_codes"]
        assert since(other, before) == []


def test_the_bound_destination_itself_is_refused_a_real_value_the_agent_sends(start, bound):
    sidecar = start()
    before = len(bound.requests)
    with proxied(sidecar) as c:
        r = c.get(f"{bound.base}/v1/models", headers={"Authorization": f"Bearer {OPENAI}"})
    assert r.status_code == 403
    assert r.json()["reason_codes"] == ["BROKERED_CREDENTIAL_VALUE"]
    assert since(bound, before) == []


def test_bindings_limit_path_and_method(start, bound):
    sidecar = start()
    ph = placeholder(sidecar, "webhook")
    before = len(bound.requests)
    with proxied(sidecar) as c:
        ok = c.post(f"{bound.base}/hooks/T01/{ph}", json={"text": "deploy done"})
        wrong_method = c.get(f"{bound.base}/hooks/T01/{ph}")
        climbing = c.post(f"{bound.base}/hooks/../admin/{ph}", json={})
        outside = c.post(f"{bound.base}/other/{ph}", json={})
    assert ok.status_code == 200
    assert [r.uri for r in since(bound, before)] == [f"/hooks/T01/{WEBHOOK}"]
    for r in (wrong_method, climbing, outside):
        assert r.status_code == 403
        assert r.json()["reason_codes"] == ["BROKERED_CREDENTIAL_UNBOUND"]


def test_json_field_carry_and_placeholders_elsewhere_stay_placeholders(start, bound):
    sidecar = start()
    ph = placeholder(sidecar, "jsonkey")
    before = len(bound.requests)
    with proxied(sidecar) as c:
        r = c.post(f"{bound.base}/json/v1", json={"auth": {"key": ph}, "note": ph})
    assert r.status_code == 200
    (got,) = since(bound, before)
    doc = json.loads(got.body)
    assert doc == {"auth": {"key": JSON_KEY}, "note": ph}
    assert got.headers["Content-Length"] == str(len(got.body))


@pytest.mark.parametrize("http2", [False, True])
def test_echoes_reach_the_agent_scrubbed(start, bound, scan_api, http2):
    sidecar = start(backend="interven")
    ph = placeholder(sidecar, "openai")
    auth = {"Authorization": f"Bearer {ph}"}
    with proxied(sidecar, http2=http2) as c:
        headers = c.get(f"{bound.base}/echo/headers", headers=auth)
        location = c.get(f"{bound.base}/echo/location", headers=auth)
        b64 = c.get(f"{bound.base}/echo/base64", headers=auth)
        gz = c.get(f"{bound.base}/echo/gzip", headers=auth)
        with c.stream("GET", f"{bound.base}/echo/sse", headers=auth) as sse:
            events = b"".join(sse.iter_raw())
    for r in (headers, location, b64, gz):
        leaks.record(r.text + json.dumps(dict(r.headers)))
    assert headers.json()["headers"]["Authorization"] == f"Bearer {ph}"
    assert headers.json()["raw"] == f'"{ph}"'
    assert location.status_code == 302
    assert location.headers["location"].endswith(f"key={ph}")
    assert location.headers["x-debug-key"] == ph
    decoded = [base64.b64decode(line + b"=" * (-len(line) % 4), altchars=b"-_")
               for line in b64.content.split(b"\n")]  # fmt: skip
    assert all(OPENAI.encode() not in d for d in decoded)
    assert gz.text == f"error: bad key {ph}\n"
    assert "content-encoding" not in gz.headers
    assert events == f"data: first\n\ndata: key={ph}\n\ndata: last\n\n".encode()
    for r in (headers, location, b64, gz):
        assert OPENAI not in r.text
        assert OPENAI not in json.dumps(dict(r.headers))
    assert sidecar.metric("egress_sidecar_broker_response_scrubs_total", credential="openai") >= 8
    # What the scan API is shown of those responses was scrubbed first, too.
    eventually(lambda: len(scan_api.response_posts.items) >= 5)
    posts = json.dumps(scan_api.response_posts.items, default=str)
    assert OPENAI not in posts
    assert ph in posts


def test_websocket_echo_is_scrubbed_and_messages_elsewhere_refused(start, bound, other):
    sidecar = start()
    ph = placeholder(sidecar, "openai")
    proxy = f"http://{sidecar.info.proxy}"
    ssl_ctx = httpx.create_ssl_context(verify=str(sidecar.ca.bundle))
    with ws_connect(f"wss://{bound.name}:{bound.port}/ws", proxy=proxy, ssl=ssl_ctx,
                    additional_headers={"Authorization": f"Bearer {ph}"}) as ws:  # fmt: skip
        ws.send("hello")
        echo = ws.recv(timeout=20)
        # The placeholder inside a message: openai's carry is bearer, not `anywhere`.
        ws.send(f"leak {ph}")
        ws.send("after")
        after = ws.recv(timeout=20)
    leaks.record(str(echo) + str(after))
    assert echo == f"echo:hello auth:{ph}"
    assert after == f"echo:after auth:{ph}"
    assert [m for m in bound.ws_messages.items if "leak" in str(m)] == []


def test_fail_closed_never_puts_a_value_on_the_wire(start, bound, scan_api):
    sidecar = start(backend="interven", fail_mode="closed")
    scan_api.script(then=lambda _doc: Reply(status=500, body={"error": "down"}))
    before = len(bound.requests)
    auth = {"Authorization": "Bearer $OPENAI_API_KEY"}
    r = run_client(sidecar, "curl", "GET", f"{bound.base}/v1/models", headers=auth,
                   expand_env=True)  # fmt: skip
    assert r.status == 503
    assert since(bound, before) == []


def test_fail_open_substitutes_only_for_the_bound_destination(start, bound, other, scan_api):
    sidecar = start(backend="interven", fail_mode="open")
    scan_api.script(then=lambda _doc: Reply(status=500, body={"error": "down"}))
    ph = placeholder(sidecar, "openai")
    with proxied(sidecar) as c:
        ok = c.get(f"{bound.base}/v1/models", headers={"Authorization": f"Bearer {ph}"})
        refused = c.get(f"{other.base}/v1/models", headers={"Authorization": f"Bearer {ph}"})
    assert ok.status_code == 200
    assert "FAIL_OPEN" in ok.headers["x-interven-reasons"]
    assert bound.requests[-1].headers["Authorization"] == f"Bearer {OPENAI}"
    assert refused.status_code == 403


def test_rotation_by_symlink_swap_within_seconds(start, bound, mount):
    sidecar = start()
    ph = placeholder(sidecar, "openai")
    auth = {"Authorization": f"Bearer {ph}"}
    with proxied(sidecar) as c:
        assert c.get(f"{bound.base}/v1/a", headers=auth).status_code == 200
        assert bound.requests[-1].headers["Authorization"] == f"Bearer {OPENAI}"
        mount.update({**VALUES, "openai-api-key": ROTATED})
        reloads = "egress_sidecar_broker_value_reloads_total"
        eventually(lambda: sidecar.metric(reloads, credential="openai", result="rotated") == 1,
                   5.0)  # within 5 s, or it fails  # fmt: skip
        assert c.get(f"{bound.base}/v1/b", headers=auth).status_code == 200
        assert bound.requests[-1].headers["Authorization"] == f"Bearer {ROTATED}"
        # The old value stays known: refused like any real value the agent sends.
        before = len(bound.requests)
        for value in (OPENAI, ROTATED):
            refused = c.post(f"{bound.base}/v1/c", content=value.encode())
            assert refused.status_code == 403
            assert refused.json()["reason_codes"] == ["BROKERED_CREDENTIAL_VALUE"]
        assert since(bound, before) == []


def test_broker_cli_checks_and_lists_without_values(start, tmp_path):
    sidecar = start()
    exe = shlex.quote(str(Path(sys.executable).parent / "egress-sidecar"))
    path = sidecar.env_args[1]
    listed = subprocess.run(["bash", "-c", f"{exe} broker list {path}"], capture_output=True,
                            text=True, check=True)  # fmt: skip
    checked = subprocess.run(["bash", "-c", f"{exe} broker check {path}"], capture_output=True,
                             text=True, check=True)  # fmt: skip
    leaks.record(listed.stdout + checked.stdout)
    assert placeholder(sidecar, "openai") in listed.stdout
    assert "sent only to: https://api.bound.test" in listed.stdout
    assert "ok:" in checked.stdout
    assert "every value readable" in checked.stdout
    for value in (*REAL_VALUES, JSON_KEY):
        assert value not in listed.stdout + checked.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text("credentials: [{name: x, value: {env: X}, destinations: [{url: http://a}]}]")
    failed = subprocess.run([*shlex.split(exe), "broker", "check", str(bad)],
                            capture_output=True, text=True)  # fmt: skip
    assert failed.returncode == 1
    assert failed.stderr.count("\n") == 1
    assert "credentials[0] (x) destinations.0.url: http://a: only https://" in failed.stderr


def test_decision_lines_name_the_credential_never_the_value(start, bound, caplog):
    sidecar = start()
    ph = placeholder(sidecar, "openai")
    with caplog.at_level("INFO", logger="egress_sidecar.decisions"), proxied(sidecar) as c:
        c.get(f"{bound.base}/v1/models", headers={"Authorization": f"Bearer {ph}"})
        eventually(lambda: any('"brokered":["openai"]' in r.getMessage() for r in caplog.records))
    lines = [r.getMessage() for r in caplog.records]
    assert not any(OPENAI in line for line in lines)


@pytest.mark.parametrize("name", ["kirtonic", "inviolet", "velerian"])
def test_governance_backends_see_neither_value_nor_placeholder(start, bound, other, server_loop,
                                                               name):  # fmt: skip
    double = {
        "kirtonic": lambda: KirtonicDouble(server_loop, GOVERNANCE_KEYS["kirtonic"]),
        "inviolet": lambda: InvioletDouble(server_loop, GOVERNANCE_KEYS["inviolet"]),
        "velerian": lambda: VelerianDouble(server_loop, GOVERNANCE_KEYS["velerian"], VELERIAN_ABP),
    }[name]()
    sidecar = start(backend=name, governance={name: double.url})
    before_bound, before_other = len(bound.requests), len(other.requests)
    auth = {"Authorization": "Bearer $OPENAI_API_KEY"}
    body = b'{"messages": [{"role": "user", "content": "hello"}]}'
    ok = run_client(sidecar, "requests", "POST", f"{bound.base}/v1/chat/completions", body,
                    {**auth, "Content-Type": "application/json"}, expand_env=True)  # fmt: skip
    assert ok.status == 200, ok.body
    assert [r.headers["Authorization"] for r in since(bound, before_bound)] == [f"Bearer {OPENAI}"]
    refused = run_client(sidecar, "requests", "POST", f"{other.base}/v1/chat/completions", body,
                         {**auth, "Content-Type": "application/json"}, expand_env=True)  # fmt: skip
    assert refused.status == 403
    assert refused.json()["reason_codes"] == ["BROKERED_CREDENTIAL_UNBOUND"]
    assert since(other, before_other) == []
    recorded = {"kirtonic": "classifications", "inviolet": "evaluations",
                "velerian": "invocations"}[name]  # fmt: skip
    seen = json.dumps(getattr(double, recorded).items, default=str)
    assert seen != "[]"  # the backend judged the bound request
    assert OPENAI not in seen
    assert placeholder(sidecar, "openai") not in seen


def test_what_the_bound_host_stored_comes_back_scrubbed_to_anyone(start, bound, caplog):
    sidecar = start()
    ph = placeholder(sidecar, "openai")
    with caplog.at_level("ERROR"), proxied(sidecar) as c:
        asks = {"Authorization": f"Bearer {ph}", "Range": "bytes=0-6", "TE": "gzip"}
        stored = c.post(f"{bound.base}/store", headers=asks)
        assert stored.status_code == 200
        got = bound.requests[-1]
        assert got.headers["Authorization"] == f"Bearer {OPENAI}"
        assert "Range" not in got.headers  # an echo is never read back piece by piece
        assert "Te" not in got.headers
        # Read back without any placeholder: still the bound host, still scrubbed.
        back = c.get(f"{bound.base}/stored")
        head = c.head(f"{bound.base}/echo/headers", headers={"Authorization": f"Bearer {ph}"})
        empty = c.get(f"{bound.base}/empty", headers={"Authorization": f"Bearer {ph}"})
    leaks.record(back.text + json.dumps(dict(empty.headers)))
    assert back.json() == {"stored": ph}
    assert head.status_code == 200
    assert empty.status_code == 204
    assert empty.headers["x-debug-key"] == ph
    assert not [r for r in caplog.records if "Addon error" in r.getMessage()]


def test_a_websocket_token_in_the_upgrade_never_reaches_the_scan_api(start, bound, scan_api):
    sidecar = start(backend="interven")
    ph = placeholder(sidecar, "wsquery")
    ssl_ctx = httpx.create_ssl_context(verify=str(sidecar.ca.bundle))
    url = f"wss://{bound.name}:{bound.port}/ws?token={ph}"
    with ws_connect(url, proxy=f"http://{sidecar.info.proxy}", ssl=ssl_ctx) as ws:
        ws.send("hello")
        echo = ws.recv(timeout=20)
    assert echo == "echo:hello auth:"
    assert any(str(m) == "hello" for m in bound.ws_messages.items)
    scans = json.dumps(scan_api.scans.items)
    assert "hello" in scans  # the message was judged
    assert WS_TOKEN not in scans
    assert sidecar.metric("egress_sidecar_broker_substitutions_total", credential="wsquery") == 1


def test_a_large_brokered_download_streams_through_intact(start, bound):
    sidecar = start()
    ph = placeholder(sidecar, "openai")
    size = 24 * 1024 * 1024  # well past the scan limit: streamed, never held whole
    auth = {"Authorization": f"Bearer {ph}"}
    with proxied(sidecar) as c, c.stream("GET", f"{bound.base}/download/{size}", headers=auth) as r:
        assert r.status_code == 200
        assert r.headers.get("transfer-encoding") == "chunked"  # re-framed: lengths may change
        got, pattern = 0, bytes(range(256))
        for chunk in r.iter_bytes():
            start_at = got % 256
            expected = (pattern * (len(chunk) // 256 + 2))[start_at : start_at + len(chunk)]
            assert chunk == expected
            got += len(chunk)
    assert got == size
