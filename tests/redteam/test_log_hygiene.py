"""Class 11 (logs): request-controlled text never reaches a log line raw or unbounded.

mitmproxy logs a ClientHello it cannot parse as a hex dump of everything the client sent,
SNI names, hosts and WebSocket payloads. Rule: every mitmproxy record is cleaned before
any handler formats it (hex runs withheld, control characters escaped, lines bounded,
lines carrying the sidecar's own keys withheld), and the decision log escapes and bounds
methods and hosts.
"""

from __future__ import annotations

import binascii
import logging
import socket

from tests.support.raw import closed_by_peer, connect, proxy_socket, read_response
from tests.support.servers import UPSTREAM_HOST
from tests.support.sidecar import API_KEY
from tests.support.waiting import eventually


def _lines(caplog) -> list[str]:  # type: ignore[no-untyped-def]
    return [r.getMessage() for r in caplog.records]


def test_a_malformed_client_hello_is_not_dumped(sidecar, caplog):
    caplog.set_level(logging.INFO)
    status, _, sock = connect(str(sidecar.info.proxy), f"{UPSTREAM_HOST}:443")
    assert status == 200
    garbage = b"\x01\x00\x00\x40" + API_KEY.encode() + b"\xff" * 32  # not a ClientHello
    sock.sendall(b"\x16\x03\x01" + len(garbage).to_bytes(2, "big") + garbage)
    assert closed_by_peer(sock)
    text = "\n".join(_lines(caplog))
    assert "ClientHello" in text  # the failure is still reported ...
    assert binascii.hexlify(API_KEY.encode()).decode() not in text  # ... without the dump
    assert "bytes withheld" in text
    assert max(len(line) for line in _lines(caplog)) <= 1100


def test_long_hosts_are_bounded_in_the_decision_log(sidecar, caplog):
    caplog.set_level(logging.INFO)
    host = ".".join(["a" * 60] * 4) + ".example"
    sock = proxy_socket(str(sidecar.info.proxy))
    sock.sendall(f"GET http://{host}/x HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
    read_response(sock)
    sock.close()
    decisions = [r.getMessage() for r in caplog.records if r.name == "egress_sidecar.decisions"]
    assert decisions
    assert all(len(line) < 1000 for line in decisions)
    assert all(host not in line for line in decisions)  # a data-carrying name: a digest


def test_the_admin_servers_access_log_is_cleaned_too(sidecar, caplog):
    caplog.set_level(logging.INFO)
    admin = sidecar.info.admin
    assert admin is not None
    path = f"/approvals/x%1b[2J{API_KEY}"
    sock = socket.create_connection((admin.host, admin.port), timeout=10)
    sock.sendall(f"POST {path}/approve HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n".encode())
    read_response(sock)
    sock.close()

    def lines() -> list[str]:
        return [r.getMessage() for r in caplog.records if r.name.startswith("tornado")]

    eventually(lambda: bool(lines()))  # the refusal is logged (after the answer is sent) ...
    for line in lines():  # ... without the key or a raw escape
        assert API_KEY not in line
        assert "\x1b" not in line


def test_a_method_the_agent_invented_is_logged_as_a_digest(make_sidecar, upstream, caplog):
    caplog.set_level(logging.INFO)
    sidecar = make_sidecar(backend="local")
    target = f"{UPSTREAM_HOST}:{upstream.http_port}"
    key = "AKIAQX4RZT7NM2VBK5WJ"
    sock = proxy_socket(str(sidecar.info.proxy))
    sock.sendall(f"{key} http://{target}/m HTTP/1.1\r\nHost: {target}\r\n\r\n".encode())
    status, _, _ = read_response(sock)
    sock.close()
    assert status == 403
    decisions = [r.getMessage() for r in caplog.records if r.name == "egress_sidecar.decisions"]
    assert any('"method":"other:sha256:' in line for line in decisions)
    assert not any(key in line for line in decisions)
