"""The attack and benign corpora, end to end through a running sidecar.

    python -m bench.detection_corpus [--family NAME] [--show-misses]

Each case is sent by a real client (httpx for HTTP, `websockets` for WebSocket) through
the sidecar with its default backend and policy, over TLS it intercepts, to the case's
real destination name: a local resolver sends every name to one recording HTTPS server
that presents a certificate for whatever name was asked (its own CA, which the sidecar
trusts as its upstream CA). Prints, per family, how many attacks were contained (refused,
or forwarded with the payload cut out) and how many benign requests were changed or
refused (false positives).
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import socket
import ssl
import sys
import tempfile
import threading
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import tornado.httpserver
import tornado.httputil
import tornado.routing
import tornado.web
import tornado.websocket
import websockets.asyncio.client
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from mitmproxy.certs import CertStore

from addons.ca import ensure_ca
from addons.serve import ReadyInfo, build_master
from bench.corpora import Case
from sidecar.config.credentials import Credentials
from sidecar.config.settings import load_settings
from sidecar.engine.destinations import IPAddress
from sidecar.judge.resolver import DestinationResolver

UPSTREAM = "127.0.0.77"  # every name resolves here; listed as the one internal host
WAIT = 30.0


@dataclass
class Received:
    method: str
    host: str
    path: str
    body: bytes


END_OF_CASE = "end-of-case "  # + the case's name: a benign last message


@dataclass
class Recording:
    requests: list[Received] = field(default_factory=list)
    messages: list[str | bytes] = field(default_factory=list)
    ended: set[str] = field(default_factory=set)  # END_OF_CASE messages received
    arrived: threading.Condition = field(default_factory=threading.Condition)

    def end(self, tag: str) -> None:
        with self.arrived:
            self.ended.add(tag)
            self.arrived.notify_all()

    def wait_end(self, tag: str) -> bool:
        with self.arrived:
            return self.arrived.wait_for(lambda: tag in self.ended, WAIT)


class _Record(tornado.web.RequestHandler):
    SUPPORTED_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")

    def initialize(self, recording: Recording) -> None:
        self.recording = recording

    def _record(self, *_: Any) -> None:
        r = self.request
        self.recording.requests.append(Received(r.method or "", r.host, r.uri or "", r.body))
        self.set_header("Content-Type", "application/json")
        self.finish(b'{"ok":true}')

    get = head = post = put = patch = delete = options = _record


class _Socket(tornado.websocket.WebSocketHandler):
    def initialize(self, recording: Recording) -> None:
        self.recording = recording

    def check_origin(self, origin: str) -> bool:
        return True

    def on_message(self, message: str | bytes) -> None:
        if isinstance(message, str) and message.startswith(END_OF_CASE):
            self.recording.end(message)
            return
        self.recording.messages.append(message)


class _WebSocketUpgrade(tornado.routing.Matcher):
    """WebSocket handshakes, on any path (a case's URL keeps its own path)."""

    def match(self, request: tornado.httputil.HTTPServerRequest) -> dict[str, Any] | None:
        return {} if request.headers.get("Upgrade", "").lower() == "websocket" else None


class _SniCerts:
    """A TLS context per server name, each with a certificate for that name."""

    def __init__(self, directory: Path) -> None:
        self.store = CertStore.from_store(directory, "corpus-upstream", 2048)
        self.ca_file = directory / "corpus-upstream-ca-cert.pem"
        self._dir = directory
        self._contexts: dict[str, ssl.SSLContext] = {}

    def context(self, name: str) -> ssl.SSLContext:
        found = self._contexts.get(name)
        if found is not None:
            return found
        entry = self.store.get_cert(name, [x509.DNSName(name)])
        cert, key = _chain_files(self._dir, len(self._contexts))
        cert.write_bytes(entry.cert.to_pem())
        key.write_bytes(
            entry.privatekey.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.TraditionalOpenSSL,
                serialization.NoEncryption(),
            )
        )
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(cert, key)
        self._contexts[name] = ctx
        return ctx

    def server_context(self) -> ssl.SSLContext:
        base = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        first = self.context("corpus.invalid")
        base.load_cert_chain(*_chain_files(self._dir, 0))
        del first

        def pick(sock: ssl.SSLObject, name: str | None, _: ssl.SSLContext) -> None:
            sock.context = self.context(name or "corpus.invalid")

        base.sni_callback = pick  # type: ignore[assignment]
        return base


