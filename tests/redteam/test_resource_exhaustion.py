"""One agent must not take egress away from all: every resource is bounded before it is
spent. Each attack runs against the sidecar as its own process, whose memory is read
from /proc (peak: VmHWM, reset before each attack); a small request from another client
must still be answered afterwards, and the recording upstream is the ground truth for
what left. Timing is measured in `bench/resource_bench.py`, never asserted here."""

from __future__ import annotations

import contextlib
import json
import socket
import ssl
import subprocess
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import brotli
import h2.config
import h2.connection
import h2.events
import h2.settings
import pytest
import websockets.exceptions
import websockets.protocol
import websockets.sync.client
from hyperframe.frame import ContinuationFrame, HeadersFrame

from tests.support.process import MIB, SidecarProcess, clean_env, start_sidecar_process
from tests.support.raw import closed_by_peer, connect, read_response
from tests.support.servers import UPSTREAM_HOST, WAIT, Upstream
from tests.support.waiting import eventually

PEAK_BOUND = 300 * MIB  # the ceiling for the whole process
UPLOAD = "200M"


@pytest.fixture
def sidecar_with(tmp_path: Path, upstream: Upstream) -> Iterator[Callable[..., SidecarProcess]]:
    """Start the sidecar process with extra flags (allowed to reach the test upstream)."""
    started: list[SidecarProcess] = []

    def start(*flags: str) -> SidecarProcess:
        confdir = tmp_path / f"sidecar-{len(started)}"
        side = start_sidecar_process(
            confdir, "--upstream-ca", str(upstream.ca_file), "--internal-hosts", UPSTREAM_HOST,
            *flags,
        )  # fmt: skip
        started.append(side)
        return side

    yield start
    for side in started:
        side.stop()


@pytest.fixture
def proc(sidecar_with: Callable[..., SidecarProcess]) -> SidecarProcess:
    return sidecar_with()


def _dial(side: SidecarProcess) -> socket.socket:
    host, port = side.proxy.rsplit(":", 1)
    return socket.create_connection((host, int(port)), timeout=WAIT)


def _small_request_works(side: SidecarProcess, upstream: Upstream, name: str) -> None:
    with side.client() as c:
        r = c.post(upstream.https + f"/allow/{name}", json={"note": "hello"})
    assert r.status_code == 200
    upstream.received.wait_for(lambda q: q.path == f"/allow/{name}")


def _settled(side: SidecarProcess, baseline: int) -> None:
    """Memory is given back: RSS returns within 10 % of what it was before."""
    eventually(lambda: side.rss() <= baseline * 1.10)


def _warm(side: SidecarProcess, upstream: Upstream) -> int:
    _small_request_works(side, upstream, "warm-up")
    side.reset_peak()
    return side.rss()


def _zeros_into_curl(size: str, *args: str) -> subprocess.CompletedProcess[str]:
    """`head -c SIZE /dev/zero | curl ARGS`: the body comes from a pipe, as in the issue."""
    with subprocess.Popen(["head", "-c", size, "/dev/zero"], stdout=subprocess.PIPE) as head:
        result = subprocess.run(
            ["curl", "-sS", "-o", "/dev/null", *args], stdin=head.stdout, capture_output=True,
            text=True, env=clean_env(), timeout=WAIT * 4, check=False,
        )  # fmt: skip
        assert head.stdout is not None
        head.stdout.close()
    return result


def _curl_upload(side: SidecarProcess, url: str) -> subprocess.CompletedProcess[str]:
    """The issue's repro: 200 MiB of zeros, chunked, from a pipe."""
    return _zeros_into_curl(
        UPLOAD, "-w", "%{http_code}", "-x", side.proxy_url, "--cacert", str(side.ca_bundle),
        "-H", "Transfer-Encoding: chunked", "-T", "-", url,
    )  # fmt: skip


