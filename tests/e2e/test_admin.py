"""The admin server: liveness, readiness and Prometheus metrics over real HTTP."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families


def test_health_and_readiness(sidecar):
    health = sidecar.admin_get("/healthz")
    assert (health.status_code, health.text) == (200, "ok\n")
    ready = sidecar.admin_get("/readyz")
    assert (ready.status_code, ready.text) == (200, "ready\n")
    assert sidecar.admin_get("/nope").status_code == 404


def test_readiness_fails_without_the_ca(sidecar, tmp_path):
    cert = sidecar.ca.cert
    moved = tmp_path / "moved.pem"
    cert.rename(moved)
    try:
        ready = sidecar.admin_get("/readyz")
        assert ready.status_code == 503
        assert "CA certificate missing" in ready.text
    finally:
        moved.rename(cert)
    assert sidecar.admin_get("/readyz").status_code == 200


def test_metrics_are_prometheus_text_with_every_family(sidecar):
    response = sidecar.admin_get("/metrics")
    assert response.headers["content-type"].startswith("text/plain")
    names = {f.name for f in text_string_to_metric_families(response.text)}
    assert {
        "egress_sidecar_requests",
        "egress_sidecar_scan_duration_seconds",
        "egress_sidecar_scan_errors",
        "egress_sidecar_fail_open_forwards",
        "egress_sidecar_fail_closed_blocks",
        "egress_sidecar_approvals_pending",
        "egress_sidecar_approval_wait_seconds",
        "egress_sidecar_response_scan_queue_depth",
        "egress_sidecar_response_scans_posted",
        "egress_sidecar_response_scans_dropped",
    } <= names
