"""Real loopback servers for end-to-end tests: a scan-API double and a recording upstream.

Both are tornado servers on ephemeral ports, each on an event loop in its own thread,
so tests (and the sidecar, in a third thread) talk to them over real sockets.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import socket
import ssl
import threading
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import tornado.httpserver
import tornado.httputil
import tornado.netutil
import tornado.web
import tornado.websocket
import trustme

from bench.servers import verdict

T = TypeVar("T")

# The upstream listens on 127.0.0.2: loopback, but not in the agents' NO_PROXY list,
# so clients configured by `egress-sidecar env` send it through the proxy.
UPSTREAM_HOST = "127.0.0.2"
WAIT = 20.0
PII_SSN = "512-34-6789"  # what the upstream's /pii... endpoints return


class LoopThread:
    """An asyncio loop running in a daemon thread."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = WAIT) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(WAIT)


class Recorder:
    """A thread-safe list that tests can wait on."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._items: list[Any] = []

    def add(self, item: Any) -> None:
        with self._cond:
            self._items.append(item)
            self._cond.notify_all()

    @property
    def items(self) -> list[Any]:
        with self._cond:
            return list(self._items)

    def wait_for(self, predicate: Callable[[Any], bool], timeout: float = WAIT) -> Any:
        """The first recorded item matching `predicate`, waiting for it if need be."""
        with self._cond:
            found = self._cond.wait_for(
                lambda: any(predicate(i) for i in self._items), timeout=timeout
            )
            assert found, "expected item was never recorded"
            return next(i for i in self._items if predicate(i))


@dataclass
class Reply:
    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # simulates a slow scan API (never used to synchronise a test)
    body_delay: float = 0.0  # headers at once, then the body this much later


def rule_by_path(scan: dict[str, Any]) -> Reply:
    """Default behaviour: the upstream path names the decision the test wants."""
    path = scan["url"].split("/", 3)[-1]
    if path.startswith("deny"):
        return Reply(body=verdict("DENY", policy_name="block-secrets-egress"))
    if path.startswith("sanitize"):
        return Reply(body=verdict("SANITIZE", sanitized_body={"text": "[REDACTED:SECRETS]"}))
    if path.startswith("approve/"):
        approval_id = path.split("/")[1]
        return Reply(body=verdict("REQUIRE_APPROVAL", approval_id=approval_id))
    return Reply(body=verdict("ALLOW", tool_name="slack", operation="post_message"))


def scripted(
    replies: tuple[Reply, ...], then: Callable[[dict[str, Any]], Reply]
) -> Callable[[dict[str, Any]], Reply]:
    """A double's behaviour: `replies` in order (thread-safe), then `then` for the rest."""
    queue = list(replies)
    lock = threading.Lock()

    def behaviour(doc: dict[str, Any]) -> Reply:
        with lock:
            if queue:
                return queue.pop(0)
        return then(doc)

    return behaviour


class _Base(tornado.web.RequestHandler):
    def initialize(self, double: ScanApiDouble) -> None:
        self.double = double

    async def reply(self, reply: Reply) -> None:
        if reply.delay:
            await asyncio.sleep(reply.delay)
        self.set_status(reply.status)
        for k, v in reply.headers.items():
            self.set_header(k, v)
        if isinstance(reply.body, (dict, list)):
            self.set_header("Content-Type", "application/json")
            payload = json.dumps(reply.body).encode()
        else:
            payload = (reply.body or "").encode()
        if reply.body_delay:
            self.set_header("Content-Length", str(len(payload)))
            self.write(payload[:1])
            await self.flush()
            await asyncio.sleep(reply.body_delay)
            payload = payload[1:]
        self.finish(payload)


class _ScanHandler(_Base):
    async def post(self) -> None:
        doc = json.loads(self.request.body)
        self.double.scans.add({"headers": dict(self.request.headers), "json": doc})
        await self.reply(self.double.behaviour(doc))


class _ResponseHandler(_Base):
    async def post(self) -> None:
        doc = json.loads(self.request.body)
        self.double.response_posts.add({"headers": dict(self.request.headers), "json": doc})
        await self.reply(self.double.response_behaviour(doc))


class _ApprovalHandler(_Base):
    async def get(self, approval_id: str) -> None:
        self.double.approval_polls.add(approval_id)
        await self.reply(self.double.approval_behaviour(approval_id))