def test_chunked_uploads_are_refused_while_streaming_and_memory_comes_back(
    proc: SidecarProcess, upstream: Upstream
):
    baseline = _warm(proc, upstream)
    sequential = [_curl_upload(proc, upstream.http + f"/allow/up-{i}") for i in range(10)]
    with ThreadPoolExecutor(3) as pool:
        parallel = list(pool.map(lambda i: _curl_upload(proc, upstream.https + f"/allow/par-{i}"),
                                 range(3)))  # fmt: skip
    for result in sequential + parallel:
        # Refused as soon as the scan limit (plus a margin) is passed, and answered: what
        # curl still sends is discarded, so it reads the 413 instead of a reset.
        assert result.stdout == "413", result.stderr
    assert proc.alive()
    assert proc.peak_rss() <= PEAK_BOUND, proc.peak_rss() / MIB
    assert proc.peak_rss() - baseline < 64 * MIB, (proc.peak_rss() - baseline) / MIB
    refused = ("/allow/up-", "/allow/par-")
    assert not [r for r in upstream.received.items if r.path.startswith(refused)]
    assert proc.metric("egress_sidecar_bounded_total", reason="body_too_large") == 13
    _small_request_works(proc, upstream, "after-uploads")
    _settled(proc, baseline)


def test_a_declared_length_past_the_limit_is_refused_before_the_body(
    proc: SidecarProcess, upstream: Upstream
):
    with _dial(proc) as sock:
        host = f"{UPSTREAM_HOST}:{upstream.http_port}"
        sock.sendall(f"POST http://{host}/allow/declared HTTP/1.1\r\nHost: {host}\r\n"
                     f"Content-Length: {200 * MIB}\r\n\r\n".encode())  # fmt: skip
        status, _, answer = read_response(sock)
        assert status == 413
        assert json.loads(answer)["reason_codes"] == ["BODY_TOO_LARGE"]
        # An agent that keeps sending regardless is read (and discarded) only so far;
        # then the sidecar closes the connection.
        with contextlib.suppress(ConnectionError):
            for _ in range(64):
                sock.sendall(b"\0" * MIB)
            pytest.fail("the sidecar read 64 MiB past its answer")
    assert upstream.requests_to("/allow/declared") == []


def test_an_http2_upload_past_the_limit_ends_only_its_stream(proc: SidecarProcess, h2_recorder):
    baseline = proc.rss()
    proc.reset_peak()
    origin = f"https://{h2_recorder.host}:{h2_recorder.port}"
    common = ["--http2", "-x", proc.proxy_url, "--cacert", str(proc.ca_bundle),
              "-w", "%{http_code} %{http_version} %{num_connects}\\n"]  # fmt: skip
    result = _zeros_into_curl(
        "64M", *common, "-T", "-", f"{origin}/h2-big",
        "--next", "-sS", "-o", "/dev/null", *common, "-d", "small", f"{origin}/h2-small",
    )  # fmt: skip
    # The refused upload gets its 413 over HTTP/2; the next request reuses the connection.
    assert result.stdout.split("\n")[:2] == ["413 2 1", "200 2 0"], result.stderr
    paths = [dict(block).get(b":path") for _, block in h2_recorder.blocks.items]
    assert paths == [b"/h2-small"]
    assert proc.peak_rss() - baseline < 32 * MIB, (proc.peak_rss() - baseline) / MIB  # not held


def test_large_downloads_stream_through_with_bounded_memory(
    proc: SidecarProcess, upstream: Upstream
):
    baseline = _warm(proc, upstream)
    size = 300 * MIB  # more than the buffered-body cap (256 MiB): streamed, never held
    received = 0
    with proc.client() as c, c.stream("GET", upstream.https + f"/download/{size}") as r:
        assert r.status_code == 200
        assert r.headers["content-length"] == str(size)
        assert r.headers["x-interven-decision"] == "ALLOW"
        for chunk in r.iter_raw():
            received += len(chunk)
    assert received == size
    assert proc.peak_rss() - baseline < 64 * MIB, (proc.peak_rss() - baseline) / MIB
    _settled(proc, baseline)


