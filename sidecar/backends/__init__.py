"""Scan backends: one interface (`ScanBackend`), one module per implementation."""

from __future__ import annotations

from collections.abc import Callable

from sidecar.approval_store import ApprovalStore
from sidecar.backends.base import ScanBackend
from sidecar.backends.breaker import BreakerState, CircuitBreaker
from sidecar.backends.interven import IntervenBackend
from sidecar.backends.local import LocalBackend
from sidecar.engine import Engine, Policy
from sidecar.policy_file import load_policy
from sidecar.settings import IntervenCredentials, SidecarSettings


class BackendConfigError(ValueError):
    """The chosen backend cannot run with this configuration."""


def backend_name(settings: SidecarSettings, credentials: IntervenCredentials) -> str:
    """The explicit backend, else `interven` when a key is set, else the embedded engine."""
    name = settings.backend or ("interven" if credentials.api_key is not None else "local")
    if name == "interven" and credentials.api_key is None:
        raise BackendConfigError("--backend interven needs INTERVEN_API_KEY to be set")
    return name


def create_backend(
    settings: SidecarSettings,
    credentials: IntervenCredentials,
    policy: Policy | None = None,
    on_circuit_change: Callable[[BreakerState], None] | None = None,
) -> ScanBackend:
    """Build the configured backend; raises BackendConfigError or PolicyError."""
    if backend_name(settings, credentials) == "interven":
        breaker = CircuitBreaker(
            settings.breaker_threshold, settings.breaker_cooldown, on_change=on_circuit_change
        )
        return IntervenBackend(
            credentials,
            settings.scan_timeout,
            settings.scan_retries,
            breaker=breaker,
            extra_ca=settings.scan_api_ca,
        )
    return create_local_backend(settings, policy)


def create_local_backend(settings: SidecarSettings, policy: Policy | None = None) -> LocalBackend:
    """The embedded engine with its approval store; `policy` defaults to the settings'."""
    policy = policy if policy is not None else load_policy(settings.policy)
    engine = Engine(policy, internal_hosts=tuple(settings.internal_hosts))
    settings.confdir.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        approvals = ApprovalStore(settings.confdir, settings.approval_expiry)
    except ValueError as e:
        raise BackendConfigError(str(e)) from None
    return LocalBackend(engine, approvals)
