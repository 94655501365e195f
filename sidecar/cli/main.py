"""`egress-sidecar`: the command-line front door (run, env, scan, broker, policy, approvals, ca).

Flags are parsed by argparse and validated by the settings model, so a bad value gives
the same one-line message whether it came from a flag or from `SIDECAR_<NAME>`.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import logging
import shlex
import sys
import time
from collections.abc import Sequence
from importlib import resources
from pathlib import Path

import httpx

from addons.ca import CaFiles, ensure_ca, new_ca_pem
from sidecar import __version__
from sidecar.backends.factory import BackendConfigError, backend_name
from sidecar.broker.bindings import BindingsError
from sidecar.cli import broker, policy_sync, scan
from sidecar.cli.errors import CliError
from sidecar.config.agent_env import agent_environment, export_lines
from sidecar.config.credentials import load_credentials
from sidecar.config.settings import (
    HostPort,
    SettingsError,
    SidecarSettings,
    load_settings,
)
from sidecar.config.surface import ENV_ONLY_SETTINGS, FLAG_SETTINGS, add_cli_flags, env_name
from sidecar.engine.policy_file import PolicyError, load_policy
from sidecar.observability.admin import TOKEN_FILE, read_admin_token
from sidecar.observability.decision_log import loggable

PROG = "egress-sidecar"
EXIT_USAGE = 2

# The settings each command takes as flags. The flags themselves (name, help, default
# shown) are generated from SidecarSettings by `sidecar.config.surface`.
RUN_FLAGS = FLAG_SETTINGS
ENV_FLAGS = ("listen", "confdir", "brokered_credentials")
CA_FLAGS = ("confdir", "ca_cert", "ca_key", "ca_bundle_out")
ADMIN_FLAGS = ("admin", "confdir")


def _add_flags(parser: argparse.ArgumentParser, names: Sequence[str]) -> None:
    add_cli_flags(parser, names)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Forward proxy that scans and enforces what AI agents send to the network.",
        epilog="Every flag can also be set as SIDECAR_<NAME> (e.g. SIDECAR_FAIL_MODE=open); "
        "flags win. All settings: docs/configuration.md.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser(
        "run",
        help="start the proxy",
        description="Start the proxy. Flags win over SIDECAR_<NAME>, which wins over the "
        "default shown.",
        epilog="Set in the environment only: "
        + ", ".join(env_name(n) for n in ENV_ONLY_SETTINGS)
        + ". All settings: docs/configuration.md.",
    )
    add_cli_flags(run, RUN_FLAGS, grouped=True)
    run.set_defaults(handler=cmd_run)

    env = sub.add_parser("env", help="print export lines for an agent's shell")
    _add_flags(env, ENV_FLAGS)
    env.set_defaults(handler=cmd_env)

    scan.add_parser(sub)
    broker.add_parser(sub)

    policy = sub.add_parser("policy", help="policy tools")
    policy_sub = policy.add_subparsers(dest="policy_command", required=True, metavar="ACTION")
    check = policy_sub.add_parser("check", help="validate a policy file")
    check.add_argument("file", type=Path)
    check.set_defaults(handler=cmd_policy_check)
    show = policy_sub.add_parser("show", help="print the built-in default policy")
    show.set_defaults(handler=cmd_policy_show)
    policy_sync.add_parsers(policy_sub)

    approvals = sub.add_parser("approvals", help="list and decide requests held at this sidecar")
    approvals_sub = approvals.add_subparsers(dest="approvals_command", required=True,
                                             metavar="ACTION")  # fmt: skip
    for action, help_text in (("list", "pending approvals"), ("approve", "let it through"),
                              ("deny", "refuse it")):  # fmt: skip
        p = approvals_sub.add_parser(action, help=help_text)
        if action != "list":
            p.add_argument("approval_id", metavar="ID")
        else:
            p.add_argument("--all", action="store_true", help="include decided approvals")
        _add_flags(p, ADMIN_FLAGS)
        p.set_defaults(handler=cmd_approvals, action=action)

    ca = sub.add_parser("ca", help="the CA agents must trust")
    ca_sub = ca.add_subparsers(dest="ca_command", required=True, metavar="ACTION")
    path = ca_sub.add_parser("path", help="print the CA certificate path (or --pem: the PEM)")
    _add_flags(path, CA_FLAGS)
    path.add_argument("--pem", action="store_true", help="print the certificate itself")
    path.set_defaults(handler=cmd_ca)
    secret = ca_sub.add_parser(
        "secret", help="print a new CA as a Kubernetes TLS Secret (pipe to kubectl apply -f -)"
    )
    secret.add_argument("--name", default="egress-sidecar-ca")
    secret.add_argument("--namespace")
    secret.set_defaults(handler=cmd_ca_secret)
    return parser


def _settings(args: argparse.Namespace, names: Sequence[str]) -> SidecarSettings:
    """Settings from the flags given for `names`, then the environment, then defaults."""
    return load_settings(**{name: getattr(args, name) for name in names})


def _agent_command(settings: SidecarSettings, proxy: HostPort) -> str:
    """The exact `eval` line for this instance; non-default values are spelled out."""
    parts = [PROG, "env"]
    defaults = SidecarSettings.model_fields
    if proxy != defaults["listen"].default:
        parts += ["--listen", str(proxy)]
    if settings.confdir != Path(str(defaults["confdir"].default)).expanduser():
        parts += ["--confdir", str(settings.confdir)]
    if settings.brokered_credentials is not None:
        parts += ["--brokered-credentials", str(settings.brokered_credentials)]
    return f'eval "$({shlex.join(parts)})"'


def cmd_run(args: argparse.Namespace) -> int:
    from addons.serve import ADDRESS_FILE, ReadyInfo, serve

    settings = _settings(args, RUN_FLAGS)
    try:
        credentials = load_credentials()
        backend = backend_name(settings, credentials)
        if backend == "local":
            backend = f"local (policy: {load_policy(settings.policy).name})"
    except (BackendConfigError, PolicyError) as e:
        raise CliError(str(e)) from None
    ca = _ensure_ca(settings)
    _configure_logging()

    def announce(info: ReadyInfo) -> None:
        (settings.confdir / ADDRESS_FILE).write_text(f"{info.proxy}\n")
        admin = f"http://{info.admin}/metrics" if info.admin else "off"
        redirected = f" (transparent: {info.transparent})" if info.transparent else ""
        print(
            f"{PROG} {__version__} listening on {info.proxy}{redirected}\n"
            f"  backend:   {backend}, fail mode: {settings.fail_mode.value}, "
            f"enforcement: {settings.enforcement.value}\n"
            f"  admin:     {admin}\n"
            f"  CA cert:   {ca.cert}\n"
            f"  agents:    {_agent_command(settings, info.proxy)}",
            file=sys.stderr,
            flush=True,
        )

    asyncio.run(serve(settings, credentials, ca, announce))
    return 0


def cmd_policy_check(args: argparse.Namespace) -> int:
    try:
        policy = load_policy(args.file)
    except PolicyError as e:
        print(f"{PROG}: {e}", file=sys.stderr)
        return 1
    print(f"ok: {args.file}: policy {policy.name!r} ({policy.env_name}), {len(policy.rules)} rules")
    return 0


def cmd_policy_show(args: argparse.Namespace) -> int:
    sys.stdout.write(resources.files("sidecar.engine").joinpath("default_policy.yaml").read_text())
    return 0


def cmd_approvals(args: argparse.Namespace) -> int:
    """Talks to the running sidecar's admin server, which owns the approval store."""
    settings = _settings(args, ADMIN_FLAGS)
    if settings.admin is None:
        raise CliError("--admin / SIDECAR_ADMIN: the admin server is off")
    token = (
        settings.admin_token.get_secret_value()
        if settings.admin_token is not None
        else read_admin_token(settings.confdir)
    )
    if token is None:
        raise CliError(
            f"no admin token: set SIDECAR_ADMIN_TOKEN, or run as a user who can read "
            f"{settings.confdir / TOKEN_FILE} (--confdir)"
        )
    headers = {"Authorization": f"Bearer {token}"}
    base = f"http://{settings.admin}"
    try:
        with httpx.Client(trust_env=False, timeout=10, headers=headers) as client:
            if args.action == "list":
                r = client.get(f"{base}/approvals", params={"all": "1" if args.all else "0"})
            else:
                r = client.post(f"{base}/approvals/{args.approval_id}/{args.action}")
    except httpx.HTTPError as e:
        raise CliError(f"cannot reach the admin server at {base}: {type(e).__name__}") from None
    doc = r.json() if r.headers.get("content-type", "").startswith("application/json") else {}
    if r.status_code != 200:
        raise CliError(f"{args.action}: {doc.get('error', f'HTTP {r.status_code}')}")
    if args.action == "list":
        _print_approvals(doc["approvals"])
    else:
        print(f"{doc['id']}: {doc['status']}")
    return 0


