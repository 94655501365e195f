"""Waiting for a condition observed from outside (e.g. a metric), with a hard deadline."""

from __future__ import annotations

import time
from collections.abc import Callable

from tests.support.servers import WAIT

_STEP = 0.02


def eventually(condition: Callable[[], bool], timeout: float = WAIT) -> None:
    """Return as soon as `condition()` holds; fail after `timeout` seconds.

    Only for state with no event to wait on (a counter read over HTTP). It never
    decides an outcome by elapsed time: the test fails only if the condition never holds.
    """
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition never held"
        time.sleep(_STEP)
