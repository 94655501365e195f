"""Keep the garbage collector's full passes short.

Everything loaded at start (mitmproxy, the compiled detectors, the policy) lives as long
as the process, yet each oldest-generation collection walks all of it while holding the
GIL. Scanning large bodies allocates enough to trigger such passes every few requests: on
a 2-core machine they paused the event loop for up to 85 ms. `gc.freeze()` moves the
start-up heap to a permanent generation the collector no longer visits (longest pass
measured after it: 9-13 ms; `bench/`).
"""

from __future__ import annotations

import gc


def freeze_startup_heap() -> int:
    """Collect once, then exempt every surviving object; returns how many were frozen."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()