def _print_approvals(items: list[dict[str, object]]) -> None:
    """One line per approval; every field the agent's request shaped is escaped, so the
    reviewer's terminal shows what was sent, not what the agent wants them to see."""
    if not items:
        print("no pending approvals")
        return
    now = time.time()
    for a in items:
        age = int(now - float(str(a["created"])))
        reasons = ",".join(str(r) for r in a["reasons"]) if isinstance(a["reasons"], list) else ""
        found = a.get("findings")
        findings = ",".join(
            f"{f.get('kind')}@{f.get('location')}"
            for f in (found if isinstance(found, list) else [])
            if isinstance(f, dict)
        )
        where = a.get("destination") or a["host"]
        e = [loggable(str(f), 512) for f in (a["id"], a["status"], a["method"], where,
             f"{a['tool']}/{a['operation']}", reasons, findings or "-")]  # fmt: skip
        print(f"{e[0]}  {e[1]:<8} {e[2]} {e[3]}  {e[4]}  {e[5]}  {e[6]}  {age}s ago")


def cmd_env(args: argparse.Namespace) -> int:
    from addons.serve import ADDRESS_FILE

    settings = _settings(args, ENV_FLAGS)
    listen = settings.listen
    if listen.port == 0:
        recorded = settings.confdir / ADDRESS_FILE
        if not recorded.is_file():
            raise CliError(f"--listen has port 0 and no running sidecar recorded in {recorded}")
        listen = HostPort.parse(recorded.read_text().strip())
    ca = _ensure_ca(settings)
    auth = settings.proxy_auth.get_secret_value() if settings.proxy_auth else None
    env = agent_environment(listen, ca.bundle, auth)
    if settings.brokered_credentials is not None:
        try:
            env.update(broker.placeholder_env(settings.brokered_credentials))
        except BindingsError as e:
            raise CliError(str(e)) from None
    sys.stdout.write(export_lines(env))
    return 0


