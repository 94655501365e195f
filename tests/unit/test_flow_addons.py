"""The HTTP and WebSocket guards, the response reporter and the in-flight tracker on
mitmproxy's own test flows (`tflow`), in milliseconds: the e2e suite proves the wiring."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path

import pytest
from mitmproxy import http, websocket
from mitmproxy.test import taddons, tflow
from wsproto.frame_protocol import Opcode

from addons.flow_record import FlowRecord
from addons.in_flight import InFlight
from addons.lifecycle import Lifecycle
from addons.request_guard import RequestGuard
from addons.response_reporter import ResponseReporter
from addons.runtime import Runtime
from addons.websocket_guard import WebSocketGuard
from sidecar.approvals.store import ApprovalStore
from sidecar.backends.contract import ScanRequest, ScanVerdict
from sidecar.backends.errors import ScanUnavailable
from sidecar.backends.local import LocalBackend
from sidecar.config.settings import load_settings
from sidecar.engine import Engine
from sidecar.engine.known_secrets import KnownSecrets
from sidecar.engine.policy_file import default_policy
from sidecar.judge.destination import Destinations
from sidecar.judge.judge import Judge
from sidecar.judge.responses import ResponseScanQueue

AWS_KEY = "AKIAQX4RXZT7NM2YB5CW"


class DownBackend(LocalBackend):
    async def scan(self, request: ScanRequest) -> ScanVerdict:
        raise ScanUnavailable("down")


def _lifecycle(tmp_path: Path, backend_class: type[LocalBackend] = LocalBackend) -> Lifecycle:
    """A lifecycle as `running` leaves it: the real judge and engine, no sockets."""
    settings = load_settings(listen="127.0.0.1:0", admin="off", confdir=str(tmp_path),
                             internal_hosts="address")  # fmt: skip
    life = Lifecycle(settings)
    life.settings = settings
    engine = Engine(default_policy(), tuple(settings.internal_hosts))
    backend = backend_class(engine, ApprovalStore(tmp_path, settings.approval_expiry))
    known = KnownSecrets([])
    destinations = Destinations(settings, engine, None, known)
    life.runtime = Runtime(
        judge=Judge(settings, backend, destinations, known),
        destinations=destinations,
        responses=ResponseScanQueue(backend, life.metrics, 8, 1),
        metrics=life.metrics,
        admin=None,
        lag_watch=asyncio.get_running_loop().create_task(asyncio.sleep(0)),
    )
    return life


@pytest.fixture
def decisions(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="egress_sidecar.decisions")


def _lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, object]]:
    return [json.loads(r.getMessage()) for r in caplog.records
            if r.name == "egress_sidecar.decisions"]  # fmt: skip


def _post(body: bytes) -> http.HTTPFlow:
    flow = tflow.tflow()
    flow.request.method = "POST"
    flow.request.headers["content-type"] = "application/json"
    flow.request.content = body
    return flow


def _count(life: Lifecycle, name: str, **labels: str) -> float:
    value = life.metrics.registry.get_sample_value(name, labels or None)
    return value or 0.0


def test_an_allowed_request_is_forwarded_and_yields_a_decision_and_a_close_line(
    tmp_path, caplog, decisions
):
    async def scenario() -> None:
        life = _lifecycle(tmp_path)
        guard, tracker = RequestGuard(life), InFlight()
        flow = _post(b'{"note": "lunch"}')
        with taddons.context(life):
            tracker.requestheaders(flow)
            await guard.request(flow)
            assert flow.response is None  # forwarded
            flow.response = tflow.tresp()
            guard.responseheaders(flow)
            guard.response(flow)
            tracker.response(flow)
        record = FlowRecord.of(flow)
        assert record.judgement is not None
        assert flow.response.headers["x-interven-decision"] == "ALLOW"
        decision, close = _lines(caplog)
        assert (decision["event"], close["event"]) == ("decision", "close")
        assert decision["trace_id"] == close["trace_id"]
        assert (close["outcome"], close["upstream_status"]) == ("response", 200)
        assert close["bytes_up"] == len(b'{"note": "lunch"}')
        assert tracker.idle.is_set()
        allowed = {"decision": "ALLOW", "tool": "custom_proxy"}
        assert _count(life, "egress_sidecar_requests_total", **allowed) == 1

    asyncio.run(scenario())


def test_a_denied_request_is_answered_locally_and_never_reported(tmp_path, caplog, decisions):
    async def scenario() -> None:
        life = _lifecycle(tmp_path)
        flow = _post(f'{{"k": "{AWS_KEY}"}}'.encode())
        with taddons.context(life):
            await RequestGuard(life).request(flow)
            ResponseReporter(life).response(flow)
        assert flow.response is not None
        assert flow.response.status_code == 403
        assert flow.response.headers["x-interven-decision"] == "DENY"
        assert _count(life, "egress_sidecar_response_scan_queue_depth") == 0
        assert AWS_KEY not in caplog.text

    asyncio.run(scenario())


def test_a_flow_cut_off_at_shutdown_gets_its_close_line(tmp_path, caplog, decisions):
    async def scenario() -> None:
        life = _lifecycle(tmp_path)
        tracker = InFlight()
        flow = _post(b"{}")
        with taddons.context(life):
            tracker.requestheaders(flow)
            await RequestGuard(life).request(flow)
            tracker.done()
        close = _lines(caplog)[-1]
        assert (close["event"], close["outcome"]) == ("close", "shutdown")

    asyncio.run(scenario())


def _ws_flow(content: bytes) -> http.HTTPFlow:
    flow = tflow.twebsocketflow()
    assert flow.websocket is not None
    flow.websocket.messages.append(websocket.WebSocketMessage(Opcode.TEXT, True, content))
    return flow


@pytest.mark.parametrize("backend", [LocalBackend, DownBackend])
def test_http_and_websocket_count_the_same_facts(tmp_path, backend):
    """The same content judged on each path moves the same shared metrics."""

    async def scenario() -> None:
        counted = {}
        for path in ("http", "websocket"):
            life = _lifecycle(tmp_path / path, backend)
            with taddons.context(life):
                if path == "http":
                    await RequestGuard(life).request(_post(b'{"note": "lunch"}'))
                else:
                    await WebSocketGuard(life).websocket_message(_ws_flow(b'{"note": "lunch"}'))
            counted[path] = {
                "scan_duration": _count(life, "egress_sidecar_scan_duration_seconds_count",
                                        backend="local"),
                "scan_errors": _count(life, "egress_sidecar_scan_errors_total", kind="unavailable"),
                "fail_closed": _count(life, "egress_sidecar_fail_closed_blocks_total",
                                      kind="unavailable"),
            }  # fmt: skip
        assert counted["http"] == counted["websocket"]
        expected = 0 if backend is DownBackend else 1
        assert counted["http"]["scan_duration"] == expected
        assert counted["http"]["scan_errors"] == 1 - expected

    asyncio.run(scenario())
