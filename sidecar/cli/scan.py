"""`egress-sidecar scan`: the verdict the proxy would apply, without a proxy.

One request from the command line, or many from a JSON-lines file (`--requests`: one
object per line with `method`, `url`, optional `headers` as [[name, value], ...] and a
body as `body` text or `body_base64`), each judged by `sidecar.judge` exactly as the
running proxy judges it with the embedded engine; one JSON document per request.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sidecar.backends.contract import STREAM_METHODS
from sidecar.cli.errors import CliError
from sidecar.config.credentials import load_credentials
from sidecar.config.settings import load_settings
from sidecar.config.surface import add_cli_flags
from sidecar.engine.policy_file import PolicyError, load_policy
from sidecar.judge.dry_run import describe, dry_run, report
from sidecar.judge.judge import Outbound
from sidecar.judge.resolver import DestinationResolver

SCAN_SETTINGS = ("policy", "internal_hosts")


def add_parser(sub: Any) -> None:
    scan = sub.add_parser("scan", help="print the verdict the proxy would apply (dry run)")
    scan.add_argument("method", nargs="?", help="HTTP method as sent, e.g. POST (WEBSOCKET: "
                      "a message)")  # fmt: skip
    scan.add_argument("url", nargs="?", help="absolute URL")
    scan.add_argument("--body", help="request body, or @FILE to read it from a file")
    scan.add_argument("--header", "-H", action="append", default=[], metavar="K:V",
                      help="request header (repeatable)")  # fmt: skip
    scan.add_argument("--requests", type=Path, metavar="FILE",
                      help="judge every request of a JSON-lines file instead")  # fmt: skip
    scan.add_argument("--no-resolve", action="store_true",
                      help="judge destination names as written, without DNS")  # fmt: skip
    add_cli_flags(scan, SCAN_SETTINGS)
    scan.set_defaults(handler=cmd_scan)


def cmd_scan(args: argparse.Namespace) -> int:
    settings = load_settings(**{name: getattr(args, name) for name in SCAN_SETTINGS})
    try:
        policy = load_policy(settings.policy)
    except PolicyError as e:
        raise CliError(str(e)) from None
    if args.requests is not None:
        if args.method or args.url or args.body or args.header:
            raise CliError("--requests: give either a file of requests or one request")
        batch = list(_from_file(args.requests))
        indent = None
    else:
        if not args.method or not args.url:
            raise CliError("scan: give METHOD and URL (or --requests FILE)")
        headers = [_header(item) for item in args.header]
        batch = [_message(describe(args.method, args.url, headers, _read_body(args.body))[0])]
        indent = 2
    credentials = load_credentials()
    resolver = None if args.no_resolve else DestinationResolver()

    async def judge_all() -> list[dict[str, Any]]:
        return [
            report(await dry_run(settings, policy, credentials, out, resolver)) for out in batch
        ]

    for doc in asyncio.run(judge_all()):
        print(json.dumps(doc, indent=indent))
    return 0


def _from_file(path: Path) -> Iterator[Outbound]:
    try:
        lines = path.read_text().splitlines()
    except OSError as e:
        raise CliError(f"--requests: {path}: {e.strerror}") from None
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = f"--requests: {path}:{number}"
        try:
            doc = json.loads(line)
            method, url = str(doc["method"]), str(doc["url"])
            headers = [(str(k), str(v)) for k, v in doc.get("headers", [])]
            if "body_base64" in doc:
                body = base64.b64decode(doc["body_base64"], validate=True)
            else:
                body = str(doc.get("body", "")).encode()
        except (ValueError, KeyError, TypeError, binascii.Error) as e:
            raise CliError(f"{where}: not a request ({type(e).__name__}: {e})") from None
        yield _message(describe(method, url, headers, body)[0], doc.get("text", True))


def _message(out: Outbound, text: bool = True) -> Outbound:
    """METHOD `WEBSOCKET` or `TCP` describes a message of a stream, judged as the proxy
    judges each one (a WebSocket text message as JSON-or-text)."""
    if out.method not in STREAM_METHODS:
        return out
    media = "application/json" if text and out.method == "WEBSOCKET" else ""
    return Outbound(method=out.method, url=out.url, body=out.body, content_type=media,
                    message=True)  # fmt: skip


def _header(item: str) -> tuple[str, str]:
    name, sep, value = item.partition(":")
    if not sep or not name.strip():
        raise CliError(f"--header: expected K:V, got {item!r}")
    return name.strip(), value.strip()


def _read_body(spec: str | None) -> bytes:
    if spec is None:
        return b""
    if spec.startswith("@"):
        path = Path(spec[1:])
        try:
            return path.read_bytes()
        except OSError as e:
            raise CliError(f"--body: {path}: {e.strerror}") from None
    return spec.encode()