def cmd_ca_secret(args: argparse.Namespace) -> int:
    """A fresh CA as a `kubernetes.io/tls` Secret; its key exists only in this output."""
    cert_pem, key_pem = new_ca_pem()
    metadata: dict[str, object] = {
        "name": args.name,
        "labels": {"app.kubernetes.io/name": "egress-sidecar"},
    }
    if args.namespace:
        metadata["namespace"] = args.namespace
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "kubernetes.io/tls",
        "metadata": metadata,
        "data": {
            "tls.crt": base64.b64encode(cert_pem).decode(),
            "tls.key": base64.b64encode(key_pem).decode(),
        },
    }
    sys.stdout.write(json.dumps(secret, indent=2) + "\n")
    return 0


def cmd_ca(args: argparse.Namespace) -> int:
    settings = _settings(args, CA_FLAGS)
    ca = _ensure_ca(settings)
    sys.stdout.write(ca.cert.read_text() if args.pem else f"{ca.cert}\n")
    return 0


def _ensure_ca(settings: SidecarSettings) -> CaFiles:
    try:
        return ensure_ca(
            settings.confdir, settings.ca_cert, settings.ca_key, settings.ca_bundle_out
        )
    except OSError as e:
        where = e.filename or settings.confdir
        raise CliError(f"--confdir / SIDECAR_CONFDIR: {where}: {e.strerror}") from None
    except ValueError as e:
        raise CliError(f"--ca-cert / --ca-key: {e}") from None


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
