"""The one judge: everything about to leave goes through `Judge.judge`.

The HTTP path, WebSocket messages, raw TCP windows and `egress-sidecar scan` hand it an
`Outbound` (plain values, no mitmproxy) and apply the `Judgement` it returns, so the dry
run is the verdict the proxy applies. In order: the sidecar's own keys on the bytes as
sent (refused in every mode), the protocol rule the proxy found broken, body decoding
within the scan limit, the scan request (LLM calls recognised), the own keys again on
what decoding revealed, secrets hidden in bytes decoders skip, the backend's verdict or
the fail mode, the addresses the destination resolves to, approvals, and shadow mode
last. It never raises: a bug is a refusal (`internal_error`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sidecar.approvals.waiter import ApprovalCapacityExceeded, ApprovalWaiter
from sidecar.backends.base import ScanBackend
from sidecar.backends.contract import ScanRequest, ScanVerdict
from sidecar.backends.errors import INTERNAL_ERROR_KIND, ScanError
from sidecar.broker.masking import mask_headers, mask_text
from sidecar.broker.state import OWN, PLACEHOLDER, VALUE, Broker, BrokerState
from sidecar.config.credentials import IntervenCredentials
from sidecar.config.settings import ApprovalMode, EnforcementMode, FailMode, SidecarSettings
from sidecar.engine.decisions import ApprovalStatus, Decision
from sidecar.engine.known_secrets import KnownSecrets
from sidecar.judge.bodies import BodyTooLarge, BodyUndecodable, body_for_scan, decode_off_loop
from sidecar.judge.destination import Destinations
from sidecar.judge.enforce import (
    APPROVAL_CAPACITY,
    BODY_TOO_LARGE,
    BODY_UNDECODABLE,
    BROKERED_CREDENTIAL_UNBOUND,
    BROKERED_CREDENTIAL_VALUE,
    FAIL_CLOSED,
    HIDDEN_SECRET,
    Enforcement,
    address_refused,
    approval_refused,
    approval_result,
    brokered_refused,
    fail_open,
    from_verdict,
    internal_error,
    local_block,
    shadowed,
    sidecar_key_refused,
)
from sidecar.judge.request_surface import scanned_headers
from sidecar.llm import recognise

logger = logging.getLogger("egress_sidecar")

REFUSED_UNBOUND = "brokered_unbound"  # `Judgement.refusal`: a placeholder outside its bindings
REFUSED_VALUE = "brokered_value"  # a brokered credential's real value, sent by the agent
CONTEXT_LIMIT = 32 * 1024  # characters of conversation sent as `context` (the latest)
INLINE_LIMIT = 16 * 1024  # bytes; larger texts are searched for own keys off the loop


@dataclass(frozen=True, slots=True)
class Outbound:
    """One thing about to leave, as read by the proxy (or typed on the command line)."""

    method: str  # as sent; WEBSOCKET or TCP for a message of a stream
    url: str  # absolute, the destination as written
    url_as_sent: str = ""  # the target before the proxy normalised it (own keys); else `url`
    headers: tuple[tuple[str, str], ...] = ()  # as sent (`:authority` included)
    trailers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""  # as sent: content codings applied
    content_encoding: str = ""
    transfer_encoding: str = ""
    content_type: str = ""
    llm_at: tuple[str, str] | None = None  # (host, path) when it may be an LLM call
    sent_digest: str | None = None  # the bytes as they leave, digested (approvals)
    refusal: tuple[Enforcement, str] | None = None  # a protocol rule it breaks, and its kind
    destination: tuple[str, int] | None = None  # resolved and judged after the verdict
    # A message of a stream (WebSocket message, raw TCP window), set by the proxy for
    # what it relays as one, never read from the method an agent chose.
    message: bool = False


@dataclass(slots=True)
class Judgement:
    """The enforcement and the facts behind it; metrics and log lines come from these."""

    enforcement: Enforcement
    verdict: ScanVerdict | None = None  # the backend's answer, when there was one
    backend: str | None = None  # the backend asked (with `scan_seconds`)
    scan_seconds: float | None = None
    error: str | None = None  # the scan error (or "internal") that left it without a verdict
    fail: str | None = None  # "open" / "closed": what the fail mode did about `error`
    refusal: str | None = None  # the local rule that refused it, e.g. "hidden_secret", "ssrf"
    llm: str | None = None  # the LLM provider it was recognised as calling
    approval_seconds: float | None = None  # how long it was held for a human
    # Brokered credentials whose placeholder it carries to a bound destination (the
    # proxy substitutes their values from `broker`, the snapshot judged with), or those
    # it was refused for.
    bound: frozenset[str] = frozenset()
    broker: BrokerState | None = None
    broker_refused: tuple[str, ...] = ()

    @classmethod
    def internal(cls) -> Judgement:
        """A bug while judging: a refusal, never a forward."""
        return cls(internal_error(), error=INTERNAL_ERROR_KIND)


class Judge:
    """Judges outbound requests and messages with the configured backend."""

    def __init__(
        self,
        settings: SidecarSettings,
        backend: ScanBackend,
        destinations: Destinations,
        known: KnownSecrets,
        identity: IntervenCredentials | None = None,
        approvals: ApprovalWaiter | None = None,
        broker: Broker | None = None,
    ) -> None:
        self.settings = settings  # replaced when options change (fail mode, limits...)
        self.backend = backend
        self.destinations = destinations
        self.known = known  # the sidecar's own keys and admin token
        self._identity = identity
        self._approvals = approvals  # None: a held request is refused (as approval_mode=refuse)
        self.broker = broker  # brokered credentials (None: none configured)

    @property
    def shadow(self) -> bool:
        return self.settings.enforcement is EnforcementMode.SHADOW

    async def judge(
        self, outbound: Outbound, still_wanted: Callable[[], bool] = lambda: True
    ) -> Judgement:
        """The final judgement, shadow mode applied; `still_wanted` says whether a held
        request's client is still there."""
        try:
            judgement = await self._judge(outbound, still_wanted)
        except Exception:
            # A bug here must never become a fail-open.
            logger.exception("egress-sidecar: internal error while judging %s", outbound.method)
            judgement = Judgement.internal()
        if self.shadow:
            judgement.enforcement = shadowed(judgement.enforcement)
        return judgement

    async def _judge(self, out: Outbound, still_wanted: Callable[[], bool]) -> Judgement:
        limit = self.settings.max_body_bytes
        state = self.broker.current if self.broker is not None else None
        if out.message:
            return await self._judge_message(out, limit, state)
        headers = scanned_headers(list(out.headers), list(out.trailers))
        raw = out.body.decode("latin-1")
        # The sidecar's own keys first, on the parts as sent: refused in every mode, even
        # when another rule would refuse the request (shadow mode forwards those). So are
        # brokered credentials: a real value the agent sends, a placeholder sent outside
        # its bindings.
        sent_url = out.url_as_sent or out.url
        labels = await self._known(state, out.method, sent_url, headers, None, raw)
        if (refused := self._refused_known(labels, state, out.method, out.url)) is not None:
            return refused
        if out.refusal is not None:
            return Judgement(out.refusal[0], refusal=out.refusal[1])
        try:
            content = await decode_off_loop(
                out.body, out.content_encoding, limit, transfer_encoding=out.transfer_encoding
            )
            request = self.scan_request(out, headers, content)
        except BodyTooLarge:
            message = f"Request body is larger than the scan limit ({limit} B)."
            return Judgement(local_block(BODY_TOO_LARGE, message, 413))
        except BodyUndecodable as e:  # a coding or an archive unreadable within the bounds
            message = f"Request body cannot be scanned: {e}"
            return Judgement(local_block(BODY_UNDECODABLE, message, 400))
        text = content.decode("utf-8", "replace")
        decoded = content != out.body
        if decoded or "\\u" in text:  # what decoding revealed (the bytes as sent were searched)
            more = await self._known(state, out.method, out.url, headers, request.body, text)
            if (refused := self._refused_known(more, state, out.method, out.url)) is not None:
                return refused
            labels |= more
        bound = _placeholders(labels)
        if bound and state is not None:  # the bound placeholders masked
            if any(state.placeholders[n].encode() in content for n in bound):
                request = self.scan_request(out, headers, content, state, bound)
            else:  # in the URL or headers only: the parsed body stands
                request = request.model_copy(
                    update={
                        "url": mask_text(request.url, state, bound),
                        "headers": mask_headers(request.headers, state, bound),
                    }
                )
        if decoded and (hidden := await self._hidden_secrets(raw, text)):
            message = (
                "Blocked by egress-sidecar: the encoded body carries a secret outside its "
                f"content ({', '.join(hidden)}), in bytes decoders skip."
            )
            return Judgement(local_block(HIDDEN_SECRET, message, 403), refusal="hidden_secret")
        judgement = await self._ask(request)
        judgement.llm = request.llm.provider if request.llm is not None else None
        judgement.bound, judgement.broker = bound, state
        verdict = judgement.verdict
        if verdict is None:
            return judgement
        if verdict.decision is not Decision.DENY and out.destination is not None:
            # The name was judged as written; now where it leads (resolved once, and the
            # connection that follows uses that answer).
            where = await self.destinations.judge_connection(*out.destination)
            if where.refusal is not None:
                judgement.enforcement = address_refused(
                    where.refusal, verdict.trace_id, where.reasons
                )
                judgement.refusal = where.refusal
                return judgement
        if verdict.decision is Decision.REQUIRE_APPROVAL and not self.shadow:
            assert verdict.approval_id is not None
            started = time.monotonic()
            judgement.enforcement = await self._approval(
                verdict.approval_id, judgement.enforcement, still_wanted
            )
            judgement.approval_seconds = time.monotonic() - started
        return judgement

    async def _judge_message(
        self, out: Outbound, limit: int, state: BrokerState | None
    ) -> Judgement:
        """A message that leaves on its own (a WebSocket message, a raw TCP window: those
        are cut to fit the limit by the protocol guard)."""
        if len(out.body) > limit and out.method != "TCP":
            return Judgement(local_block(BODY_TOO_LARGE, "message too large", 413))
        text = out.body.decode("utf-8", "replace")
        labels = await self._known(state, "", "", {}, text, text)
        # No message is ever a bound position: a real value in what an agent streams
        # would be one the upstream can store and hand back.
        if (refused := self._refused_known(labels, state, "", "")) is not None:
            return refused
        return await self._ask(self.scan_request(out, {}, out.body))

    async def _known(
        self,
        state: BrokerState | None,
        method: str,
        url: str,
        headers: dict[str, str],
        body: Any,
        raw: str,
    ) -> frozenset[str]:
        """Which known secrets it carries: the sidecar's own keys (`own`), brokered values
        and placeholders (`value:NAME`, `placeholder:NAME`) — in any case, split,
        reversed or encoded, anywhere. One pass when nothing is there."""
        if state is None:
            found = await self._carries_sidecar_key(method, url, headers, body, raw)
            return frozenset({OWN}) if found else frozenset()
        secrets = state.secrets
        if len(raw) <= INLINE_LIMIT:
            return secrets.labels_in_request(method, url, headers, body, raw)
        return await asyncio.to_thread(secrets.labels_in_request, method, url, headers, body, raw)

    @staticmethod
    def _refused_known(
        labels: frozenset[str], state: BrokerState | None, method: str, url: str
    ) -> Judgement | None:
        """The refusal for the known secrets found, if any: own keys, brokered values,
        placeholders not bound to `method` `url` (none is bound to an empty url)."""
        if not labels:
            return None
        if OWN in labels:
            return Judgement(sidecar_key_refused())
        if state is None:
            return None
        values = sorted(x.removeprefix(VALUE) for x in labels if x.startswith(VALUE))
        if values:
            refused = brokered_refused(BROKERED_CREDENTIAL_VALUE, values)
            return Judgement(refused, refusal=REFUSED_VALUE, broker_refused=tuple(values))
        found = _placeholders(labels)
        unbound = sorted(n for n in found if not (url and state.bound(n, method, url)))
        if unbound:
            refused = brokered_refused(BROKERED_CREDENTIAL_UNBOUND, unbound)
            return Judgement(refused, refusal=REFUSED_UNBOUND, broker_refused=tuple(unbound))
        return None

    async def _ask(self, request: ScanRequest) -> Judgement:
        """The backend's verdict, or what the fail mode makes of its absence."""
        started = time.monotonic()
        try:
            verdict = await self.backend.scan(request)
        except ScanError as e:
            judgement = self._without_verdict(e.kind)
            judgement.backend, judgement.scan_seconds = None, time.monotonic() - started
            return judgement
        seconds = time.monotonic() - started
        return Judgement(from_verdict(verdict), verdict, self.backend.name, seconds)

    def _without_verdict(self, kind: str) -> Judgement:
        if self.settings.fail_mode is FailMode.OPEN:
            logger.warning("fail-open forward: no verdict (%s)", kind)
            return Judgement(fail_open(kind), error=kind, fail="open")
        message = f"Blocked by egress-sidecar: no scan verdict ({kind}); fail mode is closed."
        block = local_block(FAIL_CLOSED, message, 503, error_kind=kind)
        return Judgement(block, error=kind, fail="closed")

    async def _approval(
        self, approval_id: str, pending: Enforcement, still_wanted: Callable[[], bool]
    ) -> Enforcement:
        if self._approvals is None or self.settings.approval_mode is ApprovalMode.REFUSE:
            # Refused now, unless a reviewer already approved this id (an agent's retry).
            try:
                state = await self.backend.approval_status(approval_id)
            except ScanError:
                return approval_refused(pending, approval_id)
            if state.status is ApprovalStatus.APPROVED:
                return approval_result(pending, "approved")
            return approval_refused(pending, approval_id)
        try:
            outcome = await self._approvals.wait(approval_id, still_wanted=still_wanted)
        except ApprovalCapacityExceeded:
            message = "Blocked by egress-sidecar: too many requests held."
            block = local_block(APPROVAL_CAPACITY, message, 503)
            block.trace_id, block.tool = pending.trace_id, pending.tool
            block.operation = pending.operation
            return block
        return approval_result(pending, outcome.value)

    def scan_request(
        self,
        out: Outbound,
        headers: dict[str, str],
        content: bytes,
        state: BrokerState | None = None,
        brokered: frozenset[str] = frozenset(),
    ) -> ScanRequest:
        """What the backend is asked (raises BodyUndecodable for an unreadable archive).
        Bound placeholders are shown as `[brokered:NAME]`: no backend mistakes them for a
        credential sent to a non-issuer, and the request says which were bound."""
        url = out.url
        if brokered and state is not None:
            url = mask_text(url, state, brokered)
            headers = mask_headers(headers, state, brokered)
            content = mask_text(content.decode("utf-8", "surrogateescape"), state, brokered).encode(
                "utf-8", "surrogateescape"
            )
        body = body_for_scan(content, out.content_type)
        at = out.llm_at
        call = recognise(at[0], at[1], body) if at is not None and body is not None else None
        identity = self._identity
        return ScanRequest(
            method=out.method,
            url=url,
            headers=headers,
            body=body,
            agent_id=identity.agent_id if identity else None,
            agent_name=identity.agent_name if identity else None,
            runtime_type=self.settings.runtime_type,
            context=call.context()[-CONTEXT_LIMIT:] if call is not None else None,
            body_bytes=len(content),
            llm=call,
            sent_digest=out.sent_digest,
        )

    async def _carries_sidecar_key(
        self, method: str, url: str, headers: dict[str, str], body: Any, raw: str
    ) -> bool:
        """The sidecar's own keys, in any case, split, reversed or encoded, anywhere."""
        if not self.known:
            return False
        if len(raw) <= INLINE_LIMIT:
            return self.known.found_in_request(method, url, headers, body, raw)
        return await asyncio.to_thread(self.known.found_in_request, method, url, headers, body, raw)

    async def _hidden_secrets(self, sent: str, decoded: str) -> list[str]:
        """Secrets in an encoded body's bytes as sent that its decoded content does not
        hold (`Engine.hidden_secrets`): judged locally, whatever the backend — no scan API
        is shown bytes outside a body."""
        engine = self.destinations.engine
        if len(sent) <= INLINE_LIMIT:
            return engine.hidden_secrets(sent, decoded)
        return await asyncio.to_thread(engine.hidden_secrets, sent, decoded)


def _placeholders(labels: frozenset[str]) -> frozenset[str]:
    return frozenset(x.removeprefix(PLACEHOLDER) for x in labels if x.startswith(PLACEHOLDER))
