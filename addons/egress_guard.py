"""egress-sidecar's mitmproxy addons: every request is scanned, then enforced.

`EgressGuard` is thin glue for HTTP: it turns a flow into a scan request, awaits a verdict
from the configured backend, applies what `sidecar.enforce` says, and queues the response
body for classification. It also owns the lifecycle: the `Runtime` the other guards
share (`addons.runtime`) is built when the proxy starts. Detection, policy and HTTP to
the scan API live in `sidecar/`; the other ways out are guarded by `tunnel_guard`,
`protocol_guard` and `connect_guard`.

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

from addons import layers
from addons.connect_guard import ConnectGuard
from addons.connection_guard import ConnectionGuard
from addons.layers import ControlFrame
from addons.log_hygiene import LogHygiene
from addons.protocol_guard import ProtocolGuard
from addons.request_rules import (
    drop_proxy_headers,
    refuse_before_scan,
    sent_authority,
    sent_digest,
    sent_method,
    websocket_switch,
    written_host,
)
from addons.resource_guard import ResourceGuard
from addons.runtime import Runtime, internal_error, own_secret, refusal_response
from addons.tls_buffers import ReleaseTlsBuffers
from addons.tunnel_guard import TunnelGuard
from sidecar.admin import AdminServer, ensure_admin_token
from sidecar.approvals import ApprovalCapacityExceeded, ApprovalWaiter
from sidecar.authority import absolute_url
from sidecar.backends import BackendConfigError, backend_name, create_backend
from sidecar.backends.breaker import BreakerState
from sidecar.backends.errors import INTERNAL_ERROR_KIND, ScanError
from sidecar.backends.governed import HeldAtSidecar
from sidecar.backends.local import LocalBackend
from sidecar.bodies import BodyTooLarge, BodyUndecodable, decode_off_loop, encode_body
from sidecar.credentials import Credentials, load_credentials
from sidecar.decision_log import log_decision, loggable_host, loggable_method
from sidecar.endpoints import Listener, local_addresses
from sidecar.enforce import (
    APPROVAL_CAPACITY,
    BODY_TOO_LARGE,
    BODY_UNDECODABLE,
    HIDDEN_SECRET,
    Enforcement,
    address_refused,
    approval_refused,
    approval_result,
    from_verdict,
    local_block,
)
from sidecar.engine import Engine, Policy
from sidecar.engine.known_secrets import KnownSecrets
from sidecar.log_limit import RateLimitedLog
from sidecar.loop_lag import watch_loop_lag
from sidecar.metrics import SidecarMetrics
from sidecar.policy_file import PolicyError, load_policy
from sidecar.request_surface import scannable, scanned_headers
from sidecar.resolver import DestinationResolver, Resolver
from sidecar.response_scan import ResponseScanJob, ResponseScanQueue
from sidecar.settings import ApprovalMode, SettingsError, SidecarSettings, load_settings
from sidecar.stream_tap import ResponseTap
from sidecar.tuning import freeze_startup_heap, share_gil_promptly
from sidecar.verdict import ApprovalStatus, Decision

logger = logging.getLogger("egress_sidecar")

METADATA_KEY = "egress_sidecar"
TAP_KEY = "egress_sidecar_tap"
LLM_KEY = "egress_sidecar_llm"  # the provider, when the request was an LLM call
FORWARDED_KEY = "egress_sidecar_forwarded"  # when the request left, for outcome latency
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
    "max_connections",
    "idle_timeout",
    "head_timeout",
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
    """Scans each request with the configured backend and enforces the verdict; builds
    the runtime every guard shares when the proxy starts."""

    def __init__(
        self, credentials: Credentials | None = None, resolver: Resolver | None = None
    ) -> None:
        self._credentials = credentials
        self._resolver = resolver
        self.settings: SidecarSettings | None = None
        self.metrics = SidecarMetrics()
        self.runtime: Runtime | None = None  # exists while the proxy runs
        self.approvals: ApprovalWaiter | None = None
        self.responses: ResponseScanQueue | None = None
        self.admin: AdminServer | None = None
        self._lag_watch: asyncio.Task[None] | None = None
        self._policy: Policy | None = None
        self._control_lines = RateLimitedLog(logger)  # only its `due` gate is used
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
        if self.runtime is not None and (fixed := sorted(updated & READ_AT_START)):
            # The backend, its client and the admin server were built from these.
            raise OptionsError(f"egress-sidecar: restart to change {', '.join(fixed)}")
        values = {name: getattr(ctx.options, f"egress_{name}") for name in ADDON_SETTINGS}
        values["admin"] = values["admin"] or "off"
        for name in ("backend", "policy", "ca_bundle_out", "scan_api_ca", "upstream_proxy"):
            values[name] = values[name] or None
        values["confdir"] = ctx.options.confdir  # approvals live next to the CA
        try:
            self.settings = load_settings(**values)
            if self._credentials is None:
                self._credentials = load_credentials()
        except SettingsError as e:
            raise OptionsError(f"egress-sidecar: {e}") from None
        try:
            if backend_name(self.settings, self._credentials) == "local":
                self._policy = load_policy(self.settings.policy)
        except (BackendConfigError, PolicyError) as e:
            raise OptionsError(f"egress-sidecar: {e}") from None
        if self.runtime is not None:  # per-request settings (fail mode, limits) changed
            self.runtime.settings = self.settings

    async def running(self) -> None:
        settings, credentials = self.settings, self._credentials
        assert settings is not None
        assert credentials is not None
        backend = create_backend(settings, credentials, self._policy, self._circuit_changed)
        if isinstance(backend, LocalBackend):
            destinations = backend.engine
        else:  # the built-in rules judge destinations before a request exists
            destinations = Engine(load_policy(None), tuple(settings.internal_hosts))
        own_secrets = credentials.secrets()
        self.approvals = ApprovalWaiter(
            backend,
            self.metrics,
            settings.approval_timeout,
            settings.approval_poll_interval,
            settings.max_pending_approvals,
        )
        self.responses = ResponseScanQueue(
            backend,
            self.metrics,
            settings.response_queue_size,
            settings.response_workers,
            withheld=own_secrets,
        )
        self.responses.start()
        self._lag_watch = asyncio.create_task(watch_loop_lag(self.metrics.event_loop_lag.observe))
        token: str | None = None
        if settings.admin is not None:
            # Approvals decided here, or (None) by the remote API.
            approvals = backend.approvals if isinstance(backend, HeldAtSidecar) else None
            configured = settings.admin_token.get_secret_value() if settings.admin_token else None
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
        secrets = [s.decode() for s in own_secrets] + ([token] if token else [])
        here = local_addresses()
        self.runtime = Runtime(
            settings=settings,
            metrics=self.metrics,
            backend=backend,
            destinations=destinations,
            resolver=self._resolver or DestinationResolver(),
            known=KnownSecrets(secrets),
            identity=credentials.interven,
            listeners=lambda: self._listeners(here),
        )
        share_gil_promptly()
        frozen = freeze_startup_heap()
        logger.debug("start-up heap frozen: %d objects out of the collector's reach", frozen)

    def _listeners(self, here: frozenset[Any]) -> list[Listener]:
        """The sockets the sidecar listens on (never a destination), read each time: the
        proxy's listeners may be reconfigured while it runs."""
        out = []
        proxyserver = ctx.master.addons.get("proxyserver")
        if proxyserver is not None:
            out += [Listener.of(str(a[0]), int(a[1]), here) for a in proxyserver.listen_addrs()]
        if self.admin is not None and self.admin.address is not None:
            out.append(Listener.of(self.admin.address.host, self.admin.address.port, here))
        return out

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
        if self.runtime is not None:
            await self.runtime.backend.aclose()
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
        if self.runtime is None:
            return "backend not started"
        return None

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
            enforcement, scan_seconds = internal_error(), None
        if self.runtime is not None:
            enforcement = self.runtime.finish(enforcement)
        try:
            self._apply(flow, enforcement)
        except Exception:  # e.g. a rewritten body that cannot be encoded: never forward
            logger.exception("egress-sidecar: internal error while applying a verdict")
            self.metrics.scan_errors.labels(INTERNAL_ERROR_KIND).inc()
            enforcement = internal_error()
            self._apply(flow, enforcement)
        self._record(flow, enforcement, scan_seconds, time.monotonic() - started)

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        """End a connection the upstream switched to a protocol nobody asked for; stamp the
        decision headers (before the response's headers leave), and stream every response
        body to the agent as it arrives, keeping a bounded copy for classification: large
        downloads work, and no response body is ever buffered whole."""
        if flow.response is None:
            return
        if flow.response.status_code == 101 and not websocket_switch(flow):
            # What would follow is a raw pipe the sidecar cannot read.
            self.metrics.refusals.labels("protocol", "unrequested_switch").inc()
            logger.warning("upstream answered 101 without a WebSocket upgrade: connection closed")
            flow.kill()
            return
        enforcement = flow.metadata.get(METADATA_KEY)
        if isinstance(enforcement, Enforcement):
            flow.response.headers.update(enforcement.headers())
        if flow.response.stream:
            return
        if not isinstance(enforcement, Enforcement):
            flow.response.stream = True
            return
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
        runtime = self.runtime
        started = time.monotonic()
        if runtime is None:
            enforcement = internal_error()
        elif len(message.content) > runtime.settings.max_body_bytes:
            enforcement = runtime.finish(local_block(BODY_TOO_LARGE, "message too large", 413))
        else:
            scheme = "wss" if flow.request.scheme == "https" else "ws"
            url = absolute_url(scheme, flow.request.host, flow.request.port, flow.request.path)
            media = "application/json" if message.is_text else ""
            enforcement = await runtime.judge_message("WEBSOCKET", url, message.content, media)
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
        """A WebSocket control frame from an agent (see `addons.layers`): counted, and
        logged at most once per kind and interval (an agent can send thousands)."""
        self.metrics.websocket_control_frames.labels(frame.frame, frame.action).inc()
        folded = self._control_lines.due(f"{frame.frame}/{frame.action}")
        if folded is None:
            return
        log_decision(
            {
                "event_kind": "websocket_control",
                "frame": frame.frame,
                "action": frame.action,
                "host": loggable_host(frame.flow.request.host, []),
                "port": frame.flow.request.port,
                "folded": folded,
            }
        )

    # --- judging ------------------------------------------------------------------------

    async def _judge(self, flow: http.HTTPFlow) -> tuple[Enforcement, float | None]:
        runtime = self.runtime
        if runtime is None:
            return internal_error(), None
        settings, backend = runtime.settings, runtime.backend
        req = flow.request
        drop_proxy_headers(req)
        method = scannable(sent_method(req))
        pseudo = [(":authority", sent_authority(req))] if req.is_http2 or req.is_http3 else []
        headers = scanned_headers([*pseudo, *req.headers.items(multi=True)], _trailers(req))
        raw = (req.raw_content or b"").decode("latin-1")
        # The sidecar's own keys first, on the parts as sent: refused in every mode, even
        # when another rule would refuse the request (shadow mode forwards those).
        if await runtime.carries_own_secret(method, scannable(req.url), headers, None, raw):
            return own_secret(), None
        refused = refuse_before_scan(flow)
        if refused is not None:
            self.metrics.refusals.labels("request", refused[1]).inc()
            return refused[0], None
        try:
            content = await decode_off_loop(
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
        url = absolute_url(req.scheme, written_host(flow), req.port, scannable(req.path))
        try:
            scan_request = runtime.scan_request(
                method,
                url,
                headers,
                content,
                req.headers.get("content-type", ""),
                llm_at=(req.pretty_host.lower(), req.path),
                sent_digest=sent_digest(req, frozenset(settings.approval_volatile_headers)),
            )
        except BodyUndecodable as e:  # an archive that cannot be read within the bounds
            return local_block(BODY_UNDECODABLE, f"Request body cannot be scanned: {e}", 400), None
        text = content.decode("utf-8", "replace")
        decoded = content != (req.raw_content or b"")
        if (decoded or "\\u" in text) and await runtime.carries_own_secret(
            method, url, headers, scan_request.body, text
        ):  # what decoding revealed (the bytes as sent were searched above)
            return own_secret(), None
        if decoded and (hidden := await runtime.hidden_secrets(raw, text)):
            self.metrics.refusals.labels("request", "hidden_secret").inc()
            message = (
                "Blocked by egress-sidecar: the encoded body carries a secret outside its "
                f"content ({', '.join(hidden)}), in bytes decoders skip."
            )
            return local_block(HIDDEN_SECRET, message, 403), None
        if scan_request.llm is not None:
            flow.metadata[LLM_KEY] = scan_request.llm.provider
        started = time.monotonic()
        try:
            verdict = await backend.scan(scan_request)
        except ScanError as e:
            scan_seconds = time.monotonic() - started
            self.metrics.scan_errors.labels(e.kind).inc()
            return runtime.without_verdict(e), scan_seconds
        scan_seconds = time.monotonic() - started
        self.metrics.scan_duration.labels(backend.name).observe(scan_seconds)

        enforcement = from_verdict(verdict)
        if verdict.decision is not Decision.DENY:
            # The name was judged as written; now where it leads (resolved once, and the
            # connection that follows uses that answer).
            where = await runtime.judge_connection(req.host, req.port)
            if where.refusal is not None:
                self.metrics.refusals.labels("request", where.refusal).inc()
                refusal = address_refused(where.refusal, verdict.trace_id, where.reasons)
                return refusal, scan_seconds
        if verdict.decision is Decision.REQUIRE_APPROVAL and not runtime.shadow:
            assert verdict.approval_id is not None
            if settings.approval_mode is ApprovalMode.REFUSE:
                enforcement = await self._refuse(verdict.approval_id, enforcement)
            else:
                enforcement = await self._hold(flow, verdict.approval_id, enforcement)
        return enforcement, scan_seconds

    async def _refuse(self, approval_id: str, pending: Enforcement) -> Enforcement:
        """Refuse now, unless a reviewer already approved this id (an agent's retry)."""
        assert self.runtime is not None
        try:
            state = await self.runtime.backend.approval_status(approval_id)
        except ScanError:
            return approval_refused(pending, approval_id)
        if state.status is ApprovalStatus.APPROVED:
            return approval_result(pending, "approved")
        return approval_refused(pending, approval_id)

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
            req = flow.request
            if enforcement.replacement_body is not None:
                # Content-Encoding is applied again (cheaply: mitmproxy's `.content` would
                # use brotli's slowest quality, on the event loop); transfer codings go
                # (the body is re-framed by length).
                req.headers.pop("transfer-encoding", None)
                req.raw_content = encode_body(
                    enforcement.replacement_body, req.headers.get("content-encoding", "")
                )
                req.headers["content-length"] = str(len(req.raw_content))
            if req.raw_content and not {"content-length", "transfer-encoding"} & {
                name.lower() for name in req.headers
            }:
                # HTTP/2 frames a body without either; written as HTTP/1 (mitmproxy adds
                # neither) the upstream would read the body as the next request, unjudged.
                req.headers["content-length"] = str(len(req.raw_content))
            return
        if enforcement.approval == "abandoned":
            flow.kill()
            return
        flow.response = refusal_response(enforcement)

    def _record(
        self,
        flow: http.HTTPFlow,
        enforcement: Enforcement,
        scan_seconds: float | None,
        total_seconds: float,
    ) -> None:
        tool = self.metrics.tool_label(enforcement.tool)
        self.metrics.requests.labels(enforcement.decision.value, tool).inc()
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
                "method": loggable_method(flow.request.method),
                "scheme": flow.request.scheme,
                "host": loggable_host(flow.request.host, enforcement.reasons),
                "port": flow.request.port,
                "client": flow.client_conn.peername[0] if flow.client_conn.peername else None,
                "scan_ms": None if scan_seconds is None else round(scan_seconds * 1000, 2),
                "total_ms": round(total_seconds * 1000, 2),
                "llm": flow.metadata.get(LLM_KEY),
            }
        )


def _trailers(req: http.Request) -> list[tuple[str, str]]:
    return list(req.trailers.items(multi=True)) if req.trailers else []


def _ca_cert_exists() -> bool:
    return (Path(ctx.options.confdir).expanduser() / "mitmproxy-ca-cert.pem").is_file()


def sidecar_addons(guard: EgressGuard) -> list[object]:
    """The sidecar as mitmproxy addons, one per concern, sharing the guard's runtime."""
    return [guard, TunnelGuard(guard), ProtocolGuard(guard), ConnectGuard(guard),
            ConnectionGuard(guard), ResourceGuard(guard), LogHygiene(guard),
            ReleaseTlsBuffers()]  # fmt: skip


addons = sidecar_addons(EgressGuard())
