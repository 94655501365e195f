"""Brokered-credential fixtures: named HTTPS upstreams that record what they receive and
echo it back (the way error pages and debug endpoints do), and a bindings file whose
values live in files only the sidecar reads — swapped by symlink, as Kubernetes does.
"""

from __future__ import annotations

import base64
import gzip
import json
import os
import ssl
from dataclasses import dataclass
from pathlib import Path

import tornado.web
import tornado.websocket
import trustme

from tests.support.dns import ScriptedDns
from tests.support.servers import (
    UPSTREAM_HOST,
    LoopThread,
    Recorder,
    _listen,
    hold_port_from_sidecars,
)

BOUND_HOST = "api.bound.test"  # the credential's destination
OTHER_HOST = "hooks.other.test"  # anywhere else (an attacker's webhook)
# Real values: never in the agent's environment, never in a response it reads.
REAL_VALUES = (
    "sk-proj-REALv4lue9KqZ2mX8pN3rT6wY1bV5cJ7hL0dF4gS2aE9uI3oK6zQ8xW1",
    "sk-proj-ROTATEDv4lue7Hh2Jj5Kk8Ll1Mm4Nn7Pp0Qq3Rr6Ss9Tt2Uu5Vv8Ww1X",
    "wh-REALwebhook-secret-7c1e9a4b3d2f8e6a",
    "wst-REALsocket-token-93b1f07d5e2c4a68",
)


@dataclass
class Received:
    method: str
    uri: str
    headers: dict[str, str]
    body: bytes


class _Record(tornado.web.RequestHandler):
    def initialize(self, upstream: NamedUpstream) -> None:
        self.upstream = upstream

    def prepare(self) -> None:
        r = self.request
        self.upstream.received.add(Received(r.method or "", r.uri or "", dict(r.headers), r.body))

    def _auth(self) -> str:
        return self.request.headers.get("Authorization", "")

    def _handle(self) -> None:
        path = self.request.path
        token = self._auth().removeprefix("Bearer ")
        if path == "/store":  # keeps what it was sent (a paste, a message, a file)
            self.upstream.stored = token
            self.finish({"ok": True})
        elif path == "/stored":  # hands it to whoever asks, placeholder or not
            self.finish({"stored": self.upstream.stored})
        elif path == "/empty":
            self.set_status(204)
            self.set_header("X-Debug-Key", token)
            self.finish()
        elif path == "/echo/headers":  # a debug endpoint: every header, JSON-escaped
            self.finish({"headers": dict(self.request.headers), "raw": f'"{token}"'})
        elif path == "/echo/location":  # a redirect carrying the key
            self.set_header("X-Debug-Key", token)
            self.redirect(f"https://{OTHER_HOST}/callback?key={token}", status=302)
        elif path == "/echo/base64":
            for shift in ("", "a", "ab"):
                self.write(base64.b64encode(f"{shift}{token}".encode()) + b"\n")
            self.finish(base64.urlsafe_b64encode(f"Bearer {token}".encode()))
        elif path == "/echo/gzip":  # compressed although the request asked for identity
            self.set_header("Content-Encoding", "gzip")
            self.set_header("Content-Type", "text/plain")
            self.finish(gzip.compress(f"error: bad key {token}\n".encode()))
        else:
            self.finish({"ok": True})

    get = post = put = patch = delete = head = _handle  # type: ignore[assignment]


class _Sse(tornado.web.RequestHandler):
    """The key in a server-sent event, cut in two writes with a flush between."""

    def initialize(self, upstream: NamedUpstream) -> None:
        self.upstream = upstream

    async def get(self) -> None:
        token = self.request.headers.get("Authorization", "").removeprefix("Bearer ")
        self.set_header("Content-Type", "text/event-stream")
        half = len(token) // 2
        self.write(f"data: first\n\ndata: key={token[:half]}")
        await self.flush()
        self.write(f"{token[half:]}\n\n")
        await self.flush()
        self.finish("data: last\n\n")


