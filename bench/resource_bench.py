"""How the sidecar holds up against resource-exhaustion attacks (issue 14), on loopback.

    python -m bench.resource_bench [--scale 1.0] [--only quiet uploads-seq ...]
                                   [--out bench/results] [--sidecar-src DIR]

Scenarios, each against a fresh `egress-sidecar run --backend local` process (its own
confdir, ephemeral ports) and a local HTTPS/WSS upstream in another process:

- `quiet`: nothing but the probe (below), for comparison.
- `uploads-seq`: ten sequential 200 MiB chunked uploads (curl, `Transfer-Encoding:
  chunked`, zeros from `head -c`), each one's status and bytes the client got out.
- `uploads-par`: three such uploads at once.
- `brotli-bombs`: 40 POSTs whose body is a brotli bomb (about 500 bytes that expand to
  300 MiB, `Content-Encoding: br`), then 40 GETs of an upstream answer that is the same
  bomb, read raw (never decoded by the client).
- `ws-many`: one WebSocket through the proxy sending 1,000 binary messages of 1 MiB; the
  upstream acknowledges each one. Acks are awaited while they keep coming or the sidecar
  keeps working; a message it drops leaves no trace on the connection.
- `ws-huge`: one WebSocket message of 128 MiB.
- `idle-conns`: 20,000 TCP connections to the proxy port that send nothing (capped by
  RLIMIT_NOFILE's hard limit, less a margin), then the time a new client takes for one
  small HTTPS request, and the sidecar's log lines meanwhile.

For every scenario: the sidecar's RSS after warm-up, its peak (sampled every 20 ms, and
the kernel's high-water mark since the attack began where /proc allows resetting it),
its RSS once the attack is over and it had up to 10 s to give memory back, its CPU time,
whether it is still alive, the lines it logged (and its decision log, counted by event,
decision and reasons), and a probe: another process posting a 200-byte JSON body through
the proxy in a loop during the attack (count, errors, p50/p99/max latency). `--scale`
shrinks sizes and counts (0.1: 20 MiB uploads, 100 messages, 2,000 connections). Every
scenario has a time budget; one that runs out is reported as `timeout` with what it did
until then. Results go to `resource_bench.json` and `resource_bench.md` in `--out` (a
partial or scaled run adds a suffix, so it never overwrites the full report).
`--sidecar-src` runs the sidecar from another source tree, e.g. the last commit's
(`git archive HEAD | tar -x -C /tmp/before`), to compare before and after a change.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import platform
import re
import resource
import selectors
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from functools import partial
from multiprocessing.connection import Connection
from multiprocessing.synchronize import Event as EventType
from pathlib import Path
from typing import Any

import brotli
import httpx
import psutil  # type: ignore[import-untyped]
import tornado.httpserver
import tornado.netutil
import tornado.web
import tornado.websocket
import trustme
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed
from websockets.frames import Close
from websockets.protocol import State

from bench.engine_bench import percentile
from bench.proxy_bench import BIN, ROOT, Child, Lab

MiB = 2**20
SCENARIOS = (
    "quiet", "uploads-seq", "uploads-par", "brotli-bombs", "ws-many", "ws-huge", "idle-conns",
)  # fmt: skip
# Seconds each scenario's attack may take (the full run stays around ten minutes).
BUDGET = {"quiet": 60, "uploads-seq": 120, "uploads-par": 60, "brotli-bombs": 120,
          "ws-many": 120, "ws-huge": 150, "idle-conns": 180}  # fmt: skip
BOMB_DECODED = 300 * MiB
PROBE_TIMEOUT = 10.0  # seconds one probe request may take
PROBE_PAUSE = 0.02  # seconds between probe requests
# Once all is sent, a WebSocket that got no ack for ACK_WAIT_S while the sidecar used less
# than BUSY_SHARE of a core is given up on (the message was dropped, not still in work).
ACK_WAIT_S = 5.0
BUSY_SHARE = 0.3
SETTLE_S = 10.0  # how long RSS may take to come down after an attack
FD_MARGIN = 1000  # file descriptors kept free below the hard limit
PROBE_BODY = json.dumps(
    {"model": "gpt-4o", "messages": [{"role": "user", "content": "summarise the build log " * 6}]}
).encode()


# ---------------------------------------------------------------- the upstream


@tornado.web.stream_request_body
class SinkHandler(tornado.web.RequestHandler):
    """Counts a request body as it arrives (never holds it) and answers small JSON."""

    received = 0

    def data_received(self, chunk: bytes) -> None:
        self.received += len(chunk)

    def _answer(self) -> None:
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"ok": True, "received": self.received}))

    get = post = put = _answer


class BombHandler(tornado.web.RequestHandler):
    """A JSON answer that is a brotli bomb."""

    def initialize(self, bomb: bytes) -> None:
        self.bomb = bomb

    def get(self) -> None:
        self.set_header("Content-Type", "application/json")
        self.set_header("Content-Encoding", "br")
        self.finish(self.bomb)


class AckSocket(tornado.websocket.WebSocketHandler):
    """Acknowledges every message with `ack N LENGTH`."""

    count = 0

    def check_origin(self, origin: str) -> bool:
        return True

    async def on_message(self, message: str | bytes) -> None:
        self.count += 1
        with contextlib.suppress(tornado.websocket.WebSocketClosedError):
            await self.write_message(f"ack {self.count} {len(message)}")


async def serve_upstream(cert: str, key: str, bomb: bytes) -> None:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    app = tornado.web.Application(
        [
            (r"/ws", AckSocket),
            (r"/bomb", BombHandler, {"bomb": bomb}),
            (r"/.*", SinkHandler),
        ],
        websocket_max_message_size=1024 * MiB,
    )
    server = tornado.httpserver.HTTPServer(
        app, ssl_options=context, max_body_size=4096 * MiB, idle_connection_timeout=600
    )
    sockets = tornado.netutil.bind_sockets(0, "127.0.0.1", backlog=4096)
    server.add_sockets(sockets)
    print(f"ready {sockets[0].getsockname()[1]}", flush=True)
    await asyncio.Event().wait()


@dataclass
class Rig:
    """Certificates, the bomb and the upstream, shared by every scenario."""

    tmp: Path
    scale: float
    bomb: bytes
    upstream_ca: Path
    upstream: Child
    upstream_url: str
    sidecar_src: Path | None = None

    @classmethod
    def start(cls, tmp: Path, scale: float, sidecar_src: Path | None = None) -> Rig:
        ca = trustme.CA()
        cert = ca.issue_cert("127.0.0.1", "localhost")
        ca_file = tmp / "upstream-ca.pem"
        ca.cert_pem.write_to_path(str(ca_file))
        cert_file, key_file = tmp / "upstream.pem", tmp / "upstream.key"
        cert.cert_chain_pems[0].write_to_path(str(cert_file))
        cert.private_key_pem.write_to_path(str(key_file))
        # Quality 5 gives the same ~500 bytes as 11, in a fraction of the time.
        bomb = brotli.compress(b"\0" * BOMB_DECODED, quality=5)
        bomb_file = tmp / "bomb.br"
        bomb_file.write_bytes(bomb)
        upstream = Child(
            [sys.executable, "-m", "bench.resource_bench", "--serve-upstream",
             str(cert_file), str(key_file), str(bomb_file)],
            r"^ready",
        )  # fmt: skip
        url = "https://127.0.0.1:" + upstream.find(r"ready (\d+)")
        return cls(tmp, scale, bomb, ca_file, upstream, url, sidecar_src)

    def n(self, count: int, least: int = 1) -> int:
        return max(least, round(count * self.scale))

    def ensure_upstream(self) -> None:
        """A scenario may have killed the upstream (it should not); start it again."""
        if self.upstream.proc.poll() is not None:
            fresh = Rig.start(self.tmp, self.scale)
            self.upstream, self.upstream_url, self.upstream_ca = (
                fresh.upstream, fresh.upstream_url, fresh.upstream_ca,
            )  # fmt: skip

    def stop(self) -> None:
        self.upstream.stop()


# ---------------------------------------------------------------- the sidecar


class Sidecar:
    """`egress-sidecar run` as its own process, stdout and stderr captured to files."""

    def __init__(self, rig: Rig, name: str) -> None:
        """Runs this checkout's sidecar, or the one in `rig.sidecar_src` (a source tree,
        e.g. `git archive` of an older commit, put first on PYTHONPATH)."""
        confdir = Path(tempfile.mkdtemp(dir=rig.tmp, prefix=f"sidecar-{name}-"))
        self.ca_file = confdir / "mitmproxy-ca-cert.pem"
        self.out_file, self.err_file = confdir / "stdout.log", confdir / "stderr.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SIDECAR_", "INTERVEN_"))}
        env = {k: v for k, v in env.items() if "proxy" not in k.lower()}
        if rig.sidecar_src is not None:
            env["PYTHONPATH"] = str(rig.sidecar_src)
        args = [str(BIN / "egress-sidecar"), "run", "--listen", "127.0.0.1:0",
                "--admin", "127.0.0.1:0", "--confdir", str(confdir), "--backend", "local",
                "--upstream-ca", str(rig.upstream_ca),
                # The upstream is on loopback, which the default policy denies as SSRF.
                "--internal-hosts", "127.0.0.1"]  # fmt: skip
        with self.out_file.open("wb") as out, self.err_file.open("wb") as err:
            self.proc = subprocess.Popen(
                args, stdout=out, stderr=err, env=env, cwd=rig.sidecar_src or ROOT
            )
        deadline = time.monotonic() + 60
        while "agents:" not in (banner := self.err_file.read_text(errors="replace")):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the sidecar did not start: {banner[-2000:]}")
            time.sleep(0.05)
        found = re.search(r"listening on (\S+)", banner)
        assert found is not None
        self.address = found.group(1)
        host, port = self.address.rsplit(":", 1)
        self.host_port = (host, int(port))
        self.ps = psutil.Process(self.proc.pid)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def cpu(self) -> float:
        """CPU seconds used so far (user + system); 0 once the process is gone."""
        try:
            times = self.ps.cpu_times()
        except psutil.Error:
            return 0.0
        return float(times.user + times.system)

    def rss(self) -> int | None:
        try:
            return int(self.ps.memory_info().rss)
        except psutil.Error:
            return None

    def reset_hwm(self) -> bool:
        """Reset VmHWM (peak RSS) to the current RSS; False where /proc does not allow it."""
        try:
            Path(f"/proc/{self.proc.pid}/clear_refs").write_text("5")
        except OSError:
            return False
        return True

    def hwm(self) -> int | None:
        try:
            for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
        except OSError:
            return None
        return None

    def log_lines(self) -> tuple[int, int]:
        """Lines written so far on (stdout, stderr)."""
        return (
            self.out_file.read_bytes().count(b"\n"),
            self.err_file.read_bytes().count(b"\n"),
        )

    def decisions(self, since: int) -> dict[str, int]:
        """The decision log (JSON lines on stdout) from byte `since`, counted by event,
        decision and reasons: what the sidecar did with the attack (the probe's own
        requests count as `decision ALLOW`)."""
        counts: Counter[str] = Counter()
        with self.out_file.open("rb") as out:
            out.seek(since)
            for line in out:
                try:
                    doc = json.loads(line)
                except ValueError:
                    counts["(not JSON)"] += 1
                    continue
                reasons = ",".join(doc.get("reasons") or [])
                key = f"{doc.get('event')} {doc.get('decision') or ''} {reasons}"
                counts[" ".join(key.split())] += 1
        return dict(counts.most_common(12))

    def tail(self, lines: int = 5) -> list[str]:
        return self.err_file.read_text(errors="replace").splitlines()[-lines:]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # SIGTERM would drain for 20 s
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.proc.wait()


class RssSampler(threading.Thread):
    """The sidecar's RSS every 20 ms: the peak, and one sample a second for the record."""

    def __init__(self, sidecar: Sidecar, interval: float = 0.02) -> None:
        super().__init__(daemon=True)
        self.sidecar = sidecar
        self.interval = interval
        self.peak = 0
        self.timeline: list[tuple[float, float]] = []  # (s since start, MiB)
        self._halt = threading.Event()

    def run(self) -> None:
        start = next_mark = time.monotonic()
        while not self._halt.is_set():
            rss = self.sidecar.rss()
            if rss is None:
                return
            self.peak = max(self.peak, rss)
            now = time.monotonic()
            if now >= next_mark:
                self.timeline.append((round(now - start, 1), round(rss / MiB, 1)))
                next_mark += 1.0
            self._halt.wait(self.interval)

    def stop(self) -> None:
        self._halt.set()
        self.join()