def _chain_files(directory: Path, index: int) -> tuple[Path, Path]:
    return directory / f"{index}.crt", directory / f"{index}.key"


@dataclass
class Outcome:
    decision: str  # the sidecar's decision header, REFUSED_CONNECT, or ERROR:<kind>
    forwarded: bool  # the recording server received the request (or every message)
    unchanged: bool  # ... exactly as sent


class CorpusRig:
    """A sidecar (default backend and policy) in front of the recording server."""

    def __init__(self, workdir: Path) -> None:
        self.recording = Recording()
        self._certs = _SniCerts(workdir / "upstream")
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self.port = asyncio.run_coroutine_threadsafe(self._serve(), self._loop).result(WAIT)
        settings = load_settings(
            listen="127.0.0.1:0",
            admin="127.0.0.1:0",
            confdir=str(workdir / "sidecar"),
            upstream_ca=str(self._certs.ca_file),
            internal_hosts=UPSTREAM,
            backend="local",
        )
        ca = ensure_ca(settings.confdir, settings.ca_cert, settings.ca_key, settings.ca_bundle_out)
        self.ca_file = str(ca.cert)
        ready = threading.Event()
        box: dict[str, Any] = {}

        def on_ready(info: ReadyInfo) -> None:
            box["info"] = info
            ready.set()

        async def lookup(host: str, port: int) -> list[IPAddress]:
            return [ipaddress.ip_address(UPSTREAM)]

        async def main() -> None:
            master = build_master(
                settings, Credentials(), ca, on_ready, DestinationResolver(lookup=lookup)
            )
            box["master"] = master
            await master.run()

        def run() -> None:
            try:
                asyncio.run(main())
            except BaseException as e:  # reported below
                box["error"] = e
                ready.set()

        self._sidecar = threading.Thread(target=run, daemon=True)
        self._sidecar.start()
        if not ready.wait(WAIT) or "error" in box:
            raise RuntimeError(f"sidecar did not start: {box.get('error')}")
        self._master = box["master"]
        self.proxy = f"http://{box['info'].proxy}"
        trust = ssl.create_default_context(cafile=self.ca_file)
        self._client = httpx.Client(proxy=self.proxy, verify=trust, timeout=WAIT)

    async def _serve(self) -> int:
        app = tornado.web.Application(
            [tornado.routing.Rule(_WebSocketUpgrade(), _Socket, {"recording": self.recording}),
             (r".*", _Record, {"recording": self.recording})]
        )  # fmt: skip
        server = tornado.httpserver.HTTPServer(app, ssl_options=self._certs.server_context())
        sockets = tornado.netutil.bind_sockets(0, UPSTREAM)
        server.add_sockets(sockets)
        return int(sockets[0].getsockname()[1])

    def routed(self, url: str) -> str:
        """The case's URL with the recording server's port (names stay as written)."""
        parts = urlsplit(url)
        netloc = parts.netloc.rsplit("@", 1)
        host = netloc[-1]
        if host.startswith("["):
            host = host[: host.index("]") + 1]
        elif ":" in host:
            host = host.rsplit(":", 1)[0]
        netloc[-1] = f"{host}:{self.port}"
        scheme = {"ws": "wss", "http": "https"}.get(parts.scheme, parts.scheme)
        return urlunsplit((scheme, "@".join(netloc), parts.path, parts.query, ""))

    def run(self, case: Case) -> Outcome:
        if case.messages:
            return asyncio.run(self._run_socket(case))
        before = len(self.recording.requests)
        try:
            response = self._client.request(
                case.method,
                self.routed(case.url),
                headers=list(case.headers),
                content=case.body or None,
            )
        except httpx.ProxyError:
            return Outcome("REFUSED_CONNECT", False, False)
        except httpx.InvalidURL:  # e.g. `0251.0376.0251.0376`, which httpx will not parse
            return self._run_raw(case, before)
        except httpx.HTTPError as e:
            return Outcome(f"ERROR:{type(e).__name__}", False, False)
        got = self.recording.requests[before:]
        decision = response.headers.get("x-interven-decision", f"HTTP_{response.status_code}")
        forwarded = bool(got)
        unchanged = forwarded and got[0].body == case.body
        return Outcome(decision, forwarded, unchanged)

    def _run_raw(self, case: Case, before: int) -> Outcome:
        """Absolute-form plain HTTP on a socket, for URLs client libraries refuse but the
        proxy accepts (curl and libc read them)."""
        parts = urlsplit(self.routed(case.url))
        target = urlunsplit(("http", parts.netloc, parts.path or "/", parts.query, ""))
        head = f"{case.method} {target} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in case.headers)
        head += f"Content-Length: {len(case.body)}\r\nConnection: close\r\n\r\n"
        host, port = self.proxy.removeprefix("http://").rsplit(":", 1)
        with socket.create_connection((host, int(port)), timeout=WAIT) as sock:
            sock.sendall(head.encode() + case.body)
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
        header_block = data.split(b"\r\n\r\n", 1)[0].decode("latin-1")
        decision = next(
            (line.split(":", 1)[1].strip() for line in header_block.split("\r\n")
             if line.lower().startswith("x-interven-decision:")),
            "HTTP_" + header_block.split(" ", 2)[1],
        )  # fmt: skip
        got = self.recording.requests[before:]
        return Outcome(decision, bool(got), bool(got) and got[0].body == case.body)

    async def _run_socket(self, case: Case) -> Outcome:
        before = len(self.recording.messages)
        ctx = ssl.create_default_context(cafile=self.ca_file)
        try:
            async with websockets.asyncio.client.connect(
                self.routed(case.url), proxy=self.proxy, ssl=ctx, open_timeout=WAIT
            ) as ws:
                for message in case.messages:
                    await ws.send(message)
                # Messages are judged and relayed in order (a ping would be answered by
                # the sidecar itself, before they are): once this last one reaches the
                # server, every message of the case that was kept has too.
                tag = END_OF_CASE + case.name
                await ws.send(tag)
                if not await asyncio.to_thread(self.recording.wait_end, tag):
                    return Outcome("ERROR:end_of_case_lost", False, False)
        except websockets.exceptions.InvalidStatus as e:
            return Outcome(f"HTTP_{e.response.status_code}", False, False)
        except (OSError, websockets.exceptions.WebSocketException) as e:
            return Outcome(f"ERROR:{type(e).__name__}", False, False)
        got = self.recording.messages[before:]
        unchanged = got == list(case.messages)
        return Outcome("ALLOW" if unchanged else "DENY", bool(got), unchanged)

    def close(self) -> None:
        self._client.close()
        loop = self._master.event_loop
        loop.call_soon_threadsafe(self._master.shutdown)
        self._sidecar.join(WAIT)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(WAIT)