class _Download(tornado.web.RequestHandler):
    """GET /download/N: N bytes of a pattern, 1 MiB per write (a large brokered answer)."""

    async def get(self, size: str) -> None:
        left = int(size)
        self.set_header("Content-Type", "application/octet-stream")
        self.set_header("Content-Length", str(left))
        block = bytes(range(256)) * 4096
        while left:
            piece = block[: min(left, len(block))]
            self.write(piece)
            await self.flush()
            left -= len(piece)


class _Ws(tornado.websocket.WebSocketHandler):
    def initialize(self, upstream: NamedUpstream) -> None:
        self.upstream = upstream

    def on_message(self, message: str | bytes) -> None:
        self.upstream.ws_messages.add(message)
        token = self.request.headers.get("Authorization", "").removeprefix("Bearer ")
        self.write_message(f"echo:{message!s} auth:{token}")


class NamedUpstream:
    """An HTTPS server for one name (signed by the CA the sidecar trusts upstream)."""

    def __init__(self, loop: LoopThread, ca: trustme.CA, name: str) -> None:
        self.name = name
        ssl_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert(name).configure_cert(ssl_ctx)
        self.received = Recorder()
        self.ws_messages = Recorder()
        self.stored = ""
        app = tornado.web.Application([
            (r"/echo/sse", _Sse, {"upstream": self}),
            (r"/download/(\d+)", _Download),
            (r"/ws", _Ws, {"upstream": self}),
            (r"/.*", _Record, {"upstream": self}),
        ])  # fmt: skip
        self.port = loop.run(_listen(app, UPSTREAM_HOST, ssl_ctx))
        self._held = hold_port_from_sidecars(self.port)
        self.base = f"https://{name}:{self.port}"

    @property
    def requests(self) -> list[Received]:
        return list(self.received.items)


def brokered_dns() -> ScriptedDns:
    return ScriptedDns(
        **{
            BOUND_HOST.replace(".", "_"): [UPSTREAM_HOST],
            OTHER_HOST.replace(".", "_"): [UPSTREAM_HOST],
        }
    )


class SecretMount:
    """A directory laid out like a Kubernetes Secret volume: `KEY -> ..data/KEY`, and
    `..data -> ..<version>`; `update` swaps `..data` atomically (rename over it)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        self._version = 0

    def update(self, values: dict[str, str]) -> None:
        self._version += 1
        version = self.root / f"..v{self._version}"
        version.mkdir()
        for key, value in values.items():
            (version / key).write_text(value + "\n")
        link = self.root / "..data_tmp"
        link.symlink_to(version.name)
        os.replace(link, self.root / "..data")
        for key in values:
            if not (self.root / key).is_symlink():
                (self.root / key).symlink_to(f"..data/{key}")

    def path(self, key: str) -> Path:
        return self.root / key


def bindings_file(tmp: Path, mount: SecretMount, bound: NamedUpstream) -> Path:
    """Four credentials: a bearer key for the bound API, a webhook secret carried in its
    URL path, a WebSocket token in its query, and a key carried in a JSON field."""
    doc = {
        "credentials": [
            {
                "name": "openai",
                "value": {"file": str(mount.path("openai-api-key"))},
                "agent_env": "OPENAI_API_KEY",
                "shape": "openai",
                "destinations": [{"url": f"{bound.base}/"}],
                "carry": "bearer",
            },
            {
                "name": "webhook",
                "value": {"file": str(mount.path("webhook-secret"))},
                "agent_env": "WEBHOOK_SECRET",
                "shape": {"prefix": "wh-", "length": 32},
                "destinations": [{"url": f"{bound.base}/hooks/", "methods": ["POST"]}],
                "carry": "path",
            },
            {
                "name": "wsquery",
                "value": {"file": str(mount.path("ws-token"))},
                "agent_env": "WS_TOKEN",
                "destinations": [{"url": f"{bound.base}/ws"}],
                "carry": {"query": "token"},
            },
            {
                "name": "jsonkey",
                "value": {"file": str(mount.path("json-key"))},
                "agent_env": "JSON_KEY",
                "destinations": [{"url": f"{bound.base}/json/"}],
                "carry": {"json": "auth.key"},
            },
        ]
    }
    path = tmp / "bindings.yaml"
    path.write_text(json.dumps(doc))  # JSON is YAML
    return path
