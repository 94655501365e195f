"""What exists only while the proxy runs: built once at start by `Lifecycle.running`.

Every guard reads it through `Lifecycle.runtime` and refuses (fails closed) while it
does not exist yet; inside, nothing is optional.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from mitmproxy import http

from sidecar.config.settings import SidecarSettings
from sidecar.judge.destination import Destinations
from sidecar.judge.enforce import Enforcement
from sidecar.judge.judge import Judge
from sidecar.judge.responses import ResponseScanQueue
from sidecar.observability.admin import AdminServer
from sidecar.observability.metrics import SidecarMetrics


@dataclass
class Runtime:
    judge: Judge
    destinations: Destinations
    responses: ResponseScanQueue
    metrics: SidecarMetrics
    admin: AdminServer | None  # None: the admin server is off
    lag_watch: asyncio.Task[None]
    broker_watch: asyncio.Task[None] | None = None  # re-reads rotated brokered values

    @property
    def settings(self) -> SidecarSettings:
        return self.judge.settings

    @settings.setter
    def settings(self, settings: SidecarSettings) -> None:
        """Per-request settings (fail mode, limits) changed while running."""
        self.judge.settings = settings
        self.destinations.settings = settings

    @property
    def shadow(self) -> bool:
        return self.judge.shadow


def refusal_response(enforcement: Enforcement) -> http.Response:
    """What the agent gets instead of the upstream's answer."""
    return http.Response.make(
        enforcement.status,
        enforcement.block_body(),
        {"Content-Type": "application/json", **enforcement.headers()},
    )
