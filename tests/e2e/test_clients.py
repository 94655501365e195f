"""Every real client, configured only by `egress-sidecar env`, goes through the sidecar.

For the ALLOW path: what the upstream received, what the client got, what the scan API
received (the scan and the response post), and what /metrics shows.
"""

from __future__ import annotations

import json

import pytest

from tests.support.sidecar import AGENT_ID, API_KEY, run_client
from tests.support.waiting import eventually

CLIENTS = ["curl", "requests", "httpx", "node"]


@pytest.mark.parametrize("client", CLIENTS)
def test_allow_path_end_to_end(client, sidecar, upstream, scan_api):
    path = f"/allow/{client}"
    body = json.dumps({"text": "deploy finished", "channel": "#ops"}).encode()

    result = run_client(
        sidecar,
        client,
        "POST",
        upstream.https + path,
        body,
        {"Content-Type": "application/json", "X-Agent-Task": "notify"},
    )

    # The client got the upstream's answer, stamped with the decision headers.
    assert result.status == 200
    assert result.json()["path"] == path
    assert result.headers["x-interven-decision"] == "ALLOW"
    trace_id = result.headers["x-interven-trace-id"]
    assert "x-interven-reasons" not in result.headers  # the verdict had no reason codes

    # The upstream received exactly what the agent sent, and nothing of the sidecar's.
    received = upstream.received.wait_for(lambda r: r.path == path)
    assert received.method == "POST"
    assert received.body == body
    assert received.headers["X-Agent-Task"] == "notify"  # tornado normalises case
    assert API_KEY not in json.dumps(received.headers) + received.body.decode()
    assert "Authorization" not in received.headers

    # The scan API was asked about this exact request, with our credentials and identity.
    scan = scan_api.scans.wait_for(lambda s: s["json"]["url"].endswith(path))
    assert scan["headers"]["Authorization"] == f"Bearer {API_KEY}"
    asked = scan["json"]
    assert asked["method"] == "POST"
    assert asked["url"] == upstream.https + path
    assert asked["body"] == {"text": "deploy finished", "channel": "#ops"}
    asked_headers = {k.lower(): v for k, v in asked["headers"].items()}  # HTTP/2 lower-cases
    assert asked_headers["x-agent-task"] == "notify"
    assert asked["agent_id"] == AGENT_ID
    assert asked["agent_name"] == "test-agent"
    assert asked["runtime_type"] == "custom"

    # The response body went back for classification under the same trace id.
    post = scan_api.response_posts.wait_for(lambda p: p["json"]["trace_id"] == trace_id)
    assert post["json"]["response_status"] == 200
    assert post["json"]["response_body"]["path"] == path
    assert post["headers"]["Authorization"] == f"Bearer {API_KEY}"

    assert sidecar.metric("egress_sidecar_requests_total", decision="ALLOW", tool="slack") == 1
    eventually(lambda: sidecar.metric("egress_sidecar_response_scans_posted_total") == 1)
    assert sidecar.metric("egress_sidecar_scan_duration_seconds_count", backend="interven") == 1


def test_plain_http_is_scanned_too(sidecar, upstream, scan_api):
    result = run_client(sidecar, "curl", "GET", upstream.http + "/allow/plain")
    assert result.status == 200
    assert result.headers["x-interven-decision"] == "ALLOW"
    scan = scan_api.scans.wait_for(lambda s: s["json"]["url"].endswith("/allow/plain"))
    assert scan["json"]["url"] == upstream.http + "/allow/plain"
    assert scan["json"]["method"] == "GET"
    assert "body" not in scan["json"]  # no body: nothing sent
    upstream.received.wait_for(lambda r: r.path == "/allow/plain" and r.scheme == "http")


def test_http2_client(sidecar, upstream, scan_api):
    result = run_client(
        sidecar,
        "curl",
        "POST",
        upstream.https + "/deny/h2",
        b'{"k": 1}',
        {"Content-Type": "application/json"},
        http2=True,
    )
    assert result.http_version == "2"
    assert result.status == 403
    assert result.headers["x-interven-decision"] == "DENY"
    assert scan_api.scans.wait_for(lambda s: s["json"]["url"].endswith("/deny/h2"))
    assert upstream.requests_to("/deny/h2") == []
