"""Event streams, WebSockets, pass-through hosts and proxy authentication."""

from __future__ import annotations

import json
import ssl
import subprocess

import httpx
import pytest
from websockets.sync.client import connect

from bench.servers import verdict
from tests.support.servers import UPSTREAM_HOST, WAIT, Reply
from tests.support.sidecar import Sidecar
from tests.support.waiting import eventually


def _client(sidecar: Sidecar) -> httpx.Client:
    verify = ssl.create_default_context(cafile=str(sidecar.ca.bundle))
    return httpx.Client(proxy=f"http://{sidecar.info.proxy}", verify=verify,
                        trust_env=False, timeout=WAIT)  # fmt: skip


def test_event_streams_are_delivered_incrementally_and_still_posted(sidecar, upstream, scan_api):
    with _client(sidecar) as client, client.stream("GET", upstream.https + "/sse") as response:
        assert response.headers["x-interven-decision"] == "ALLOW"
        lines = response.iter_lines()
        # The first event arrives while the upstream is still holding the stream open.
        assert next(lines) == "data: first"
        upstream.release_sse()
        rest = list(lines)
    assert "data: second" in rest
    trace_id = response.headers["x-interven-trace-id"]
    post = scan_api.response_posts.wait_for(lambda p: p["json"]["trace_id"] == trace_id)
    assert post["json"]["response_body"] == "data: first\n\ndata: second\n\n"


def _ws(sidecar: Sidecar, upstream):  # type: ignore[no-untyped-def]
    ctx = ssl.create_default_context(cafile=str(sidecar.ca.bundle))
    url = f"wss://{UPSTREAM_HOST}:{upstream.https_port}/ws"
    return connect(url, proxy=f"http://{sidecar.info.proxy}", ssl=ctx, open_timeout=WAIT)


def test_websocket_messages_are_scanned_one_by_one(sidecar, upstream, scan_api):
    def by_content(doc):  # type: ignore[no-untyped-def]
        if doc["method"] == "WEBSOCKET" and "leak" in json.dumps(doc.get("body")):
            return Reply(body=verdict("DENY"))
        return Reply(body=verdict("ALLOW"))

    scan_api.behaviour = by_content
    before = len(upstream.ws_messages.items)  # the upstream is shared by the session
    with _ws(sidecar, upstream) as ws:
        ws.send("hello")
        assert ws.recv(timeout=WAIT) == "echo:hello"
        ws.send("please leak the token")
        ws.send("still here")
        assert ws.recv(timeout=WAIT) == "echo:still here"  # the connection stays open
    assert upstream.ws_messages.items[before:] == ["hello", "still here"]
    scans = [s["json"] for s in scan_api.scans.items if s["json"]["method"] == "WEBSOCKET"]
    assert [s["body"] for s in scans] == ["hello", "please leak the token", "still here"]
    assert scans[0]["url"] == f"wss://{UPSTREAM_HOST}:{upstream.https_port}/ws"
    assert sidecar.metric("egress_sidecar_websocket_messages_total",
                          decision="DENY", action="dropped") == 1  # fmt: skip
    assert sidecar.metric("egress_sidecar_websocket_messages_total",
                          decision="ALLOW", action="forwarded") == 2  # fmt: skip


@pytest.mark.parametrize("fail_mode", ["closed", "open"])
def test_websocket_messages_follow_the_fail_mode(fail_mode, make_sidecar, upstream, scan_api):
    sidecar = make_sidecar(fail_mode=fail_mode, scan_retries=0)

    def upgrade_ok_then_down(doc):  # type: ignore[no-untyped-def]
        return Reply(body=verdict("ALLOW")) if doc["method"] == "GET" else Reply(status=500)

    scan_api.behaviour = upgrade_ok_then_down
    with _ws(sidecar, upstream) as ws:
        ws.send(f"m-{fail_mode}")
        if fail_mode == "open":
            assert ws.recv(timeout=WAIT) == f"echo:m-{fail_mode}"
    if fail_mode == "closed":
        eventually(lambda: sidecar.metric("egress_sidecar_websocket_messages_total",
                                          decision="DENY", action="dropped") == 1)  # fmt: skip
        assert f"m-{fail_mode}" not in upstream.ws_messages.items


def test_passthrough_hosts_are_tunnelled_unseen_but_logged(make_sidecar, upstream, scan_api,
                                                           caplog):  # fmt: skip
    caplog.set_level("INFO", logger="egress_sidecar")
    sidecar = make_sidecar(passthrough_hosts=UPSTREAM_HOST)
    # The agent must trust the upstream's own certificate: nothing is intercepted.
    verify = ssl.create_default_context(cafile=str(upstream.ca_file))
    with httpx.Client(proxy=f"http://{sidecar.info.proxy}", verify=verify,
                      trust_env=False, timeout=WAIT) as client:  # fmt: skip
        response = client.get(upstream.https + "/allow/passthrough")
    assert response.status_code == 200
    assert "x-interven-decision" not in response.headers
    assert scan_api.scans.items == []
    assert sidecar.metric("egress_sidecar_passthrough_connections_total") == 1
    events = [r.getMessage() for r in caplog.records if r.name == "egress_sidecar.decisions"]
    assert any('"event":"passthrough"' in e and UPSTREAM_HOST in e for e in events)


def test_proxy_authentication(make_sidecar, upstream, tmp_path):
    sidecar = make_sidecar(proxy_auth="agent:s3cr3t-pw")
    base = ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "--cacert",
            str(sidecar.ca.bundle), "--proxy", f"http://{sidecar.info.proxy}"]  # fmt: skip
    anonymous = subprocess.run([*base, upstream.http + "/allow/noauth"], capture_output=True,
                               text=True, timeout=WAIT, check=False)  # fmt: skip
    assert anonymous.stdout == "407"
    env_line = subprocess.run(
        [str(sidecar.env_command().split('"$(')[1].split(" env")[0]), "env",
         "--listen", str(sidecar.info.proxy), "--confdir", str(sidecar.confdir)],
        capture_output=True, text=True, timeout=WAIT, check=False,
        env={"SIDECAR_PROXY_AUTH": "agent:s3cr3t-pw", "PATH": "/usr/bin:/bin"},
    ).stdout  # fmt: skip
    assert f"export HTTPS_PROXY=http://agent:s3cr3t-pw@{sidecar.info.proxy}" in env_line
    authed = subprocess.run(
        ["bash", "-c", f"{env_line}\nexec curl -sS -o /dev/null -w '%{{http_code}}' "
                       f"{upstream.https}/allow/authed"],
        capture_output=True, text=True, timeout=WAIT, check=False, env={"PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert authed.stdout == "200", authed.stderr
