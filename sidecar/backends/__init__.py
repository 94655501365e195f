"""Scan backends: one interface (`ScanBackend`), one module per implementation."""

from __future__ import annotations

from sidecar.backends.base import ScanBackend
from sidecar.backends.interven import IntervenBackend
from sidecar.settings import IntervenCredentials, SidecarSettings

NO_BACKEND = (
    "no scan backend configured: export INTERVEN_API_KEY=<key> (and INTERVEN_GATEWAY_URL "
    "for a self-hosted gateway) to use the scan API"
)


class BackendConfigError(ValueError):
    """The chosen backend cannot run with this configuration."""


def backend_name(settings: SidecarSettings, credentials: IntervenCredentials) -> str:
    """The backend to use: the explicit one, else `interven` when a key is set."""
    name = settings.backend or ("interven" if credentials.api_key is not None else None)
    if name is None:
        raise BackendConfigError(NO_BACKEND)
    if name == "interven" and credentials.api_key is None:
        raise BackendConfigError("--backend interven needs INTERVEN_API_KEY to be set")
    return name


def create_backend(settings: SidecarSettings, credentials: IntervenCredentials) -> ScanBackend:
    backend_name(settings, credentials)
    return IntervenBackend(credentials, settings.scan_timeout, settings.scan_retries)
