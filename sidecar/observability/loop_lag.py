"""Event-loop lag: how late a periodic wake-up runs is how long every flow was stalled.

Everything the proxy does shares one event loop, so a blocking call anywhere delays all
agents at once. A 100 ms ticker makes such stalls visible in `/metrics` (and to `bench/`)
at the cost of ten wake-ups a second.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

INTERVAL = 0.1


async def watch_loop_lag(observe: Callable[[float], None], interval: float = INTERVAL) -> None:
    """Observe, forever, how much later than asked each `interval` sleep returned."""
    loop = asyncio.get_running_loop()
    while True:
        start = loop.time()
        await asyncio.sleep(interval)
        observe(max(0.0, loop.time() - start - interval))
