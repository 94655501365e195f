"""The sidecar in-process on ephemeral ports, and real clients configured only by `env`."""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from addons.ca import CaFiles, ensure_ca
from addons.serve import ReadyInfo, build_master
from sidecar.config.credentials import (
    Credentials,
    IntervenCredentials,
    InvioletCredentials,
    KirtonicCredentials,
    VelerianCredentials,
)
from sidecar.config.settings import load_settings
from sidecar.judge.resolver import Resolver
from sidecar.observability.admin import read_admin_token
from tests.support import leaks
from tests.support.servers import UPSTREAM_HOST, WAIT

API_KEY = leaks.SIDECAR_KEYS[0]
GOVERNANCE_KEYS = {"kirtonic": leaks.SIDECAR_KEYS[3], "inviolet": leaks.SIDECAR_KEYS[4],
                   "velerian": leaks.SIDECAR_KEYS[5]}  # fmt: skip
VELERIAN_ABP = "abp_agent_egress"
AGENT_ID = "00000000-0000-0000-0000-000000000123"
CLIENTS_DIR = Path(__file__).resolve().parent.parent / "clients"
ROOT = CLIENTS_DIR.parent.parent


@dataclass
class Sidecar:
    info: ReadyInfo
    confdir: Path
    master: Any
    thread: threading.Thread
    env_args: tuple[str, ...] = ()  # more `egress-sidecar env` flags (e.g. brokering)

    @property
    def ca(self) -> CaFiles:
        return self.info.ca

    def env_command(self) -> str:
        """The shell line an agent runs: exactly what the README tells users."""
        exe = shlex.quote(str(Path(sys.executable).parent / "egress-sidecar"))
        more = "".join(f" {shlex.quote(a)}" for a in self.env_args)
        return (
            f'eval "$({exe} env --listen {self.info.proxy} '
            f'--confdir {shlex.quote(str(self.confdir))}{more})"'
        )

    def metrics_text(self) -> str:
        assert self.info.admin is not None
        with httpx.Client(trust_env=False) as c:
            r = c.get(f"http://{self.info.admin}/metrics")
        assert r.status_code == 200
        leaks.record(r.text)
        return r.text

    def metric(self, name: str, **labels: str) -> float:
        """A sample's value from /metrics (0 when absent)."""
        for family in text_string_to_metric_families(self.metrics_text()):
            for sample in family.samples:
                if sample.name == name and all(
                    sample.labels.get(k) == v for k, v in labels.items()
                ):
                    return float(sample.value)
        return 0.0

    @property
    def admin_token(self) -> str:
        token = read_admin_token(self.confdir)
        assert token is not None, "the sidecar writes its admin token at start"
        return token

    def admin_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.admin_token}"}

    def admin_get(self, path: str) -> httpx.Response:
        with httpx.Client(trust_env=False, headers=self.admin_headers()) as c:
            response = c.get(f"http://{self.info.admin}{path}")
        leaks.record(response.text)
        return response

    def stop(self) -> None:
        if not self.thread.is_alive():
            return
        self.master.event_loop.call_soon_threadsafe(self.master.shutdown)
        self.thread.join(WAIT)
        assert not self.thread.is_alive(), "sidecar did not stop"


