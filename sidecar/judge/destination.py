"""Where a connection may go: the name as written, then every address it resolves to.

A destination's name is judged locally (so a name carrying data is refused before any
DNS lookup), resolved once, and every address it leads to is judged; the answer says
which address to connect to, so the address judged is the address connected to.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from sidecar.backends.local import to_scan_verdict
from sidecar.config.settings import SidecarSettings
from sidecar.engine import Engine
from sidecar.engine.decisions import Decision
from sidecar.engine.destinations import IPAddress, destination_patterns
from sidecar.engine.detectors import SECRETS
from sidecar.engine.known_secrets import KnownSecrets
from sidecar.engine.outcomes import SECRET_EXFILTRATION
from sidecar.judge.endpoints import Listener, judge_addresses
from sidecar.judge.enforce import Enforcement, from_verdict, local_block, sidecar_key_refused
from sidecar.judge.resolver import ResolveError, Resolver


@dataclass(frozen=True, slots=True)
class ConnectionJudgement:
    """Where a connection may go: `address` to connect to, or why it may not."""

    refusal: str | None = None  # "destination_refused", "unresolvable", an SSRF kind...
    address: IPAddress | None = None  # None with no refusal: chained, the proxy resolves
    reasons: list[str] = field(default_factory=list)  # the destination judge's reasons


class Destinations:
    """Judges destinations before (or without) a request: tunnels, connections, and the
    destinations allowed raw TCP."""

    def __init__(
        self,
        settings: SidecarSettings,
        engine: Engine,
        resolver: Resolver | None,
        known: KnownSecrets,
        listeners: Callable[[], list[Listener]] = list,
    ) -> None:
        self.settings = settings  # replaced when options change
        self.engine = engine
        self._resolver = resolver  # None: names are judged as written, never resolved
        self._known = known
        self._listeners = listeners

    async def judge_connection(self, host: str, port: int) -> ConnectionJudgement:
        """Name first (no lookup of a refused name), then every address it resolves to."""
        named = self.engine.judge_destination(host, port)
        if named.decision is Decision.DENY:
            return ConnectionJudgement("destination_refused", reasons=named.reason_codes)
        if self.settings.upstream_proxy is not None or self._resolver is None:
            return ConnectionJudgement()  # the upstream proxy resolves and connects
        try:
            addresses = await self._resolver.resolve(host, port)
        except ResolveError:
            return ConnectionJudgement("unresolvable")
        judged = judge_addresses(
            host, port, addresses, self.settings.internal_hosts, self._listeners()
        )
        return ConnectionJudgement(judged.refusal, judged.address or addresses[0])

    def judge_tunnel(self, host: str, authority: str, port: int) -> Enforcement:
        """A CONNECT, on its destination alone, locally (the scan API's rate budget is
        spent on requests): the sidecar's own keys, the destination rules, and a
        credential written into the name (it would leave in DNS and the SNI)."""
        if self._known.found_in((host, authority)):
            return sidecar_key_refused()
        local = self.engine.judge_destination(host, port)
        enforcement = from_verdict(to_scan_verdict(local, str(uuid.uuid4()), None))
        if not enforcement.forward:
            enforcement.message = "Blocked by egress-sidecar: this destination is refused."
            return enforcement
        found = self.engine.findings(f"https://{authority or host}/", {}, None, host)
        if any(f.data_class == SECRETS for f in found):
            message = "Blocked by egress-sidecar: the destination name carries a credential."
            return local_block(SECRET_EXFILTRATION, message, 403)
        return enforcement

    def carries_raw_tcp(self, host: str, port: int) -> bool:
        """The destination is named in raw_tcp_hosts (the one place protocols other than
        HTTP may go)."""
        entries = tuple(self.settings.raw_tcp_hosts)
        return bool(entries) and destination_patterns(entries).matches(host, port)
