"""The scan API client's retry policy and error typing, over an in-memory transport."""

from __future__ import annotations

import asyncio
import email.utils
import json

import httpx
import pytest

from sidecar.backends.contract import ScanRequest
from sidecar.backends.errors import (
    MalformedVerdict,
    ScanAuthError,
    ScanRateLimited,
    ScanRejected,
    ScanServerError,
    ScanTimeout,
    ScanUnavailable,
)
from sidecar.backends.http import Connection, parse_retry_after
from sidecar.backends.interven import IntervenBackend
from sidecar.config.credentials import IntervenCredentials

KEY = "iv_live_unit"
VERDICT = {"decision": "ALLOW", "risk_score": 0, "risk_band": "LOW", "trace_id": "t"}


def _backend(handler, retries=2, timeout=5.0):
    creds = IntervenCredentials(api_key=KEY, gateway_url="https://gw.test")  # type: ignore[arg-type]
    return IntervenBackend(
        creds, Connection(timeout, retries, transport=httpx.MockTransport(handler))
    )


def _scan(backend):
    async def go():
        try:
            return await backend.scan(ScanRequest(method="GET", url="https://x.test/"))
        finally:
            await backend.aclose()

    return asyncio.run(go())


def _answers(*responses):
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        r = responses[min(len(calls), len(responses)) - 1]
        if isinstance(r, Exception):
            raise r
        return r

    return handler, calls


def test_sends_the_documented_request():
    handler, calls = _answers(httpx.Response(200, json=VERDICT))
    assert _scan(_backend(handler)).trace_id == "t"
    (request,) = calls
    assert request.url == "https://gw.test/v1/scan"
    assert request.headers["authorization"] == f"Bearer {KEY}"
    assert json.loads(request.content) == {"method": "GET", "url": "https://x.test/", "headers": {}}


@pytest.mark.parametrize(
    ("responses", "error", "attempts"),
    [
        ([httpx.Response(500)] * 3, ScanServerError, 3),
        ([httpx.ConnectError("refused")] * 3, ScanUnavailable, 3),
        ([httpx.ReadTimeout("slow")] * 3, ScanTimeout, 3),
        ([httpx.Response(401)], ScanAuthError, 1),
        ([httpx.Response(403)], ScanAuthError, 1),
        ([httpx.Response(400)], ScanRejected, 1),
        ([httpx.Response(413)], ScanRejected, 1),
        ([httpx.Response(200, text="<html>")], MalformedVerdict, 1),
        ([httpx.Response(200, json={"decision": "NOPE"})], MalformedVerdict, 1),
        ([httpx.Response(429, headers={"Retry-After": "0"})] * 3, ScanRateLimited, 3),
        # A body its Content-Encoding cannot decode; an empty 200 is no verdict either.
        ([httpx.DecodingError("incorrect header check")], MalformedVerdict, 1),
        ([httpx.Response(200, content=b"")], MalformedVerdict, 1),
        ([httpx.TooManyRedirects("loop")] * 3, ScanUnavailable, 3),
    ],
)
def test_errors_are_typed_and_retried_only_when_worth_it(responses, error, attempts):
    handler, calls = _answers(*responses)
    with pytest.raises(error):
        _scan(_backend(handler))
    assert len(calls) == attempts


def test_recovers_after_transient_failures():
    handler, calls = _answers(
        httpx.Response(503), httpx.ConnectError("x"), httpx.Response(200, json=VERDICT)
    )
    assert _scan(_backend(handler)).decision.value == "ALLOW"
    assert len(calls) == 3


def test_retry_after_beyond_the_deadline_is_not_waited_for():
    handler, calls = _answers(httpx.Response(429, headers={"Retry-After": "120"}))
    with pytest.raises(ScanRateLimited):
        _scan(_backend(handler, timeout=1.0))
    assert len(calls) == 1


def test_malformed_verdict_message_does_not_echo_the_answer():
    handler, _ = _answers(
        httpx.Response(200, json={**VERDICT, "risk_score": "sk_live_secretvalue"})
    )
    with pytest.raises(MalformedVerdict) as e:
        _scan(_backend(handler))
    assert "sk_live_secretvalue" not in str(e.value)
    assert "risk_score" in str(e.value)


def test_parse_retry_after():
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    date = email.utils.formatdate(1_000_030, usegmt=True)
    assert parse_retry_after(date, now=1_000_000) == pytest.approx(30)
    assert parse_retry_after(email.utils.formatdate(0, usegmt=True), now=10) == 0.0


def test_scan_client_ignores_proxy_variables(monkeypatch):
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    backend = _backend(lambda r: httpx.Response(200, json=VERDICT))
    assert backend._http._client._trust_env is False
    assert _scan(backend).trace_id == "t"


def test_a_response_worker_survives_a_bug_and_counts_it():
    from sidecar.judge.responses import ResponseScanJob, ResponseScanQueue
    from sidecar.observability.metrics import SidecarMetrics

    class Flaky:
        name = "flaky"
        seen: list[str] = []

        async def scan_response(self, response):  # type: ignore[no-untyped-def]
            self.seen.append(response.trace_id)
            if response.trace_id == "boom":
                raise RuntimeError("a bug, not a ScanError")

    async def go() -> SidecarMetrics:
        metrics = SidecarMetrics()
        queue = ResponseScanQueue(Flaky(), metrics, 10, workers=1)  # type: ignore[arg-type]
        queue.start()
        for trace in ("boom", "after"):
            queue.submit(ResponseScanJob(trace, b"{}", "", "application/json", 200))
        await queue.close(5)
        return metrics

    metrics = asyncio.run(go())
    assert Flaky.seen == ["boom", "after"]  # the one worker kept going
    value = metrics.registry.get_sample_value(
        "egress_sidecar_response_scans_dropped_total", {"reason": "internal"}
    )
    assert value == 1


def test_a_response_echoing_one_of_the_sidecars_keys_is_not_posted():
    from sidecar.judge.responses import ResponseScanJob, ResponseScanQueue
    from sidecar.observability.metrics import SidecarMetrics

    posted: list[str] = []

    class Recording:
        name = "recording"

        async def scan_response(self, response):  # type: ignore[no-untyped-def]
            posted.append(response.trace_id)

    async def go() -> SidecarMetrics:
        metrics = SidecarMetrics()
        queue = ResponseScanQueue(Recording(), metrics, 10, 1, withheld=[b"kt_live_KEY"])  # type: ignore[arg-type]
        queue.start()
        queue.submit(ResponseScanJob("echo", b'{"k": "kt_live_KEY"}', "", "application/json", 200))
        queue.submit(ResponseScanJob("clean", b'{"k": "v"}', "", "application/json", 200))
        await queue.close(5)
        return metrics

    metrics = asyncio.run(go())
    assert posted == ["clean"]
    value = metrics.registry.get_sample_value(
        "egress_sidecar_response_scans_dropped_total", {"reason": "sidecar_credential"}
    )
    assert value == 1
