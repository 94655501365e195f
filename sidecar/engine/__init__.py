"""The embedded scan engine: pure detection, policy and redaction (no I/O, no asyncio)."""

from sidecar.engine.engine import Engine, FingerprintStore, LocalVerdict, ResponseObservation
from sidecar.engine.policy import Policy

__all__ = ["Engine", "FingerprintStore", "LocalVerdict", "Policy", "ResponseObservation"]