# ---------------------------------------------------------------- the probe


def _probe(address: str, ca_file: str, url: str, stop: EventType, ready: EventType,
           results: Connection) -> None:  # fmt: skip
    """Small benign POSTs through the proxy until `stop`; each (latency s, ok, what)
    is sent back at once, so nothing is lost if this process has to be killed."""
    verify = ssl.create_default_context(cafile=ca_file)
    headers = {"Content-Type": "application/json"}
    with httpx.Client(proxy=f"http://{address}", verify=verify, trust_env=False,
                      timeout=httpx.Timeout(PROBE_TIMEOUT)) as http:  # fmt: skip
        while not stop.is_set():
            start = time.perf_counter()
            try:
                status = http.post(url, content=PROBE_BODY, headers=headers).status_code
                ok, what = status == 200, str(status)
            except httpx.HTTPError as e:
                ok, what = False, type(e).__name__
            results.send((time.perf_counter() - start, ok, what))
            ready.set()
            time.sleep(PROBE_PAUSE)


class Probe:
    """The small-request probe, in its own process (so the attacking client's own CPU use
    in this process does not show up as proxy latency)."""

    def __init__(self, sidecar: Sidecar, url: str) -> None:
        mp = multiprocessing.get_context("spawn")
        self._stop = mp.Event()
        ready = mp.Event()
        self._results, sender = mp.Pipe(duplex=False)
        self._proc = mp.Process(
            target=_probe,
            args=(sidecar.address, str(sidecar.ca_file), f"{url}/probe", self._stop, ready,
                  sender),
            daemon=True,
        )  # fmt: skip
        self._proc.start()
        sender.close()
        if not ready.wait(60):
            self._proc.kill()
            raise RuntimeError("the probe did not get a first answer within 60 s")
        self._drain()  # the first answer is warm-up, not part of the figures
        self.samples: list[tuple[float, bool, str]] = []

    def _drain(self) -> list[tuple[float, bool, str]]:
        out = []
        with contextlib.suppress(EOFError, OSError):
            while self._results.poll():
                out.append(self._results.recv())
        return out

    def stop(self) -> list[tuple[float, bool, str]]:
        self._stop.set()
        self._proc.join(PROBE_TIMEOUT + 5)
        if self._proc.is_alive():
            self._proc.kill()
            self._proc.join()
        self.samples = self._drain()
        return self.samples


