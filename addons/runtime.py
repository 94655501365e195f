"""What exists only while the proxy runs, and the judgements every guard shares.

`EgressGuard` builds one `Runtime` when the proxy starts; the tunnel, protocol and
connect guards read it (and fail closed while it does not exist). Two judgements live
here so that every path makes them the same way:

- `judge_connection`: a destination's name is judged locally (so a name carrying data
  is refused before any DNS lookup), resolved once, and every address it leads to is
  judged; the answer says which address to connect to.
- `judge_message`: a WebSocket message or a window of a raw TCP stream — the sidecar's
  own keys, then the backend, with the fail mode, shadow mode and metrics applied once;
  it never raises.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from mitmproxy import http

from sidecar.backends.base import ScanBackend
from sidecar.backends.errors import INTERNAL_ERROR_KIND, ScanError
from sidecar.bodies import body_for_scan
from sidecar.credentials import IntervenCredentials
from sidecar.endpoints import Listener, judge_addresses
from sidecar.enforce import (
    FAIL_CLOSED,
    SIDECAR_CREDENTIAL,
    Enforcement,
    fail_open,
    from_verdict,
    local_block,
    shadowed,
)
from sidecar.engine import Engine
from sidecar.engine.destinations import IPAddress, destination_patterns
from sidecar.engine.known_secrets import KnownSecrets
from sidecar.llm import recognise
from sidecar.metrics import SidecarMetrics
from sidecar.resolver import ResolveError, Resolver
from sidecar.settings import EnforcementMode, FailMode, SidecarSettings
from sidecar.verdict import Decision, ScanRequest

logger = logging.getLogger("egress_sidecar")

CONTEXT_LIMIT = 32 * 1024  # characters of conversation sent as `context` (the latest)
INLINE_LIMIT = 16 * 1024  # bytes; larger texts are searched for own keys off the loop


@dataclass(frozen=True, slots=True)
class ConnectionJudgement:
    """Where a connection may go: `address` to connect to, or why it may not."""

    refusal: str | None = None  # "destination_refused", "unresolvable", an SSRF kind...
    address: IPAddress | None = None  # None with no refusal: chained, the proxy resolves
    reasons: list[str] = field(default_factory=list)  # the destination judge's reasons


@dataclass
class Runtime:
    settings: SidecarSettings
    metrics: SidecarMetrics
    backend: ScanBackend
    destinations: Engine  # judges destinations before (or without) a request
    resolver: Resolver
    known: KnownSecrets  # the sidecar's own keys and admin token
    identity: IntervenCredentials | None
    listeners: Callable[[], list[Listener]]  # the sockets the sidecar listens on

    @property
    def shadow(self) -> bool:
        return self.settings.enforcement is EnforcementMode.SHADOW

    # --- destinations -------------------------------------------------------------------

    async def judge_connection(self, host: str, port: int) -> ConnectionJudgement:
        """Name first (no lookup of a refused name), then every address it resolves to."""
        named = self.destinations.judge_destination(host, port)
        if named.decision is Decision.DENY:
            return ConnectionJudgement("destination_refused", reasons=named.reason_codes)
        if self.settings.upstream_proxy is not None:
            return ConnectionJudgement()  # the upstream proxy resolves and connects
        try:
            addresses = await self.resolver.resolve(host, port)
        except ResolveError:
            return ConnectionJudgement("unresolvable")
        judged = judge_addresses(
            host, port, addresses, self.settings.internal_hosts, self.listeners()
        )
        return ConnectionJudgement(judged.refusal, judged.address or addresses[0])

    def carries_raw_tcp(self, host: str, port: int) -> bool:
        """The destination is named in raw_tcp_hosts (the one place protocols other than
        HTTP may go)."""
        entries = tuple(self.settings.raw_tcp_hosts)
        return bool(entries) and destination_patterns(entries).matches(host, port)

    # --- requests and messages ----------------------------------------------------------

    def scan_request(
        self,
        method: str,
        url: str,
        headers: dict[str, str],
        content: bytes,
        content_type: str,
        llm_at: tuple[str, str] | None = None,
        sent_digest: str | None = None,
    ) -> ScanRequest:
        """`llm_at`: (host, path) when the request may be an LLM call worth recognising;
        `sent_digest`: the request's bytes as they leave (`request_rules.sent_digest`)."""
        body = body_for_scan(content, content_type)
        call = recognise(llm_at[0], llm_at[1], body) if llm_at and body is not None else None
        identity = self.identity
        return ScanRequest(
            method=method,
            url=url,
            headers=headers,
            body=body,
            agent_id=identity.agent_id if identity else None,
            agent_name=identity.agent_name if identity else None,
            runtime_type=self.settings.runtime_type,
            context=call.context()[-CONTEXT_LIMIT:] if call is not None else None,
            body_bytes=len(content),
            llm=call,
            sent_digest=sent_digest,
        )

    async def carries_own_secret(
        self, method: str, url: str, headers: dict[str, str], body: Any, raw: str
    ) -> bool:
        """The sidecar's own keys, in any case, split, reversed or encoded, anywhere."""
        if not self.known:
            return False
        if len(raw) <= INLINE_LIMIT:
            return self.known.found_in_request(method, url, headers, body, raw)
        return await asyncio.to_thread(self.known.found_in_request, method, url, headers, body, raw)

    async def hidden_secrets(self, sent: str, decoded: str) -> list[str]:
        """Secrets in an encoded body's bytes as sent that its decoded content does not
        hold (`Engine.hidden_secrets`): judged locally, whatever the backend — no scan API
        is shown bytes outside a body."""
        if len(sent) <= INLINE_LIMIT:
            return self.destinations.hidden_secrets(sent, decoded)
        return await asyncio.to_thread(self.destinations.hidden_secrets, sent, decoded)

    async def judge_message(
        self, kind: str, url: str, content: bytes, content_type: str
    ) -> Enforcement:
        """A message that leaves on its own (a WebSocket message, a raw TCP window), no
        larger than the scan limit: the final enforcement, shadow mode applied."""
        try:
            text = content.decode("utf-8", "replace")
            if await self.carries_own_secret("", "", {}, text, text):
                enforcement = own_secret()
            else:
                request = self.scan_request(kind, url, {}, content, content_type)
                enforcement = from_verdict(await self.backend.scan(request))
        except ScanError as e:
            self.metrics.scan_errors.labels(e.kind).inc()
            enforcement = self.without_verdict(e)
        except Exception:
            logger.exception("egress-sidecar: internal error while judging a %s message", kind)
            self.metrics.scan_errors.labels(INTERNAL_ERROR_KIND).inc()
            enforcement = internal_error()
        return self.finish(enforcement)

    def finish(self, enforcement: Enforcement) -> Enforcement:
        """Shadow mode, applied and counted once for every path."""
        if self.shadow:
            enforcement = shadowed(enforcement)
        if enforcement.would is not None:
            tool = self.metrics.tool_label(enforcement.tool)
            self.metrics.shadow_decisions.labels(enforcement.would.value, tool).inc()
        return enforcement

    def without_verdict(self, error: ScanError) -> Enforcement:
        if self.settings.fail_mode is FailMode.OPEN:
            self.metrics.fail_open_forwards.labels(error.kind).inc()
            logger.warning("fail-open forward: no verdict (%s)", error.kind)
            return fail_open(error.kind)
        if not self.shadow:  # in shadow it is forwarded, and counted as a would-deny
            self.metrics.fail_closed_blocks.labels(error.kind).inc()
        message = f"Blocked by egress-sidecar: no scan verdict ({error.kind}); fail mode is closed."
        return local_block(FAIL_CLOSED, message, 503, error_kind=error.kind)


def own_secret() -> Enforcement:
    return local_block(SIDECAR_CREDENTIAL, "Carries the sidecar's own credential.", 403)


def internal_error() -> Enforcement:
    message = "Blocked by egress-sidecar: internal error while judging."
    return local_block(FAIL_CLOSED, message, 500, error_kind=INTERNAL_ERROR_KIND)


def refusal_response(enforcement: Enforcement) -> http.Response:
    """What the agent gets instead of the upstream's answer."""
    return http.Response.make(
        enforcement.status,
        enforcement.block_body(),
        {"Content-Type": "application/json", **enforcement.headers()},
    )
