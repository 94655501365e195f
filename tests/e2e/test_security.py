"""Security invariants: credentials and traffic secrets stay out of upstreams, logs, metrics."""

from __future__ import annotations

import logging
import stat

from tests.support.servers import Reply
from tests.support.sidecar import API_KEY, run_client

JSON = {"Content-Type": "application/json"}
TRAFFIC_SECRET = "ghp_TrafficSecretValue0123456789abcdefABCD"


def test_api_key_and_traffic_secrets_never_logged_or_exported(sidecar, upstream, scan_api, caplog):
    caplog.set_level(logging.DEBUG)
    body = f'{{"token": "{TRAFFIC_SECRET}"}}'.encode()
    run_client(sidecar, "requests", "POST", f"{upstream.https}/allow/{TRAFFIC_SECRET}", body, JSON)
    bodies = []  # answers the sidecar wrote itself
    bodies.append(
        run_client(sidecar, "requests", "POST", upstream.https + "/deny/x", body, JSON).body
    )
    scan_api.script(Reply(status=500), Reply(status=500), Reply(status=500))
    bodies.append(
        run_client(sidecar, "requests", "POST", upstream.https + "/allow/y", body, JSON).body
    )
    scan_api.script(Reply(status=401))
    bodies.append(
        run_client(sidecar, "requests", "POST", upstream.https + "/allow/z", body, JSON).body
    )

    # Everything the sidecar logged (its thread), not what the test's own servers logged.
    records = [r for r in caplog.records if r.threadName == "sidecar"]
    logged = "\n".join(r.getMessage() for r in records)
    assert any(r.name == "egress_sidecar.decisions" for r in records)
    exported = sidecar.metrics_text()
    for text in (logged, exported, *(b.decode() for b in bodies)):
        assert API_KEY not in text
        assert TRAFFIC_SECRET not in text
    for r in upstream.received.items:
        assert API_KEY not in str(r.headers) + r.body.decode(errors="replace") + r.path


def test_agent_cannot_send_the_sidecars_own_key(sidecar, upstream, scan_api):
    for where in ("body", "header", "query"):
        path = f"/allow/own-key-{where}"
        url = upstream.https + path + (f"?k={API_KEY}" if where == "query" else "")
        headers = {"X-Leak": API_KEY} if where == "header" else {}
        body = API_KEY.encode() if where == "body" else b"{}"
        result = run_client(sidecar, "requests", "POST", url, body, headers)
        assert result.status == 403
        assert result.json()["reason_codes"] == ["SIDECAR_CREDENTIAL"]
        assert API_KEY not in result.body.decode()
        assert upstream.requests_to(path) == []
    # The key was not even sent to the scan API inside a scan request.
    assert all(API_KEY not in str(s["json"]) for s in scan_api.scans.items)


def test_ca_key_is_private_and_agents_get_only_certificates(sidecar):
    ca = sidecar.ca
    assert stat.S_IMODE(sidecar.confdir.stat().st_mode) == 0o700
    assert stat.S_IMODE(ca.key.stat().st_mode) == 0o600
    bundle = ca.bundle.read_text()
    assert ca.cert.read_text().strip() in bundle
    assert "PRIVATE KEY" not in bundle
    assert "PRIVATE KEY" not in ca.cert.read_text()
    assert "PRIVATE KEY" in ca.key.read_text()


def test_proxy_and_admin_listen_on_loopback_by_default():
    from sidecar.config.settings import SidecarSettings

    settings = SidecarSettings()
    assert settings.listen.is_loopback
    assert settings.admin is not None
    assert settings.admin.is_loopback


def test_no_onboarding_app_inside_the_proxy(sidecar, scan_api):
    """mitmproxy's mitm.it app would answer from inside the proxy; here it is a normal
    destination, judged like any other (the double denies it, so nothing is contacted)."""
    result = run_client(sidecar, "curl", "GET", "http://mitm.it/deny/cert/pem")
    assert result.status == 403
    assert result.headers["x-interven-decision"] == "DENY"
    scan_api.scans.wait_for(lambda s: s["json"]["url"] == "http://mitm.it/deny/cert/pem")
    assert "PRIVATE KEY" not in result.body.decode(errors="replace")
