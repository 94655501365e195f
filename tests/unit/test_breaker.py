from __future__ import annotations

import pytest

from sidecar.backends.breaker import BreakerState, CircuitBreaker, CircuitOpen
from sidecar.backends.errors import MalformedVerdict, ScanRejected, ScanServerError, ScanTimeout


class Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


def _fail(b: CircuitBreaker, error=None) -> None:
    b.before_call("scan")
    b.record(error or ScanTimeout("t"))


def test_opens_after_threshold_fails_fast_then_recovers():
    clock, changes = Clock(), []
    b = CircuitBreaker(threshold=3, cooldown=10, clock=clock, on_change=changes.append)
    _fail(b)
    _fail(b)
    assert b.state is BreakerState.CLOSED
    _fail(b, ScanServerError("5xx", 503))
    assert b.state is BreakerState.OPEN
    with pytest.raises(CircuitOpen) as e:
        b.before_call("scan")
    assert e.value.kind == "circuit_open"
    clock.now = 10.5
    b.before_call("scan")  # the one trial
    assert b.state is BreakerState.HALF_OPEN
    with pytest.raises(CircuitOpen):
        b.before_call("scan")  # only one trial at a time
    b.record(None)
    assert b.state is BreakerState.CLOSED
    assert changes == [BreakerState.OPEN, BreakerState.HALF_OPEN, BreakerState.CLOSED]


def test_failed_trial_reopens_for_another_cooldown():
    clock = Clock()
    b = CircuitBreaker(threshold=1, cooldown=5, clock=clock)
    _fail(b)
    clock.now = 6
    _fail(b)
    assert b.state is BreakerState.OPEN
    clock.now = 8
    with pytest.raises(CircuitOpen):
        b.before_call("scan")


def test_answers_that_prove_the_service_is_up_do_not_count():
    b = CircuitBreaker(threshold=2, cooldown=5, clock=Clock())
    for error in (ScanRejected("400", 400), MalformedVerdict("x"), ScanTimeout("t"),
                  MalformedVerdict("y"), ScanTimeout("t")):  # fmt: skip
        _fail(b, error)
    assert b.state is BreakerState.CLOSED


def test_a_cancelled_trial_does_not_wedge_the_breaker():
    clock = Clock()
    b = CircuitBreaker(threshold=1, cooldown=1, clock=clock)
    _fail(b)
    clock.now = 2
    b.before_call("scan")
    b.release()
    b.before_call("scan")  # a new trial may start
    b.record(None)
    assert b.state is BreakerState.CLOSED
