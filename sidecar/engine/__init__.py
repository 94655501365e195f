"""The embedded scan engine: pure detection, policy and redaction (no I/O, no asyncio)."""

from sidecar.engine.engine import Engine
from sidecar.engine.outcomes import LocalVerdict
from sidecar.engine.policy import Policy

__all__ = ["Engine", "LocalVerdict", "Policy"]