# ---------------------------------------------------------------- attacks


@dataclass
class Attack:
    """What a scenario needs: the rig, the sidecar, and where it writes what happened
    (filled in as it goes, so a timeout keeps the partial record)."""

    rig: Rig
    sidecar: Sidecar
    budget: float
    detail: dict[str, Any] = field(default_factory=dict)

    def client(self, timeout: float = 60, connections: int = 8) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            proxy=f"http://{self.sidecar.address}",
            verify=Lab.context(self.sidecar.ca_file),
            limits=httpx.Limits(max_connections=connections),
            timeout=httpx.Timeout(timeout),
            trust_env=False,
        )


def _curl_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}


async def upload(a: Attack, size: int, max_time: float, record: dict[str, Any]) -> None:
    """One chunked upload of `size` zero bytes (curl reading `head -c` through a pipe)."""
    record.update(status="not sent", sent_bytes=0, seconds=None)
    read_end, write_end = os.pipe()
    try:
        head = await asyncio.create_subprocess_exec(
            "head", "-c", str(size), "/dev/zero", stdout=write_end
        )
        curl = await asyncio.create_subprocess_exec(
            "curl", "--http1.1", "--silent", "--show-error", "--output", "/dev/null",
            "--request", "POST", "--upload-file", "-",
            "-H", "Transfer-Encoding: chunked", "-H", "Expect:",
            "-H", "Content-Type: application/octet-stream",
            "--proxy", f"http://{a.sidecar.address}", "--cacert", str(a.sidecar.ca_file),
            "--max-time", f"{max(1.0, max_time):.1f}",
            "--write-out", "%{http_code} %{size_upload} %{time_total}",
            f"{a.rig.upstream_url}/upload",
            stdin=read_end, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            env=_curl_env(),
        )  # fmt: skip
    finally:
        os.close(read_end)
        os.close(write_end)
    try:
        out, err = await curl.communicate()
    finally:
        for proc in (curl, head):
            # os.kill, not proc.kill(): on 3.11 the latter may reap the child under
            # asyncio's child watcher, which then reports it as unknown.
            with contextlib.suppress(ProcessLookupError):
                if proc.returncode is None:
                    os.kill(proc.pid, signal.SIGKILL)
            await proc.wait()
    code, sent, seconds = out.decode().split()
    record.update(
        status=int(code) if code != "000" else f"no answer (curl exit {curl.returncode})",
        sent_bytes=int(float(sent)),
        seconds=round(float(seconds), 2),
    )
    if curl.returncode:
        record["curl_error"] = err.decode(errors="replace").strip()[-200:]