@contextmanager
def corpus_rig() -> Iterator[CorpusRig]:
    with tempfile.TemporaryDirectory() as tmp:
        rig = CorpusRig(Path(tmp))
        try:
            yield rig
        finally:
            rig.close()


def contained(outcome: Outcome) -> bool:
    """An attack is contained when its bytes did not reach the server as sent."""
    return not outcome.unchanged


def false_positive(outcome: Outcome) -> bool:
    """A benign request is a false positive unless it was allowed and arrived unchanged."""
    return not (outcome.decision == "ALLOW" and outcome.unchanged)


def main() -> None:
    from bench.corpora.attacks import ATTACKS
    from bench.corpora.benign import BENIGN

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--family", help="only this family (attacks or benign)")
    parser.add_argument("--show-misses", action="store_true", help="list each miss")
    args = parser.parse_args()
    rows: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    misses: list[str] = []
    with corpus_rig() as rig:
        for kind, cases in (("attack", ATTACKS), ("benign", BENIGN)):
            for case in cases:
                if args.family and case.family != args.family:
                    continue
                outcome = rig.run(case)
                good = contained(outcome) if kind == "attack" else not false_positive(outcome)
                row = rows[(kind, case.family)]
                row[0] += good
                row[1] += 1
                if not good:
                    misses.append(f"{kind:7} {case.family:22} {case.name:44} {outcome.decision}")
    print(f"{'corpus':8}{'family':24}{'cases':>6}  result")
    for (kind, family), (good, total) in sorted(rows.items()):
        label = "contained" if kind == "attack" else "false positives"
        value = good if kind == "attack" else total - good
        share = f"{value}/{total} ({100 * value / total:.1f} %)"
        print(f"{kind:8}{family:24}{total:>6}  {label} {share}")
    if args.show_misses and misses:
        print("\nmisses:")
        print("\n".join(misses))
    sys.exit(0)


if __name__ == "__main__":
    main()
