"""The sidecar as its own process (`egress-sidecar run`), for what must be measured from
outside: its memory (VmRSS / VmHWM from /proc), whether it survives, what it logs."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.support import leaks
from tests.support.servers import WAIT

EXE = str(Path(sys.executable).parent / "egress-sidecar")
MIB = 1024 * 1024


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without proxy or sidecar settings (they would leak into the run)."""
    env = {k: v for k, v in os.environ.items()
           if "proxy" not in k.lower() and not k.startswith(("SIDECAR_", "INTERVEN_"))}  # fmt: skip
    env.update(extra)
    return env


@dataclass
class SidecarProcess:
    proc: subprocess.Popen[str]
    proxy: str
    admin: str
    confdir: Path
    lines: list[str] = field(default_factory=list)  # everything it printed, in order
    _reader: threading.Thread | None = None

    @property
    def ca_bundle(self) -> Path:
        return self.confdir / "ca-bundle.pem"

    @property
    def proxy_url(self) -> str:
        return f"http://{self.proxy}"

    def _status(self, key: str) -> int:
        text = Path(f"/proc/{self.proc.pid}/status").read_text()
        match = re.search(rf"^{key}:\s+(\d+) kB", text, re.M)
        assert match, f"{key} missing from /proc status"
        return int(match.group(1)) * 1024

    def rss(self) -> int:
        return self._status("VmRSS")

    def peak_rss(self) -> int:
        """The high-water mark since start, or since `reset_peak()`."""
        return self._status("VmHWM")

    def reset_peak(self) -> None:
        """Linux ≥ 4.0: writing 5 to clear_refs resets VmHWM to the current RSS."""
        Path(f"/proc/{self.proc.pid}/clear_refs").write_text("5")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def metric(self, name: str, **labels: str) -> float:
        with httpx.Client(trust_env=False) as c:
            text = c.get(f"http://{self.admin}/metrics").text
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == name and all(
                    sample.labels.get(k) == v for k, v in labels.items()
                ):
                    return float(sample.value)
        return 0.0

    def client(self, **kwargs: object) -> httpx.Client:
        """An HTTPS client through the sidecar, trusting its CA."""
        return httpx.Client(
            proxy=self.proxy_url, verify=str(self.ca_bundle), trust_env=False, timeout=WAIT,
            **kwargs,  # type: ignore[arg-type]
        )  # fmt: skip

    def stop(self) -> None:
        if self.alive():
            self.proc.terminate()
            try:
                self.proc.wait(WAIT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(WAIT)
        if self._reader is not None:
            self._reader.join(WAIT)
        leaks.record("\n".join(self.lines))


def start_sidecar_process(confdir: Path, *args: str, **env: str) -> SidecarProcess:
    """`egress-sidecar run` on ephemeral loopback ports with the local engine; returns
    once it is listening. Its output is collected line by line (stdout and stderr)."""
    proc = subprocess.Popen(
        [EXE, "run", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0",
         "--confdir", str(confdir), "--backend", "local", "--shutdown-grace", "0", *args],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=clean_env(**env),
    )  # fmt: skip
    assert proc.stdout is not None
    lines: list[str] = []
    proxy = admin = None
    for line in proc.stdout:
        lines.append(line.rstrip("\n"))
        if m := re.search(r"listening on (\S+)", line):
            proxy = m.group(1)
        if m := re.search(r"admin:\s+http://(\S+)/metrics", line):
            admin = m.group(1)
        if proxy and admin:
            break
    if not (proxy and admin):
        raise AssertionError("the sidecar did not start:\n" + "\n".join(lines))
    side = SidecarProcess(proc, proxy, admin, confdir, lines)

    def collect() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line.rstrip("\n"))

    side._reader = threading.Thread(target=collect, daemon=True)
    side._reader.start()
    return side