def _upload_summary(records: list[dict[str, Any]]) -> str:
    statuses = Counter(str(r.get("status", "not sent")) for r in records)
    sent = [r["sent_bytes"] / MiB for r in records if r.get("status", "not sent") != "not sent"]
    sent_text = f"; sent {min(sent):.1f}-{max(sent):.1f} MiB each" if sent else ""
    return "statuses " + ", ".join(f"{s}x{n}" for s, n in statuses.items()) + sent_text


async def uploads_seq(a: Attack) -> None:
    size, count = a.rig.n(200 * MiB), 10
    records: list[dict[str, Any]] = []
    a.detail.update(upload_mib=round(size / MiB, 1), uploads=records)
    deadline = time.monotonic() + a.budget
    for _ in range(count):
        records.append({})
        a.detail["summary"] = _upload_summary(records)
        await upload(a, size, deadline - time.monotonic() - 1, records[-1])
        a.detail["summary"] = _upload_summary(records)


async def uploads_par(a: Attack) -> None:
    size, count = a.rig.n(200 * MiB), 3
    records: list[dict[str, Any]] = [{} for _ in range(count)]
    a.detail.update(upload_mib=round(size / MiB, 1), uploads=records)
    try:
        await asyncio.gather(*(upload(a, size, a.budget - 1, r) for r in records))
    finally:
        a.detail["summary"] = _upload_summary(records)


