"""Embedded engine scan time by body size, and event-loop stalls while scanning.

    python -m bench.engine_bench [--repeat 200]

Bodies are realistic JSON (an LLM chat request: messages of prose and code, some
personal data) of about 2 KB, 64 KB and 256 KB. Prints median, p95 and p99 per size,
then the longest pause a 1 ms ticker on the event loop saw while 256 KB bodies were
scanned through the local backend (which moves large scans off the loop).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import time

from sidecar.approval_store import ApprovalStore
from sidecar.backends.local import LocalBackend
from sidecar.engine import Engine
from sidecar.policy_file import default_policy
from sidecar.verdict import ScanRequest

SENTENCES = (
    "the build failed because the cache key changed after we bumped the lockfile",
    "please review the diff and rerun the pipeline once the fix lands on main",
)
WORDS = [word for sentence in SENTENCES for word in sentence.split()]
CODE = "def handler(event):\n    return {'status': 200, 'body': json.dumps(event)}\n"


def chat_body(target: int, rng: random.Random) -> dict[str, object]:
    messages: list[dict[str, str]] = [{"role": "system", "content": "You are a helpful agent."}]
    size = 0
    i = 0
    while size < target:
        text = " ".join(rng.choice(WORDS) for _ in range(60))
        if i % 5 == 0:
            text += "\n```python\n" + CODE * 3 + "```"
        if i % 17 == 0:
            text += f" contact ops-{i}@corp.io or +1 415 555 {1000 + i:04d}"
        messages.append({"role": "user" if i % 2 else "assistant", "content": text})
        size += len(text) + 40
        i += 1
    return {"model": "gpt-4o", "messages": messages, "temperature": 0.2}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def bench_sizes(engine: Engine, repeat: int) -> dict[str, dict[str, float]]:
    rng = random.Random(1)
    headers = {"Content-Type": "application/json", "Authorization": "Bearer sk-local"}
    results = {}
    for label, target in (("2KB", 2 * 1024), ("64KB", 64 * 1024), ("256KB", 256 * 1024)):
        body = chat_body(target, rng)
        actual = len(json.dumps(body))
        for _ in range(5):
            engine.decide("POST", "https://api.openai.com/v1/chat/completions", headers, body)
        times = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            engine.decide("POST", "https://api.openai.com/v1/chat/completions", headers, body)
            times.append((time.perf_counter() - t0) * 1000)
        results[label] = {
            "bytes": actual,
            "median_ms": statistics.median(times),
            "p95_ms": percentile(times, 0.95),
            "p99_ms": percentile(times, 0.99),
        }
    return results


async def loop_stall(backend: LocalBackend, scans: int) -> float:
    """Longest gap between 1 ms ticks while `scans` 256 KB bodies are scanned."""
    body = chat_body(256 * 1024, random.Random(2))
    request = ScanRequest(method="POST", url="https://api.openai.com/v1/chat/completions",
                          headers={"Content-Type": "application/json"}, body=body,
                          body_bytes=len(json.dumps(body)))  # fmt: skip
    worst = 0.0
    done = asyncio.Event()

    async def ticker() -> None:
        nonlocal worst
        last = time.perf_counter()
        while not done.is_set():
            await asyncio.sleep(0.001)
            now = time.perf_counter()
            worst = max(worst, now - last - 0.001)
            last = now

    tick = asyncio.create_task(ticker())
    await asyncio.gather(*(backend.scan(request) for _ in range(scans)))
    done.set()
    await tick
    return worst * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=200)
    args = parser.parse_args()
    engine = Engine(default_policy())
    print(f"engine scan time, default policy, {args.repeat} runs each")
    print(f"{'body':<8}{'bytes':>9}{'median ms':>12}{'p95 ms':>10}{'p99 ms':>10}")
    for label, r in bench_sizes(engine, args.repeat).items():
        print(f"{label:<8}{r['bytes']:>9}{r['median_ms']:>12.3f}{r['p95_ms']:>10.3f}"
              f"{r['p99_ms']:>10.3f}")  # fmt: skip
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        backend = LocalBackend(engine, ApprovalStore(Path(tmp), 60))
        stall = asyncio.run(loop_stall(backend, 20))
        print(f"longest event-loop pause while 20 x 256KB bodies were scanned: {stall:.2f} ms")
        asyncio.run(backend.aclose())


if __name__ == "__main__":
    main()
