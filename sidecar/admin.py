"""The admin server: /metrics, /healthz, /readyz on the proxy's own event loop.

Served by tornado (already a mitmproxy dependency), so no HTTP is parsed by hand and no
thread is needed. It never serves secrets: metrics carry only bounded labels.
"""

from __future__ import annotations

import socket
from collections.abc import Callable

import tornado.httpserver
import tornado.netutil
import tornado.web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from sidecar.metrics import SidecarMetrics
from sidecar.settings import HostPort


class _MetricsHandler(tornado.web.RequestHandler):
    def initialize(self, metrics: SidecarMetrics) -> None:
        self.metrics = metrics

    def get(self) -> None:
        self.set_header("Content-Type", CONTENT_TYPE_LATEST)
        self.finish(generate_latest(self.metrics.registry))


class _HealthHandler(tornado.web.RequestHandler):
    def get(self) -> None:
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        self.finish("ok\n")


class _ReadyHandler(tornado.web.RequestHandler):
    def initialize(self, ready: Callable[[], str | None]) -> None:
        self.ready = ready

    def get(self) -> None:
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        problem = self.ready()
        if problem is not None:
            self.set_status(503)
            self.finish(f"not ready: {problem}\n")
            return
        self.finish("ready\n")


class AdminServer:
    """Binds on `start()`; `ready()` returns None when ready, else what is missing."""

    def __init__(self, metrics: SidecarMetrics, ready: Callable[[], str | None]) -> None:
        app = tornado.web.Application(
            [
                (r"/metrics", _MetricsHandler, {"metrics": metrics}),
                (r"/healthz", _HealthHandler),
                (r"/readyz", _ReadyHandler, {"ready": ready}),
            ],
            default_handler_class=tornado.web.ErrorHandler,
            default_handler_args={"status_code": 404},
        )
        self._server = tornado.httpserver.HTTPServer(app, xheaders=False)
        self.address: HostPort | None = None

    def start(self, listen: HostPort) -> HostPort:
        sockets = tornado.netutil.bind_sockets(listen.port, listen.host, reuse_port=False)
        self._server.add_sockets(sockets)
        bound = sockets[0].getsockname()
        host = listen.host if sockets[0].family != socket.AF_INET6 else bound[0]
        self.address = HostPort(host=host, port=bound[1])
        return self.address

    async def stop(self) -> None:
        self._server.stop()
        await self._server.close_all_connections()
