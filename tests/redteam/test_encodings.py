"""Class 5: bytes outside the first decoded stream must not reach the server unscanned.

Rule: every gzip member is decoded and scanned; bytes after the end of a stream, gzip
name/extra/comment fields, zstd skippable frames and truncated streams make a body
undecodable (400, never forwarded); transfer codings are undone like content codings.
Where a format lets bytes ride that decoders skip and that cannot be told apart without
decoding (brotli metadata blocks), the bytes as sent are searched for secrets the
decoded content does not hold (403 HIDDEN_SECRET), whatever the backend.
Ground truth: a server that decodes (Python's gzip reads every member) would have
seen the key; the recording upstream received nothing.
"""

from __future__ import annotations

import gzip
import json
import struct
import zlib

import brotli
import pytest
import zstandard

from tests.redteam import AWS_KEY
from tests.support.codecs import brotli_with_metadata
from tests.support.raw import exchange, proxy_socket, read_response
from tests.support.servers import UPSTREAM_HOST

SECRET = f"aws_access_key_id={AWS_KEY}".encode()
CLEAN = b'{"note": "nothing to see"}'


def _gzip_with_name(name: bytes, data: bytes) -> bytes:
    header = b"\x1f\x8b\x08\x08" + b"\x00" * 4 + b"\x00\x03" + name + b"\x00"
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    body = c.compress(data) + c.flush()
    return header + body + struct.pack("<II", zlib.crc32(data), len(data))


def _zstd_skippable(data: bytes) -> bytes:
    return struct.pack("<II", 0x184D2A50, len(data)) + data


ZSTD = zstandard.ZstdCompressor()


@pytest.mark.parametrize(
    ("body", "coding", "expected"),
    [
        (gzip.compress(CLEAN) + gzip.compress(SECRET), "gzip", 403),  # 2nd member: scanned
        (gzip.compress(CLEAN) + SECRET, "gzip", 400),  # bytes after the stream
        (_gzip_with_name(SECRET, CLEAN), "gzip", 400),  # FNAME carries the key
        (zlib.compress(CLEAN) + SECRET, "deflate", 400),
        (ZSTD.compress(CLEAN) + _zstd_skippable(SECRET), "zstd", 400),
        (_zstd_skippable(SECRET) + ZSTD.compress(CLEAN), "zstd", 400),
        (ZSTD.compress(CLEAN) + ZSTD.compress(SECRET), "zstd", 403),  # 2nd frame: scanned
        (brotli.compress(SECRET)[:-3], "br", 400),  # truncated: a server may use a prefix
        (brotli.compress(CLEAN) + SECRET, "br", 400),
    ],
    ids=[
        "gzip-member",
        "gzip-trailing",
        "gzip-fname",
        "deflate-trailing",
        "zstd-skip-after",
        "zstd-skip-before",
        "zstd-frame",
        "br-truncated",
        "br-trailing",
    ],
)
def test_hidden_bytes_in_encoded_bodies(make_sidecar, upstream, body, coding, expected):
    sidecar = make_sidecar(backend="local")
    target = f"{UPSTREAM_HOST}:{upstream.http_port}"
    path = f"/enc/{coding}/{len(body)}"
    head = (
        f"POST http://{target}{path} HTTP/1.1\r\nHost: {target}\r\nContent-Encoding: {coding}\r\n"
    )
    status, _, answer = exchange(str(sidecar.info.proxy), head, body)
    assert status == expected, answer
    assert upstream.requests_to(path) == []


def test_transfer_codings_are_undone_before_scanning(make_sidecar, upstream):
    sidecar = make_sidecar(backend="local")
    target = f"{UPSTREAM_HOST}:{upstream.http_port}"
    data = gzip.compress(SECRET)
    chunked = f"{len(data):x}\r\n".encode() + data + b"\r\n0\r\n\r\n"
    sock = proxy_socket(str(sidecar.info.proxy))
    sock.sendall(
        f"POST http://{target}/te HTTP/1.1\r\nHost: {target}\r\n"
        "Transfer-Encoding: gzip, chunked\r\n\r\n".encode()
        + chunked
    )
    status, _, answer = read_response(sock)
    sock.close()
    assert status == 403, answer
    assert upstream.requests_to("/te") == []


def test_a_sanitized_body_sent_with_transfer_codings_arrives_readable(make_sidecar, upstream):
    sidecar = make_sidecar(backend="local")
    target = f"{UPSTREAM_HOST}:{upstream.http_port}"
    data = gzip.compress(b'{"note": "card 4539 1488 0343 6467"}')
    chunked = f"{len(data):x}\r\n".encode() + data + b"\r\n0\r\n\r\n"
    sock = proxy_socket(str(sidecar.info.proxy))
    sock.sendall(
        f"POST http://{target}/te-sanitize HTTP/1.1\r\nHost: {target}\r\nContent-Type: "
        "application/json\r\nTransfer-Encoding: gzip, chunked\r\n\r\n".encode()
        + chunked
    )
    status, headers, _ = read_response(sock)
    sock.close()
    assert status == 200
    assert headers["x-interven-decision"] == "SANITIZE"
    (received,) = upstream.requests_to("/te-sanitize")
    assert "gzip" not in received.headers.get("Transfer-Encoding", "")
    assert json.loads(received.body) == {"note": "card [REDACTED:CREDIT_CARD]"}


@pytest.mark.parametrize("backend", ["local", "interven"])
def test_lone_surrogates_are_judged_not_an_internal_error(make_sidecar, upstream, backend):
    sidecar = make_sidecar(backend=backend)
    target = f"{UPSTREAM_HOST}:{upstream.http_port}"
    body = b'{"note": "\\ud83d ' + AWS_KEY.encode() + b'"}'
    sock = proxy_socket(str(sidecar.info.proxy))
    sock.sendall(
        f"POST http://{target}/allow/surrogate-{backend} HTTP/1.1\r\nHost: {target}\r\n"
        f"Content-Type: application/json\r\nX-Name: caf\xe9\r\nContent-Length: {len(body)}"
        "\r\n\r\n".encode("latin-1")
        + body
    )
    status, _, answer = read_response(sock)
    sock.close()
    assert status != 500, answer
    if backend == "local":
        assert status == 403  # the key after the surrogate is still found


@pytest.mark.parametrize("backend", ["local", "interven"])
def test_a_secret_in_brotli_metadata_is_refused(make_sidecar, upstream, backend):
    sidecar = make_sidecar(backend=backend)
    target = f"{UPSTREAM_HOST}:{upstream.http_port}"
    hidden = f"{AWS_KEY}\n-----BEGIN RSA PRIVATE KEY-----\nMIIEow".encode()
    for path, metadata, expected in (
        (f"/allow/br-meta-{backend}", hidden, 403),
        (f"/allow/br-meta-clean-{backend}", b"build 2026-12-02 release notes", 200),
    ):
        body = brotli_with_metadata(metadata, CLEAN)
        assert brotli.decompress(body) == CLEAN  # what a server's decoder shows
        status, headers, answer = exchange(
            str(sidecar.info.proxy),
            f"POST http://{target}{path} HTTP/1.1\r\nHost: {target}\r\nContent-Type: "
            "application/json\r\nContent-Encoding: br\r\n",
            body,
        )
        assert status == expected, answer
        if expected == 403:
            assert headers["x-interven-reasons"] == "HIDDEN_SECRET"
            assert upstream.requests_to(path) == []
        else:  # metadata without a secret is not refused for being metadata
            (received,) = upstream.requests_to(path)
            assert received.body == body
