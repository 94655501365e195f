"""What the sidecar costs: the same HTTPS workload direct, through bare mitmproxy, and
through the sidecar, in one run on loopback.

    python -m bench.proxy_bench [--scale 1.0] [--rounds 3] [--leak-requests 100000]
                                [--holds 1000] [--only throughput stalls held leak]
                                [--out bench/results]

Configurations: `direct` (client → upstream), `bare` (mitmproxy 11 with the sidecar's own
options, no addon), `local-allow` / `local-deny` (the sidecar, embedded engine, default
policy; the deny bodies carry a GitHub token), `interven` (the sidecar with a scan-API
double over HTTPS on loopback). Each proxy is its own process, measured from outside
(CPU time, RSS, peak RSS); the client is curl over keep-alive HTTP/1.1 connections. The
workloads run in interleaved rounds, so a noisy moment hits every configuration alike.

Then: event-loop stalls while 256 KB bodies are scanned, memory per held approval,
connection reuse towards the scan API, and RSS over many requests (normal traffic and a
dead scan API). Results go to `proxy_bench.json` and `proxy_bench.md` in `--out`.
Everything shares this machine's cores: figures are for comparing configurations
measured side by side, not absolute capacity.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import re
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import psutil
import trustme
from prometheus_client.parser import text_string_to_metric_families

from bench.corpora.generated import github
from bench.engine_bench import chat_body, percentile
from sidecar.broker.placeholders import PRESETS, placeholder_for

BIN = Path(sys.executable).parent
BENCH_KEY = "bench-key-0123456789"
SECTIONS = ("throughput", "broker", "stalls", "held", "leak")
ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Workload:
    name: str
    body_bytes: int
    concurrency: int
    requests: int


@dataclass
class Result:
    config: str
    workload: str
    requests: int
    errors: int
    seconds: float
    throughput: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    cpu_s_per_1000: float | None = None
    added_ms: dict[str, float] = field(default_factory=dict)


# ---------------------------------------------------------------- processes


class Child:
    """A process we start, read a ready line from, and measure."""

    def __init__(self, args: list[str], ready: str, env: dict[str, str] | None = None,
                 banner_on_stderr: bool = False) -> None:  # fmt: skip
        self.lines: list[str] = []
        self.proc = subprocess.Popen(
            args,
            stdout=subprocess.DEVNULL if banner_on_stderr else subprocess.PIPE,
            stderr=subprocess.PIPE if banner_on_stderr else subprocess.DEVNULL,
            text=True,
            env=env,
            cwd=ROOT,
        )
        stream = self.proc.stderr if banner_on_stderr else self.proc.stdout
        assert stream is not None
        for line in stream:
            self.lines.append(line)
            if re.search(ready, line):
                break
        else:
            raise RuntimeError(f"{args[:3]} did not start: {''.join(self.lines)}")
        # Keep draining so a chatty child never blocks on a full pipe.
        threading.Thread(target=lambda: self.lines.extend(stream), daemon=True).start()
        self.ps = psutil.Process(self.proc.pid)

    def find(self, pattern: str) -> str:
        for line in self.lines:
            match = re.search(pattern, line)
            if match:
                return match.group(1)
        raise LookupError(pattern)

    def cpu(self) -> float:
        times = self.ps.cpu_times()
        return float(times.user + times.system)

    def rss(self) -> int:
        return int(self.ps.memory_info().rss)

    def peak_rss(self) -> int:
        """VmHWM: the highest RSS the process ever had."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
        return self.rss()

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class Lab:
    """Certificates, the upstream, and a scan-API double, shared by every configuration."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        ca = trustme.CA()
        cert = ca.issue_cert("127.0.0.1", "localhost")
        self.ca_file = tmp / "lab-ca.pem"
        ca.cert_pem.write_to_path(str(self.ca_file))
        cert_file, key_file = tmp / "server.pem", tmp / "server.key"
        cert.cert_chain_pems[0].write_to_path(str(cert_file))
        cert.private_key_pem.write_to_path(str(key_file))
        tls = ["--cert", str(cert_file), "--key", str(key_file)]
        self.upstream = Child([sys.executable, "-m", "bench.servers", "upstream", *tls], r"^ready")
        self.upstream_url = "https://127.0.0.1:" + self.upstream.find(r"ready (\d+)")
        self.scan_api = Child([sys.executable, "-m", "bench.servers", "scan-api", *tls], r"^ready")
        self.scan_api_url = "https://127.0.0.1:" + self.scan_api.find(r"ready (\d+)")

    def stats(self, url: str) -> dict[str, Any]:
        with httpx.Client(verify=self.context(self.ca_file), trust_env=False) as client:
            return dict(client.get(f"{url}/stats").json())

    def release(self, url: str) -> None:
        with httpx.Client(verify=self.context(self.ca_file), trust_env=False) as client:
            client.post(f"{url}/release")

    @staticmethod
    def context(ca_file: Path) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(ca_file))

    def stop(self) -> None:
        self.upstream.stop()
        self.scan_api.stop()


class Proxy:
    """A proxy configuration: its process, address, CA and (for the sidecar) admin.

    Kinds: `bare` (mitmproxy, no addon), `sidecar` (embedded engine), `interven` (the
    sidecar with the lab's scan-API double as its backend).
    """

    def __init__(self, lab: Lab, kind: str, *extra: str, env: dict[str, str] | None = None):
        self.kind = kind
        if kind == "interven":
            extra = ("--backend", "interven", "--scan-api-ca", str(lab.ca_file), *extra)
            env = {"INTERVEN_API_KEY": BENCH_KEY, "INTERVEN_GATEWAY_URL": lab.scan_api_url,
                   **(env or {})}  # fmt: skip
        confdir = Path(tempfile.mkdtemp(dir=lab.tmp, prefix=f"{kind}-"))
        self.ca_file = confdir / "mitmproxy-ca-cert.pem"
        self.admin: str | None = None
        if kind == "bare":
            self.child = Child(
                [sys.executable, "-m", "bench.bare_proxy", "--confdir", str(confdir),
                 "--upstream-ca", str(lab.ca_file)],
                r"^ready",
            )  # fmt: skip
            self.address = self.child.find(r"ready (\S+)")
            return
        clean = {k: v for k, v in os.environ.items() if not k.startswith(("SIDECAR_", "INTERVEN_"))}
        clean = {k: v for k, v in clean.items() if "proxy" not in k.lower()}
        self.child = Child(
            [sys.executable, "-m", "sidecar.cli", "run", "--listen", "127.0.0.1:0",
             "--admin", "127.0.0.1:0", "--confdir", str(confdir),
             "--upstream-ca", str(lab.ca_file),
             # The lab upstream is on loopback, which the default policy denies as SSRF.
             "--internal-hosts", "127.0.0.1", *extra],
            r"agents:",
            env={**clean, **(env or {})},
            banner_on_stderr=True,
        )  # fmt: skip
        self.address = self.child.find(r"listening on (\S+)")
        self.admin = self.child.find(r"admin:\s+http://(\S+)/metrics")

    def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        assert self.admin is not None
        text = httpx.get(f"http://{self.admin}/metrics", trust_env=False).text
        return {
            (s.name, tuple(sorted(s.labels.items()))): float(s.value)
            for family in text_string_to_metric_families(text)
            for s in family.samples
        }

    def metric(self, name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return self.metrics().get(key, 0.0)

    def stop(self) -> None:
        self.child.stop()


# ---------------------------------------------------------------- the client


def body_for(size: int, deny: bool, seed: int) -> bytes:
    rng = random.Random(seed)
    doc = chat_body(size, rng)
    if deny:
        messages = doc["messages"]
        assert isinstance(messages, list)
        messages.append({"role": "user", "content": f"use token {github(rng)} for the push"})
    return json.dumps(doc).encode()


def client(proxy: Proxy | None, lab: Lab, connections: int, timeout: float = 120
           ) -> httpx.AsyncClient:  # fmt: skip
    return httpx.AsyncClient(
        proxy=f"http://{proxy.address}" if proxy else None,
        verify=Lab.context(proxy.ca_file if proxy else lab.ca_file),
        limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections),
        timeout=httpx.Timeout(timeout),
        trust_env=False,
    )


async def drive(http: httpx.AsyncClient, url: str, body: bytes, concurrency: int,
                requests: int, expected: int | None = None,
                ) -> tuple[list[float], int, float]:  # fmt: skip
    """`requests` POSTs from `concurrency` workers; returns latencies (s), answers other
    than `expected` (403 on deny paths, else 200), and wall time (s)."""
    if expected is None:
        expected = 403 if "/deny/" in url else 200
    latencies: list[float] = []
    errors = 0
    remaining = requests
    headers = {"Content-Type": "application/json"}

    async def worker() -> None:
        nonlocal remaining, errors
        while remaining > 0:
            remaining -= 1
            start = time.perf_counter()
            response = await http.post(url, content=body, headers=headers)
            latencies.append(time.perf_counter() - start)
            if response.status_code != expected:
                errors += 1

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies, errors, time.perf_counter() - start


class Curl:
    """curl as the load generator: C, keep-alive, `--parallel`, cheap next to the proxy
    (a Python client would be the bottleneck and hide what the proxy costs)."""

    def __init__(self, lab: Lab, proxy: Proxy | None) -> None:
        self.lab = lab
        self.proxy = proxy

    def start(self, url: str, body: bytes, concurrency: int, requests: int,
              headers: tuple[str, ...] = ()) -> subprocess.Popen[str]:  # fmt: skip
        work = Path(tempfile.mkdtemp(dir=self.lab.tmp, prefix="curl-"))
        (work / "body").write_bytes(body)
        (work / "urls").write_text(f'url = "{url}"\noutput = "/dev/null"\n' * requests)
        # HTTP/1.1 keep-alive, as Python and Node agents speak it. (With an HTTP/2 client,
        # mitmproxy 11 opens a new upstream connection per request, bare or not.)
        args = ["curl", "--http1.1", "--silent", "--no-progress-meter", "--show-error",
                "--config", str(work / "urls"),
                "--data-binary", f"@{work / 'body'}", "-H", "Content-Type: application/json",
                "--write-out", "%{http_code} %{time_total}\\n"]  # fmt: skip
        for header in headers:
            args += ["-H", header]
        if concurrency > 1:
            args += ["--parallel", "--parallel-immediate", "--parallel-max", str(concurrency)]
        if self.proxy is not None:
            args += ["--proxy", f"http://{self.proxy.address}", "--cacert", str(self.proxy.ca_file)]
        else:
            args += ["--cacert", str(self.lab.ca_file)]
        env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
        return subprocess.Popen(args, stdout=subprocess.PIPE, text=True, env=env)

    def run(self, url: str, body: bytes, concurrency: int, requests: int, expected: int,
            headers: tuple[str, ...] = ()) -> tuple[list[float], int, float]:  # fmt: skip
        """Latencies (s), answers other than `expected`, wall time (s)."""
        start = time.perf_counter()
        proc = self.start(url, body, concurrency, requests, headers)
        out, _ = proc.communicate()
        wall = time.perf_counter() - start
        latencies, errors = [], 0
        for line in out.splitlines():
            code, seconds = line.split()
            latencies.append(float(seconds))
            errors += code != str(expected)
        errors += requests - len(latencies)
        return latencies, errors, wall


@dataclass
class Config:
    name: str
    proxy: Proxy | None
    path: str  # "/allow/" or "/deny/"
    headers: tuple[str, ...] = ()  # sent with every request (a brokered placeholder)

    @property
    def expected(self) -> int:
        return 403 if "/deny/" in self.path else 200


def run_interleaved(lab: Lab, configs: list[Config], workloads: list[Workload], rounds: int,
                    peaks: dict[str, int]) -> list[Result]:  # fmt: skip
    """Every workload through every configuration, `rounds` times, interleaved: whatever
    else the machine does at a given moment lands on all configurations alike.

    Per configuration and workload: the median of the rounds' throughput and CPU, and
    percentiles over the latencies of all rounds.
    """
    runs: dict[tuple[str, str], list[tuple[list[float], int, float, float | None]]] = {}
    for c in configs:
        body = body_for(2048, c.path == "/deny/", 0)
        Curl(lab, c.proxy).run(f"{lab.upstream_url}{c.path}warm", body, 32, 640, c.expected,
                               c.headers)  # fmt: skip
    for _ in range(rounds):
        for w in workloads:
            for c in configs:
                body = body_for(w.body_bytes, c.path == "/deny/", w.body_bytes)
                cpu0 = c.proxy.child.cpu() if c.proxy else 0.0
                lat, errors, wall = Curl(lab, c.proxy).run(
                    f"{lab.upstream_url}{c.path}{w.name}", body, w.concurrency, w.requests,
                    c.expected, c.headers,
                )  # fmt: skip
                cpu = (c.proxy.child.cpu() - cpu0) / w.requests * 1000 if c.proxy else None
                runs.setdefault((c.name, w.name), []).append((lat, errors, wall, cpu))
    results = []
    for c in configs:
        for w in workloads:
            rs = runs[(c.name, w.name)]
            ms = [x * 1000 for lat, *_ in rs for x in lat]
            cpus = [cpu for *_, cpu in rs if cpu is not None]
            results.append(Result(
                c.name, w.name, w.requests * len(rs), sum(r[1] for r in rs),
                sum(r[2] for r in rs), statistics.median(w.requests / r[2] for r in rs),
                statistics.median(ms), percentile(ms, 0.95), percentile(ms, 0.99),
                statistics.median(cpus) if cpus else None,
            ))  # fmt: skip
        if c.proxy:
            peaks[c.name] = c.proxy.child.peak_rss()
    return results


# ---------------------------------------------------------------- the extra checks


def stall_check(lab: Lab, proxy: Proxy, tiny_requests: int) -> dict[str, float]:
    """Tiny requests, one at a time, while four connections keep posting 256 KB bodies."""
    curl = Curl(lab, proxy)
    tiny = b'{"ping": 1}'
    quiet, _, _ = curl.run(f"{lab.upstream_url}/allow/tiny", tiny, 1, 200, 200)
    lag_before = _lag_counts(proxy)
    big = curl.start(f"{lab.upstream_url}/allow/big", body_for(256 * 1024, False, 7), 4,
                     100_000)  # fmt: skip
    try:
        loaded, _, _ = curl.run(f"{lab.upstream_url}/allow/tiny", tiny, 1, tiny_requests, 200)
    finally:
        big.kill()
        big.communicate()
    lag_after = _lag_counts(proxy)
    out = {
        "tiny_quiet_p50_ms": statistics.median(quiet) * 1000,
        "tiny_loaded_p50_ms": statistics.median(loaded) * 1000,
        "tiny_loaded_p99_ms": percentile(loaded, 0.99) * 1000,
        "tiny_loaded_max_ms": max(loaded) * 1000,
        "tiny_requests": len(loaded),
    }
    if lag_before is not None and lag_after is not None:
        delta = {k: lag_after[k] - lag_before.get(k, 0.0) for k in lag_after}
        out["loop_ticks"] = delta["count"]
        out["loop_pauses_over_20ms"] = delta["count"] - delta["0.02"]
        out["loop_longest_pause_le_ms"] = 1000 * min(
            (float(le) for le in delta if le not in ("count", "+Inf")
             and delta[le] == delta["count"]), default=float("inf"),
        )  # fmt: skip
    return out


def _lag_counts(proxy: Proxy) -> dict[str, float] | None:
    if proxy.admin is None:
        return None
    counts = {}
    for (name, labels), value in proxy.metrics().items():
        if name == "egress_sidecar_event_loop_lag_seconds_bucket":
            counts[dict(labels)["le"]] = value
        elif name == "egress_sidecar_event_loop_lag_seconds_count":
            counts["count"] = value
    return counts


def held_memory(lab: Lab, proxy: Proxy, holds: int, held: Callable[[], float]) -> dict[str, float]:
    """What a held request costs on top of the open connection it arrives on.

    `holds` clients each open one keep-alive connection through the proxy with an allowed
    request (RSS then, per idle connection), then send a request that is held on the
    same connection (RSS again, per held request). Batches of 100, each settled before
    the next: a burst of 1,000 TLS handshakes would measure the storm, not the state.
    """
    tls = Lab.context(proxy.ca_file)

    Tasks = list[asyncio.Task[httpx.Response]]

    async def batched(calls: list[Callable[[], Any]],
                      settled: Callable[[Tasks], Awaitable[bool]]) -> Tasks:  # fmt: skip
        tasks: Tasks = []
        deadline = time.monotonic() + 600
        while len(tasks) < len(calls):
            tasks += [asyncio.create_task(call()) for call in calls[len(tasks) : len(tasks) + 100]]
            while not await settled(tasks):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{len(tasks)} requests did not settle")
                await asyncio.sleep(0.1)
        return tasks

    async def main() -> dict[str, float]:
        async with client(proxy, lab, 32) as http:
            await drive(http, f"{lab.upstream_url}/allow/warm", b"{}", 32, 640)
        clients = [
            httpx.AsyncClient(proxy=f"http://{proxy.address}", verify=tls, trust_env=False,
                              timeout=httpx.Timeout(3600))
            for _ in range(holds)
        ]  # fmt: skip
        try:
            await asyncio.sleep(0.5)
            rss_start = proxy.child.rss()
            opened = await batched(
                [partial(c.post, f"{lab.upstream_url}/allow/open", content=b"{}") for c in clients],
                lambda tasks: asyncio.sleep(0, all(t.done() for t in tasks)),
            )  # fmt: skip
            assert all(t.result().status_code == 200 for t in opened)
            await asyncio.sleep(0.5)
            rss_idle = proxy.child.rss()
            base = await asyncio.to_thread(held)

            async def all_held(tasks: Tasks) -> bool:
                return await asyncio.to_thread(held) - base >= len(tasks)

            hung = await batched(
                [partial(c.post, f"{lab.upstream_url}/hold/{i}", content=b"{}")
                 for i, c in enumerate(clients)],
                all_held,
            )  # fmt: skip
            await asyncio.sleep(1.0)
            rss_held = proxy.child.rss()
            early = [t for t in hung if t.done()]
            for task in hung:
                task.cancel()
            await asyncio.gather(*hung, return_exceptions=True)
        finally:
            await asyncio.gather(*(c.aclose() for c in clients))
        return {
            "held": holds,
            "ended_early": len(early),
            "rss_start_mb": rss_start / 2**20,
            "rss_idle_connections_mb": rss_idle / 2**20,
            "rss_held_mb": rss_held / 2**20,
            "kb_per_idle_connection": (rss_idle - rss_start) / holds / 1024,
            "kb_per_held_request": (rss_held - rss_idle) / holds / 1024,
        }

    return asyncio.run(main())


def rss_over(lab: Lab, proxy: Proxy, path: str, total: int, expected: int) -> dict[str, Any]:
    """RSS every tenth of `total` requests (2 KB, concurrency 32)."""
    body = body_for(2048, False, 3)
    step = max(1, total // 10)
    curl = Curl(lab, proxy)
    samples = []
    errors = done = 0
    while done < total:
        _, bad, _ = curl.run(f"{lab.upstream_url}{path}", body, 32, step, expected)
        done += step
        errors += bad
        samples.append((done, proxy.child.rss() / 2**20))
    warm = samples[0][1]
    return {
        "requests": total,
        "unexpected_answers": errors,
        "rss_mb": [round(mb, 1) for _, mb in samples],
        "after_warmup_mb": warm,
        "final_mb": samples[-1][1],
        "growth_pct": (samples[-1][1] - warm) / warm * 100,
    }


def api_round_trip(lab: Lab, samples: int) -> float:
    """The scan API double's own p50 round trip for one 2 KB scan over keep-alive TLS."""
    payload = {"method": "POST", "url": f"{lab.upstream_url}/allow/x", "headers": {},
               "body": json.loads(body_for(2048, False, 1))}  # fmt: skip

    async def main() -> float:
        async with httpx.AsyncClient(verify=Lab.context(lab.ca_file), trust_env=False) as http:
            times = []
            for _ in range(samples):
                start = time.perf_counter()
                await http.post(f"{lab.scan_api_url}/v1/scan", json=payload)
                times.append(time.perf_counter() - start)
        return statistics.median(times[10:]) * 1000

    return asyncio.run(main())


def held_requests(lab: Lab, holds: int) -> dict[str, Any]:
    """Bare mitmproxy holding requests on a slow upstream vs. the sidecar holding approvals."""
    held: dict[str, Any] = {}
    hold_flags = ("--max-pending-approvals", str(holds + 100), "--approval-timeout", "3600",
                  "--approval-poll-interval", "60")  # fmt: skip
    with proxy_in(lab, "bare") as bare:
        held["bare_slow_upstream"] = held_memory(
            lab, bare, holds, lambda: lab.stats(lab.upstream_url)["held"]
        )
        lab.release(lab.upstream_url)
    with proxy_in(lab, "interven", *hold_flags) as sidecar:
        held["sidecar_approvals"] = held_memory(
            lab, sidecar, holds,
            lambda: sidecar.metric("egress_sidecar_approvals_pending"),
        )  # fmt: skip
    held["approval_kb_over_bare"] = (
        held["sidecar_approvals"]["kb_per_held_request"]
        - held["bare_slow_upstream"]["kb_per_held_request"]
    )
    return held


def leak_check(lab: Lab, total: int) -> dict[str, Any]:
    """RSS over `total` allowed requests, then over `total / 5` against a dead scan API."""
    leak: dict[str, Any] = {}
    with proxy_in(lab, "sidecar") as sidecar:
        leak["local_allow"] = rss_over(lab, sidecar, "/allow/leak", total, 200)
    dead = ("--scan-retries", "0", "--breaker-threshold", "1000")
    dead_api = {"INTERVEN_GATEWAY_URL": "http://127.0.0.1:9"}  # nothing listens there
    with proxy_in(lab, "interven", *dead, env=dead_api) as sidecar:
        leak["dead_scan_api_fail_closed"] = rss_over(lab, sidecar, "/allow/leak", total // 5, 503)
    return leak


# ---------------------------------------------------------------- report


BROKERED_VALUE = "sk-proj-BENCHv4lue9KqZ2mX8pN3rT6wY1bV5cJ7hL0dF4gS2aE9uI3oK6zQ8xW1"


def broker_bindings(lab: Lab) -> tuple[Path, str]:
    """A bindings file sending one bearer key to the lab upstream, and its placeholder."""
    path = lab.tmp / "bindings.yaml"
    doc = {"credentials": [{"name": "bench", "value": {"env": "BENCH_BROKERED"},
                            "shape": "openai", "destinations": [{"url": lab.upstream_url + "/"}],
                            "carry": "bearer"}]}  # fmt: skip
    path.write_text(json.dumps(doc))
    return path, placeholder_for("bench", PRESETS["openai"])


def compare(results: list[Result]) -> dict[str, dict[str, float]]:
    by = {(r.config, r.workload): r for r in results}
    ratios: dict[str, dict[str, float]] = {}
    for r in results:
        direct = by.get(("direct", r.workload))
        bare = by.get(("bare", r.workload))
        if direct and r.config != "direct":
            r.added_ms = {
                "p50": r.p50_ms - direct.p50_ms,
                "p95": r.p95_ms - direct.p95_ms,
                "p99": r.p99_ms - direct.p99_ms,
            }
        if bare and r.config not in ("direct", "bare"):
            ratios.setdefault(r.config, {})[r.workload] = r.throughput / bare.throughput
            ratios[r.config][f"{r.workload}_p50_over_bare_ms"] = r.p50_ms - bare.p50_ms
            if r.cpu_s_per_1000 and bare.cpu_s_per_1000:
                ratios[r.config][f"{r.workload}_cpu"] = r.cpu_s_per_1000 / bare.cpu_s_per_1000
    return ratios


def markdown(report: dict[str, Any]) -> str:
    lines = [f"# proxy_bench — {report['when']} — {report['machine']}", ""]
    lines += ["| config | workload | req/s | p50 ms | p95 ms | p99 ms | added p50/p95/p99 ms "
              "over direct | CPU s / 1000 req | errors |", "|---" * 9 + "|"]  # fmt: skip
    for r in report["results"]:
        added = "/".join(f"{r['added_ms'][k]:.2f}" for k in ("p50", "p95", "p99")) \
            if r["added_ms"] else "-"  # fmt: skip
        cpu = f"{r['cpu_s_per_1000']:.2f}" if r["cpu_s_per_1000"] is not None else "-"
        lines.append(f"| {r['config']} | {r['workload']} | {r['throughput']:.0f} | "
                     f"{r['p50_ms']:.2f} | {r['p95_ms']:.2f} | {r['p99_ms']:.2f} | {added} | "
                     f"{cpu} | {r['errors']} |")  # fmt: skip
    lines += ["", "| config | peak RSS MB |", "|---|---|"]
    lines += [f"| {k} | {v / 2**20:.0f} |" for k, v in report["peak_rss"].items()]
    lines += ["", "Sidecar ÷ bare mitmproxy (throughput ratio; p50 difference; CPU ratio):", ""]
    for config, ratio in report["ratios"].items():
        parts = [f"{k} {v:.2f}" for k, v in ratio.items()]
        lines.append(f"- **{config}**: " + ", ".join(parts))
    for key in ("stalls", "held_requests", "scan_api", "rss_over_requests"):
        if key in report:
            lines += ["", f"**{key}**: `{json.dumps(report[key], default=str)}`"]
    return "\n".join(lines) + "\n"


@contextmanager
def lab_in(tmp: Path) -> Iterator[Lab]:
    lab = Lab(tmp)
    try:
        yield lab
    finally:
        lab.stop()


@contextmanager
def proxy_in(lab: Lab, kind: str, *extra: str, env: dict[str, str] | None = None
             ) -> Iterator[Proxy]:  # fmt: skip
    proxy = Proxy(lab, kind, *extra, env=env)
    try:
        yield proxy
    finally:
        proxy.stop()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.proxy_bench")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply request counts")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved throughput rounds")
    parser.add_argument("--leak-requests", type=int, default=100_000)
    parser.add_argument("--holds", type=int, default=1000)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument("--only", nargs="+", choices=SECTIONS, default=list(SECTIONS),
                        help="run only these sections (default: all)")  # fmt: skip
    args = parser.parse_args()

    def n(count: int) -> int:
        return max(20, int(count * args.scale))

    workloads = [
        Workload("2KB-c1", 2 * 1024, 1, n(800)),
        Workload("2KB-c32", 2 * 1024, 32, n(3000)),
        Workload("64KB-c8", 64 * 1024, 8, n(500)),
        Workload("256KB-c4", 256 * 1024, 4, n(200)),
    ]
    results: list[Result] = []
    peaks: dict[str, int] = {}
    report: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp, lab_in(Path(tmp)) as lab:
        step = _progress()
        if "throughput" in args.only:
            step(
                f"throughput: 5 configurations x {len(workloads)} workloads x {args.rounds} rounds"
            )
            api_before = lab.stats(lab.scan_api_url)
            with (
                proxy_in(lab, "bare") as bare,
                proxy_in(lab, "sidecar") as local_allow,
                proxy_in(lab, "sidecar") as local_deny,
                proxy_in(lab, "interven") as with_api,
            ):
                configs = [
                    Config("direct", None, "/allow/"),
                    Config("bare", bare, "/allow/"),
                    Config("local-allow", local_allow, "/allow/"),
                    Config("local-deny", local_deny, "/deny/"),
                    Config("interven", with_api, "/allow/"),
                ]
                results += run_interleaved(lab, configs, workloads, args.rounds, peaks)
            api_after = lab.stats(lab.scan_api_url)
            report["scan_api"] = {
                "calls": api_after["requests"] - api_before["requests"],
                "tls_connections": api_after["connections"] - api_before["connections"],
                "api_round_trip_p50_ms": api_round_trip(lab, 300),
            }

        if "broker" in args.only:
            step(f"brokered credentials: 3 configurations x 2 workloads x {args.rounds} rounds")
            bindings, placeholder = broker_bindings(lab)
            with (
                proxy_in(lab, "sidecar") as plain,
                proxy_in(lab, "sidecar", "--brokered-credentials", str(bindings),
                         env={"BENCH_BROKERED": BROKERED_VALUE}) as idle,
                proxy_in(lab, "sidecar", "--brokered-credentials", str(bindings),
                         env={"BENCH_BROKERED": BROKERED_VALUE}) as brokered,
            ):  # fmt: skip
                configs = [
                    Config("broker-off", plain, "/allow/"),  # the same sidecar, no bindings
                    Config("broker-idle", idle, "/allow/"),  # configured, nothing to put in
                    Config(
                        "broker-substitute",
                        brokered,
                        "/allow/",
                        (f"Authorization: Bearer {placeholder}",),
                    ),
                ]
                few = [w for w in workloads if w.name in ("2KB-c1", "64KB-c8")]
                results += run_interleaved(lab, configs, few, args.rounds, peaks)
                substituted = brokered.metric(
                    "egress_sidecar_broker_substitutions_total", credential="bench"
                )
                report["broker_substitutions"] = substituted

        if "stalls" in args.only:
            step("event-loop stalls while 256 KB bodies are scanned")
            stalls = {}
            with proxy_in(lab, "bare") as bare:
                stalls["bare"] = stall_check(lab, bare, n(1000))
            with proxy_in(lab, "sidecar") as sidecar:
                stalls["local"] = stall_check(lab, sidecar, n(1000))
            report["stalls"] = stalls

        if "held" in args.only:
            step(f"memory with {args.holds} held requests")
            report["held_requests"] = held_requests(lab, args.holds)

        if "leak" in args.only:
            step(f"RSS over {args.leak_requests} requests")
            report["rss_over_requests"] = leak_check(lab, args.leak_requests)
        step("done")

    report["ratios"] = compare(results)
    report["results"] = [asdict(r) for r in results]
    report["peak_rss"] = peaks
    report["when"] = time.strftime("%Y-%m-%d %H:%M")
    report["machine"] = (
        f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    )
    args.out.mkdir(parents=True, exist_ok=True)
    # A partial run never overwrites the full report.
    stem = "proxy_bench" + "".join(f"-{s}" for s in args.only if set(args.only) != set(SECTIONS))
    (args.out / f"{stem}.json").write_text(json.dumps(report, indent=2, default=str))
    text = markdown(report)
    (args.out / f"{stem}.md").write_text(text)
    print(text)


def _progress() -> Callable[[str], None]:
    start = time.monotonic()

    def step(what: str) -> None:
        print(f"[{time.monotonic() - start:6.1f}s] {what}", file=sys.stderr, flush=True)

    return step


if __name__ == "__main__":
    main()
