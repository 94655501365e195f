"""What exists only while the proxy runs: built once at start by `Lifecycle.running`.

Every guard reads it through `Lifecycle.runtime` and refuses (fails closed) while it
does not exist yet; inside, nothing is optional.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from mitmproxy import http

from sidecar.broker.state import Broker
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
    def broker(self) -> Broker | None:
        return self.judge.broker

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


logger = logging.getLogger("egress_sidecar")

BROKER_LOOK_EVERY = 1.0  # seconds: a rotated value is in use well within 5 s


async def watch_broker_values(broker: Broker, metrics: SidecarMetrics) -> None:
    """Stat the value files every second (a Kubernetes Secret update is a symlink swap;
    `subPath` mounts never see one) and swap in a snapshot with what changed."""
    while True:
        await asyncio.sleep(BROKER_LOOK_EVERY)
        try:
            changes = await asyncio.to_thread(broker.refresh)
        except Exception:  # never let a bad read stop the watch
            logger.exception("egress-sidecar: brokered values could not be re-read")
            continue
        for name, result in changes:
            metrics.broker_reloads.labels(name, result).inc()


def refusal_response(enforcement: Enforcement) -> http.Response:
    """What the agent gets instead of the upstream's answer."""
    return http.Response.make(
        enforcement.status,
        enforcement.block_body(),
        {"Content-Type": "application/json", **enforcement.headers()},
    )
