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
from mitmproxy.proxy.layer import NextLayer
from mitmproxy.proxy.layers import TCPLayer

from addons.tls_buffers import ReleaseTlsBuffers
from sidecar.admin import AdminServer
from sidecar.approvals import ApprovalCapacityExceeded, ApprovalWaiter
from sidecar.backends import BackendConfigError, backend_name, create_backend
from sidecar.backends.base import ScanBackend
from sidecar.backends.breaker import BreakerState
from sidecar.backends.errors import INTERNAL_ERROR_KIND, ScanError
from sidecar.backends.governed import HeldAtSidecar
from sidecar.bodies import (
    BodyTooLarge,
    BodyUndecodable,
    body_for_scan,
    decode_body,
    media_type,
)
from sidecar.credentials import Credentials, load_credentials
from sidecar.decision_log import log_decision
from sidecar.enforce import (
    APPROVAL_CAPACITY,
    BODY_TOO_LARGE,
    BODY_UNDECODABLE,
    FAIL_CLOSED,
    SIDECAR_CREDENTIAL,
    Enforcement,
    approval_refused,
    approval_result,
    fail_open,
    from_verdict,
    local_block,
    shadowed,
)
from sidecar.engine import Policy
from sidecar.llm import recognise
from sidecar.loop_lag import watch_loop_lag
from sidecar.metrics import SidecarMetrics
from sidecar.policy_file import PolicyError, load_policy
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
)

# Options the running proxy was built from; the rest (fail mode, body limits...) are read
# per request and may change while it runs.
READ_AT_START = frozenset(
    f"egress_{name}"
    for name in (
        "backend", "admin", "enforcement", "scan_timeout", "scan_retries", "policy",
        "internal_hosts", "approval_expiry", "breaker_threshold", "breaker_cooldown",
        "scan_api_ca", "response_queue_size", "response_workers", "max_pending_approvals",
        "approval_timeout", "approval_poll_interval",
    )
)  # fmt: skip