class _PolicyApplyHandler(_Base):
    """`POST /v1/policies/apply`: bearer auth, a 400 naming what it rejects, an upsert
    that adds a version (the same document twice: the same version)."""

    async def post(self) -> None:
        double = self.double
        if (refused := _policy_refusal(self)) is not None:
            await self.reply(refused)
            return
        doc = json.loads(self.request.body)
        double.policy_pushes.add(doc)
        for i, rule in enumerate(doc.get("rules", [])):
            if rule.get("action") not in ("ALLOW", "DENY", "SANITIZE", "REQUIRE_APPROVAL"):
                await self.reply(Reply(400, {"error": f"rules[{i}].action: not a decision"}))
                return
        key = (doc["name"], doc.get("env_name", "default"))
        versions = double.policies.setdefault(key, [])
        if not versions or versions[-1] != doc:
            versions.append(doc)
        await self.reply(Reply(body=_policy_answer(doc, len(versions))))


class _PolicyByNameHandler(_Base):
    async def get(self, name: str) -> None:
        double = self.double
        if (refused := _policy_refusal(self)) is not None:
            await self.reply(refused)
            return
        env = self.get_query_argument("env", "default")
        versions = double.policies.get((name, env))
        if not versions:
            await self.reply(Reply(404, {"error": f"no policy {name!r} in {env!r}"}))
            return
        await self.reply(Reply(body=_policy_answer(versions[-1], len(versions))))


def _policy_refusal(handler: _Base) -> Reply | None:
    """The scripted fault, else a 401 for a missing or wrong key, else None."""
    double = handler.double
    if double.policy_fault is not None:
        return double.policy_fault
    if handler.request.headers.get("Authorization") != f"Bearer {double.api_key}":
        return Reply(401, {"error": "missing or invalid API key"})
    return None


def _policy_answer(doc: dict[str, Any], version: int) -> dict[str, Any]:
    env = doc.get("env_name", "default")
    return {"policy_id": f"pol_{doc['name']}_{env}", "name": doc["name"], "env_name": env,
            "version": version, "rules": doc.get("rules", []),
            **({"description": doc["description"]} if "description" in doc else {})}  # fmt: skip


class ScanApiDouble:
    """The scan API contract on loopback: /v1/scan, /v1/scan/response, approvals."""

    def __init__(self, loop: LoopThread, tls: trustme.CA | None = None) -> None:
        self.scans = Recorder()
        self.response_posts = Recorder()
        self.approval_polls = Recorder()
        self.approvals: dict[str, str] = {}
        self.behaviour: Callable[[dict[str, Any]], Reply] = rule_by_path
        self.response_behaviour: Callable[[dict[str, Any]], Reply] = lambda _doc: Reply(
            body={"data_classes": [], "fields_redacted_count": 0, "content_fingerprint": "x"}
        )
        self.approval_behaviour: Callable[[str], Reply] = lambda approval_id: Reply(
            body={"status": self.approvals.get(approval_id, "pending")}
        )
        self.api_key = ""  # the policy endpoints' bearer key (set by the test)
        self.policies: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self.policy_pushes = Recorder()
        self.policy_fault: Reply | None = None  # answered instead, when set
        app = tornado.web.Application(
            [
                (r"/v1/policies/apply", _PolicyApplyHandler, {"double": self}),
                (r"/v1/policies/by-name/([^/?]+)", _PolicyByNameHandler, {"double": self}),
                (r"/v1/scan", _ScanHandler, {"double": self}),
                (r"/v1/scan/response", _ResponseHandler, {"double": self}),
                (r"/v1/approvals/([^/]+)/status", _ApprovalHandler, {"double": self}),
            ]
        )
        ssl_ctx = None
        if tls is not None:  # a self-hosted gateway with a private CA
            ssl_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            tls.issue_cert("127.0.0.1").configure_cert(ssl_ctx)
        self.port = loop.run(_listen(app, "127.0.0.1", ssl_ctx))
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"

    def script(
        self, *replies: Reply, then: Callable[[dict[str, Any]], Reply] = rule_by_path
    ) -> None:
        """Answer the next scans with `replies` in order, then with `then`."""
        self.behaviour = scripted(replies, then)


@dataclass
class UpstreamRequest:
    scheme: str
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