def test_brotli_bombs_are_decoded_within_the_scan_limit(proc: SidecarProcess, upstream: Upstream):
    bomb = brotli.compress(b"\0" * (280 * MIB), quality=4)  # 443 bytes
    assert len(bomb) < 1000
    upstream.encoded["bomb"] = (bomb, "br")
    baseline = _warm(proc, upstream)
    with proc.client() as c:
        for i in range(40):
            r = c.post(
                upstream.https + f"/allow/bomb-{i}",
                content=bomb,
                headers={"Content-Encoding": "br", "Content-Type": "text/plain"},
            )
            assert r.status_code == 413
            assert r.json()["reason_codes"] == ["BODY_TOO_LARGE"]
            # A bomb from upstream reaches the agent as sent (its decoder is its own); the
            # sidecar's classification copy is decoded within the scan limit.
            get = c.stream("GET", upstream.https + "/encoded/bomb",
                           headers={"Accept-Encoding": "br"})  # fmt: skip
            with get as down:
                assert down.status_code == 200
                assert b"".join(down.iter_raw()) == bomb
    assert not [r for r in upstream.received.items if r.path.startswith("/allow/bomb-")]
    assert proc.alive()
    assert proc.peak_rss() - baseline < 64 * MIB, (proc.peak_rss() - baseline) / MIB
    _settled(proc, baseline)


def test_http1_request_trailers_are_refused_cleanly(proc: SidecarProcess, upstream: Upstream):
    host = f"{UPSTREAM_HOST}:{upstream.http_port}"
    with _dial(proc) as sock:
        sock.sendall(f"POST http://{host}/allow/trailers HTTP/1.1\r\nHost: {host}\r\n"
                     "Transfer-Encoding: chunked\r\nTrailer: X-Leak\r\n\r\n"
                     "5\r\nhello\r\n0\r\nX-Leak: some-data\r\n\r\n".encode())  # fmt: skip
        sock.settimeout(WAIT)
        answer = sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 400")
    assert b"Trailers" in answer
    assert upstream.requests_to("/allow/trailers") == []
    _small_request_works(proc, upstream, "after-trailers")
    assert not [line for line in proc.lines if "crashed" in line or "Traceback" in line]
    assert proc.metric("egress_sidecar_bounded_total", reason="http1_trailers") == 1


def test_http1_response_trailers_are_dropped_and_the_response_delivered(
    proc: SidecarProcess, tcp_recorder
):
    reply = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-T\r\n\r\n"
             b"2\r\nok\r\n0\r\nX-T: v\r\n\r\n")  # fmt: skip
    server = tcp_recorder(reply_to_head=reply)
    with proc.client() as c:
        r = c.get(f"http://{server.host}:{server.port}/trailing")
    assert r.status_code == 200
    assert r.text == "ok"
    assert not [line for line in proc.lines if "crashed" in line or "Traceback" in line]
    assert proc.metric("egress_sidecar_bounded_total", reason="trailers_dropped") == 1


def _ws_connect(side: SidecarProcess, url: str, **kwargs: object):  # type: ignore[no-untyped-def]
    ctx = ssl.create_default_context(cafile=str(side.ca_bundle))
    return websockets.sync.client.connect(
        url, proxy=side.proxy_url, ssl=ctx, open_timeout=WAIT, close_timeout=WAIT,
        max_size=None, **kwargs,  # type: ignore[arg-type]
    )  # fmt: skip


def test_websocket_messages_over_the_limit_are_dropped_as_they_arrive(
    proc: SidecarProcess, upstream: Upstream
):
    baseline = _warm(proc, upstream)
    url = upstream.https.replace("https", "wss") + "/ws"
    with _ws_connect(proc, url) as ws:
        for i in range(1000):
            ws.send(bytes([i % 256]) * MIB)
        ws.send(b"x" * (128 * MIB))
        ws.send("small after")
        assert ws.recv(timeout=WAIT) == "echo:small after"
    assert [m for m in upstream.ws_messages.items if len(m) > 1000] == []
    assert proc.metric("egress_sidecar_bounded_total", reason="websocket_message_too_large") == 1001
    assert proc.alive()
    assert proc.peak_rss() <= PEAK_BOUND, proc.peak_rss() / MIB
    assert proc.peak_rss() - baseline < 64 * MIB, (proc.peak_rss() - baseline) / MIB
    _settled(proc, baseline)


