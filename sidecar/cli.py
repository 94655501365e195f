"""`egress-sidecar`: the command-line front door (run, env, ca).

Flags are parsed by argparse and validated by the settings model, so a bad value gives
the same one-line message whether it came from a flag or from `SIDECAR_<NAME>`.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

from sidecar import __version__
from sidecar.agent_env import agent_environment, export_lines
from sidecar.backends import BackendConfigError, backend_name
from sidecar.ca import CaFiles, ensure_ca
from sidecar.settings import (
    HostPort,
    SettingsError,
    SidecarSettings,
    load_credentials,
    load_settings,
)

PROG = "egress-sidecar"
EXIT_USAGE = 2

# (flag, settings field, help). Defaults and validation live in SidecarSettings.
RUN_FLAGS = (
    ("--listen", "listen", "proxy address HOST:PORT (default 127.0.0.1:8080; port 0 = any)"),
    ("--admin", "admin", "admin server HOST:PORT, or 'off' (default 127.0.0.1:9090)"),
    ("--confdir", "confdir", "CA and state directory (default ~/.egress-sidecar)"),
    ("--backend", "backend", "scan backend: interven (default when INTERVEN_API_KEY is set)"),
    ("--upstream-ca", "upstream_ca", "extra CA bundle to trust for upstream servers"),
    ("--upstream-proxy", "upstream_proxy", "chain through this HTTP proxy (http://host:port)"),
    ("--fail-mode", "fail_mode", "closed (default): block without a verdict; open: forward"),
    ("--scan-timeout", "scan_timeout", "seconds one scan may take, retries included (10)"),
    ("--scan-retries", "scan_retries", "retries on 5xx and connection errors (2)"),
    ("--approval-timeout", "approval_timeout", "seconds to hold a request for approval (60)"),
    ("--approval-poll-interval", "approval_poll_interval", "seconds between polls (2)"),
    ("--max-pending-approvals", "max_pending_approvals", "requests held at once (100)"),
    ("--max-body-bytes", "max_body_bytes", "largest decoded body scanned (262144)"),
)
ENV_FLAGS = RUN_FLAGS[:1] + RUN_FLAGS[2:3]


class CliError(Exception):
    """A problem the user can fix; printed as one line."""


def _add_flags(parser: argparse.ArgumentParser, flags: Sequence[tuple[str, str, str]]) -> None:
    for flag, dest, help_text in flags:
        parser.add_argument(flag, dest=dest, metavar=dest.split("_")[-1].upper(), help=help_text)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Forward proxy that scans and enforces what AI agents send to the network.",
        epilog="Every flag can also be set as SIDECAR_<NAME> (e.g. SIDECAR_FAIL_MODE=open).",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="start the proxy")
    _add_flags(run, RUN_FLAGS)
    run.set_defaults(handler=cmd_run)

    env = sub.add_parser("env", help="print export lines for an agent's shell")
    _add_flags(env, ENV_FLAGS)
    env.set_defaults(handler=cmd_env)

    ca = sub.add_parser("ca", help="print the CA certificate path (or --pem: the certificate)")
    _add_flags(ca, RUN_FLAGS[2:3])
    ca.add_argument("--pem", action="store_true", help="print the certificate itself")
    ca.set_defaults(handler=cmd_ca)
    return parser


def _settings(args: argparse.Namespace, flags: Sequence[tuple[str, str, str]]) -> SidecarSettings:
    return load_settings(**{dest: getattr(args, dest) for _, dest, _ in flags})


def _agent_command(settings: SidecarSettings, proxy: HostPort) -> str:
    """The exact `eval` line for this instance; non-default values are spelled out."""
    parts = [PROG, "env"]
    defaults = SidecarSettings.model_fields
    if proxy != defaults["listen"].default:
        parts += ["--listen", str(proxy)]
    if settings.confdir != Path(str(defaults["confdir"].default)).expanduser():
        parts += ["--confdir", str(settings.confdir)]
    return f'eval "$({shlex.join(parts)})"'


def cmd_run(args: argparse.Namespace) -> int:
    from sidecar.serve import ADDRESS_FILE, ReadyInfo, serve

    settings = _settings(args, RUN_FLAGS)
    credentials = load_credentials()
    try:
        backend = backend_name(settings, credentials)
    except BackendConfigError as e:
        raise CliError(str(e)) from None
    ca = _ensure_ca(settings.confdir)
    _configure_logging()

    def announce(info: ReadyInfo) -> None:
        (settings.confdir / ADDRESS_FILE).write_text(f"{info.proxy}\n")
        admin = f"http://{info.admin}/metrics" if info.admin else "off"
        print(
            f"{PROG} {__version__} listening on {info.proxy}\n"
            f"  backend:   {backend} (fail mode: {settings.fail_mode.value})\n"
            f"  admin:     {admin}\n"
            f"  CA cert:   {ca.cert}\n"
            f"  agents:    {_agent_command(settings, info.proxy)}",
            file=sys.stderr,
            flush=True,
        )

    asyncio.run(serve(settings, credentials, ca, announce))
    return 0


def cmd_env(args: argparse.Namespace) -> int:
    from sidecar.serve import ADDRESS_FILE

    settings = _settings(args, ENV_FLAGS)
    listen = settings.listen
    if listen.port == 0:
        recorded = settings.confdir / ADDRESS_FILE
        if not recorded.is_file():
            raise CliError(f"--listen has port 0 and no running sidecar recorded in {recorded}")
        listen = HostPort.parse(recorded.read_text().strip())
    ca = _ensure_ca(settings.confdir)
    sys.stdout.write(export_lines(agent_environment(listen, ca.bundle)))
    return 0


def cmd_ca(args: argparse.Namespace) -> int:
    settings = _settings(args, RUN_FLAGS[2:3])
    ca = _ensure_ca(settings.confdir)
    sys.stdout.write(ca.cert.read_text() if args.pem else f"{ca.cert}\n")
    return 0


def _ensure_ca(confdir: Path) -> CaFiles:
    try:
        return ensure_ca(confdir)
    except OSError as e:
        raise CliError(f"--confdir / SIDECAR_CONFDIR: {confdir}: {e.strerror}") from None


def _configure_logging() -> None:
    """Decision lines (JSON) on stdout; everything else on stderr."""
    decisions = logging.getLogger("egress_sidecar.decisions")
    out = logging.StreamHandler(sys.stdout)
    out.setFormatter(logging.Formatter("%(message)s"))
    decisions.addHandler(out)
    decisions.setLevel(logging.INFO)
    decisions.propagate = False
    err = logging.StreamHandler(sys.stderr)
    err.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(err)
    root.setLevel(logging.WARNING)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args))
    except (CliError, SettingsError) as e:
        print(f"{PROG}: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