class _UpstreamHandler(tornado.web.RequestHandler):
    SUPPORTED_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")

    def initialize(self, upstream: Upstream) -> None:
        self.upstream = upstream

    def _handle(self) -> None:
        r = self.request
        self.upstream.record(r)
        doc: dict[str, Any] = {"ok": True, "path": r.uri, "secret_looking": "upstream-says-hello"}
        if r.uri and r.uri.startswith("/pii"):
            doc["customer"] = {"name": "Grace", "ssn": PII_SSN, "email": "grace.h@navy.example.net"}
        body = json.dumps(doc).encode()
        self.set_header("Content-Type", "application/json")
        if "gzip" in r.headers.get("Accept-Encoding", "") and r.uri and "gzip" in r.uri:
            self.set_header("Content-Encoding", "gzip")
            body = gzip.compress(body)
        self.finish(body)

    get = post = put = patch = delete = _handle  # type: ignore[assignment]


class _SseHandler(tornado.web.RequestHandler):
    """Sends one event, waits until the test releases it, then sends the last one."""

    def initialize(self, upstream: Upstream) -> None:
        self.upstream = upstream

    async def get(self) -> None:
        self.set_header("Content-Type", "text/event-stream")
        self.write("data: first\n\n")
        await self.flush()
        await self.upstream.sse_release.wait()
        self.finish("data: second\n\n")


# What the LLM endpoints answer; the streamed one splits the secret across two deltas.
LLM_SECRET = "sk-proj-SPLITSECRET0123456789abcdef"
LLM_ANSWER = "Hello from the model"


class _OpenAiHandler(tornado.web.RequestHandler):
    """`/openai/v1/chat/completions`: JSON, or (with "stream": true) SSE chunks that pause
    after the first until the test opens the gate named by the request's `user` field."""

    def initialize(self, upstream: Upstream) -> None:
        self.upstream = upstream

    async def post(self) -> None:
        doc = json.loads(self.request.body)
        self.upstream.record(self.request)
        if not doc.get("stream"):
            message = {"role": "assistant", "content": LLM_ANSWER}
            self.finish({"choices": [{"index": 0, "message": message, "finish_reason": "stop"}]})
            return
        self.set_header("Content-Type", "text/event-stream")
        half = len(LLM_SECRET) // 2
        deltas = [{"role": "assistant", "content": f"The key is {LLM_SECRET[:half]}"},
                  {"content": LLM_SECRET[half:]}]  # fmt: skip
        self.write(_chunk(deltas[0], None))
        await self.flush()
        await self.upstream.gate(str(doc.get("user", ""))).wait()
        self.write(_chunk(deltas[1], None) + _chunk({}, "length"))
        self.finish("data: [DONE]\n\n")


def _chunk(delta: dict[str, Any], finish: str | None) -> str:
    choice = {"index": 0, "delta": delta, "finish_reason": finish}
    return f"data: {json.dumps({'object': 'chat.completion.chunk', 'choices': [choice]})}\n\n"


class _AnthropicHandler(tornado.web.RequestHandler):
    def initialize(self, upstream: Upstream) -> None:
        self.upstream = upstream

    def post(self) -> None:
        self.upstream.record(self.request)
        self.finish({"type": "message", "role": "assistant", "stop_reason": "end_turn",
                     "content": [{"type": "text", "text": LLM_ANSWER}]})  # fmt: skip


class _WsHandler(tornado.websocket.WebSocketHandler):
    def initialize(self, upstream: Upstream) -> None:
        self.upstream = upstream

    def open(self) -> None:
        self.upstream.ws_handshakes.add((self.request.uri, dict(self.request.headers)))

    def on_message(self, message: str | bytes) -> None:
        self.upstream.ws_messages.add(message)
        self.write_message(f"echo:{message!s}")


class _DownloadHandler(tornado.web.RequestHandler):
    """GET /download/N: N bytes with a Content-Length, written 1 MiB at a time."""

    async def get(self, size: str) -> None:
        left = int(size)
        self.set_header("Content-Type", "application/octet-stream")
        self.set_header("Content-Length", str(left))
        block = b"d" * (1 << 20)
        while left:
            piece = block[: min(left, len(block))]
            self.write(piece)
            await self.flush()
            left -= len(piece)


class _EncodedHandler(tornado.web.RequestHandler):
    """GET /encoded/NAME: the body registered under NAME, with its Content-Encoding."""

    def initialize(self, upstream: Upstream) -> None:
        self.upstream = upstream

    def get(self, name: str) -> None:
        body, coding = self.upstream.encoded[name]
        self.set_header("Content-Type", "text/plain")
        self.set_header("Content-Encoding", coding)
        self.write(body)


