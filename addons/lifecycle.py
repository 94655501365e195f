"""The sidecar's options, validation and start/stop: the one addon that builds things.

Options are declared in `load` and checked in `configure` (mitmproxy's conventions);
`running` builds the `Runtime` every guard shares — the judge, its backend, the response
queue and the admin server — and `done` closes them. `egress-sidecar run` hands the
settings object in directly; under `mitmdump -s` they come from `egress_<name>` options.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

from mitmproxy import ctx
from mitmproxy.addonmanager import Loader
from mitmproxy.exceptions import OptionsError

from addons import layers
from addons.runtime import Runtime
from addons.tuning import freeze_startup_heap, share_gil_promptly
from sidecar.approvals.waiter import ApprovalWaiter
from sidecar.backends.breaker import BreakerState
from sidecar.backends.factory import BackendConfigError, backend_name, create_backend
from sidecar.backends.governed import HeldAtSidecar
from sidecar.backends.local import LocalBackend
from sidecar.broker.bindings import Bindings, BindingsError, load_bindings
from sidecar.broker.state import Broker, read_value, watch
from sidecar.config.credentials import Credentials, load_credentials
from sidecar.config.settings import SettingsError, SidecarSettings, load_settings
from sidecar.config.surface import (
    OPTION_NAMES,
    RESTART_OPTIONS,
    addon_options,
    settings_from_options,
)
from sidecar.engine import Engine, Policy
from sidecar.engine.known_secrets import KnownSecrets
from sidecar.engine.policy_file import PolicyError, load_policy
from sidecar.judge.destination import Destinations
from sidecar.judge.endpoints import Listener, local_addresses
from sidecar.judge.judge import Judge
from sidecar.judge.resolver import DestinationResolver, Resolver
from sidecar.judge.responses import ResponseScanQueue
from sidecar.observability.admin import AdminServer, ensure_admin_token
from sidecar.observability.loop_lag import watch_loop_lag
from sidecar.observability.metrics import SidecarMetrics

logger = logging.getLogger("egress_sidecar")

SHUTDOWN_GRACE = 5.0

# mitmproxy's own ways around the sidecar's tunnel rules: pass-through is ours to decide
# (bound to the destination connected to), raw TCP is refused unless named.
_FOREIGN_TUNNEL_OPTIONS = {
    "ignore_hosts": "egress_passthrough_hosts",
    "allow_hosts": "egress_passthrough_hosts",
    "tcp_hosts": "egress_raw_tcp_hosts",
    "udp_hosts": "nothing: UDP is never relayed",
}


class Lifecycle:
    """Declares and checks the options; builds the runtime at start, closes it at stop."""

    def __init__(
        self,
        settings: SidecarSettings | None = None,
        credentials: Credentials | None = None,
        resolver: Resolver | None = None,
    ) -> None:
        self._given = settings  # from `egress-sidecar run`; None under `mitmdump -s`
        self._credentials = credentials
        self._resolver = resolver
        self.settings: SidecarSettings | None = None
        self.metrics = SidecarMetrics()
        self.runtime: Runtime | None = None  # exists while the proxy runs
        self._admin: AdminServer | None = None  # stopped at `done` even if start-up failed
        self._policy: Policy | None = None
        self._bindings: Bindings | None = None

    def load(self, loader: Loader) -> None:
        try:
            options = addon_options(self._given or load_settings())
        except SettingsError as e:
            raise OptionsError(f"egress-sidecar: {e}") from None
        for option in options:
            loader.add_option(*option)
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
        if self.runtime is not None and (fixed := sorted(updated & RESTART_OPTIONS)):
            # The backend, its client and the admin server were built from these.
            raise OptionsError(f"egress-sidecar: restart to change {', '.join(fixed)}")
        try:
            self.settings = self._settings_from_options()
            if self._credentials is None:
                self._credentials = load_credentials()
            if backend_name(self.settings, self._credentials) == "local":
                self._policy = load_policy(self.settings.policy)
            self._bindings = self._load_bindings(self.settings)
        except (SettingsError, BackendConfigError, PolicyError, BindingsError) as e:
            raise OptionsError(f"egress-sidecar: {e}") from None
        if self.runtime is not None:  # per-request settings (fail mode, limits) changed
            self.runtime.settings = self.settings

    @staticmethod
    def _load_bindings(settings: SidecarSettings) -> Bindings | None:
        """The brokered credentials, each value readable now (a sidecar that cannot
        substitute a value must not start: the agent's requests would all fail)."""
        if settings.brokered_credentials is None:
            return None
        bindings = load_bindings(settings.brokered_credentials, settings.passthrough_hosts)
        for credential in bindings.credentials:
            read_value(credential)
        return bindings

    def _settings_from_options(self) -> SidecarSettings:
        if self.settings is None and self._given is not None:
            return self._given  # the options were declared from it
        options = {name: getattr(ctx.options, name) for name in OPTION_NAMES}
        base = self._given.model_dump() if self._given is not None else {}
        # Approvals live next to the CA.
        return settings_from_options(options, **{**base, "confdir": ctx.options.confdir})

    async def running(self) -> None:
        settings, credentials = self.settings, self._credentials
        assert settings is not None
        assert credentials is not None
        metrics = self.metrics
        backend = create_backend(settings, credentials, self._policy, self._circuit_changed)
        if isinstance(backend, LocalBackend):
            engine = backend.engine
        else:  # the built-in rules judge destinations before a request exists
            engine = Engine(load_policy(None), tuple(settings.internal_hosts))
        own_secrets = credentials.secrets()
        token: str | None = None
        admin: AdminServer | None = None
        if settings.admin is not None:
            # Approvals decided here, or (None) by the remote API.
            approvals = backend.approvals if isinstance(backend, HeldAtSidecar) else None
            configured = settings.admin_token.get_secret_value() if settings.admin_token else None
            token = ensure_admin_token(settings.confdir, configured)
            admin = self._admin = AdminServer(metrics, self.readiness, approvals, token)
            try:
                admin.start(settings.admin)
            except OSError as e:
                logger.error(
                    "egress-sidecar: admin server cannot listen on %s: %s",
                    settings.admin,
                    e.strerror,
                )
        own = [s.decode() for s in own_secrets] + ([token] if token else [])
        known = KnownSecrets(own)
        broker = Broker(self._bindings, own) if self._bindings is not None else None
        reloads = metrics.broker_reloads
        here = local_addresses()
        destinations = Destinations(
            settings,
            engine,
            self._resolver or DestinationResolver(),
            known,
            lambda: self._listeners(here, admin),
        )
        waiter = ApprovalWaiter(
            backend,
            metrics,
            settings.approval_timeout,
            settings.approval_poll_interval,
            settings.max_pending_approvals,
        )
        responses = ResponseScanQueue(
            backend,
            metrics,
            settings.response_queue_size,
            settings.response_workers,
            withheld=own_secrets,
        )
        responses.start()
        self.runtime = Runtime(
            judge=Judge(
                settings, backend, destinations, known, credentials.interven, waiter, broker
            ),
            destinations=destinations,
            responses=responses,
            metrics=metrics,
            admin=admin,
            lag_watch=asyncio.create_task(watch_loop_lag(metrics.event_loop_lag.observe)),
            broker_watch=(
                asyncio.create_task(
                    watch(broker, lambda name, result: reloads.labels(name, result).inc())
                )
                if broker is not None
                else None
            ),
        )
        share_gil_promptly()
        frozen = freeze_startup_heap()
        logger.debug("start-up heap frozen: %d objects out of the collector's reach", frozen)

    @staticmethod
    def _listeners(here: frozenset[Any], admin: AdminServer | None) -> list[Listener]:
        """The sockets the sidecar listens on (never a destination), read each time: the
        proxy's listeners may be reconfigured while it runs."""
        out = []
        proxyserver = ctx.master.addons.get("proxyserver")
        if proxyserver is not None:
            out += [Listener.of(str(a[0]), int(a[1]), here) for a in proxyserver.listen_addrs()]
        if admin is not None and admin.address is not None:
            out.append(Listener.of(admin.address.host, admin.address.port, here))
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
        runtime = self.runtime
        if runtime is not None:
            runtime.lag_watch.cancel()
            if runtime.broker_watch is not None:
                runtime.broker_watch.cancel()
            await runtime.responses.close(SHUTDOWN_GRACE)
            await runtime.judge.backend.aclose()
        if self._admin is not None:
            await self._admin.stop()

    def readiness(self) -> str | None:
        """None when the proxy listens, the CA exists and the backend is up."""
        proxyserver = ctx.master.addons.get("proxyserver")
        if proxyserver is None or not proxyserver.listen_addrs():
            return "proxy not listening"
        if not (Path(ctx.options.confdir).expanduser() / "mitmproxy-ca-cert.pem").is_file():
            return "CA certificate missing"
        assert self.settings is not None
        bundle = self.settings.ca_bundle_out
        if bundle is not None and not bundle.is_file():
            return f"agent CA bundle {bundle} missing"
        if self.runtime is None:
            return "backend not started"
        return None
