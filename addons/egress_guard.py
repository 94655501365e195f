"""egress-sidecar's mitmproxy addon: every request is scanned, then enforced.

Thin glue: it turns a flow into a scan request, awaits a verdict from the configured
backend, applies what `sidecar.enforce` says, and queues the response body for
classification. Detection, policy and HTTP to the scan API live in `sidecar/`.

Load it with `egress-sidecar run`, or with `mitmdump -s addons/egress_guard.py` after
`pip install egress-sidecar` (options: `mitmdump -s ... --set egress_fail_mode=open`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any

from mitmproxy import ctx, http
from mitmproxy.addonmanager import Loader
from mitmproxy.exceptions import OptionsError
from mitmproxy.proxy.mode_specs import TransparentMode

from addons import layers
from addons.connect_guard import ConnectGuard
from addons.layers import ControlFrame
from addons.log_hygiene import LogHygiene
from addons.protocol_guard import ProtocolGuard
from addons.tls_buffers import ReleaseTlsBuffers
from addons.tunnel_guard import TunnelGuard
from sidecar.admin import AdminServer, ensure_admin_token
from sidecar.approvals import ApprovalCapacityExceeded, ApprovalWaiter
from sidecar.authority import (
    AuthorityError,
    absolute_url,
    mismatch,
    normalise_host,
    parse_authority,
)
from sidecar.backends import BackendConfigError, backend_name, create_backend
from sidecar.backends.base import ScanBackend
from sidecar.backends.breaker import BreakerState
from sidecar.backends.errors import INTERNAL_ERROR_KIND, ScanError
from sidecar.backends.governed import HeldAtSidecar
from sidecar.backends.local import LocalBackend
from sidecar.bodies import (
    BodyTooLarge,
    BodyUndecodable,
    body_for_scan,
    decode_body,
    media_type,
)
from sidecar.credentials import Credentials, load_credentials
from sidecar.decision_log import log_decision, loggable, loggable_host
from sidecar.endpoints import Listener, judge_addresses
from sidecar.enforce import (
    APPROVAL_CAPACITY,
    BODY_TOO_LARGE,
    BODY_UNDECODABLE,
    DESTINATION_MISMATCH,
    DESTINATION_UNPARSEABLE,
    FAIL_CLOSED,
    METHOD_INVALID,
    SIDECAR_CREDENTIAL,
    UPGRADE_REFUSED,
    Enforcement,
    address_refused,
    approval_refused,
    approval_result,
    fail_open,
    from_verdict,
    local_block,
    shadowed,
)
from sidecar.engine import Engine, Policy
from sidecar.engine.known_secrets import KnownSecrets
from sidecar.llm import recognise
from sidecar.loop_lag import watch_loop_lag
from sidecar.metrics import SidecarMetrics
from sidecar.policy_file import PolicyError, load_policy
from sidecar.request_surface import (
    PROXY_ONLY_HEADERS,
    Upgrade,
    classify_upgrade,
    method_problem,
    scanned_headers,
)
from sidecar.resolver import DestinationResolver, ResolveError, Resolver
from sidecar.response_scan import ResponseScanJob, ResponseScanQueue
from sidecar.settings import (
    ApprovalMode,
    EnforcementMode,
    FailMode,
    SettingsError,
    SidecarSettings,
    load_settings,
)
from sidecar.stream_tap import ResponseTap
from sidecar.tuning import freeze_startup_heap, share_gil_promptly
from sidecar.verdict import ApprovalStatus, Decision, ScanRequest

logger = logging.getLogger("egress_sidecar")

METADATA_KEY = "egress_sidecar"
TAP_KEY = "egress_sidecar_tap"
LLM_KEY = "egress_sidecar_llm"  # the provider, when the request was an LLM call
FORWARDED_KEY = "egress_sidecar_forwarded"  # when the request left, for outcome latency
UPGRADE_KEY = "egress_sidecar_upgrade"  # set when a WebSocket upgrade was judged and sent
INLINE_LIMIT = 16 * 1024  # bytes; larger bodies are searched for own keys off the loop
CONTEXT_LIMIT = 32 * 1024  # characters of conversation sent as `context` (the latest)
SHUTDOWN_GRACE = 5.0

# Settings the addon exposes as mitmproxy options (`egress_<name>`). The rest map onto
# mitmproxy's own options (listen_host/port, confdir, mode, ssl_verify_upstream_trusted_ca).
ADDON_SETTINGS = (
    "backend",
    "admin",
    "fail_mode",
    "enforcement",
    "approval_mode",
    "scan_timeout",
    "scan_retries",
    "approval_timeout",
    "approval_poll_interval",
    "max_pending_approvals",
    "max_body_bytes",
    "response_queue_size",
    "response_workers",
    "runtime_type",
    "policy",
    "internal_hosts",
    "approval_expiry",
    "breaker_threshold",
    "breaker_cooldown",
    "ca_bundle_out",
    "scan_api_ca",
    "passthrough_hosts",
    "raw_tcp_hosts",
    "upstream_proxy",
    "approval_volatile_headers",
)

# Options the running proxy was built from; the rest (fail mode, body limits...) are read
# per request and may change while it runs.
READ_AT_START = frozenset(
    f"egress_{name}"
    for name in (
        "backend", "admin", "enforcement", "scan_timeout", "scan_retries", "policy",
        "internal_hosts", "approval_expiry", "breaker_threshold", "breaker_cooldown",
        "scan_api_ca", "response_queue_size", "response_workers", "max_pending_approvals",
        "approval_timeout", "approval_poll_interval", "upstream_proxy",
        "approval_volatile_headers",
    )
)  # fmt: skip

# mitmproxy's own ways around the sidecar's tunnel rules: pass-through is ours to decide
# (bound to the destination connected to), raw TCP is refused unless named.
_FOREIGN_TUNNEL_OPTIONS = {
    "ignore_hosts": "egress_passthrough_hosts",
    "allow_hosts": "egress_passthrough_hosts",
    "tcp_hosts": "egress_raw_tcp_hosts",
    "udp_hosts": "nothing: UDP is never relayed",
}


def option_values(settings: SidecarSettings) -> dict[str, Any]:
    """The mitmproxy option values that carry `settings` into the addon."""
    dumped = settings.model_dump(mode="json", include=set(ADDON_SETTINGS))
    return {f"egress_{k}": _option_value(v) for k, v in dumped.items()}


def _option_value(value: Any) -> Any:
    """mitmproxy options are scalars: None is "", lists are comma-separated."""
    if value is None:
        return ""
    if isinstance(value, list):
        return ",".join(value)
    return value


class EgressGuard:
    """Scans each request with the configured backend and enforces the verdict.

    It also owns what the other guards share once the proxy runs: settings, metrics, the
    backend, the sidecar's own secrets, the resolver and the destination judge.
    """

    def __init__(
        self, credentials: Credentials | None = None, resolver: Resolver | None = None
    ) -> None:
        self._credentials = credentials
        self.settings: SidecarSettings | None = None
        self._lag_watch: asyncio.Task[None] | None = None
        self.metrics = SidecarMetrics()
        self.backend: ScanBackend | None = None
        self.approvals: ApprovalWaiter | None = None
        self.responses: ResponseScanQueue | None = None
        self.admin: AdminServer | None = None
        self._own_secrets: list[bytes] = []
        self.known = KnownSecrets(())  # the sidecar's own keys, matched in every form
        self.resolver: Resolver = resolver or DestinationResolver()
        self.destinations: Engine | None = None  # judges destinations before any request
        self.shadow = False  # --enforcement shadow
        self._policy: Policy | None = None
        self.in_flight: set[str] = set()  # flow ids between request headers and the answer
        self.idle = asyncio.Event()  # set while nothing is in flight (graceful shutdown)
        self.idle.set()

    def load(self, loader: Loader) -> None:
        try:
            defaults = option_values(load_settings())
        except SettingsError as e:
            raise OptionsError(f"egress-sidecar: {e}") from None
        fields = SidecarSettings.model_fields
        for name in ADDON_SETTINGS:
            value = defaults[f"egress_{name}"]
            loader.add_option(
                f"egress_{name}", type(value), value, fields[name].description or name
            )
        layers.install()

    def configure(self, updated: set[str]) -> None:
        if "stream_large_bodies" in updated and ctx.options.stream_large_bodies:
            raise OptionsError(
                "egress-sidecar: stream_large_bodies must be unset: "
                "streamed request bodies would be forwarded before they are scanned"
            )
        if "connection_strategy" in updated and ctx.options.connection_strategy != "lazy":
            raise OptionsError(
                "egress-sidecar: connection_strategy must be lazy: an eager connection "
                "contacts the destination (and sends the agent's TLS SNI) before the request "
                "is judged"
            )
        for option, instead in _FOREIGN_TUNNEL_OPTIONS.items():
            if option in updated and getattr(ctx.options, option):
                raise OptionsError(
                    f"egress-sidecar: {option} must be empty (use {instead}): mitmproxy "
                    "matches it on names the client chooses"
                )
        if self.settings is not None and not any(n.startswith("egress_") for n in updated):
            return
        if self.backend is not None and (fixed := sorted(updated & READ_AT_START)):
            # The backend, its client and the admin server were built from these.
            raise OptionsError(f"egress-sidecar: restart to change {', '.join(fixed)}")
        values = {name: getattr(ctx.options, f"egress_{name}") for name in ADDON_SETTINGS}
        values["admin"] = values["admin"] or "off"
        for name in ("backend", "policy", "ca_bundle_out", "scan_api_ca", "upstream_proxy"):
            values[name] = values[name] or None
        values["confdir"] = ctx.options.confdir  # approvals live next to the CA
        try:
            self.settings = load_settings(**values)
            self.shadow = self.settings.enforcement is EnforcementMode.SHADOW
            if self._credentials is None:
                self._credentials = load_credentials()
        except SettingsError as e:
            raise OptionsError(f"egress-sidecar: {e}") from None
        try:
            if backend_name(self.settings, self._credentials) == "local":
                self._policy = load_policy(self.settings.policy)
        except (BackendConfigError, PolicyError) as e:
            raise OptionsError(f"egress-sidecar: {e}") from None

    async def running(self) -> None:
        settings, credentials = self.settings, self._credentials
        assert settings is not None
        assert credentials is not None
        self.backend = create_backend(settings, credentials, self._policy, self._circuit_changed)
        if isinstance(self.backend, LocalBackend):
            self.destinations = self.backend.engine
        else:  # the built-in rules judge destinations before a request exists
            self.destinations = Engine(load_policy(None), tuple(settings.internal_hosts))
        self._own_secrets = credentials.secrets()
        self.approvals = ApprovalWaiter(
            self.backend,
            self.metrics,
            settings.approval_timeout,
            settings.approval_poll_interval,
            settings.max_pending_approvals,
        )
        self.responses = ResponseScanQueue(
            self.backend,
            self.metrics,
            settings.response_queue_size,
            settings.response_workers,
            withheld=self._own_secrets,
        )
        self.responses.start()
        self._lag_watch = asyncio.create_task(watch_loop_lag(self.metrics.event_loop_lag.observe))
        token: str | None = None
        if settings.admin is not None:
            # Approvals decided here, or (None) by the remote API.
            approvals = self.backend.approvals if isinstance(self.backend, HeldAtSidecar) else None
            configured = settings.admin_token.get_secret_value() if settings.admin_token else None
            settings.confdir.mkdir(mode=0o700, parents=True, exist_ok=True)
            token = ensure_admin_token(settings.confdir, configured)
            self.admin = AdminServer(self.metrics, self.readiness, approvals, token)
            try:
                self.admin.start(settings.admin)
            except OSError as e:
                logger.error(
                    "egress-sidecar: admin server cannot listen on %s: %s",
                    settings.admin,
                    e.strerror,
                )
        secrets = [s.decode() for s in self._own_secrets] + ([token] if token else [])
        self.known = KnownSecrets(secrets)
        share_gil_promptly()
        frozen = freeze_startup_heap()
        logger.debug("start-up heap frozen: %d objects out of the collector's reach", frozen)

    def _circuit_changed(self, state: BreakerState) -> None:
        is_open = state is BreakerState.OPEN
        self.metrics.circuit_open.set(1 if is_open else 0)
        if is_open:
            self.metrics.circuit_opens.inc()
            logger.warning("scan API circuit open: failing fast until a trial call succeeds")
        else:
            logger.warning("scan API circuit %s", state.value)

    async def done(self) -> None:
        if self._lag_watch is not None:
            self._lag_watch.cancel()
        if self.responses is not None:
            await self.responses.close(SHUTDOWN_GRACE)
        if self.backend is not None:
            await self.backend.aclose()
        if self.admin is not None:
            await self.admin.stop()

    def readiness(self) -> str | None:
        """None when the proxy listens, the CA exists and the backend is up."""
        proxyserver = ctx.master.addons.get("proxyserver")
        if proxyserver is None or not proxyserver.listen_addrs():
            return "proxy not listening"
        if not _ca_cert_exists():
            return "CA certificate missing"
        assert self.settings is not None
        bundle = self.settings.ca_bundle_out
        if bundle is not None and not bundle.is_file():
            return f"agent CA bundle {bundle} missing"
        if self.backend is None:
            return "backend not started"
        return None

    # --- what the other guards share ------------------------------------------------

    def listeners(self) -> list[Listener]:
        """The sockets the sidecar listens on: never a destination."""
        out = []
        proxyserver = ctx.master.addons.get("proxyserver")
        if proxyserver is not None:
            out += [Listener.of(str(a[0]), int(a[1])) for a in proxyserver.listen_addrs()]
        if self.admin is not None and self.admin.address is not None:
            out.append(Listener.of(self.admin.address.host, self.admin.address.port))
        return out

    def via_upstream_proxy(self) -> bool:
        """Chained through another proxy: that proxy resolves and connects, not us."""
        return self.settings is not None and self.settings.upstream_proxy is not None

    async def address_refusal(self, host: str, port: int) -> str | None:
        """Resolve `host` (the resolver keeps the answer for the connection that follows)
        and judge every address it leads to; the reason it is refused, or None."""
        assert self.settings is not None
        if self.via_upstream_proxy():
            return None
        try:
            addresses = await self.resolver.resolve(host, port)
        except ResolveError:
            return "unresolvable"
        judged = judge_addresses(
            host, port, addresses, self.settings.internal_hosts, self.listeners()
        )
        return judged.refusal

    def refusal_response(self, enforcement: Enforcement) -> http.Response:
        return http.Response.make(
            enforcement.status,
            enforcement.block_body(),
            {"Content-Type": "application/json", **enforcement.headers()},
        )

    # --- HTTP requests ------------------------------------------------------------------

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        self.in_flight.add(flow.id)
        self.idle.clear()

    def error(self, flow: http.HTTPFlow) -> None:
        self._finished(flow)

    def _finished(self, flow: http.HTTPFlow) -> None:
        self.in_flight.discard(flow.id)
        if not self.in_flight:
            self.idle.set()

    async def request(self, flow: http.HTTPFlow) -> None:
        if flow.response is not None or flow.error is not None or not flow.live:
            return
        started = time.monotonic()
        try:
            enforcement, scan_seconds = await self._judge(flow)
        except Exception:
            # mitmproxy would log a hook's exception and forward the request anyway:
            # a bug here must never become a fail-open.
            logger.exception("egress-sidecar: internal error while judging a request")
            self.metrics.scan_errors.labels(INTERNAL_ERROR_KIND).inc()
            enforcement, scan_seconds = self._internal_error(), None
        if self.shadow:
            enforcement = shadowed(enforcement)
        self._apply(flow, enforcement)
        self._record(flow, enforcement, scan_seconds, time.monotonic() - started)

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        """Stamp the decision headers (before a streamed response's headers leave), and let
        event streams go to the agent as they arrive, keeping a bounded copy."""
        enforcement = flow.metadata.get(METADATA_KEY)
        if flow.response is None or not isinstance(enforcement, Enforcement):
            return
        if flow.response.status_code == 101 and not _websocket_switch(flow):
            # The upstream switched to a protocol nobody asked for (or the sidecar cannot
            # read): what would follow is a raw pipe. End it here.
            self.metrics.refusals.labels("protocol", "unrequested_switch").inc()
            logger.warning("upstream answered 101 without a WebSocket upgrade: connection closed")
            flow.kill()
            return
        flow.response.headers.update(enforcement.headers())
        if flow.response.stream:
            return
        if media_type(flow.response.headers.get("content-type", "")) == "text/event-stream":
            tap = ResponseTap()
            flow.response.stream = tap
            flow.metadata[TAP_KEY] = tap

    def response(self, flow: http.HTTPFlow) -> None:
        self._finished(flow)
        enforcement = flow.metadata.get(METADATA_KEY)
        if not isinstance(enforcement, Enforcement) or not enforcement.forward:
            return
        assert flow.response is not None
        flow.response.headers.update(enforcement.headers())  # idempotent; set in responseheaders
        raw = flow.response.raw_content
        tap = flow.metadata.get(TAP_KEY)
        if raw is None and isinstance(tap, ResponseTap):
            raw = tap.captured
        if enforcement.from_backend and raw is not None and self.responses is not None:
            forwarded = flow.metadata.get(FORWARDED_KEY)
            finished = flow.response.timestamp_end or time.time()
            latency = None if forwarded is None else max(0, round((finished - forwarded) * 1000))
            self.responses.submit(
                ResponseScanJob(
                    trace_id=enforcement.trace_id,
                    raw_body=raw,
                    content_encoding=flow.response.headers.get("content-encoding", ""),
                    content_type=flow.response.headers.get("content-type", ""),
                    status=flow.response.status_code,
                    latency_ms=latency,
                    llm_provider=flow.metadata.get(LLM_KEY),
                )
            )

    # --- WebSocket ----------------------------------------------------------------------

    async def websocket_message(self, flow: http.HTTPFlow) -> None:
        """Each message the agent sends is scanned like a request body.

        ALLOW passes it, SANITIZE rewrites it, anything else (DENY, REQUIRE_APPROVAL, or
        no verdict under fail-closed) drops that message; the connection stays open.
        """
        assert flow.websocket is not None
        message = flow.websocket.messages[-1]
        if not message.from_client or message.dropped:
            return
        settings, backend = self.settings, self.backend
        assert settings is not None
        assert backend is not None
        content = message.content
        scheme = "wss" if flow.request.scheme == "https" else "ws"
        url = absolute_url(scheme, flow.request.host, flow.request.port, flow.request.path)
        started = time.monotonic()
        try:
            if len(content) > settings.max_body_bytes:
                raise BodyTooLarge("message larger than the scan limit")
            text = content.decode("utf-8", "replace")
            if await self._carries_own_secret("", "", {}, text, text):
                enforcement = local_block(SIDECAR_CREDENTIAL, "sidecar credential", 403)
            else:
                scan_request = self.scan_request(
                    "WEBSOCKET", url, {}, content, "application/json" if message.is_text else ""
                )
                enforcement = from_verdict(await backend.scan(scan_request))
        except BodyTooLarge:
            enforcement = local_block(BODY_TOO_LARGE, "message too large", 413)
        except ScanError as e:
            self.metrics.scan_errors.labels(e.kind).inc()
            enforcement = self.without_verdict(e)
        except Exception:
            logger.exception("egress-sidecar: internal error while judging a WebSocket message")
            enforcement = self._internal_error()
        if self.shadow:
            enforcement = shadowed(enforcement)
        if enforcement.would is not None:
            self._count_shadow(enforcement)
        if not enforcement.forward:
            message.drop()
        elif enforcement.replacement_body is not None:
            message.content = enforcement.replacement_body
        action = "dropped" if not enforcement.forward else "forwarded"
        self.metrics.websocket_messages.labels(enforcement.decision.value, action).inc()
        log_decision(
            {
                "event_kind": "websocket_message",
                "trace_id": enforcement.trace_id,
                "decision": enforcement.decision.value,
                "would": enforcement.would,
                "forwarded": enforcement.forward,
                "reasons": enforcement.reasons,
                "tool": enforcement.tool,
                "error": enforcement.error_kind,
                "host": loggable_host(flow.request.host, enforcement.reasons),
                "port": flow.request.port,
                "scan_ms": round((time.monotonic() - started) * 1000, 2),
            }
        )

    def egress_control_frame(self, frame: ControlFrame) -> None:
        """A WebSocket control frame from an agent (see `addons.layers`)."""
        self.metrics.websocket_control_frames.labels(frame.frame, frame.action).inc()
        log_decision(
            {
                "event_kind": "websocket_control",
                "frame": frame.frame,
                "action": frame.action,
                "host": loggable_host(frame.flow.request.host, []),
                "port": frame.flow.request.port,
            }
        )

    # --- judging ------------------------------------------------------------------------

    async def _judge(self, flow: http.HTTPFlow) -> tuple[Enforcement, float | None]:
        settings, backend = self.settings, self.backend
        assert settings is not None
        assert backend is not None
        req = flow.request
        refusal = self._refuse_before_scan(flow)
        if refusal is not None:
            return refusal, None
        try:
            content = decode_body(
                req.raw_content or b"",
                req.headers.get("content-encoding", ""),
                settings.max_body_bytes,
                transfer_encoding=req.headers.get("transfer-encoding", ""),
            )
        except BodyTooLarge:
            message = f"Request body is larger than the scan limit ({settings.max_body_bytes} B)."
            return local_block(BODY_TOO_LARGE, message, 413), None
        except BodyUndecodable as e:
            return local_block(BODY_UNDECODABLE, f"Request body cannot be scanned: {e}", 400), None
        url = absolute_url(req.scheme, req.host, req.port, req.path)
        headers = scanned_headers(req.headers.items(multi=True), _trailers(req))
        content_type = req.headers.get("content-type", "")
        scan_request = self.scan_request(
            req.method,
            url,
            headers,
            content,
            content_type,
            llm_at=(req.pretty_host.lower(), req.path),
        )
        text = content.decode("utf-8", "replace")
        if await self._carries_own_secret(req.method, url, headers, scan_request.body, text):
            message = "Request carries the sidecar's own credential."
            return local_block(SIDECAR_CREDENTIAL, message, 403), None
        if scan_request.llm is not None:
            flow.metadata[LLM_KEY] = scan_request.llm.provider
        started = time.monotonic()
        try:
            verdict = await backend.scan(scan_request)
        except ScanError as e:
            scan_seconds = time.monotonic() - started
            self.metrics.scan_errors.labels(e.kind).inc()
            return self.without_verdict(e), scan_seconds
        scan_seconds = time.monotonic() - started
        self.metrics.scan_duration.labels(backend.name).observe(scan_seconds)

        enforcement = from_verdict(verdict)
        if verdict.decision is not Decision.DENY:
            # The name was judged as written; now where it leads (resolved once, and the
            # connection that follows uses that answer).
            reason = await self.address_refusal(req.host, req.port)
            if reason is not None:
                self.metrics.refusals.labels("request", reason).inc()
                return address_refused(reason, verdict.trace_id), scan_seconds
        if verdict.decision is Decision.REQUIRE_APPROVAL and not self.shadow:
            assert verdict.approval_id is not None
            if settings.approval_mode is ApprovalMode.REFUSE:
                enforcement = await self._refuse(verdict.approval_id, enforcement)
            else:
                enforcement = await self._hold(flow, verdict.approval_id, enforcement)
        return enforcement, scan_seconds

    def _refuse_before_scan(self, flow: http.HTTPFlow) -> Enforcement | None:
        """The rules that need no verdict: a destination that parses and that every name
        in the request agrees on, a sane method, no protocol switch the sidecar cannot
        follow. Also drops the headers meant for the proxy itself."""
        req = flow.request
        try:
            # One spelling of the destination for the judge and for the connection.
            req.data.host = normalise_host(req.host) if req.host else ""
        except AuthorityError:
            req.data.host = ""
        if not req.host:
            self.metrics.refusals.labels("request", "destination_unparseable").inc()
            message = "Blocked by egress-sidecar: the request names no destination it can read."
            return local_block(DESTINATION_UNPARSEABLE, message, 400)
        if isinstance(flow.client_conn.proxy_mode, TransparentMode):
            _adopt_named_destination(flow)
        hosts = req.headers.get_all("host")
        names = [("Host", v) for v in hosts]
        if (req.is_http2 or req.is_http3) and req.authority:
            names.append((":authority", req.authority))
        if flow.client_conn.tls and flow.client_conn.sni:
            names.append(("SNI", flow.client_conn.sni))
        problem = "more than one Host header" if len(hosts) > 1 else None
        problem = problem or mismatch(req.host, req.port, names)
        if problem is not None:
            self.metrics.refusals.labels("request", "destination_mismatch").inc()
            message = (
                f"Blocked by egress-sidecar: {problem} (the destination judged must be the "
                "destination used)."
            )
            return local_block(DESTINATION_MISMATCH, message, 421)
        if (why := method_problem(req.method)) is not None:
            self.metrics.refusals.labels("request", "method_invalid").inc()
            return local_block(METHOD_INVALID, f"Blocked by egress-sidecar: {why}.", 400)
        upgrade = classify_upgrade(
            req.method,
            req.http_version,
            req.headers.get_all("upgrade"),
            req.headers.get_all("sec-websocket-version"),
        )
        if upgrade is Upgrade.REFUSE:
            self.metrics.refusals.labels("request", "upgrade_refused").inc()
            message = (
                "Blocked by egress-sidecar: only WebSocket (version 13) upgrades are "
                "allowed; other protocols cannot be inspected."
            )
            return local_block(UPGRADE_REFUSED, message, 403)
        if upgrade is Upgrade.STRIP:
            _strip_upgrade(req)
        flow.metadata[UPGRADE_KEY] = upgrade is Upgrade.WEBSOCKET
        for name in PROXY_ONLY_HEADERS:
            req.headers.pop(name, None)
        return None

    async def _carries_own_secret(
        self, method: str, url: str, headers: dict[str, str], body: Any, raw: str
    ) -> bool:
        """The sidecar's own keys, in any case, split, reversed or encoded, anywhere."""
        if not self.known:
            return False
        if len(raw) <= INLINE_LIMIT:
            return self.known.found_in_request(method, url, headers, body, raw)
        return await asyncio.to_thread(self.known.found_in_request, method, url, headers, body, raw)

    async def _refuse(self, approval_id: str, pending: Enforcement) -> Enforcement:
        """Refuse now, unless a reviewer already approved this id (an agent's retry)."""
        assert self.backend is not None
        try:
            state = await self.backend.approval_status(approval_id)
        except ScanError:
            return approval_refused(pending, approval_id)
        if state.status is ApprovalStatus.APPROVED:
            return approval_result(pending, "approved")
        return approval_refused(pending, approval_id)

    def _internal_error(self) -> Enforcement:
        message = "Blocked by egress-sidecar: internal error while judging the request."
        return local_block(FAIL_CLOSED, message, 500, error_kind=INTERNAL_ERROR_KIND)

    def scan_request(
        self,
        method: str,
        url: str,
        headers: dict[str, str],
        content: bytes,
        content_type: str,
        llm_at: tuple[str, str] | None = None,
    ) -> ScanRequest:
        """`llm_at`: (host, path) when the request may be an LLM call worth recognising."""
        assert self.settings is not None
        identity = self._credentials.interven if self._credentials else None
        body = body_for_scan(content, content_type)
        call = recognise(llm_at[0], llm_at[1], body) if llm_at and body is not None else None
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
        )

    def without_verdict(self, error: ScanError) -> Enforcement:
        assert self.settings is not None
        if self.settings.fail_mode is FailMode.OPEN:
            self.metrics.fail_open_forwards.labels(error.kind).inc()
            logger.warning("fail-open forward: no verdict (%s)", error.kind)
            return fail_open(error.kind)
        if not self.shadow:  # in shadow it is forwarded, and counted as a would-deny
            self.metrics.fail_closed_blocks.labels(error.kind).inc()
        message = f"Blocked by egress-sidecar: no scan verdict ({error.kind}); fail mode is closed."
        return local_block(FAIL_CLOSED, message, 503, error_kind=error.kind)

    async def _hold(
        self, flow: http.HTTPFlow, approval_id: str, pending: Enforcement
    ) -> Enforcement:
        assert self.approvals is not None
        try:
            outcome = await self.approvals.wait(
                approval_id, still_wanted=lambda: flow.client_conn.connected and flow.live
            )
        except ApprovalCapacityExceeded:
            block = local_block(
                APPROVAL_CAPACITY, "Blocked by egress-sidecar: too many requests held.", 503
            )
            block.trace_id, block.tool, block.operation = (
                pending.trace_id,
                pending.tool,
                pending.operation,
            )
            return block
        return approval_result(pending, outcome.value)

    def _apply(self, flow: http.HTTPFlow, enforcement: Enforcement) -> None:
        flow.metadata[METADATA_KEY] = enforcement
        if enforcement.forward:
            flow.metadata[FORWARDED_KEY] = time.time()
            if enforcement.replacement_body is not None:
                # `.content` re-encodes for Content-Encoding and fixes Content-Length.
                flow.request.content = enforcement.replacement_body
            return
        if enforcement.approval == "abandoned":
            flow.kill()
            return
        flow.response = self.refusal_response(enforcement)

    def _record(
        self,
        flow: http.HTTPFlow,
        enforcement: Enforcement,
        scan_seconds: float | None,
        total_seconds: float,
    ) -> None:
        tool = self.metrics.tool_label(enforcement.tool)
        self.metrics.requests.labels(enforcement.decision.value, tool).inc()
        if enforcement.would is not None:
            self._count_shadow(enforcement)
        withhold = SIDECAR_CREDENTIAL in enforcement.reasons
        log_decision(
            {
                "trace_id": enforcement.trace_id,
                "decision": enforcement.decision.value,
                "would": enforcement.would,
                "forwarded": enforcement.forward,
                "status": None if enforcement.forward else enforcement.status,
                "reasons": enforcement.reasons,
                "tool": enforcement.tool,
                "operation": enforcement.operation,
                "policy": enforcement.policy_name,
                "approval": enforcement.approval,
                "error": enforcement.error_kind,
                "method": "[withheld]" if withhold else loggable(flow.request.method, 32),
                "scheme": flow.request.scheme,
                "host": loggable_host(flow.request.host, enforcement.reasons),
                "port": flow.request.port,
                "client": flow.client_conn.peername[0] if flow.client_conn.peername else None,
                "scan_ms": None if scan_seconds is None else round(scan_seconds * 1000, 2),
                "total_ms": round(total_seconds * 1000, 2),
                "llm": flow.metadata.get(LLM_KEY),
            }
        )

    def _count_shadow(self, enforcement: Enforcement) -> None:
        assert enforcement.would is not None
        tool = self.metrics.tool_label(enforcement.tool)
        self.metrics.shadow_decisions.labels(enforcement.would.value, tool).inc()


