"""Unusual and hostile agent traffic: encodings, bombs, chunking, odd bytes, big headers."""

from __future__ import annotations

import gzip
import json
import ssl
import subprocess
import zlib

import brotli
import httpx
import pytest
import zstandard

from sidecar.judge.bodies import decode_body
from tests.support.servers import WAIT
from tests.support.sidecar import Sidecar, run_client

ENCODERS = {
    "gzip": gzip.compress,
    "deflate": zlib.compress,
    "br": brotli.compress,
    "zstd": lambda b: zstandard.ZstdCompressor().compress(b),
}


def _client(sidecar: Sidecar, http2: bool = False) -> httpx.Client:
    verify = ssl.create_default_context(cafile=str(sidecar.ca.bundle))
    return httpx.Client(proxy=f"http://{sidecar.info.proxy}", verify=verify, trust_env=False,
                        timeout=WAIT, http2=http2)  # fmt: skip


@pytest.mark.parametrize("coding", sorted(ENCODERS))
def test_compressed_bodies_are_scanned_decoded(coding, sidecar, upstream, scan_api):
    plain = json.dumps({"note": f"sent with {coding}"}).encode()
    url = upstream.https + f"/allow/enc-{coding}"
    headers = {"Content-Type": "application/json", "Content-Encoding": coding}
    result = run_client(sidecar, "requests", "POST", url, ENCODERS[coding](plain), headers)
    assert result.status == 200
    scan = scan_api.scans.wait_for(lambda s: s["json"]["url"].endswith(f"/enc-{coding}"))
    assert scan["json"]["body"] == {"note": f"sent with {coding}"}
    received = upstream.received.wait_for(lambda r: r.path == f"/allow/enc-{coding}")
    # Forwarded as sent: still encoded, and decoding to the same document.
    assert received.headers["Content-Encoding"] == coding
    assert json.loads(decode_body(received.body, coding, 1 << 20)) == json.loads(plain)


@pytest.mark.parametrize("coding", sorted(ENCODERS))
def test_decompression_bombs_are_refused_unscanned(coding, sidecar, upstream, scan_api):
    bomb = ENCODERS[coding](b"A" * 200_000_000)  # 200 MB of A in a few hundred KB or less
    assert len(bomb) < 1_000_000
    with _client(sidecar) as client:
        r = client.post(upstream.https + f"/allow/bomb-{coding}", content=bomb,
                        headers={"Content-Encoding": coding})  # fmt: skip
    assert r.status_code == 413
    assert r.json()["reason_codes"] == ["BODY_TOO_LARGE"]
    assert upstream.requests_to(f"/allow/bomb-{coding}") == []
    assert not any(s["json"]["url"].endswith(f"bomb-{coding}") for s in scan_api.scans.items)


def test_undecodable_bodies_are_refused(sidecar, upstream):
    with _client(sidecar) as client:
        r = client.post(upstream.https + "/allow/garbage", content=b"not gzip at all",
                        headers={"Content-Encoding": "gzip"})  # fmt: skip
    assert r.status_code == 400
    assert r.json()["reason_codes"] == ["BODY_UNDECODABLE"]
    assert upstream.requests_to("/allow/garbage") == []


def test_chunked_bodies_are_scanned_whole(sidecar, upstream, scan_api):
    def chunks():  # type: ignore[no-untyped-def]
        yield b'{"part": "one", '
        yield b'"more": "two"}'

    with _client(sidecar) as client:
        r = client.post(upstream.https + "/allow/chunked", content=chunks(),
                        headers={"Content-Type": "application/json"})  # fmt: skip
    assert r.status_code == 200
    scan = scan_api.scans.wait_for(lambda s: s["json"]["url"].endswith("/allow/chunked"))
    assert scan["json"]["body"] == {"part": "one", "more": "two"}
    assert upstream.received.wait_for(lambda x: x.path == "/allow/chunked").body == (
        b'{"part": "one", "more": "two"}'
    )


def test_invalid_utf8_and_binary_multipart(sidecar, upstream, scan_api):
    with _client(sidecar) as client:
        r = client.post(upstream.https + "/allow/bytes", content=b"key=AKIA\xff\xfe\x00tail",
                        headers={"Content-Type": "text/plain"})  # fmt: skip
        assert r.status_code == 200
        files = {"upload": ("blob.bin", bytes(range(256)) * 4, "application/octet-stream")}
        r = client.post(upstream.https + "/allow/multipart", files=files, data={"note": "hi"})
        assert r.status_code == 200
    scan = scan_api.scans.wait_for(lambda s: s["json"]["url"].endswith("/allow/bytes"))
    assert scan["json"]["body"].startswith("key=AKIA")
    multipart = scan_api.scans.wait_for(lambda s: s["json"]["url"].endswith("/allow/multipart"))
    assert 'name="note"' in multipart["json"]["body"]
    # What the upstream got is byte for byte what the agent sent.
    assert upstream.received.wait_for(lambda x: x.path == "/allow/bytes").body == (
        b"key=AKIA\xff\xfe\x00tail"
    )


def test_huge_headers_are_scanned_or_refused_but_never_crash(sidecar, upstream, scan_api):
    with _client(sidecar) as client:
        ok = client.get(upstream.https + "/allow/big-header", headers={"X-Big": "v" * 32_000})
        assert ok.status_code == 200
        scan = scan_api.scans.wait_for(lambda s: s["json"]["url"].endswith("/big-header"))
        assert {k.lower(): v for k, v in scan["json"]["headers"].items()}["x-big"] == "v" * 32_000
        try:
            huge = client.get(upstream.https + "/allow/huge-header",
                              headers={"X-Huge": "v" * 300_000})  # fmt: skip
            # Scanned, then refused by the upstream (502), or refused by the proxy itself.
            assert huge.status_code in (400, 413, 431, 502, 503)
        except httpx.HTTPError:
            pass  # the proxy may refuse such a request by closing the connection
        # ... and the sidecar still serves the next request.
        assert client.get(upstream.https + "/allow/after-huge").status_code == 200
    assert upstream.requests_to("/allow/huge-header") == []


def test_http2_concurrent_streams_are_judged_independently(sidecar, upstream, scan_api):
    """curl multiplexes 24 requests as concurrent streams on one HTTP/2 connection."""
    paths = [f"/deny/h2-{i}" if i % 3 == 0 else f"/allow/h2-{i}" for i in range(24)]
    command = [
        "curl",
        "-sS",
        "--parallel",
        "--parallel-max",
        "24",
        "--http2",
        "--proxy",
        f"http://{sidecar.info.proxy}",
        "--cacert",
        str(sidecar.ca.bundle),
        "-d",
        "{}",
        "-w",
        "%{http_code} %{http_version} %{num_connects} %{url_effective}\\n",
    ]
    for path in paths:
        command += ["-o", "/dev/null", upstream.https + path]
    out = subprocess.run(command, capture_output=True, text=True, timeout=WAIT, check=True)
    results = {line.split()[3].split(str(upstream.https_port))[1]: line.split()[:2]
               for line in out.stdout.splitlines()}  # fmt: skip
    assert len(results) == 24
    for path in paths:
        code, version = results[path]
        assert version == "2"
        assert code == ("403" if path.startswith("/deny") else "200"), path
    assert all(upstream.requests_to(p) == [] for p in paths if p.startswith("/deny"))
    assert len([s for s in scan_api.scans.items if "/h2-" in s["json"]["url"]]) == 24