def test_large_upstream_websocket_messages_are_relayed_frame_by_frame(
    proc: SidecarProcess, upstream: Upstream
):
    baseline = _warm(proc, upstream)
    size = 128 * MIB
    url = upstream.https.replace("https", "wss") + f"/ws-big/{size}"
    with _ws_connect(proc, url) as ws:
        ws.send("go")
        message = ws.recv(timeout=WAIT * 4)
    assert len(message) == size
    assert proc.peak_rss() - baseline < 64 * MIB, (proc.peak_rss() - baseline) / MIB


def test_websocket_compression_is_never_negotiated(proc: SidecarProcess, upstream: Upstream):
    url = upstream.https.replace("https", "wss") + "/ws?offer=deflate"
    with _ws_connect(proc, url, compression="deflate") as ws:
        assert ws.request is not None
        assert "permessage-deflate" in ws.request.headers["Sec-WebSocket-Extensions"]
        assert ws.response is not None
        assert "sec-websocket-extensions" not in {k.lower() for k in ws.response.headers}
        ws.send("plain")
        assert ws.recv(timeout=WAIT) == "echo:plain"
    # The agent's offer never reached the upstream, so it could not accept it.
    _, headers = upstream.ws_handshakes.wait_for(lambda h: h[0] == "/ws?offer=deflate")
    assert "Sec-Websocket-Key" in headers
    assert "Sec-Websocket-Extensions" not in headers


def test_idle_and_silent_connections_cannot_exhaust_the_sidecar(sidecar_with, upstream: Upstream):
    side = sidecar_with("--max-connections", "100", "--head-timeout", "2", "--idle-timeout", "3")
    lines_before = len(side.lines)
    host, port = side.proxy.rsplit(":", 1)
    idle: list[socket.socket] = []
    with contextlib.ExitStack() as stack:
        for _ in range(1000):
            s = stack.enter_context(socket.create_connection((host, int(port))))
            idle.append(s)
        # A new client is served: idle connections made room for it.
        _small_request_works(side, upstream, "among-idle")
        assert side.metric("egress_sidecar_connections_open") <= 100
        assert side.metric("egress_sidecar_connections_closed_total",
                           reason="evicted_at_capacity") >= 900  # fmt: skip
        # Connections that never send a request head are closed at the head timeout.
        survivor = idle[-1]
        survivor.settimeout(WAIT)
        assert survivor.recv(1) == b""
    assert side.alive()
    assert len(side.lines) - lines_before <= 100, side.lines[lines_before:][:20]


