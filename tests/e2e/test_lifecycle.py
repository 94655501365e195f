"""SIGTERM: stop accepting, let in-flight requests finish, flush response posts, exit 0."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

from bench.servers import verdict
from tests.support import leaks
from tests.support.servers import UPSTREAM_HOST, WAIT, Reply
from tests.support.waiting import eventually

EXE = str(Path(sys.executable).parent / "egress-sidecar")


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if "proxy" not in k.lower() and not k.startswith(("SIDECAR_", "INTERVEN_"))}  # fmt: skip
    env.update(extra)
    return env


def test_sigterm_drains_in_flight_requests_and_flushes(tmp_path, scan_api, upstream):
    # The scan of the in-flight request takes a while; SIGTERM arrives meanwhile.
    scan_api.script(Reply(body=verdict("ALLOW"), delay=1.5))
    proc = subprocess.Popen(
        [EXE, "run", "--listen", "127.0.0.1:0", "--admin", "off", "--confdir", str(tmp_path),
         "--upstream-ca", str(upstream.ca_file), "--shutdown-grace", "30",
         "--internal-hosts", UPSTREAM_HOST],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=_env(INTERVEN_API_KEY=leaks.SIDECAR_KEYS[2], INTERVEN_GATEWAY_URL=scan_api.url),
    )  # fmt: skip
    assert proc.stderr is not None
    port = int(re.search(r":(\d+)\n", proc.stderr.readline()).group(1))  # type: ignore[union-attr]
    box: dict[str, subprocess.CompletedProcess[str]] = {}

    def agent() -> None:
        box["curl"] = subprocess.run(
            ["curl", "-sS", "--proxy", f"http://127.0.0.1:{port}", "--cacert",
             str(tmp_path / "ca-bundle.pem"), "-o", "/dev/null", "-w", "%{http_code}",
             f"{upstream.https}/allow/in-flight"],
            capture_output=True, text=True, env=_env(), timeout=WAIT, check=False,
        )  # fmt: skip

    thread = threading.Thread(target=agent)
    thread.start()
    scan_api.scans.wait_for(lambda s: s["json"]["url"].endswith("/allow/in-flight"))
    proc.send_signal(signal.SIGTERM)
    # The listening socket closes while the request is still being judged.
    for line in proc.stderr:
        if "no new connections" in line:
            break

    def refused() -> bool:
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", port)) != 0

    eventually(refused)
    thread.join(WAIT)
    assert box["curl"].stdout == "200", box["curl"].stderr
    assert proc.wait(WAIT) == 0
    leaks.record(proc.stderr.read() + (proc.stdout.read() if proc.stdout else ""))
    upstream.received.wait_for(lambda r: r.path == "/allow/in-flight")
    # The response post was flushed before exit.
    posts = [p for p in scan_api.response_posts.items
             if p["json"]["response_body"]["path"] == "/allow/in-flight"]  # fmt: skip
    assert len(posts) == 1
