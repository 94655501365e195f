"""Building the configured scan backend (and the approval store it needs)."""

from __future__ import annotations

from collections.abc import Callable

from sidecar.approvals.store import ApprovalStore
from sidecar.backends.base import ScanBackend
from sidecar.backends.breaker import BreakerState, CircuitBreaker
from sidecar.backends.governed import HeldAtSidecar
from sidecar.backends.http import Connection
from sidecar.backends.interven import IntervenBackend
from sidecar.backends.inviolet import InvioletBackend
from sidecar.backends.kirtonic import KirtonicBackend
from sidecar.backends.local import LocalBackend
from sidecar.backends.velerian import VelerianBackend
from sidecar.config.credentials import Credentials
from sidecar.config.settings import EnforcementMode, SidecarSettings
from sidecar.engine import Engine, Policy
from sidecar.engine.policy_file import load_policy

# What each remote backend cannot start without, as the variables users set.
_REQUIRED = {
    "interven": lambda c: {"INTERVEN_API_KEY": c.interven.api_key},
    "kirtonic": lambda c: {"KIRTONIC_API_KEY": c.kirtonic.api_key},
    "inviolet": lambda c: {
        "INVIOLET_API_KEY": c.inviolet.api_key,
        "INVIOLET_BASE_URL": c.inviolet.base_url,
    },
    "velerian": lambda c: {
        "VELERIAN_API_KEY": c.velerian.api_key,
        "VELERIAN_ABP_ID": c.velerian.abp_id,
    },
}


class BackendConfigError(ValueError):
    """The chosen backend cannot run with this configuration."""


def backend_name(settings: SidecarSettings, credentials: Credentials) -> str:
    """The explicit backend, else `interven` when its key is set, else the embedded engine."""
    name = settings.backend or ("interven" if credentials.interven.api_key is not None else "local")
    if name in _REQUIRED:
        missing = [var for var, value in _REQUIRED[name](credentials).items() if not value]
        if missing:
            raise BackendConfigError(f"--backend {name} needs {' and '.join(missing)} to be set")
    return name


def create_backend(
    settings: SidecarSettings,
    credentials: Credentials,
    policy: Policy | None = None,
    on_circuit_change: Callable[[BreakerState], None] | None = None,
) -> ScanBackend:
    """Build the configured backend; raises BackendConfigError or PolicyError."""
    backend = _create(settings, credentials, policy, on_circuit_change)
    if isinstance(backend, HeldAtSidecar):
        backend.shadow = settings.enforcement is EnforcementMode.SHADOW
    return backend


def _create(
    settings: SidecarSettings,
    credentials: Credentials,
    policy: Policy | None,
    on_circuit_change: Callable[[BreakerState], None] | None,
) -> ScanBackend:
    name = backend_name(settings, credentials)
    if name == "local":
        return create_local_backend(settings, policy)
    breaker = CircuitBreaker(
        settings.breaker_threshold, settings.breaker_cooldown, on_change=on_circuit_change
    )
    conn = Connection(settings.scan_timeout, settings.scan_retries, breaker, settings.scan_api_ca)
    if name == "interven":
        return IntervenBackend(credentials.interven, conn)
    approvals = approval_store(settings)
    if name == "kirtonic":
        return KirtonicBackend(credentials.kirtonic, approvals, conn)
    if name == "inviolet":
        return InvioletBackend(credentials.inviolet, approvals, conn)
    return VelerianBackend(credentials.velerian, approvals, conn)


def approval_store(settings: SidecarSettings) -> ApprovalStore:
    settings.confdir.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        return ApprovalStore(
            settings.confdir,
            settings.approval_expiry,
            volatile_headers=settings.approval_volatile_headers,
        )
    except ValueError as e:
        raise BackendConfigError(str(e)) from None


def create_local_backend(settings: SidecarSettings, policy: Policy | None = None) -> LocalBackend:
    """The embedded engine with its approval store; `policy` defaults to the settings'."""
    policy = policy if policy is not None else load_policy(settings.policy)
    engine = Engine(policy, internal_hosts=tuple(settings.internal_hosts))
    return LocalBackend(engine, approval_store(settings))
