"""The sidecar as mitmproxy addons, one per concern, sharing one `Lifecycle`."""

from __future__ import annotations

from addons.connect_guard import ConnectGuard
from addons.connection_guard import ConnectionGuard
from addons.in_flight import InFlight
from addons.lifecycle import Lifecycle
from addons.log_hygiene import LogHygiene
from addons.protocol_guard import ProtocolGuard
from addons.request_guard import RequestGuard
from addons.resource_guard import ResourceGuard
from addons.response_reporter import ResponseReporter
from addons.tls_buffers import ReleaseTlsBuffers
from addons.tunnel_guard import TunnelGuard
from addons.websocket_guard import WebSocketGuard
from sidecar.config.credentials import Credentials
from sidecar.config.settings import SidecarSettings
from sidecar.judge.resolver import Resolver


def sidecar_addons(
    settings: SidecarSettings | None = None,
    credentials: Credentials | None = None,
    resolver: Resolver | None = None,
) -> list[object]:
    """`settings` None: read from the `egress_<name>` options (`mitmdump -s`).
    `resolver`: how destination names are resolved (default: the system's)."""
    life = Lifecycle(settings, credentials, resolver)
    return [life, InFlight(), RequestGuard(life), ResponseReporter(life), WebSocketGuard(life),
            TunnelGuard(life), ProtocolGuard(life), ConnectGuard(life), ConnectionGuard(life),
            ResourceGuard(life), LogHygiene(life), ReleaseTlsBuffers()]  # fmt: skip
