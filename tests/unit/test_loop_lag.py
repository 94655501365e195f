"""The event-loop lag watcher sees a blocking call as lag, and a quiet loop as none."""

from __future__ import annotations

import asyncio
import time

from sidecar.observability.loop_lag import watch_loop_lag


def test_a_blocking_call_shows_up_as_lag():
    async def main() -> list[float]:
        seen: list[float] = []
        enough = asyncio.Event()

        def observe(lag: float) -> None:
            seen.append(lag)
            if len(seen) == 3:
                enough.set()

        watcher = asyncio.create_task(watch_loop_lag(observe, interval=0.01))
        await asyncio.sleep(0)  # let the watcher take its first timestamp
        time.sleep(0.06)  # noqa: ASYNC251 -- the stall under test: blocks the loop
        await enough.wait()
        watcher.cancel()
        return seen

    seen = asyncio.run(main())
    assert seen[0] >= 0.05
    assert all(lag >= 0 for lag in seen)
