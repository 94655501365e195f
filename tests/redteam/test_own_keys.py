"""Class 11: the sidecar's own keys never leave, in any form, and never reach a log.

Rule: the sidecar's API keys (and its admin token) are known secrets matched wherever
anything is scanned — any case, split in two, reversed, base64/percent/hex encoded, in
header names, the method, the CONNECT authority, WebSocket messages and raw TCP — and a
refused request's method and host are withheld from the decision log.
"""

from __future__ import annotations

import base64
import binascii
import logging
from urllib.parse import quote

import pytest

from tests.support.raw import closed_by_peer, connect, exchange, proxy_socket, read_response
from tests.support.servers import UPSTREAM_HOST
from tests.support.sidecar import API_KEY

HALF = len(API_KEY) // 2
CASES = {
    "upper-case body": ("POST", "/k1", "", API_KEY.upper().encode()),
    "split across headers": (
        "GET",
        "/k2",
        f"X-A: {API_KEY[:HALF]}\r\nX-B: {API_KEY[HALF:]}\r\n",
        b"",
    ),
    "header name": ("GET", "/k3", f"X-{API_KEY}: 1\r\n", b""),
    "reversed": ("POST", "/k4", "", API_KEY[::-1].encode()),
    "base64 in query": ("GET", "/k5?d=" + base64.b64encode(API_KEY.encode()).decode(), "", b""),
    "percent-encoded": ("POST", "/k6", "", quote(quote(API_KEY, safe=""), safe="").encode()),
    "hex": ("POST", "/k7", "", binascii.hexlify(API_KEY.encode())),
    "half of it": ("POST", "/k8", "", API_KEY[HALF - 2 :].encode()),
    "method": ("TESTKEY_never_forward", "/k9", "", b""),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_own_key_in_any_form_is_refused(sidecar, upstream, scan_api, caplog, case):
    caplog.set_level(logging.INFO)
    method, path, headers, body = CASES[case]
    target = f"{UPSTREAM_HOST}:{upstream.http_port}"
    head = f"{method} http://{target}{path} HTTP/1.1\r\nHost: {target}\r\n{headers}"
    status, _, answer = exchange(str(sidecar.info.proxy), head, body)
    assert status == 403, answer
    assert b"SIDECAR_CREDENTIAL" in answer
    assert upstream.requests_to(path.split("?")[0]) == []
    assert scan_api.scans.items == []  # not even the scan API is sent the request
    logged = "\n".join(r.getMessage() for r in caplog.records)
    for i in range(len(API_KEY) - 11):
        assert API_KEY[i : i + 12] not in logged  # nor any piece of it


def test_own_key_in_the_connect_authority_is_refused(sidecar, caplog):
    caplog.set_level(logging.INFO)
    host = API_KEY.replace("_", "-").lower() + ".evil.example"
    status, doc, sock = connect(str(sidecar.info.proxy), f"{host}:443")
    sock.close()
    assert status == 403
    assert "SIDECAR_CREDENTIAL" in doc["reason_codes"]
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "testkey-never-forward" not in logged


def test_own_key_over_an_allowed_raw_tcp_stream_is_cut(make_sidecar, tcp_recorder):
    target = tcp_recorder()
    sidecar = make_sidecar(raw_tcp_hosts=f"{UPSTREAM_HOST}:{target.port}")
    status, _, sock = connect(str(sidecar.info.proxy), f"{UPSTREAM_HOST}:{target.port}")
    assert status == 200
    sock.sendall(b"\x00hello")
    target.chunks.wait_for(lambda c: b"hello" in c)
    sock.sendall(b"\x00" + API_KEY.swapcase().encode())
    assert closed_by_peer(sock)
    target.closed.wait_for(lambda _: True)  # the upstream side ended: all it got is in
    assert API_KEY.lower().encode() not in target.everything.lower()


def test_the_admin_token_is_a_known_secret_too(sidecar, upstream):
    target = f"{UPSTREAM_HOST}:{upstream.http_port}"
    sock = proxy_socket(str(sidecar.info.proxy))
    token = sidecar.admin_token
    sock.sendall(
        f"POST http://{target}/tok HTTP/1.1\r\nHost: {target}\r\n"
        f"Content-Length: {len(token)}\r\n\r\n{token}".encode()
    )
    status, _, _ = read_response(sock)
    sock.close()
    assert status == 403
    assert upstream.requests_to("/tok") == []


@pytest.mark.parametrize(
    "extra",
    ["Host: evil.example\r\n", "Upgrade: foo\r\nConnection: Upgrade\r\n"],
    ids=["fronting", "upgrade"],
)
def test_own_key_is_refused_in_shadow_mode_whatever_else_is_wrong(make_sidecar, upstream, extra):
    """Shadow mode forwards what its rules would refuse — never the sidecar's own key."""
    sidecar = make_sidecar(enforcement="shadow")
    target = f"{UPSTREAM_HOST}:{upstream.http_port}"
    path = f"/shadow-key/{len(extra)}"
    body = API_KEY.encode()
    host = "" if extra.startswith("Host") else f"Host: {target}\r\n"
    sock = proxy_socket(str(sidecar.info.proxy))
    sock.sendall(f"POST http://{target}{path} HTTP/1.1\r\n{host}{extra}Proxy-Authorization: "
                 f"Basic eDp5\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)  # fmt: skip
    status, _, answer = read_response(sock)
    sock.close()
    assert status == 403, answer
    assert b"SIDECAR_CREDENTIAL" in answer
    assert upstream.requests_to(path) == []