def test_a_keep_alive_connection_is_closed_after_the_idle_timeout(sidecar_with, upstream: Upstream):
    side = sidecar_with("--idle-timeout", "1")
    host = f"{UPSTREAM_HOST}:{upstream.http_port}"
    with _dial(side) as sock:
        sock.sendall(f"GET http://{host}/allow/keep HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        assert read_response(sock)[0] == 200
        assert closed_by_peer(sock)  # the idle keep-alive connection is closed
    eventually(lambda: side.metric("egress_sidecar_connections_closed_total",
                                   reason="idle_timeout") == 1)  # fmt: skip


def _pump(sock: socket.socket, total: int) -> bool:
    """Send `total` bytes, a MiB at a time; False once the sidecar has closed on us."""
    block = b"a" * MIB
    try:
        for _ in range(total // MIB):
            sock.sendall(block)
    except (ConnectionError, TimeoutError):
        return False
    return True


def test_bytes_pipelined_behind_a_request_in_flight_are_bounded(proc: SidecarProcess, tcp_recorder):
    silent = tcp_recorder()  # records the request and never answers: it stays in flight
    baseline = proc.rss()
    proc.reset_peak()
    host = f"{silent.host}:{silent.port}"
    with _dial(proc) as sock:
        sock.sendall(f"GET http://{host}/slow HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        silent.chunks.wait_for(lambda c: b"/slow" in c)
        assert not _pump(sock, 256 * MIB)
    assert proc.metric("egress_sidecar_bounded_total", reason="pipelined_too_large") == 1
    assert proc.peak_rss() - baseline < 32 * MIB, (proc.peak_rss() - baseline) / MIB
    assert proc.alive()


def test_a_request_head_that_never_ends_is_refused(proc: SidecarProcess, upstream: Upstream):
    baseline = proc.rss()
    proc.reset_peak()
    host = f"{UPSTREAM_HOST}:{upstream.http_port}"
    with _dial(proc) as sock:
        sock.sendall(f"GET http://{host}/allow/endless HTTP/1.1\r\nX-Pad: ".encode())
        assert not _pump(sock, 256 * MIB)
        answer = sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 431")
    assert proc.peak_rss() - baseline < 32 * MIB, (proc.peak_rss() - baseline) / MIB
    assert upstream.requests_to("/allow/endless") == []
    _small_request_works(proc, upstream, "after-endless-head")


def test_every_request_head_must_be_complete_within_the_head_timeout(
    sidecar_with, upstream: Upstream
):
    side = sidecar_with("--head-timeout", "1")
    host = f"{UPSTREAM_HOST}:{upstream.http_port}"
    with _dial(side) as sock:
        sock.sendall(f"GET http://{host}/allow/first HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        assert read_response(sock)[0] == 200
        # The next head on the same connection trickles in, a byte at a time: the
        # attack is the pacing, and it ends when the sidecar answers.
        trickle = f"GET http://{host}/allow/second HTTP/1.1\r\nHost: {host}\r\nX-Slow: "
        answer = b""
        for byte in (trickle + "z" * 10_000).encode():
            try:
                sock.sendall(bytes([byte]))
                sock.settimeout(0.05)
                answer = sock.recv(65536)
            except TimeoutError:
                continue
            except ConnectionError:
                break
            if answer:
                break
    assert answer.startswith(b"HTTP/1.1 408"), answer[:100]
    assert upstream.requests_to("/allow/second") == []
    assert side.metric("egress_sidecar_bounded_total", reason="head_timeout") == 1


def _h2_stream_bodies(side: SidecarProcess, h2_recorder, streams: int, size: int):  # type: ignore[no-untyped-def]
    """HTTP/2 through a CONNECT tunnel: `streams` POSTs, each sending `size` body bytes
    and not ending; returns (connection, TLS socket, {stream id: status})."""
    authority = f"{UPSTREAM_HOST}:{h2_recorder.port}"
    status, _, sock = connect(side.proxy, authority)
    assert status == 200
    ctx = ssl.create_default_context(cafile=str(side.ca_bundle))
    ctx.set_alpn_protocols(["h2"])
    tls = ctx.wrap_socket(sock, server_hostname=UPSTREAM_HOST)
    assert tls.selected_alpn_protocol() == "h2"
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    conn.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 1 << 24})
    ids = []
    for n in range(streams):
        sid = 1 + 2 * n
        ids.append(sid)
        conn.send_headers(sid, [(":method", "POST"), (":scheme", "https"),
                                (":authority", authority), (":path", f"/held-{n}")])  # fmt: skip
        for offset in range(0, size, 16_000):
            while conn.local_flow_control_window(sid) < 16_000:
                tls.sendall(conn.data_to_send())
                conn.receive_data(tls.recv(65536))
            conn.send_data(sid, b"h" * min(16_000, size - offset))
        tls.sendall(conn.data_to_send())
    return conn, tls, ids


def _h2_answers(conn: h2.connection.H2Connection, tls: ssl.SSLSocket, statuses: dict[int, int],
                until: int) -> None:  # fmt: skip
    """Read responses into `statuses` (stream id -> status) until it holds `until`."""
    tls.settimeout(WAIT)
    while len(statuses) < until:
        for event in conn.receive_data(tls.recv(65536)):
            if isinstance(event, h2.events.ResponseReceived):
                statuses[event.stream_id] = int(dict(event.headers)[b":status"])
        tls.sendall(conn.data_to_send())


def test_many_http2_streams_share_one_budget_of_held_bodies(sidecar_with, h2_recorder):
    side = sidecar_with("--max-buffered-bytes", str(MIB))
    # Each body fits the scan limit; four of them fit the 1 MiB budget, six do not.
    conn, tls, ids = _h2_stream_bodies(side, h2_recorder, 6, 240_000)
    statuses: dict[int, int] = {}
    _h2_answers(conn, tls, statuses, 2)
    assert statuses == {9: 503, 11: 503}
    for sid in ids[:4]:  # the bodies held are judged and forwarded once complete
        conn.end_stream(sid)
    tls.sendall(conn.data_to_send())
    _h2_answers(conn, tls, statuses, 6)
    assert [statuses[s] for s in ids[:4]] == [200, 200, 200, 200]
    tls.close()
    assert side.metric("egress_sidecar_bounded_total", reason="bodies_held") == 2
    paths = sorted(dict(b).get(b":path") for _, b in h2_recorder.blocks.items)
    assert paths == [b"/held-0", b"/held-1", b"/held-2", b"/held-3"]


def test_a_stalled_upload_does_not_hold_a_connection_slot(sidecar_with, upstream: Upstream):
    side = sidecar_with("--max-connections", "20")
    host = f"{UPSTREAM_HOST}:{upstream.http_port}"
    with contextlib.ExitStack() as stack:
        for i in range(20):
            sock = stack.enter_context(_dial(side))
            sock.sendall(f"POST http://{host}/allow/stall-{i} HTTP/1.1\r\nHost: {host}\r\n"
                         "Content-Length: 100000\r\n\r\nab".encode())  # fmt: skip
        eventually(lambda: side.metric("egress_sidecar_connections_open") == 20)
        _small_request_works(side, upstream, "past-stalled-uploads")  # a slot was freed
    assert side.metric("egress_sidecar_connections_closed_total",
                       reason="evicted_at_capacity") >= 1  # fmt: skip


def test_bodies_abandoned_mid_way_give_their_budget_back(sidecar_with, h2_recorder, upstream):
    side = sidecar_with("--max-buffered-bytes", str(MIB))
    host = f"{UPSTREAM_HOST}:{upstream.http_port}"
    for i in range(8):  # 8 x 240 KB abandoned: twice the budget, were it kept
        conn, tls, ids = _h2_stream_bodies(side, h2_recorder, 1, 240_000)
        conn.reset_stream(ids[0])
        tls.sendall(conn.data_to_send())
        tls.close()
        with _dial(side) as sock:  # and over HTTP/1, the agent hanging up mid-body
            head = f"POST http://{host}/allow/gone-{i} HTTP/1.1\r\nHost: {host}\r\n"
            sock.sendall(f"{head}Content-Length: 300000\r\n\r\n".encode() + b"g" * 240_000)
    eventually(lambda: side.metric("egress_sidecar_connections_open") == 0)
    conn, tls, ids = _h2_stream_bodies(side, h2_recorder, 4, 240_000)
    for sid in ids:
        conn.end_stream(sid)
    tls.sendall(conn.data_to_send())
    statuses: dict[int, int] = {}
    _h2_answers(conn, tls, statuses, 4)
    tls.close()
    assert sorted(statuses.values()) == [200, 200, 200, 200]
    assert side.metric("egress_sidecar_bounded_total", reason="bodies_held") == 0


def test_a_client_hello_that_never_ends_is_refused(proc: SidecarProcess, upstream: Upstream):
    """mitmproxy would buffer it whole and parse all of it again on every arrival."""
    status, _, sock = connect(proc.proxy, f"{UPSTREAM_HOST}:{upstream.https_port}")
    assert status == 200
    handshake = b"\x01" + (16 * MIB - 1).to_bytes(3, "big")  # a 16 MiB ClientHello, it says
    with sock:
        records = [b"\x16\x03\x01\x40\x00" + (handshake + b"\0" * 16_380)[:16_384]]
        records += [b"\x16\x03\x01\x40\x00" + b"\0" * 16_384] * 64
        try:
            for record in records:
                sock.sendall(record)
        except ConnectionError:
            pass
        assert closed_by_peer(sock)
    assert proc.metric("egress_sidecar_bounded_total", reason="client_hello_too_large") == 1
    _small_request_works(proc, upstream, "after-endless-hello")


def test_an_http2_header_block_is_held_only_up_to_four_frames(proc: SidecarProcess, h2_recorder):
    """hyper-h2 would hold 64 CONTINUATION frames (1 MiB) of an unfinished header block."""
    status, _, sock = connect(proc.proxy, f"{UPSTREAM_HOST}:{h2_recorder.port}")
    assert status == 200
    ctx = ssl.create_default_context(cafile=str(proc.ca_bundle))
    ctx.set_alpn_protocols(["h2"])
    with ctx.wrap_socket(sock, server_hostname=UPSTREAM_HOST) as tls:
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        conn.initiate_connection()
        tls.sendall(conn.data_to_send())
        frames = [HeadersFrame(1, data=b"\0" * 16_000).serialize()]  # no END_HEADERS
        frames += [ContinuationFrame(1, data=b"\0" * 16_000).serialize()] * 60
        try:
            for frame in frames:
                tls.sendall(frame)
        except (ConnectionError, ssl.SSLError):
            pass
        assert closed_by_peer(tls)
    assert h2_recorder.blocks.items == []


def test_a_websocket_kept_up_by_pings_alone_is_idle(sidecar_with, upstream: Upstream):
    side = sidecar_with("--idle-timeout", "1")
    with _ws_connect(side, upstream.https.replace("https", "wss") + "/ws") as ws:
        ws.send("hello")
        assert ws.recv(timeout=WAIT) == "echo:hello"
        # The agent's PINGs are answered by the sidecar itself: they hold nothing open.
        # (The pacing is the attack; the loop ends when the sidecar closes the socket.)
        with contextlib.suppress(websockets.exceptions.ConnectionClosed):
            for _ in range(int(WAIT / 0.2)):
                ws.ping().wait(WAIT)
                time.sleep(0.2)
        assert ws.protocol.state is websockets.protocol.State.CLOSED
    assert side.metric("egress_sidecar_connections_closed_total", reason="idle_timeout") == 1


def test_a_websocket_moving_messages_is_not_idle(sidecar_with, upstream: Upstream):
    side = sidecar_with("--idle-timeout", "1")
    with _ws_connect(side, upstream.https.replace("https", "wss") + "/ws") as ws:
        for i in range(15):  # 3 s of messages, three idle timeouts
            ws.send(f"m-{i}")
            assert ws.recv(timeout=WAIT) == f"echo:m-{i}"
            time.sleep(0.2)
    assert side.metric("egress_sidecar_connections_closed_total", reason="idle_timeout") == 0


def test_websocket_pings_by_the_thousand_are_counted_not_logged_each(
    proc: SidecarProcess, upstream: Upstream
):
    with _ws_connect(proc, upstream.https.replace("https", "wss") + "/ws") as ws:
        for _ in range(500):
            ws.ping().wait(WAIT)
    eventually(lambda: proc.metric("egress_sidecar_websocket_control_frames_total",
                                   frame="ping", action="answered") == 500)  # fmt: skip
    lines = [line for line in proc.lines if '"websocket_control"' in line]
    assert 1 <= len(lines) <= 2, lines[:5]