def _trailers(req: http.Request) -> list[tuple[str, str]]:
    return list(req.trailers.items(multi=True)) if req.trailers else []


def _websocket_switch(flow: http.HTTPFlow) -> bool:
    """A 101 the sidecar can follow: a WebSocket upgrade it judged, answered in kind."""
    assert flow.response is not None
    answered = flow.response.headers.get("upgrade", "").strip().lower() == "websocket"
    return bool(flow.metadata.get(UPGRADE_KEY)) and answered


def _adopt_named_destination(flow: http.HTTPFlow) -> None:
    """A redirected connection arrives with only the address the agent dialled; the name
    it asked for (SNI, else Host or :authority) becomes the destination, which is then
    judged, resolved by the sidecar and connected to. The names must agree (checked by
    the caller), so the agent cannot have one judged and another used."""
    req = flow.request
    sni = flow.client_conn.sni if flow.client_conn.tls else None
    written = req.host_header
    try:
        if sni:
            name = normalise_host(sni)
        elif written:
            name = parse_authority(written).host
        else:
            return
    except AuthorityError:
        return  # left to the mismatch check, which refuses it
    req.data.host = name


def _strip_upgrade(req: http.Request) -> None:
    """h2c is optional for the server: drop the offer instead of refusing the request."""
    req.headers.pop("upgrade", None)
    req.headers.pop("http2-settings", None)
    tokens = [
        t.strip()
        for v in req.headers.get_all("connection")
        for t in v.split(",")
        if t.strip() and t.strip().lower() not in ("upgrade", "http2-settings")
    ]
    req.headers.pop("connection", None)
    if tokens:
        req.headers["connection"] = ", ".join(tokens)


def _ca_cert_exists() -> bool:
    return (Path(ctx.options.confdir).expanduser() / "mitmproxy-ca-cert.pem").is_file()


def sidecar_addons(guard: EgressGuard) -> list[object]:
    """The sidecar as mitmproxy addons, one per concern, sharing the guard's runtime."""
    return [guard, TunnelGuard(guard), ProtocolGuard(guard), ConnectGuard(guard),
            LogHygiene(guard), ReleaseTlsBuffers()]  # fmt: skip


addons = sidecar_addons(EgressGuard())