async def brotli_bombs(a: Attack) -> None:
    count, concurrency = a.rig.n(40, least=4), 4
    requests: Counter[str] = Counter()
    responses: Counter[str] = Counter()
    raw_bytes: list[int] = []
    a.detail.update(bomb_bytes=len(a.rig.bomb), decoded_mib=BOMB_DECODED // MiB,
                    count=count, concurrency=concurrency, request_statuses=requests,
                    response_statuses=responses)  # fmt: skip
    gate = asyncio.Semaphore(concurrency)

    def summary() -> None:
        got = f" ({min(raw_bytes)}-{max(raw_bytes)} B raw)" if raw_bytes else ""
        a.detail["summary"] = (
            "bomb requests " + ", ".join(f"{s}x{n}" for s, n in requests.items())
            + "; bomb responses " + ", ".join(f"{s}x{n}" for s, n in responses.items()) + got
        )  # fmt: skip

    async def post(http: httpx.AsyncClient) -> None:
        async with gate:
            try:
                response = await http.post(
                    f"{a.rig.upstream_url}/bomb-sink", content=a.rig.bomb,
                    headers={"Content-Type": "application/json", "Content-Encoding": "br"},
                )  # fmt: skip
                requests[str(response.status_code)] += 1
            except httpx.HTTPError as e:
                requests[type(e).__name__] += 1
            summary()

    async def get(http: httpx.AsyncClient) -> None:
        async with gate:
            try:
                async with http.stream(
                    "GET", f"{a.rig.upstream_url}/bomb", headers={"Accept-Encoding": "br"}
                ) as response:
                    received = 0
                    async for chunk in response.aiter_raw():
                        received += len(chunk)
                responses[str(response.status_code)] += 1
                raw_bytes.append(received)
            except httpx.HTTPError as e:
                responses[type(e).__name__] += 1
            summary()

    async with a.client(connections=concurrency) as http:
        await asyncio.gather(*(post(http) for _ in range(count)))
        await asyncio.gather(*(get(http) for _ in range(count)))


