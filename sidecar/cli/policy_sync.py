"""`egress-sidecar policy push|pull`: one policy file for the embedded engine and the scan
API. `push` validates the file as the embedded engine loads it, lists the rule features
the API reference does not document, then upserts it; `pull` fetches the latest version
into a file, written only if the embedded engine can load it."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from sidecar.backends.errors import ScanError
from sidecar.backends.http import Connection
from sidecar.backends.policies import AppliedPolicy, PolicyApi, undocumented
from sidecar.cli.errors import CliError
from sidecar.config.credentials import load_credentials
from sidecar.config.settings import load_settings
from sidecar.engine.policy import Policy
from sidecar.engine.policy_file import PolicyError, describe_invalid, load_policy, parse_policy


def add_parsers(policy_sub: Any) -> None:
    push = policy_sub.add_parser(
        "push",
        help="validate a policy file and upsert it to the scan API (POST /v1/policies/apply)",
    )
    push.add_argument("file", type=Path)
    push.add_argument("--env", help="environment name (default: the file's env_name)")
    push.set_defaults(handler=cmd_push)
    pull = policy_sub.add_parser(
        "pull", help="fetch a policy's latest version from the scan API into a file"
    )
    pull.add_argument("name")
    pull.add_argument("--env", default="default", help="environment name (default: default)")
    pull.add_argument("-o", "--output", type=Path, help="file to write (default: stdout)")
    pull.set_defaults(handler=cmd_pull)


def _api() -> PolicyApi:
    settings, credentials = load_settings(), load_credentials()
    if credentials.interven.api_key is None:
        raise CliError("INTERVEN_API_KEY is not set (and INTERVEN_GATEWAY_URL, if not the default)")
    conn = Connection(settings.scan_timeout, settings.scan_retries, extra_ca=settings.scan_api_ca)
    return PolicyApi(credentials.interven, conn)


async def _call(api: PolicyApi, call: Any) -> AppliedPolicy:
    try:
        return await call  # type: ignore[no-any-return]
    except ScanError as e:
        raise CliError(str(e)) from None
    finally:
        await api.aclose()


def cmd_push(args: argparse.Namespace) -> int:
    try:
        policy = load_policy(args.file)
    except PolicyError as e:
        raise CliError(str(e)) from None
    if args.env:
        policy = policy.model_copy(update={"env_name": args.env})
    for feature in undocumented(policy):
        print(
            f"note: {args.file}: rule {feature} is not in the scan API's documented rule "
            "schema; sent as written (the scan API may ignore or refuse it)",
            file=sys.stderr,
        )
    api = _api()
    applied = asyncio.run(_call(api, api.apply(policy)))
    print(
        f"pushed: {applied.name} ({applied.env_name}) version {applied.version}, "
        f"policy_id {applied.policy_id}, {len(policy.rules)} rules"
    )
    return 0


def cmd_pull(args: argparse.Namespace) -> int:
    api = _api()
    applied = asyncio.run(_call(api, api.by_name(args.name, args.env)))
    source = f"scan API policy {args.name!r} ({args.env})"
    try:
        policy = applied.as_policy()
    except ValidationError as e:
        data = {"name": applied.name, "rules": applied.rules}
        problem = describe_invalid(e, data, "rules", "rule_id", "policy")
        raise CliError(f"{source}: the embedded engine cannot load it: {problem}") from None
    text = _policy_yaml(policy, applied)
    parse_policy(text, source)  # what is written loads back, or nothing is written
    if args.output is None:
        sys.stdout.write(text)
        return 0
    partial = args.output.with_name(args.output.name + ".partial")
    partial.write_text(text)
    partial.replace(args.output)  # a watcher never reads half a file
    print(f"pulled: {applied.name} ({applied.env_name}) version {applied.version} -> {args.output}")
    return 0


def _policy_yaml(policy: Policy, applied: AppliedPolicy) -> str:
    header = (
        f"# Pulled from the scan API: policy_id {applied.policy_id}, version {applied.version}.\n"
        "# Loads into the embedded engine as is (--policy FILE); push it back with\n"
        "# `egress-sidecar policy push FILE`.\n"
    )
    doc = policy.model_dump(mode="json", exclude_defaults=True)
    doc.setdefault("env_name", policy.env_name)
    return header + yaml.safe_dump(doc, sort_keys=False, allow_unicode=True)
