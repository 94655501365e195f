"""The admin server: /metrics, /healthz, /readyz (+ /approvals) on the proxy's event loop.

Served by tornado (already a mitmproxy dependency), so no HTTP is parsed by hand and no
thread is needed. It never serves secrets: metrics carry only bounded labels.
"""

from __future__ import annotations

import hmac
import os
import secrets
import socket
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import tornado.httpserver
import tornado.netutil
import tornado.web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from sidecar.approvals.store import ApprovalAlreadyDecided, ApprovalNotFound, ApprovalStore
from sidecar.config.settings import HostPort
from sidecar.observability.metrics import SidecarMetrics


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


TOKEN_FILE = "admin-token"  # noqa: S105 - a file name


def ensure_admin_token(confdir: Path, configured: str | None) -> str:
    """The token the approval endpoints require: the configured one, else one generated
    once and kept in the confdir (0600), where `egress-sidecar approvals` finds it.

    Only a human may approve: on every address, approving needs this token, which an
    agent does not have as long as it cannot read the sidecar's confdir (run the agent
    as another OS user, or in another container, as the Kubernetes component does).
    """
    if configured:
        return configured
    confdir.mkdir(mode=0o700, parents=True, exist_ok=True)
    confdir.chmod(0o700)  # it holds the CA key and this token: the sidecar's user only
    path = confdir / TOKEN_FILE
    if path.exists():
        path.chmod(0o600)
        existing = read_admin_token(confdir)
        if existing:
            return existing
    fd, tmp = tempfile.mkstemp(dir=confdir, prefix=".admin-token.")  # created 0600
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_urlsafe(32) + "\n")
    try:
        os.link(tmp, path)  # never replaces a token another process just wrote
    except FileExistsError:
        pass
    finally:
        os.unlink(tmp)
    token = read_admin_token(confdir)
    if token is None:
        raise OSError(f"{path}: cannot read the admin token")
    return token


def read_admin_token(confdir: Path) -> str | None:
    try:
        token = (confdir / TOKEN_FILE).read_text().strip()
    except OSError:
        return None
    return token or None


class _ApprovalsBase(tornado.web.RequestHandler):
    """Approvals change what leaves the pod: the admin token is required on every address."""

    def initialize(self, store: ApprovalStore | None, token: str) -> None:
        self.store = store
        self.token = token

    def prepare(self) -> None:
        if self.store is None:
            self._fail(404, "approvals are handled by the scan API, not this sidecar")
            return
        given = self.request.headers.get("Authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {self.token}".encode()):
            self._fail(401, "missing or wrong admin token")

    def _fail(self, status: int, message: str) -> None:
        self.set_status(status)
        self.finish({"error": message})

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        self.finish({"error": self._reason})


class _ApprovalListHandler(_ApprovalsBase):
    def get(self) -> None:
        assert self.store is not None
        pending_only = self.get_query_argument("all", "0") not in ("1", "true")
        self.finish({"approvals": self.store.listing(pending_only=pending_only)})


class _ApprovalDecisionHandler(_ApprovalsBase):
    def post(self, approval_id: str, verb: str) -> None:
        assert self.store is not None
        try:
            record = self.store.decide(approval_id, approve=verb == "approve")
        except ApprovalNotFound:
            self._fail(404, f"no approval {approval_id}")
            return
        except ApprovalAlreadyDecided as e:
            self._fail(409, str(e))
            return
        self.finish(record)


class AdminServer:
    """Binds on `start()`; `ready()` returns None when ready, else what is missing."""

    def __init__(
        self,
        metrics: SidecarMetrics,
        ready: Callable[[], str | None],
        approvals: ApprovalStore | None,
        token: str,
    ) -> None:
        approval_args = {"store": approvals, "token": token}
        app = tornado.web.Application(
            [
                (r"/metrics", _MetricsHandler, {"metrics": metrics}),
                (r"/healthz", _HealthHandler),
                (r"/readyz", _ReadyHandler, {"ready": ready}),
                (r"/approvals", _ApprovalListHandler, approval_args),
                (r"/approvals/([^/]+)/(approve|deny)", _ApprovalDecisionHandler, approval_args),
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
