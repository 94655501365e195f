"""Flows between request headers and their end: tracked for a graceful drain, and each
judged flow's close line written when it ends — response, error, client gone, WebSocket
end — or, for those still open, when the proxy shuts down."""

from __future__ import annotations

import asyncio

from mitmproxy import flow as mflow
from mitmproxy import http

from addons.flow_record import FlowRecord
from sidecar.observability.decision_log import log_decision


class InFlight:
    def __init__(self) -> None:
        self.flows: dict[str, http.HTTPFlow] = {}  # request headers seen, no answer yet
        self._open: dict[str, http.HTTPFlow] = {}  # judged, not yet closed (WebSockets too)
        self.idle = asyncio.Event()  # set while nothing is in flight (graceful shutdown)
        self.idle.set()

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        self.flows[flow.id] = flow
        self._open[flow.id] = flow
        self.idle.clear()

    def response(self, flow: http.HTTPFlow) -> None:
        self._answered(flow)
        if flow.websocket is None:  # a WebSocket closes when its messages end
            self._close(flow, "response")

    def error(self, flow: http.HTTPFlow) -> None:
        self._answered(flow)
        message = flow.error.msg if flow.error is not None else ""
        gone = message == mflow.Error.KILLED_MESSAGE or "client disconnected" in message.lower()
        self._close(flow, "client_gone" if gone else "error")

    def websocket_end(self, flow: http.HTTPFlow) -> None:
        self._close(flow, "websocket_end")

    def done(self) -> None:
        for flow in list(self._open.values()):
            self._close(flow, "shutdown")

    def _answered(self, flow: http.HTTPFlow) -> None:
        self.flows.pop(flow.id, None)
        if not self.flows:
            self.idle.set()

    def _close(self, flow: http.HTTPFlow, outcome: str) -> None:
        self._open.pop(flow.id, None)
        record = FlowRecord.find(flow)
        if record is None or record.judgement is None or record.closed:
            return
        record.closed = True
        log_decision(record.close_line(flow, outcome))
