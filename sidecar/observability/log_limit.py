"""Log lines about repeated failures, counted instead of repeated.

An agent (or an attacker) can make the same failure happen thousands of times a second;
one line per occurrence fills disks and hides everything else. Each kind of event gets
at most one line per interval; the next line says how many were folded into it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

INTERVAL = 10.0
MAX_KINDS = 64  # kinds are fixed strings chosen by the sidecar; this bounds a mistake


class RateLimitedLog:
    """`log(kind, message)`: the first of a kind at once, then at most one per interval."""

    def __init__(
        self,
        logger: logging.Logger,
        interval: float = INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._logger = logger
        self._interval = interval
        self._clock = clock
        self._last: dict[str, float] = {}
        self._folded: dict[str, int] = {}

    def log(self, kind: str, message: str, level: int = logging.WARNING) -> bool:
        """Logs unless a line of this kind went out less than an interval ago; returns
        whether it did."""
        folded = self.due(kind)
        if folded is None:
            return False
        suffix = f" ({folded} more like this since the last line)" if folded else ""
        self._logger.log(level, "%s%s", message, suffix)
        return True

    def due(self, kind: str) -> int | None:
        """None while a line of this kind went out less than an interval ago (it is
        counted); else how many were folded since, and the interval starts again."""
        now = self._clock()
        last = self._last.get(kind)
        if last is not None and now - last < self._interval:
            self._folded[kind] = self._folded.get(kind, 0) + 1
            return None
        if last is None and len(self._last) >= MAX_KINDS:
            kind = "other"
        self._last[kind] = now
        return self._folded.pop(kind, 0)
