"""A circuit breaker, so a dead scan API costs one fast failure instead of a timeout each.

Closed: calls go through; `threshold` consecutive failures of the kinds that mean "the
service is down" (unreachable, timed out, 5xx) open it. Open: calls fail at once with
`CircuitOpen` for `cooldown` seconds. Then one trial call is let through (half-open):
success closes the circuit, failure opens it for another cooldown. Answers that prove
the service is up (4xx, malformed verdicts, 429) never count as failures.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from enum import StrEnum

from sidecar.backends.errors import ScanError, ScanServerError, ScanTimeout, ScanUnavailable

OUTAGE_ERRORS = (ScanUnavailable, ScanTimeout, ScanServerError)


class CircuitOpen(ScanUnavailable):
    """The circuit is open: the call was not attempted."""

    kind = "circuit_open"


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    def __init__(
        self,
        threshold: int,
        cooldown: float,
        clock: Callable[[], float] = time.monotonic,
        on_change: Callable[[BreakerState], None] | None = None,
    ) -> None:
        self._threshold = threshold
        self._cooldown = cooldown
        self._clock = clock
        self._on_change = on_change
        self._failures = 0
        self._opened_at = 0.0
        self._trial_running = False
        self.state = BreakerState.CLOSED

    def before_call(self, what: str) -> None:
        """Raise CircuitOpen unless this call may go ahead."""
        if self.state is BreakerState.CLOSED:
            return
        if self.state is BreakerState.OPEN:
            if self._clock() - self._opened_at < self._cooldown:
                raise CircuitOpen(f"{what}: scan API circuit open after repeated failures")
            self._set(BreakerState.HALF_OPEN)
        if self._trial_running:
            raise CircuitOpen(f"{what}: scan API circuit half-open, trial call in flight")
        self._trial_running = True

    def release(self) -> None:
        """A call that was let through ended without an outcome (cancelled)."""
        self._trial_running = False

    def record(self, error: ScanError | None) -> None:
        """The outcome of a call that `before_call` let through."""
        self._trial_running = False
        if error is None or not isinstance(error, OUTAGE_ERRORS):
            self._failures = 0
            if self.state is not BreakerState.CLOSED:
                self._set(BreakerState.CLOSED)
            return
        self._failures += 1
        if self.state is BreakerState.HALF_OPEN or self._failures >= self._threshold:
            self._opened_at = self._clock()
            self._set(BreakerState.OPEN)

    def _set(self, state: BreakerState) -> None:
        if state is not self.state:
            self.state = state
            if self._on_change is not None:
                self._on_change(state)
