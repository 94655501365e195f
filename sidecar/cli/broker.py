"""`egress-sidecar broker check|list FILE`: a brokered-credentials file, validated and
shown — names, placeholders, bindings and where each value comes from, never a value."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from sidecar.broker.bindings import Bindings, BindingsError, load_bindings
from sidecar.broker.state import read_value
from sidecar.config.settings import load_settings


def add_parser(sub: Any) -> None:
    broker = sub.add_parser("broker", help="brokered credentials: check or list a bindings file")
    actions = broker.add_subparsers(dest="broker_command", required=True, metavar="ACTION")
    check = actions.add_parser(
        "check",
        help="validate a bindings file (and that each value is readable here)",
        description="Validate a brokered-credentials file. Each value source is read too "
        "(never printed), unless --no-values: use that where the values do not live.",
    )
    check.add_argument("file", type=Path)
    check.add_argument("--no-values", action="store_true", help="do not read the values")
    check.set_defaults(handler=cmd_check)
    listing = actions.add_parser("list", help="names, placeholders, bindings, value sources")
    listing.add_argument("file", type=Path)
    listing.set_defaults(handler=cmd_list)


def _load(path: Path) -> Bindings:
    # Pass-through hosts as the sidecar would see them (SIDECAR_PASSTHROUGH_HOSTS).
    return load_bindings(path, load_settings().passthrough_hosts)


def cmd_check(args: argparse.Namespace) -> int:
    try:
        bindings = _load(args.file)
        if not args.no_values:
            for credential in bindings.credentials:
                read_value(credential)
    except BindingsError as e:
        print(f"egress-sidecar: {e}", file=sys.stderr)
        return 1
    names = ", ".join(c.name for c in bindings.credentials) or "none"
    checked = "" if args.no_values else ", every value readable"
    print(f"ok: {args.file}: {len(bindings.credentials)} brokered credentials ({names}){checked}")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    try:
        bindings = _load(args.file)
    except BindingsError as e:
        print(f"egress-sidecar: {e}", file=sys.stderr)
        return 1
    for c in bindings.credentials:
        print(f"{c.name}")
        print(f"  value from:   {c.value.describe()}")
        print(f"  agent env:    {c.agent_env or '-'}")
        print(f"  placeholder:  {c.placeholder}")
        print(f"  carried as:   {c.describe_carry()}")
        for d in c.destinations:
            methods = ",".join(d.methods) if d.methods else "any method"
            print(f"  sent only to: {d.url} ({methods})")
    return 0


def placeholder_env(path: Path) -> dict[str, str]:
    """The variables `egress-sidecar env` exports for the agent: placeholders only."""
    bindings = load_bindings(path)
    return {c.agent_env: c.placeholder for c in bindings.credentials if c.agent_env}