def _benign(size: int) -> bytes:
    text = b"the build failed because the cache key changed after we bumped the lockfile. "
    return (text * (size // len(text) + 1))[:size]


async def websocket_send(a: Attack, count: int, size: int) -> None:
    """`count` binary messages of `size` bytes on one WebSocket; the upstream acks each.
    Once everything is sent, acks are awaited for as long as they keep coming or the
    sidecar keeps working (a message it drops is never acked, and the connection may well
    stay open)."""
    d = a.detail
    d.update(messages=count, message_mib=round(size / MiB, 1), sent=0, acked=0,
             last_send_complete=None, closed_by=None, close=None, error=None)  # fmt: skip
    payload = _benign(size)
    url = a.rig.upstream_url.replace("https://", "wss://") + "/ws"

    def summary() -> None:
        close = f"; close {d['close']} by {d['closed_by']}" if d["close"] else ""
        error = f"; {d['error']}" if d["error"] else ""
        d["summary"] = f"sent {d['sent']}/{count}, acked {d['acked']}{close}{error}"
        if d["closed_by"] == "nobody":
            d["summary"] += "; no more acks, sidecar idle, connection still open"

    def closing(frame: Close | None, closed_by: str) -> None:
        d["closed_by"] = closed_by if frame else "connection lost"
        d["close"] = f"{frame.code} {frame.reason!r}" if frame else "no close frame"

    d["summary"] = "connecting"
    start = time.perf_counter()
    try:
        async with ws_connect(
            url, proxy=f"http://{a.sidecar.address}", ssl=Lab.context(a.sidecar.ca_file),
            ping_interval=None, open_timeout=30, close_timeout=5, max_size=MiB,
        ) as ws:  # fmt: skip

            async def receive() -> None:
                async for _ in ws:
                    d["acked"] += 1
                    if d["acked"] >= count:
                        return

            receiver = asyncio.create_task(receive())
            try:
                for _ in range(count):
                    d["last_send_complete"] = False
                    await ws.send(payload)
                    d["last_send_complete"] = True
                    d["sent"] += 1
                    summary()
                    if receiver.done():
                        break
                d["all_sent_s"] = round(time.perf_counter() - start, 2)
                while not receiver.done():
                    acked, cpu = d["acked"], a.sidecar.cpu()
                    await asyncio.wait({receiver}, timeout=ACK_WAIT_S)
                    busy = a.sidecar.cpu() - cpu > ACK_WAIT_S * BUSY_SHARE
                    if d["acked"] == acked and not busy:
                        break
            finally:
                receiver.cancel()
                await asyncio.gather(receiver, return_exceptions=True)
            if ws.state is not State.OPEN:  # closed before we were done
                closing(ws.protocol.close_rcvd, "proxy/upstream")
            else:
                d["closed_by"] = "client (done)" if d["acked"] >= count else "nobody"
    except ConnectionClosed as e:
        closing(e.rcvd, "proxy/upstream")
    except Exception as e:  # a refused upgrade, a TLS error: record it, never fail
        d["error"] = f"{type(e).__name__}: {e}"[:300]
    finally:
        d["seconds"] = round(time.perf_counter() - start, 2)
        d["acked_mib_per_s"] = round(d["acked"] * size / MiB / max(d["seconds"], 1e-9), 1)
        summary()


async def ws_many(a: Attack) -> None:
    await websocket_send(a, a.rig.n(1000, least=10), MiB)


async def ws_huge(a: Attack) -> None:
    await websocket_send(a, 1, a.rig.n(128 * MiB))


class IdleOpener:
    """Opens TCP connections that never send a byte, from several threads (one thread
    would wait out every dropped SYN in turn once the proxy's accept queue is full)."""

    def __init__(self, address: tuple[str, int], target: int, until: float) -> None:
        self.address, self.target, self.until = address, target, until
        self.conns: list[socket.socket] = []
        self.failures: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._claimed = 0
        self._hard_failures = 0
        self._halt = threading.Event()
        self._threads = [threading.Thread(target=self._open, daemon=True) for _ in range(16)]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def running(self) -> bool:
        return any(thread.is_alive() for thread in self._threads)

    def _open(self) -> None:
        while not self._halt.is_set() and time.monotonic() < self.until:
            with self._lock:
                if self._claimed >= self.target or self._hard_failures >= 200:
                    return
                self._claimed += 1
            try:
                self.conns.append(socket.create_connection(self.address, timeout=5))
            except OSError as e:  # a timeout (SYNs dropped) is tried again; others count
                with self._lock:
                    self._claimed -= 1
                    self.failures[type(e).__name__] += 1
                    self._hard_failures += not isinstance(e, TimeoutError)

    def close(self) -> None:
        self._halt.set()
        for thread in self._threads:
            thread.join()
        for conn in self.conns:
            conn.close()


def _closed_by_peer(conns: list[socket.socket]) -> tuple[int, int]:
    """How many idle connections the proxy closed, and how many it sent bytes on."""
    closed = spoke = 0
    with selectors.DefaultSelector() as sel:
        for s in conns:
            sel.register(s, selectors.EVENT_READ)
        for key, _ in sel.select(timeout=0):
            conn = key.fileobj
            if not isinstance(conn, socket.socket):
                continue
            try:
                data = conn.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
            except OSError:
                data = b""
            closed += data == b""
            spoke += data != b""
    return closed, spoke


async def idle_conns(a: Attack) -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = a.rig.n(20_000)
    target = min(wanted, hard - FD_MARGIN)
    d = a.detail
    opener = IdleOpener(a.sidecar.host_port, target, time.monotonic() + a.budget * 0.7)
    conns = opener.conns
    d.update(wanted=wanted, fd_hard_limit=hard, target=target, opened=0,
             failures=opener.failures)  # fmt: skip
    d["summary"] = "opening"
    start = time.perf_counter()
    opener.start()
    try:
        while opener.running():
            await asyncio.sleep(0.1)
            d["opened"] = len(conns)
        d["open_seconds"] = round(time.perf_counter() - start, 2)
        d["summary"] = f"opened {len(conns)}/{target} in {d['open_seconds']} s"
        start = time.perf_counter()
        try:
            async with a.client(timeout=30, connections=1) as http:
                status = (await http.post(f"{a.rig.upstream_url}/new-client",
                                          content=PROBE_BODY)).status_code  # fmt: skip
            d["new_client"] = str(status)
        except httpx.HTTPError as e:
            d["new_client"] = type(e).__name__
        d["new_client_s"] = round(time.perf_counter() - start, 3)
        d["summary"] += f"; new client {d['new_client']} in {d['new_client_s']} s"
        await asyncio.sleep(5)  # hold them a little longer, with the probe running
        d["closed_by_proxy"], d["proxy_wrote_on"] = _closed_by_peer(conns)
        d["summary"] += f"; proxy closed {d['closed_by_proxy']}"
    finally:
        await asyncio.to_thread(opener.close)


async def quiet(a: Attack) -> None:
    seconds = max(5.0, 20 * a.rig.scale)
    a.detail.update(seconds=seconds, summary="probe only")
    await asyncio.sleep(seconds)


ATTACKS: dict[str, Callable[[Attack], Awaitable[None]]] = {
    "quiet": quiet,
    "uploads-seq": uploads_seq,
    "uploads-par": uploads_par,
    "brotli-bombs": brotli_bombs,
    "ws-many": ws_many,
    "ws-huge": ws_huge,
    "idle-conns": idle_conns,
}


# ---------------------------------------------------------------- one scenario


@dataclass
class Scenario:
    name: str
    outcome: str  # ok, timeout, or error: ...
    attack_s: float
    cpu_s: float  # the sidecar's CPU time (user + system) during the attack
    budget_s: float
    summary: str
    alive: bool
    exit_code: int | None
    baseline_rss_mb: float
    peak_rss_mb: float
    peak_hwm_mb: float | None  # the kernel's high-water mark since the attack began
    after_rss_mb: float | None
    after_ratio: float | None
    settle_s: float
    probe_requests: int
    probe_errors: int
    probe_p50_ms: float | None
    probe_p99_ms: float | None
    probe_max_ms: float | None
    probe_failures: dict[str, int]
    stdout_lines: int
    stderr_lines: int
    decisions: dict[str, int]
    detail: dict[str, Any]
    rss_timeline: list[tuple[float, float]]
    stderr_tail: list[str] = field(default_factory=list)


def warm_up(rig: Rig, sidecar: Sidecar) -> None:
    with httpx.Client(proxy=f"http://{sidecar.address}", verify=Lab.context(sidecar.ca_file),
                      trust_env=False, timeout=30) as http:  # fmt: skip
        for _ in range(50):
            http.post(f"{rig.upstream_url}/warm", content=PROBE_BODY)


def settle(sidecar: Sidecar, baseline: int) -> tuple[int | None, float]:
    """RSS once it came back near the baseline, or after SETTLE_S; and how long it took."""
    start = time.monotonic()
    rss = sidecar.rss()
    while rss is not None and rss > baseline * 1.2 and time.monotonic() - start < SETTLE_S:
        time.sleep(0.25)
        rss = sidecar.rss()
    return rss, time.monotonic() - start


def run_scenario(rig: Rig, name: str) -> Scenario:
    rig.ensure_upstream()
    sidecar = Sidecar(rig, name)
    try:
        warm_up(rig, sidecar)
        time.sleep(1)
        baseline = sidecar.rss() or 0
        out0, err0 = sidecar.log_lines()
        out_offset = sidecar.out_file.stat().st_size
        probe = Probe(sidecar, rig.upstream_url)
        sampler = RssSampler(sidecar)
        hwm_reset = sidecar.reset_hwm()
        sampler.start()
        attack = Attack(rig, sidecar, BUDGET[name])
        cpu0 = sidecar.cpu()
        start = time.perf_counter()
        try:
            asyncio.run(asyncio.wait_for(ATTACKS[name](attack), attack.budget))
            outcome = "ok"
        except TimeoutError:
            outcome = "timeout"
        except Exception as e:  # never fail on a figure: say what went wrong
            outcome = f"error: {type(e).__name__}: {e}"[:300]
        attack_s = time.perf_counter() - start
        cpu_s = sidecar.cpu() - cpu0
        samples = probe.stop()
        after, settle_s = settle(sidecar, baseline)
        sampler.stop()
        hwm = sidecar.hwm() if hwm_reset else None
        out1, err1 = sidecar.log_lines()
        ms = [s[0] * 1000 for s in samples]
        failures = Counter(what for _, ok, what in samples if not ok)
        alive = sidecar.alive()
        return Scenario(
            name=name,
            outcome=outcome,
            attack_s=round(attack_s, 1),
            cpu_s=round(cpu_s, 1),
            budget_s=attack.budget,
            summary=str(attack.detail.pop("summary", "")),
            alive=alive,
            exit_code=sidecar.proc.returncode,
            baseline_rss_mb=round(baseline / MiB, 1),
            peak_rss_mb=round(max(sampler.peak, baseline) / MiB, 1),
            peak_hwm_mb=round(hwm / MiB, 1) if hwm is not None else None,
            after_rss_mb=round(after / MiB, 1) if after is not None else None,
            after_ratio=round(after / baseline, 2) if after is not None and baseline else None,
            settle_s=round(settle_s, 1),
            probe_requests=len(samples),
            probe_errors=sum(failures.values()),
            probe_p50_ms=round(percentile(ms, 0.5), 1) if ms else None,
            probe_p99_ms=round(percentile(ms, 0.99), 1) if ms else None,
            probe_max_ms=round(max(ms), 1) if ms else None,
            probe_failures=dict(failures),
            stdout_lines=out1 - out0,
            decisions=sidecar.decisions(out_offset),
            stderr_lines=err1 - err0,
            detail=json.loads(json.dumps(attack.detail, default=str)),
            rss_timeline=sampler.timeline,
            stderr_tail=[] if alive else sidecar.tail(),
        )
    finally:
        sidecar.stop()


# ---------------------------------------------------------------- report


def _mb(value: float | None) -> str:
    return f"{value:.0f}" if value is not None else "-"


def markdown(report: dict[str, Any]) -> str:
    lines = [f"# resource_bench — {report['when']} — {report['machine']} — "
             f"scale {report['scale']}", "", f"Sidecar: `{report['sidecar']}`.", ""]  # fmt: skip
    lines += [
        "| scenario | outcome | attack s | sidecar CPU s | alive | RSS base MB | peak MB (HWM) "
        "| after MB (x base) | probe n / err | probe p50 / p99 / max ms | log lines out / err "
        "| what happened |",
        "|---" * 12 + "|",
    ]
    for s in report["scenarios"]:
        alive = "yes" if s["alive"] else f"**no** (exit {s['exit_code']})"
        ratio = f" ({s['after_ratio']:.2f}x)" if s["after_ratio"] is not None else ""
        probe = "/".join(_mb(s[k]) if k != "probe_p50_ms" else
                         (f"{s[k]:.1f}" if s[k] is not None else "-")
                         for k in ("probe_p50_ms", "probe_p99_ms", "probe_max_ms"))  # fmt: skip
        lines.append(
            f"| {s['name']} | {s['outcome']} | {s['attack_s']:.1f} / {s['budget_s']:.0f} | "
            f"{s['cpu_s']:.1f} | "
            f"{alive} | {_mb(s['baseline_rss_mb'])} | {_mb(s['peak_rss_mb'])} "
            f"({_mb(s['peak_hwm_mb'])}) | {_mb(s['after_rss_mb'])}{ratio} | "
            f"{s['probe_requests']} / {s['probe_errors']} | {probe} | "
            f"{s['stdout_lines']} / {s['stderr_lines']} | {s['summary']} |"
        )
    lines += ["", "Attack s: time taken / budget. Sidecar CPU: user + system seconds during "
              "the attack. Peak: sampled every 20 ms; HWM: the kernel's high-water mark since "
              "the attack began. After: RSS once back within 1.2x the baseline, or after "
              f"{SETTLE_S:.0f} s. Log lines: stdout (decision log) / stderr.", ""]  # fmt: skip
    for s in report["scenarios"]:
        extra: dict[str, Any] = {"decision_log": s["decisions"]}
        if s["probe_failures"]:
            extra["probe_failures"] = s["probe_failures"]
        if s["stderr_tail"]:
            extra["stderr_tail"] = s["stderr_tail"]
        lines.append(f"- **{s['name']}**: `{json.dumps(s['detail'] | extra)}`")
    return "\n".join(lines) + "\n"


def describe(src: Path | None) -> str:
    """Which sidecar was measured: a source tree, or this checkout's commit and whether
    it had uncommitted changes."""
    if src is not None:
        return str(src)
    try:
        git = partial(subprocess.run, cwd=ROOT, capture_output=True, text=True, check=True)
        head = git(["git", "rev-parse", "--short", "HEAD"]).stdout.strip()
        dirty = git(["git", "status", "--porcelain", "--untracked-files=no"]).stdout
    except (OSError, subprocess.CalledProcessError):
        return str(ROOT)
    return f"{ROOT} at {head}" + (" with uncommitted changes" if dirty.strip() else "")


def raise_fd_limit() -> int:
    """Soft RLIMIT_NOFILE up to the hard limit (inherited by the sidecars we start)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.resource_bench")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply sizes and counts")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument("--only", nargs="+", choices=SCENARIOS, default=list(SCENARIOS),
                        help="run only these scenarios (default: all)")  # fmt: skip
    parser.add_argument("--sidecar-src", type=Path, default=None,
                        help="run the sidecar from this source tree (e.g. `git archive` of "
                        "the commit to compare against); default: this checkout")  # fmt: skip
    parser.add_argument("--serve-upstream", nargs=3, metavar=("CERT", "KEY", "BOMB"),
                        help=argparse.SUPPRESS)  # fmt: skip
    args = parser.parse_args()
    if args.serve_upstream:
        cert, key, bomb = args.serve_upstream
        asyncio.run(serve_upstream(cert, key, Path(bomb).read_bytes()))
        return

    raise_fd_limit()
    scenarios: list[Scenario] = []
    start = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        src = args.sidecar_src.resolve() if args.sidecar_src else None
        rig = Rig.start(Path(tmp), args.scale, src)
        try:
            for name in [s for s in SCENARIOS if s in args.only]:
                print(f"[{time.monotonic() - start:6.1f}s] {name}", file=sys.stderr, flush=True)
                try:
                    scenarios.append(run_scenario(rig, name))
                except Exception as e:  # the sidecar did not start, say: report, go on
                    print(f"  {name} not measured: {type(e).__name__}: {e}", file=sys.stderr)
                    continue
                s = scenarios[-1]
                print(f"  {s.outcome}, peak {s.peak_rss_mb:.0f} MB, {s.summary}",
                      file=sys.stderr, flush=True)  # fmt: skip
        finally:
            rig.stop()
    print(f"[{time.monotonic() - start:6.1f}s] done", file=sys.stderr, flush=True)

    report = {
        "when": time.strftime("%Y-%m-%d %H:%M"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}",
        "scale": args.scale,
        "sidecar": describe(args.sidecar_src),
        "fd_hard_limit": resource.getrlimit(resource.RLIMIT_NOFILE)[1],
        "scenarios": [asdict(s) for s in scenarios],
    }
    args.out.mkdir(parents=True, exist_ok=True)
    stem = "resource_bench"
    if set(args.only) != set(SCENARIOS):
        stem += "".join(f"-{s}" for s in SCENARIOS if s in args.only)
    if args.scale != 1.0:
        stem += f"-scale{args.scale:g}"
    (args.out / f"{stem}.json").write_text(json.dumps(report, indent=2, default=str))
    text = markdown(report)
    (args.out / f"{stem}.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
