"""Interpreter settings for an event loop that shares its process with a scan thread.

The first two were measured with `bench/` on a 2-core machine while 256 KB bodies were
scanned; the third with `bench/resource_bench.py`:

- The garbage collector's oldest-generation pass walks every object, including all that
  was loaded at start (mitmproxy, the compiled detectors, the policy), holding the GIL:
  such passes paused the event loop for up to 85 ms. `gc.freeze()` moves the start-up
  heap to a permanent generation the collector no longer visits (longest pass after it:
  9-13 ms).
- When the loop wakes for I/O while the scan thread holds the GIL, it waits up to the
  switch interval (5 ms by default) for every wake-up. At 1 ms the longest loop pause
  went from 10-20 ms to under 10 ms, at unchanged scan throughput.
- Freed buffers wait in reference cycles for a full collection, then in glibc's heap;
  after a flood of connections or refused bodies the process stayed 20 % above its
  baseline. A collection when it has grown, then `malloc_trim`, hands the pages back.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import gc
import os
import sys
from collections.abc import Callable

GIL_SWITCH_INTERVAL = 0.001  # seconds
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def share_gil_promptly() -> None:
    """Let the event loop take the GIL back from a running scan within 1 ms."""
    sys.setswitchinterval(GIL_SWITCH_INTERVAL)


def freeze_startup_heap() -> int:
    """Collect once, then exempt every surviving object; returns how many were frozen."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    try:
        trim: Callable[[int], int] = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError, TypeError):  # not glibc (musl, macOS)
        return None
    return trim


def give_memory_back() -> bool:
    """Return free heap pages to the OS (glibc only; a few ms, the GIL released)."""
    trim = _malloc_trim()
    return trim is not None and bool(trim(0))


def resident_bytes() -> int:
    """This process's resident set (Linux; 0 elsewhere)."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * PAGE_SIZE
    except (OSError, ValueError, IndexError):
        return 0


class MemoryKeeper:
    """Freed request buffers sit in reference cycles until a full collection, and then in
    glibc's heap: when the process is above its quiet level (the lowest it settled at) or
    has grown since the last look, collect and hand the free pages back. When that frees
    little (the memory is in use), the next looks are skipped, up to `MAX_SKIPS`. Cheap
    when nothing grew: one read of /proc."""

    MAX_SKIPS = 32

    def __init__(self, growth: int = 8 * 1024 * 1024) -> None:
        self._growth = growth
        self._settled = self._floor = resident_bytes()
        self._before = 0
        self._skips = self._skipping = 0

    def collect_if_grown(self) -> bool:
        if self._skipping:
            self._skipping -= 1
            return False
        rss = resident_bytes()
        if rss - min(self._settled, self._floor) < self._growth:
            return False
        gc.collect()
        self._before = rss
        return True

    def settle(self) -> None:
        """Called after `give_memory_back`: what it achieved decides the next look."""
        self._settled = resident_bytes()
        self._floor = min(self._floor, self._settled)
        freed = self._before - self._settled
        self._skips = 0 if freed >= self._growth // 2 else min(2 * self._skips + 1, self.MAX_SKIPS)
        self._skipping = self._skips
