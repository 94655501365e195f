"""Concurrent load: hundreds of in-flight requests and dozens of held approvals at once.

Every request is answered, every forwarded response is posted exactly once (the queue
is sized for the burst, so no drop is expected), and held requests never block others.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import Counter

import httpx

from tests.support.servers import WAIT
from tests.support.sidecar import Sidecar
from tests.support.waiting import eventually

REQUESTS = 240
HELD = 30


async def _burst(sidecar: Sidecar, base: str, paths: list[str]) -> list[httpx.Response]:
    verify = ssl.create_default_context(cafile=str(sidecar.ca.bundle))
    limits = httpx.Limits(max_connections=len(paths), max_keepalive_connections=len(paths))
    proxy = f"http://{sidecar.info.proxy}"
    async with httpx.AsyncClient(
        proxy=proxy, verify=verify, trust_env=False, timeout=WAIT * 3, limits=limits
    ) as client:
        return await asyncio.gather(*(client.post(base + p, json={"p": p}) for p in paths))


def test_hundreds_in_flight_with_dozens_held(make_sidecar, upstream, scan_api):
    # The scan-API double is one tornado thread: poll it gently, give it time.
    sidecar = make_sidecar(response_queue_size=1000, max_pending_approvals=HELD,
                           approval_poll_interval=0.5, scan_timeout=30)  # fmt: skip
    held_paths = [f"/approve/load-{i}" for i in range(HELD)]
    free_paths = [f"/allow/load-{i}" for i in range(REQUESTS)]

    async def scenario() -> tuple[list[httpx.Response], list[httpx.Response]]:
        held = asyncio.create_task(_burst(sidecar, upstream.https, held_paths))
        # Wait (without blocking the loop) until every held request is actually held.
        await asyncio.to_thread(
            eventually, lambda: sidecar.metric("egress_sidecar_approvals_pending") == HELD
        )
        free = await _burst(sidecar, upstream.https, free_paths)
        assert not held.done(), "held requests finished before they were approved"
        for i in range(HELD):
            scan_api.approvals[f"load-{i}"] = "approved"
        return free, await held

    free, held = asyncio.run(scenario())
    assert [r.status_code for r in free] == [200] * REQUESTS
    assert [r.status_code for r in held] == [200] * HELD
    received = Counter(r.path for r in upstream.received.items if "/load-" in r.path)
    assert received == Counter(free_paths + held_paths)  # each exactly once

    traces = {r.headers["x-interven-trace-id"] for r in free + held}
    assert len(traces) == REQUESTS + HELD

    def all_posted() -> bool:
        return sidecar.metric("egress_sidecar_response_scans_posted_total") >= REQUESTS + HELD

    eventually(all_posted, timeout=WAIT * 3)
    posted = Counter(p["json"]["trace_id"] for p in scan_api.response_posts.items
                     if p["json"]["trace_id"] in traces)  # fmt: skip
    assert set(posted) == traces
    assert max(posted.values()) == 1  # no duplicates
    assert sidecar.metric("egress_sidecar_response_scans_dropped_total", reason="queue_full") == 0
    assert sidecar.metric("egress_sidecar_approvals_pending") == 0
