"""The sidecar as one mitmproxy addon whose children each handle one concern.

mitmproxy hands every hook to an addon's `addons` children in order (`traverse` in its
addon manager), so one entry in the master's chain carries all of them: each hook of
each connection then costs one dispatch for the sidecar instead of one per concern (a
dozen, on some twenty hooks per request).
"""

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


class Sidecar:
    def __init__(
        self,
        settings: SidecarSettings | None = None,
        credentials: Credentials | None = None,
        resolver: Resolver | None = None,
    ) -> None:
        """`settings` None: read from the `egress_<name>` options (`mitmdump -s`).
        `resolver`: how destination names are resolved (default: the system's)."""
        life = self.lifecycle = Lifecycle(settings, credentials, resolver)
        self.in_flight = InFlight()
        self.addons: list[object] = [
            life, self.in_flight, RequestGuard(life), ResponseReporter(life),
            WebSocketGuard(life), TunnelGuard(life), ProtocolGuard(life), ConnectGuard(life),
            ConnectionGuard(life), ResourceGuard(life), LogHygiene(life), ReleaseTlsBuffers(),
        ]  # fmt: skip