def start_sidecar(
    confdir: Path,
    gateway_url: str,
    upstream_ca: Path,
    governance: dict[str, str] | None = None,
    resolver: Resolver | None = None,
    **settings: Any,
) -> Sidecar:
    """`governance`: base URLs of the third-party API doubles (kirtonic, inviolet, velerian).

    The recording upstream lives on a loopback address, so it is listed as internal
    (like a cluster service would be); every other loopback address stays refused.
    """
    values: dict[str, Any] = {
        "listen": "127.0.0.1:0",
        "admin": "127.0.0.1:0",
        "confdir": str(confdir),
        "upstream_ca": str(upstream_ca),
        "approval_poll_interval": 0.05,
        "scan_timeout": 5.0,
        "internal_hosts": UPSTREAM_HOST,
        **settings,
    }
    sidecar_settings = load_settings(**values)
    urls = governance or {}
    credentials = Credentials(
        interven=IntervenCredentials(
            api_key=API_KEY, gateway_url=gateway_url, agent_id=AGENT_ID, agent_name="test-agent"
        ),  # type: ignore[arg-type]
        kirtonic=KirtonicCredentials(
            api_key=GOVERNANCE_KEYS["kirtonic"], endpoint=urls.get("kirtonic", gateway_url)
        ),  # type: ignore[arg-type]
        inviolet=InvioletCredentials(
            api_key=GOVERNANCE_KEYS["inviolet"],
            base_url=urls.get("inviolet", gateway_url),
            user_id="agent-user-7",
        ),  # type: ignore[arg-type]
        velerian=VelerianCredentials(
            api_key=GOVERNANCE_KEYS["velerian"],
            base_url=urls.get("velerian", gateway_url),
            abp_id=VELERIAN_ABP,
        ),  # type: ignore[arg-type]
    )
    s = sidecar_settings
    ca = ensure_ca(s.confdir, s.ca_cert, s.ca_key, s.ca_bundle_out)
    ready = threading.Event()
    box: dict[str, Any] = {}

    def on_ready(info: ReadyInfo) -> None:
        box["info"] = info
        ready.set()

    async def main() -> None:
        master = build_master(sidecar_settings, credentials, ca, on_ready, resolver)
        box["master"] = master
        await master.run()

    def run() -> None:
        try:
            asyncio.run(main())
        except BaseException as e:  # surfaced to the test below
            box["error"] = e
            ready.set()

    thread = threading.Thread(target=run, name="sidecar", daemon=True)
    thread.start()
    assert ready.wait(WAIT), "sidecar did not start"
    if "error" in box:
        raise box["error"]
    return Sidecar(box["info"], sidecar_settings.confdir, box["master"], thread)


@dataclass
class ClientResult:
    status: int
    headers: dict[str, str]
    body: bytes
    http_version: str | None = None

    def json(self) -> Any:
        return json.loads(self.body)


def run_client(
    sidecar: Sidecar,
    client: str,
    method: str,
    url: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    http2: bool = False,
    expand_env: bool = False,
) -> ClientResult:
    """Run a real client in a shell whose only configuration is `egress-sidecar env`.
    `expand_env`: `$NAME` in the request is the agent shell's variable (a placeholder
    `egress-sidecar env` exported), expanded in that shell."""
    spec = {
        "method": method,
        "url": url,
        "headers": headers or {},
        "body": None if body is None else body.decode("latin-1"),
        "http2": http2,
    }
    if client == "curl":
        command = f"{shlex.quote(sys.executable)} {CLIENTS_DIR / 'curl_client.py'}"
    elif client in ("requests", "httpx"):
        command = f"{shlex.quote(sys.executable)} {CLIENTS_DIR / 'py_client.py'} {client}"
    elif client == "node":
        command = f"node {CLIENTS_DIR / 'node_client.mjs'}"
    else:
        raise ValueError(client)
    clean_env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    for name in ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "NODE_EXTRA_CA_CERTS"):
        clean_env.pop(name, None)
    if expand_env:
        expand = "import os,sys; sys.stdout.write(os.path.expandvars(sys.stdin.read()))"
        command = f"{shlex.quote(sys.executable)} -c {shlex.quote(expand)} | {command}"
    else:
        command = f"exec {command}"
    proc = subprocess.run(
        ["bash", "-c", f"{sidecar.env_command()} && {command}"],
        input=json.dumps(spec).encode(),
        capture_output=True,
        env=clean_env,
        timeout=WAIT * 2,
        check=False,
        cwd=ROOT,
    )
    leaks.record(proc.stdout.decode(errors="replace") + proc.stderr.decode(errors="replace"))
    assert proc.returncode == 0, f"{client} failed: {proc.stderr.decode()[-2000:]}"
    out = json.loads(proc.stdout)
    return ClientResult(
        out["status"],
        {k.lower(): v for k, v in out["headers"].items()},
        out["body"].encode("latin-1"),
        out.get("http_version"),
    )
