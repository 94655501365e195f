"""The commands users type: `egress-sidecar run` / `env`, and `mitmdump -s` with our addon."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import pytest
from cryptography import x509

from tests.support import leaks
from tests.support.raw import closed_by_peer, connect
from tests.support.servers import UPSTREAM_HOST, WAIT
from tests.support.sidecar import run_client

BIN = Path(sys.executable).parent
EXE = str(BIN / "egress-sidecar")
ROOT = Path(__file__).resolve().parents[2]
KEY = leaks.SIDECAR_KEYS[1]


def _env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if "proxy" not in k.lower() and not k.startswith(("SIDECAR_", "INTERVEN_"))
    }
    env.update(extra)
    return env


def _run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [EXE, *args], capture_output=True, text=True, env=_env(**env), timeout=WAIT, check=False
    )
    leaks.record(result.stdout + result.stderr)
    return result


def _start_mitmdump(*options: str, **env: str) -> tuple[subprocess.Popen[str], str]:
    """A real mitmdump on an ephemeral loopback port; returns it and the port it bound."""
    proc = subprocess.Popen(
        [
            str(BIN / "mitmdump"),
            "--set",
            "listen_host=127.0.0.1",
            "--set",
            "listen_port=0",
            *options,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=_env(**env),
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        match = re.search(r"proxy listening at .*:(\d+)", line)
        if match:
            return proc, match.group(1)
    proc.wait(WAIT)
    raise AssertionError("mitmdump did not start")


def _stop(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGTERM)
    proc.wait(WAIT)


def test_interven_backend_without_a_key_says_how_to_configure_it(tmp_path):
    result = _run("run", "--backend", "interven", "--confdir", str(tmp_path))
    assert result.returncode == 2
    assert result.stderr == "egress-sidecar: --backend interven needs INTERVEN_API_KEY to be set\n"


def test_bad_policy_file_stops_the_start_with_one_line(tmp_path):
    policy = tmp_path / "p.yaml"
    policy.write_text("name: p\nrules:\n  - {rule_id: r1, action: NOPE}\n")
    result = _run("run", "--policy", str(policy), "--confdir", str(tmp_path))
    assert result.returncode == 2
    assert result.stderr.startswith(f"egress-sidecar: {policy}: rules[0] (r1) action:")
    assert result.stderr.count("\n") == 1


def test_policy_check_and_show(tmp_path):
    shown = _run("policy", "show")
    assert shown.returncode == 0
    (tmp_path / "default.yaml").write_text(shown.stdout)
    ok = _run("policy", "check", str(tmp_path / "default.yaml"))
    assert ok.returncode == 0
    assert "policy 'egress-sidecar-default' (default), 5 rules" in ok.stdout
    (tmp_path / "bad.json").write_text('{"name": "b", "rules": [{"rule_id": "x"}]}')
    bad = _run("policy", "check", str(tmp_path / "bad.json"))
    assert bad.returncode == 1
    assert (
        bad.stderr
        == f"egress-sidecar: {tmp_path / 'bad.json'}: rules[0] (x) action: Field required\n"
    )


def test_scan_dry_run_prints_the_verdict(tmp_path):
    body = tmp_path / "body.json"
    body.write_text('{"msg": "ssn 219-48-3307"}')
    result = _run("scan", "POST", "https://api.example.com/notes", "--body", f"@{body}",
                  "-H", "Content-Type: application/json", "--no-resolve")  # fmt: skip
    assert result.returncode == 0, result.stderr
    verdict = json.loads(result.stdout)
    assert verdict["decision"] == "SANITIZE"
    assert verdict["sanitized_body"] == {"msg": "ssn [REDACTED:US_SSN]"}
    assert verdict["policy_name"] == "egress-sidecar-default"
    assert "219-48-3307" not in json.dumps(verdict["signals"])
    ssrf = json.loads(_run("scan", "GET", "http://169.254.169.254/latest").stdout)
    assert ssrf["forwarded"] is False
    assert ssrf["decision"] == "DENY"
    assert "SSRF" in ssrf["reason_codes"]
    bad = _run("scan", "GET", "https://x.test/", "-H", "nocolon")
    assert bad.returncode == 2
    assert "--header: expected K:V" in bad.stderr


def test_bad_values_name_the_setting_on_one_line(tmp_path):
    cases = [
        (["run", "--fail-mode", "maybe"], {}, "--fail-mode / SIDECAR_FAIL_MODE"),
        (["run", "--listen", "8080"], {}, "--listen / SIDECAR_LISTEN"),
        (["run", "--scan-timeout", "-1"], {}, "--scan-timeout / SIDECAR_SCAN_TIMEOUT"),
        (["run", "--upstream-ca", "/nonexistent.pem"], {}, "--upstream-ca / SIDECAR_UPSTREAM_CA"),
        (["env"], {"SIDECAR_LISTEN": "nohost"}, "--listen / SIDECAR_LISTEN"),
        (
            ["run", "--scan-api-ca", str(ROOT / "pyproject.toml")],
            {},
            "--scan-api-ca / SIDECAR_SCAN_API_CA",
        ),
    ]
    for args, env, expected in cases:
        result = _run(*args, "--confdir", str(tmp_path), INTERVEN_API_KEY=KEY, **env)
        assert result.returncode == 2, args
        assert result.stderr.startswith(f"egress-sidecar: {expected}: "), result.stderr
        assert result.stderr.count("\n") == 1
    unknown = _run("run", "--no-such-flag")
    assert unknown.returncode == 2
    assert "unrecognized arguments: --no-such-flag" in unknown.stderr


def test_env_prints_every_variable_for_agents(tmp_path):
    result = _run("env", "--listen", "127.0.0.1:3128", "--confdir", str(tmp_path))
    assert result.returncode == 0, result.stderr
    exports = dict(
        re.fullmatch(r"export (\w+)=(.*)", line).groups()  # type: ignore[union-attr]
        for line in result.stdout.splitlines()
    )
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"):
        assert exports[name] == "http://127.0.0.1:3128"
    for name in ("NO_PROXY", "no_proxy"):
        assert set(exports[name].split(",")) >= {"localhost", "127.0.0.1", "::1"}
    bundle = tmp_path / "ca-bundle.pem"
    for name in (
        "SSL_CERT_FILE",
        "REQUESTS_CA_BUNDLE",
        "CURL_CA_BUNDLE",
        "NODE_EXTRA_CA_CERTS",
        "GIT_SSL_CAINFO",
    ):
        assert exports[name] == str(bundle)
    assert (tmp_path / "mitmproxy-ca-cert.pem").read_text().strip() in bundle.read_text()


def test_run_announces_itself_enforces_and_stops_cleanly_on_sigterm(tmp_path, scan_api, upstream):
    confdir = tmp_path / "conf"
    proc = subprocess.Popen(
        [
            EXE,
            "run",
            "--listen",
            "127.0.0.1:0",
            "--admin",
            "127.0.0.1:0",
            "--confdir",
            str(confdir),
            "--upstream-ca",
            str(upstream.ca_file),
            "--internal-hosts",
            UPSTREAM_HOST,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(INTERVEN_API_KEY=KEY, INTERVEN_GATEWAY_URL=scan_api.url),
    )
    try:
        assert proc.stderr is not None
        assert proc.stdout is not None
        banner = [proc.stderr.readline() for _ in range(5)]
        assert banner[0].startswith("egress-sidecar 0.1.0 listening on 127.0.0.1:")
        assert "backend:   interven, fail mode: closed" in banner[1]
        assert str(confdir / "mitmproxy-ca-cert.pem") in banner[3]
        agent_line = banner[4].split("agents:", 1)[1].strip()
        assert agent_line.startswith('eval "$(egress-sidecar env --listen 127.0.0.1:')

        # The printed line, run in a fresh shell, is all curl needs.
        agent_line = agent_line.replace("egress-sidecar env", shlex.quote(EXE) + " env", 1)
        curl = subprocess.run(
            [
                "bash",
                "-c",
                f"{agent_line} && curl -sS -o /dev/null -w '%{{http_code}}' "
                f"-d '{{}}' {upstream.https}/deny/cli",
            ],
            capture_output=True,
            text=True,
            env=_env(),
            timeout=WAIT,
            check=False,
        )
        assert curl.stdout == "403", curl.stderr
        tunnel = proc.stdout.readline()  # the CONNECT is judged first, on its own
        assert '"event":"tunnel"' in tunnel
        assert '"decision":"ALLOW"' in tunnel
        decision = proc.stdout.readline()
        assert '"event":"decision"' in decision
        assert '"decision":"DENY"' in decision
        assert upstream.requests_to("/deny/cli") == []
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(WAIT) == 0
    rest = proc.stdout.read() + proc.stderr.read()
    leaks.record("".join(banner) + tunnel + decision + rest)
    assert KEY not in rest


def test_run_on_a_fresh_machine_uses_the_embedded_engine(tmp_path, upstream):
    proc = subprocess.Popen(
        [EXE, "run", "--listen", "127.0.0.1:0", "--admin", "off",
         "--confdir", str(tmp_path / "conf"), "--upstream-ca", str(upstream.ca_file),
         "--internal-hosts", UPSTREAM_HOST],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(),
    )  # fmt: skip
    try:
        assert proc.stderr is not None
        banner = [proc.stderr.readline() for _ in range(5)]
        assert "backend:   local (policy: egress-sidecar-default), fail mode: closed" in banner[1]
        assert "admin:     off" in banner[2]
        agent_line = banner[4].split("agents:", 1)[1].strip()
        agent_line = agent_line.replace("egress-sidecar env", shlex.quote(EXE) + " env", 1)
        curl = subprocess.run(
            ["bash", "-c", f"{agent_line} && curl -sS -w '\\n%{{http_code}}' "
                           "http://169.254.169.254/latest/meta-data/"],
            capture_output=True, text=True, env=_env(), timeout=WAIT, check=False,
        )  # fmt: skip
        body, status = curl.stdout.rsplit("\n", 1)
        assert status == "403", curl.stderr
        assert "SSRF" in json.loads(body)["reason_codes"]
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(WAIT) == 0


def test_plain_mitmdump_loads_the_same_addon(tmp_path, scan_api, upstream):
    proc, port = _start_mitmdump(
        "-s", str(ROOT / "addons" / "egress_guard.py"),
        "--set", f"confdir={tmp_path}", "--set", "connection_strategy=lazy",
        "--set", f"ssl_verify_upstream_trusted_ca={upstream.ca_file}",
        "--set", "egress_admin=off", "--set", "egress_fail_mode=closed",
        "--set", f"egress_internal_hosts={UPSTREAM_HOST}",
        INTERVEN_API_KEY=KEY, INTERVEN_GATEWAY_URL=scan_api.url,
    )  # fmt: skip
    try:
        curl = subprocess.run(
            ["curl", "-sS", "--proxy", f"http://127.0.0.1:{port}",
             "--cacert", str(tmp_path / "mitmproxy-ca-cert.pem"),
             "-o", "/dev/null", "-w", "%{http_code}", "-d", "{}",
             f"{upstream.https}/deny/mitmdump"],
            capture_output=True, text=True, env=_env(), timeout=WAIT, check=False,
        )  # fmt: skip
        assert curl.stdout == "403", curl.stderr
        scan_api.scans.wait_for(lambda s: s["json"]["url"].endswith("/deny/mitmdump"))
        assert upstream.requests_to("/deny/mitmdump") == []
    finally:
        _stop(proc)


def test_mitmdump_refuses_streamed_request_bodies(tmp_path):
    result = subprocess.run(
        [
            str(BIN / "mitmdump"),
            "-s",
            str(ROOT / "addons" / "egress_guard.py"),
            "--set",
            "stream_large_bodies=1m",
            "--set",
            "listen_port=0",
            "--set",
            f"confdir={tmp_path}",
        ],
        capture_output=True,
        text=True,
        env=_env(INTERVEN_API_KEY=KEY),
        timeout=WAIT,
        check=False,
    )
    assert result.returncode != 0
    assert "stream_large_bodies must be unset" in result.stdout + result.stderr


@pytest.mark.parametrize(
    ("option", "instead"),
    [
        ("ignore_hosts=.*", "use egress_passthrough_hosts"),
        ("tcp_hosts=.*", "use egress_raw_tcp_hosts"),
        ("connection_strategy=eager", "connection_strategy must be lazy"),
    ],
)
def test_mitmdump_refuses_mitmproxys_own_ways_around_the_judge(tmp_path, option, instead):
    result = subprocess.run(
        [str(BIN / "mitmdump"), "-s", str(ROOT / "addons" / "egress_guard.py"),
         *(["--set", "connection_strategy=lazy"] if "strategy" not in option else []),
         "--set", option, "--set", "listen_port=0", "--set", f"confdir={tmp_path}"],
        capture_output=True, text=True, env=_env(INTERVEN_API_KEY=KEY), timeout=WAIT,
        check=False,
    )  # fmt: skip
    assert result.returncode != 0
    assert instead in result.stdout + result.stderr


def test_mitmdump_with_raw_tcp_on_still_relays_nothing_unjudged(tmp_path, scan_api, tcp_recorder):
    """mitmproxy relays raw TCP by default (`rawtcp`); the guards refuse it anyway."""
    target = tcp_recorder()
    switcher = tcp_recorder(reply_to_head=b"HTTP/1.1 101 Switching Protocols\r\n\r\n")
    proc, port = _start_mitmdump(
        "-s", str(ROOT / "addons" / "egress_guard.py"), "--set", f"confdir={tmp_path}",
        "--set", "connection_strategy=lazy",
        "--set", "egress_admin=off", "--set", f"egress_internal_hosts={UPSTREAM_HOST}",
        INTERVEN_API_KEY=KEY, INTERVEN_GATEWAY_URL=scan_api.url,
    )  # fmt: skip
    try:
        proxy = f"127.0.0.1:{port}"
        status, _, sock = connect(proxy, f"{UPSTREAM_HOST}:{target.port}")
        assert status == 200
        sock.sendall(b"\x00" + KEY.encode())
        assert closed_by_peer(sock)
        assert target.connections.items == []
        # A colluding upstream switching protocols unasked: the pipe is cut at the 101.
        status, _, sock = connect(proxy, f"{UPSTREAM_HOST}:{switcher.port}")
        sock.sendall(f"GET /allow/sw HTTP/1.1\r\nHost: {UPSTREAM_HOST}:{switcher.port}\r\n\r\n"
                     .encode())  # fmt: skip
        switcher.chunks.wait_for(lambda c: b"GET /allow/sw" in c)
        with contextlib.suppress(OSError):
            sock.sendall(b"\x00after the switch")
        assert closed_by_peer(sock)
        switcher.closed.wait_for(lambda _: True)  # the upstream side ended
        assert b"after the switch" not in switcher.everything
    finally:
        _stop(proc)


def test_upstream_proxy_chains_through_a_corporate_proxy(make_sidecar, upstream, tmp_path):
    """A real mitmdump plays the corporate proxy, tunnelling TLS untouched."""
    corporate, port = _start_mitmdump(
        "--set", f"confdir={tmp_path}", "--ignore-hosts", ".*",
        "--set", "termlog_verbosity=debug",
    )  # fmt: skip
    try:
        sidecar = make_sidecar(upstream_proxy=f"http://127.0.0.1:{port}")
        result = run_client(sidecar, "curl", "GET", upstream.https + "/allow/chained")
        assert result.status == 200
        assert result.headers["x-interven-decision"] == "ALLOW"
        upstream.received.wait_for(lambda r: r.path == "/allow/chained")
        target = f"127.0.0.2:{upstream.https_port}"
        assert corporate.stdout is not None
        for line in corporate.stdout:
            if "server connect" in line and target in line:
                break
        else:
            raise AssertionError("the corporate proxy never connected to the upstream")
    finally:
        _stop(corporate)


def test_ca_from_a_kubernetes_secret_signs_what_agents_trust(tmp_path, make_sidecar, upstream):
    """The Kubernetes path: `ca secret` → mounted files → `--ca-cert/--ca-key` → the bundle
    written to the shared volume is all an agent needs to trust interception."""
    result = _run("ca", "secret", "--namespace", "agents")
    assert result.returncode == 0, result.stderr
    secret = json.loads(result.stdout)
    kubernetes_validate.validate(secret, "1.33.0", strict=True)
    assert secret["type"] == "kubernetes.io/tls"
    assert secret["metadata"] == {
        "name": "egress-sidecar-ca",
        "namespace": "agents",
        "labels": {"app.kubernetes.io/name": "egress-sidecar"},
    }
    mounted = tmp_path / "secret"
    mounted.mkdir()
    for name in ("tls.crt", "tls.key"):
        (mounted / name).write_bytes(base64.b64decode(secret["data"][name]))
    cert = x509.load_pem_x509_certificate((mounted / "tls.crt").read_bytes())
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca

    bundle = tmp_path / "shared" / "ca-bundle.pem"
    state = tmp_path / "state"
    sidecar = make_sidecar(
        confdir=state,
        ca_cert=str(mounted / "tls.crt"),
        ca_key=str(mounted / "tls.key"),
        ca_bundle_out=str(bundle),
        transparent_listen="127.0.0.3:0",  # mitmproxy refuses two listeners on one HOST:0
    )
    assert (mounted / "tls.crt").read_text() in bundle.read_text()
    assert (state / "mitmproxy-ca.pem").stat().st_mode & 0o777 == 0o600
    assert sidecar.admin_get("/readyz").status_code == 200
    transparent = sidecar.info.transparent
    assert transparent is not None
    assert transparent.port != sidecar.info.proxy.port
    socket.create_connection((transparent.host, transparent.port), timeout=WAIT).close()

    curl = subprocess.run(
        ["curl", "-sS", "--proxy", f"http://{sidecar.info.proxy}", "--cacert", str(bundle),
         "-o", "/dev/null", "-w", "%{http_code}", f"{upstream.https}/allow/k8s-ca"],
        capture_output=True, text=True, env=_env(), timeout=WAIT, check=False,
    )  # fmt: skip
    assert curl.stdout == "200", curl.stderr
    upstream.received.wait_for(lambda r: r.path == "/allow/k8s-ca")


def test_ca_flags_are_checked_on_one_line(tmp_path):
    (tmp_path / "cert.pem").write_text("not a certificate\n")
    (tmp_path / "key.pem").write_text("not a key\n")
    half = _run("run", "--ca-cert", str(tmp_path / "cert.pem"), "--confdir", str(tmp_path))
    assert half.returncode == 2
    assert half.stderr == "egress-sidecar: --ca-cert and --ca-key go together\n"
    bad = _run("ca", "path", "--ca-cert", str(tmp_path / "cert.pem"),
               "--ca-key", str(tmp_path / "key.pem"), "--confdir", str(tmp_path / "c"))  # fmt: skip
    assert bad.returncode == 2
    assert bad.stderr.startswith("egress-sidecar: --ca-cert / --ca-key: ")
    assert bad.stderr.count("\n") == 1
    same = _run("run", "--listen", "127.0.0.1:0", "--transparent-listen", "127.0.0.1:0")
    assert same.returncode == 2
    assert same.stderr == "egress-sidecar: --transparent-listen must differ from --listen\n"
    missing = _run("run", "--ca-cert", "/nonexistent.pem", "--ca-key", "/nonexistent.pem")
    assert missing.returncode == 2
    assert missing.stderr.startswith("egress-sidecar: --ca-cert / SIDECAR_CA_CERT: ")
    path = _run("ca", "path", "--confdir", str(tmp_path / "fresh"))
    assert path.stdout == f"{tmp_path / 'fresh' / 'mitmproxy-ca-cert.pem'}\n"
