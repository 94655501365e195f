"""Loopback servers for the proxy benchmark, each run in its own process.

    python -m bench.servers upstream|scan-api --cert FILE --key FILE

Prints `ready PORT` once listening. The upstream answers every request with a small JSON
body (paths under `/hold/` wait until `POST /release`); the scan-API double answers the
scan contract (`/deny/` → DENY, `/hold/` → REQUIRE_APPROVAL that stays pending, else
ALLOW). Both count TCP connections and requests at `GET /stats`, so the harness can tell
whether the sidecar reuses its connections to the scan API.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import ssl
import uuid
from typing import Any

import tornado.httpserver
import tornado.iostream
import tornado.netutil
import tornado.web


class Stats:
    def __init__(self) -> None:
        self.connections = 0
        self.requests = 0
        self.held = 0
        self.release = asyncio.Event()


class CountingServer(tornado.httpserver.HTTPServer):
    """Counts accepted connections: with TLS, one connection is one handshake."""

    stats: Stats

    def handle_stream(self, stream: tornado.iostream.IOStream, address: tuple[Any, ...]) -> None:
        self.stats.connections += 1
        super().handle_stream(stream, address)


class _Handler(tornado.web.RequestHandler):
    def initialize(self, stats: Stats) -> None:
        self.stats = stats

    def prepare(self) -> None:
        self.stats.requests += 1

    def reply(self, doc: object) -> None:
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(doc))


class StatsHandler(_Handler):
    def get(self) -> None:
        self.reply(vars(self.stats) | {"release": self.stats.release.is_set()})


class ReleaseHandler(_Handler):
    def post(self) -> None:
        self.stats.release.set()
        self.reply({"released": self.stats.held})


class UpstreamHandler(_Handler):
    async def _answer(self) -> None:
        if self.request.path.startswith("/hold/"):
            self.stats.held += 1
            await self.stats.release.wait()
        self.reply({"ok": True, "received": len(self.request.body)})

    get = post = put = _answer


def verdict(decision: str = "ALLOW", **extra: Any) -> dict[str, Any]:
    """A verdict as the scan API serialises it (the tests' scan-API double answers these too)."""
    doc: dict[str, Any] = {
        "decision": decision,
        "risk_score": 0.1 if decision == "ALLOW" else 0.9,
        "risk_band": "LOW" if decision == "ALLOW" else "HIGH",
        "reason_codes": [] if decision == "ALLOW" else ["SECRETS"],
        "trace_id": str(uuid.uuid4()),
        "tool_name": "custom_proxy",
        "operation": "unknown",
        "classifications": [] if decision == "ALLOW" else ["SECRETS"],
        "signals": [],
    }
    doc.update(extra)
    return doc


def verdict_for(url: str) -> dict[str, Any]:
    """The verdict the path asks for, as the scan API serialises it."""
    if "/deny/" in url:
        return verdict("DENY")
    if "/hold/" in url:
        return verdict("REQUIRE_APPROVAL", approval_id=str(uuid.uuid4()))
    return verdict("ALLOW")


class ScanHandler(_Handler):
    def post(self) -> None:
        self.reply(verdict_for(json.loads(self.request.body)["url"]))


class ResponseHandler(_Handler):
    def post(self) -> None:
        self.reply({"data_classes": [], "fields_redacted_count": 0, "content_fingerprint": "x"})


class ApprovalHandler(_Handler):
    def get(self, _approval_id: str) -> None:
        self.reply({"status": "pending"})


def application(kind: str, stats: Stats) -> tornado.web.Application:
    common: list[Any] = [
        (r"/stats", StatsHandler, {"stats": stats}),
        (r"/release", ReleaseHandler, {"stats": stats}),
    ]
    if kind == "scan-api":
        routes = [
            (r"/v1/scan", ScanHandler, {"stats": stats}),
            (r"/v1/scan/response", ResponseHandler, {"stats": stats}),
            (r"/v1/approvals/([^/]+)/status", ApprovalHandler, {"stats": stats}),
        ]
    else:
        routes = [(r"/.*", UpstreamHandler, {"stats": stats})]
    return tornado.web.Application(common + routes)


async def serve(kind: str, cert: str, key: str) -> None:
    stats = Stats()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    server = CountingServer(
        application(kind, stats), ssl_options=context, idle_connection_timeout=600
    )
    server.stats = stats
    sockets = tornado.netutil.bind_sockets(0, "127.0.0.1", backlog=4096)
    server.add_sockets(sockets)
    print(f"ready {sockets[0].getsockname()[1]}", flush=True)
    await asyncio.Event().wait()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.servers")
    parser.add_argument("kind", choices=["upstream", "scan-api"])
    parser.add_argument("--cert", required=True)
    parser.add_argument("--key", required=True)
    args = parser.parse_args()
    asyncio.run(serve(args.kind, args.cert, args.key))


if __name__ == "__main__":
    main()