# Never sent to the scan API: hop-by-hop headers and the agent's proxy credentials.
_NOT_SCANNED_HEADERS = frozenset(
    {"proxy-authorization", "proxy-connection", "connection", "keep-alive", "te", "trailer"}
)


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
    """Scans each request with the configured backend and enforces the verdict."""

    def __init__(self, credentials: Credentials | None = None) -> None:
        self._credentials = credentials
        self.settings: SidecarSettings | None = None
        self._lag_watch: asyncio.Task[None] | None = None
        self.metrics = SidecarMetrics()
        self.backend: ScanBackend | None = None
        self.approvals: ApprovalWaiter | None = None
        self.responses: ResponseScanQueue | None = None
        self.admin: AdminServer | None = None
        self._own_secrets: list[bytes] = []
        self._shadow = False  # --enforcement shadow
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

    def configure(self, updated: set[str]) -> None:
        if "stream_large_bodies" in updated and ctx.options.stream_large_bodies:
            raise OptionsError(
                "egress-sidecar: stream_large_bodies must be unset: "
                "streamed request bodies would be forwarded before they are scanned"
            )
        if self.settings is not None and not any(n.startswith("egress_") for n in updated):
            return
        if self.backend is not None and (fixed := sorted(updated & READ_AT_START)):
            # The backend, its client and the admin server were built from these.
            raise OptionsError(f"egress-sidecar: restart to change {', '.join(fixed)}")
        values = {name: getattr(ctx.options, f"egress_{name}") for name in ADDON_SETTINGS}
        values["admin"] = values["admin"] or "off"
        values["backend"] = values["backend"] or None
        values["policy"] = values["policy"] or None
        values["ca_bundle_out"] = values["ca_bundle_out"] or None
        values["scan_api_ca"] = values["scan_api_ca"] or None
        values["confdir"] = ctx.options.confdir  # approvals live next to the CA
        try:
            self.settings = load_settings(**values)
            self._shadow = self.settings.enforcement is EnforcementMode.SHADOW
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
        if settings.admin is not None:
            # Approvals decided here, or (None) by the remote API.
            approvals = self.backend.approvals if isinstance(self.backend, HeldAtSidecar) else None
            token = settings.admin_token.get_secret_value() if settings.admin_token else None
            self.admin = AdminServer(self.metrics, self.readiness, approvals, token)
            try:
                self.admin.start(settings.admin)
            except OSError as e:
                logger.error(
                    "egress-sidecar: admin server cannot listen on %s: %s",
                    settings.admin,
                    e.strerror,
                )
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
        if self._shadow:
            enforcement = shadowed(enforcement)
        self._apply(flow, enforcement)
        self._record(flow, enforcement, scan_seconds, time.monotonic() - started)

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        """Stamp the decision headers (before a streamed response's headers leave), and let
        event streams go to the agent as they arrive, keeping a bounded copy."""
        enforcement = flow.metadata.get(METADATA_KEY)
        if flow.response is None or not isinstance(enforcement, Enforcement):
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
        started = time.monotonic()
        try:
            if len(content) > settings.max_body_bytes:
                raise BodyTooLarge("message larger than the scan limit")
            if any(secret in content for secret in self._own_secrets):
                enforcement = local_block(SIDECAR_CREDENTIAL, "sidecar credential", 403)
            else:
                scan_request = self._scan_request(
                    "WEBSOCKET",
                    scheme + flow.request.url.removeprefix(flow.request.scheme),
                    {},
                    content,
                    "application/json" if message.is_text else "",
                )
                enforcement = from_verdict(await backend.scan(scan_request))
        except BodyTooLarge:
            enforcement = local_block(BODY_TOO_LARGE, "message too large", 413)
        except ScanError as e:
            self.metrics.scan_errors.labels(e.kind).inc()
            enforcement = self._without_verdict(e)
        except Exception:
            logger.exception("egress-sidecar: internal error while judging a WebSocket message")
            enforcement = self._internal_error()
        if self._shadow:
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
                "host": flow.request.host,
                "port": flow.request.port,
                "scan_ms": round((time.monotonic() - started) * 1000, 2),
            }
        )

    def next_layer(self, nextlayer: NextLayer) -> None:
        """Connections to pass-through hosts are tunnelled unseen: say so, every time."""
        if isinstance(nextlayer.layer, TCPLayer) and nextlayer.layer.flow is None:
            address = nextlayer.context.server.address
            host = address[0] if address else "?"
            self.metrics.passthrough_connections.inc()
            logger.warning("pass-through (not inspected): connection to %s", host)
            log_decision({"event_kind": "passthrough", "host": host,
                          "port": address[1] if address else None})  # fmt: skip

    async def _judge(self, flow: http.HTTPFlow) -> tuple[Enforcement, float | None]:
        settings, backend = self.settings, self.backend
        assert settings is not None
        assert backend is not None
        req = flow.request
        try:
            content = decode_body(
                req.raw_content or b"",
                req.headers.get("content-encoding", ""),
                settings.max_body_bytes,
            )
        except BodyTooLarge:
            message = f"Request body is larger than the scan limit ({settings.max_body_bytes} B)."
            return local_block(BODY_TOO_LARGE, message, 413), None
        except BodyUndecodable as e:
            return local_block(BODY_UNDECODABLE, f"Request body cannot be scanned: {e}", 400), None
        if self._carries_own_secret(req, content):
            message = "Request carries the sidecar's own scan API credential."
            return local_block(SIDECAR_CREDENTIAL, message, 403), None

        scan_request = self._scan_request(
            req.method,
            req.url,
            _scan_headers(req.headers),
            content,
            req.headers.get("content-type", ""),
            llm_at=(req.pretty_host.lower(), req.path),
        )
        if scan_request.llm is not None:
            flow.metadata[LLM_KEY] = scan_request.llm.provider
        started = time.monotonic()
        try:
            verdict = await backend.scan(scan_request)
        except ScanError as e:
            scan_seconds = time.monotonic() - started
            self.metrics.scan_errors.labels(e.kind).inc()
            return self._without_verdict(e), scan_seconds
        scan_seconds = time.monotonic() - started
        self.metrics.scan_duration.labels(backend.name).observe(scan_seconds)

        enforcement = from_verdict(verdict)
        if verdict.decision is Decision.REQUIRE_APPROVAL and not self._shadow:
            assert verdict.approval_id is not None
            if settings.approval_mode is ApprovalMode.REFUSE:
                enforcement = await self._refuse(verdict.approval_id, enforcement)
            else:
                enforcement = await self._hold(flow, verdict.approval_id, enforcement)
        return enforcement, scan_seconds

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

    def _scan_request(
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

    def _without_verdict(self, error: ScanError) -> Enforcement:
        assert self.settings is not None
        if self.settings.fail_mode is FailMode.OPEN:
            self.metrics.fail_open_forwards.labels(error.kind).inc()
            logger.warning("fail-open forward: no verdict (%s)", error.kind)
            return fail_open(error.kind)
        if not self._shadow:  # in shadow it is forwarded, and counted as a would-deny
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
        flow.response = http.Response.make(
            enforcement.status,
            enforcement.block_body(),
            {"Content-Type": "application/json", **enforcement.headers()},
        )

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
                "method": flow.request.method,
                "scheme": flow.request.scheme,
                "host": flow.request.host,
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

    def _carries_own_secret(self, req: http.Request, content: bytes) -> bool:
        if not self._own_secrets:
            return False
        url = req.url.encode()
        headers = [value.encode() for value in req.headers.values()]
        return any(
            secret in content or secret in url or any(secret in h for h in headers)
            for secret in self._own_secrets
        )


def _scan_headers(headers: http.Headers) -> dict[str, str]:
    out: dict[str, str] = {}
    for name in headers:
        if name.lower() in _NOT_SCANNED_HEADERS:
            continue
        out[name] = ", ".join(headers.get_all(name))
    return out


def _ca_cert_exists() -> bool:
    return (Path(ctx.options.confdir).expanduser() / "mitmproxy-ca-cert.pem").is_file()


addons = [EgressGuard(), ReleaseTlsBuffers()]