class _WsBigHandler(tornado.websocket.WebSocketHandler):
    """/ws-big/N: sends one binary message of N bytes when the agent says anything."""

    def on_message(self, message: str | bytes) -> None:
        self.write_message(b"b" * int(self.path_args[0]), binary=True)


class Upstream:
    """An HTTPS (and a plain HTTP) server that records every request it receives."""

    def __init__(self, loop: LoopThread, tmp: Path) -> None:
        self.ca = trustme.CA()
        cert = self.ca.issue_cert(UPSTREAM_HOST, "localhost")
        self.ca_file = tmp / "upstream-ca.pem"
        self.ca.cert_pem.write_to_path(str(self.ca_file))
        ssl_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        cert.configure_cert(ssl_ctx)
        self.received = Recorder()
        self.ws_messages = Recorder()
        self.ws_handshakes = Recorder()  # (uri, headers) of each upgrade, as received
        self._loop = loop
        self.sse_release = loop.run(_make_event())
        self._gates: dict[str, asyncio.Event] = {}
        self.encoded: dict[str, tuple[bytes, str]] = {}  # served by /encoded/NAME
        app = tornado.web.Application([
            (r"/sse", _SseHandler, {"upstream": self}),
            (r"/openai/v1/chat/completions", _OpenAiHandler, {"upstream": self}),
            (r"/anthropic/v1/messages", _AnthropicHandler, {"upstream": self}),
            (r"/ws", _WsHandler, {"upstream": self}),
            (r"/ws-big/(\d+)", _WsBigHandler),
            (r"/download/(\d+)", _DownloadHandler),
            (r"/encoded/(\w+)", _EncodedHandler, {"upstream": self}),
            (r"/.*", _UpstreamHandler, {"upstream": self}),
        ])  # fmt: skip
        self.https_port = loop.run(_listen(app, UPSTREAM_HOST, ssl_ctx))
        self.http_port = loop.run(_listen(app, UPSTREAM_HOST, None))
        self._held = [hold_port_from_sidecars(p) for p in (self.https_port, self.http_port)]
        self.https = f"https://{UPSTREAM_HOST}:{self.https_port}"
        self.http = f"http://{UPSTREAM_HOST}:{self.http_port}"

    def release_sse(self) -> None:
        self._loop.loop.call_soon_threadsafe(self.sse_release.set)

    def record(self, r: tornado.httputil.HTTPServerRequest) -> None:
        self.received.add(
            UpstreamRequest(r.protocol, r.method or "", r.uri or "", dict(r.headers), r.body)
        )

    def gate(self, name: str) -> asyncio.Event:
        """A named gate a streaming handler waits at (created on the servers' loop)."""
        return self._gates.setdefault(name, asyncio.Event())

    def open_gate(self, name: str) -> None:
        self._loop.loop.call_soon_threadsafe(lambda: self.gate(name).set())

    def requests_to(self, path: str) -> list[UpstreamRequest]:
        return [r for r in self.received.items if r.path == path]


def hold_port_from_sidecars(port: int) -> socket.socket | None:
    """Test servers listen on 127.0.0.2; a sidecar under test listens on 127.0.0.1 and
    counts every loopback address with its own port as itself (SIDECAR_ENDPOINT). Holding
    the same port on 127.0.0.1 keeps the kernel from ever giving it to a sidecar."""
    holder = socket.socket()
    try:
        holder.bind(("127.0.0.1", port))
    except OSError:  # taken on 127.0.0.1 already (perhaps by a running sidecar)
        holder.close()
        return None
    return holder


def serve_clear_of_sidecars(
    loop: LoopThread, start: Callable[[], Coroutine[Any, Any, asyncio.Server]]
) -> tuple[asyncio.Server, int, socket.socket]:
    """Start a test server on a port no sidecar holds (or will be given) on 127.0.0.1."""
    for _ in range(20):
        server = loop.run(start())
        port = int(server.sockets[0].getsockname()[1])
        held = hold_port_from_sidecars(port)
        if held is not None:
            return server, port, held
        server.close()
    raise AssertionError("no port clear of the sidecars under test")


async def _make_event() -> asyncio.Event:
    return asyncio.Event()


async def _listen(app: tornado.web.Application, host: str, ssl_ctx: Any) -> int:
    sockets = tornado.netutil.bind_sockets(0, host)
    server = tornado.httpserver.HTTPServer(app, ssl_options=ssl_ctx)
    server.add_sockets(sockets)
    return int(sockets[0].getsockname()[1])
