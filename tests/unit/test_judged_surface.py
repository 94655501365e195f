"""Pure pieces of "nothing leaves unjudged": names, methods, upgrades, headers, addresses."""

from __future__ import annotations

import gzip
import ipaddress
import struct
import zlib

import brotli
import pytest
import zstandard

from sidecar.engine import Engine
from sidecar.engine.decisions import Decision
from sidecar.engine.known_secrets import KnownSecrets
from sidecar.engine.policy_file import load_policy
from sidecar.judge.authority import AuthorityError, absolute_url, mismatch, parse_authority
from sidecar.judge.bodies import BodyUndecodable, decode_body
from sidecar.judge.endpoints import OWN_ENDPOINT, Listener, judge_addresses
from sidecar.judge.request_surface import (
    Upgrade,
    classify_upgrade,
    is_volatile,
    method_problem,
    scanned_headers,
    upstream_alpn,
)

ip = ipaddress.ip_address


@pytest.mark.parametrize(
    ("value", "host", "port"),
    [
        ("a.com", "a.com", None),
        ("A.COM.:443", "a.com", 443),
        ("[::1]:80", "::1", 80),
        ("[0:0::1]", "::1", None),
        ("127.0.0.1:8", "127.0.0.1", 8),
        ("".join(chr(ord(c) + 0xFEE0) for c in "pastebin") + ".com", "pastebin.com", None),
        ("Bücher.example:80", "xn--bcher-kva.example", 80),
    ],
)
def test_authorities_parse_to_one_spelling(value, host, port):
    parsed = parse_authority(value)
    assert (parsed.host, parsed.port) == (host, port)


@pytest.mark.parametrize("value", ["", "::1", "[::1", "a.com:x", "a.com:0", "a b", "u@a.com"])
def test_bad_authorities_are_refused(value):
    with pytest.raises(AuthorityError):
        parse_authority(value)


def test_urls_keep_ipv6_brackets():
    assert absolute_url("http", "::1", 8001, "/x?y") == "http://[::1]:8001/x?y"
    assert absolute_url("https", "::ffff:127.0.0.5", 443, "/") == "https://[::ffff:7f00:5]/"
    assert absolute_url("https", "a.com", 443, "/") == "https://a.com/"


def test_names_must_agree_with_the_destination():
    assert mismatch("a.com", 443, [("Host", "a.com"), ("SNI", "A.com.")]) is None
    assert mismatch("a.com", 443, [("Host", "a.com:443")]) is None
    assert "another host" in mismatch("a.com", 443, [("Host", "b.com")])
    assert "another port" in mismatch("a.com", 443, [("Host", "a.com:8443")])
    assert "another host" in mismatch("1.2.3.4", 443, [("SNI", "a.com")])
    assert "does not parse" in mismatch("a.com", 443, [(":authority", "a.com:x")])


def test_methods_are_short_tokens():
    assert method_problem("PROPFIND") is None
    assert method_problem("X" * 33) is not None
    assert method_problem("GE T") is not None
    assert method_problem("GET\x00") is not None


@pytest.mark.parametrize(
    ("method", "version", "upgrade", "ws_version", "expected"),
    [
        ("GET", "HTTP/1.1", [], [], Upgrade.NONE),
        ("GET", "HTTP/1.1", ["websocket"], ["13"], Upgrade.WEBSOCKET),
        ("GET", "HTTP/1.1", ["WebSocket"], ["13"], Upgrade.WEBSOCKET),
        ("POST", "HTTP/1.1", ["websocket"], ["13"], Upgrade.REFUSE),
        ("GET", "HTTP/1.1", ["websocket"], [], Upgrade.REFUSE),
        ("GET", "HTTP/1.1", ["websocket"], ["13", "8"], Upgrade.REFUSE),
        ("GET", "HTTP/1.1", ["h2c"], [], Upgrade.STRIP),
        ("GET", "HTTP/1.1", ["foo"], [], Upgrade.REFUSE),
        ("GET", "HTTP/1.1", ["h2c, foo"], [], Upgrade.REFUSE),
    ],
)
def test_only_inspectable_upgrades(method, version, upgrade, ws_version, expected):
    assert classify_upgrade(method, version, upgrade, ws_version) is expected


def test_volatile_headers_are_left_out_only_in_their_usual_shape():
    names = frozenset({"x-request-id", "date", "x-team-retry"})
    uuid = "0b1e4b7c-3f1a-4c47-9f2e-2d1b5e6a7c80"
    assert is_volatile("X-Request-Id", uuid, names)
    assert not is_volatile("X-Request-Id", "anything the agent likes", names)
    assert is_volatile("Date", "Wed, 02 Dec 2026 03:00:00 GMT", names)
    assert not is_volatile("Date", "AKIAQX4RZT7NM2VBK5WJ", names)
    assert is_volatile("X-Team-Retry", "3", names)  # an operator's name: a short token
    assert not is_volatile("X-Team-Retry", "a" * 65, names)
    assert not is_volatile("X-Note", "1", names)


def test_alpn_offers_leave_as_http_ids_in_one_order():
    offers = [b"http/1.1", b"AKIAQX4RZT7NM2VBK5WJ", b"postgresql", b"h3", b"h2", b"h2"]
    assert upstream_alpn(offers, other_protocols=False) == [b"h2", b"http/1.1"]
    assert upstream_alpn(offers[::-1], other_protocols=False) == [b"h2", b"http/1.1"]
    # to a raw_tcp_hosts destination: any registered id, still in the one order
    assert upstream_alpn(offers, other_protocols=True) == [b"h2", b"http/1.1", b"postgresql"]


def test_scanned_headers_are_everything_forwarded():
    headers = scanned_headers(
        [
            ("Connection", "keep-alive, x"),
            ("Keep-Alive", "k"),
            ("TE", "trailers"),
            ("Proxy-Authorization", "Basic x"),
            ("X-A", "1"),
            ("x-a", "2"),
        ],
        [("grpc-status", "0")],
    )
    assert scanned_headers([("X-Name", "caf\udce9")]) == {"X-Name": "caf\ufffd"}
    assert headers == {"Connection": "keep-alive, x", "Keep-Alive": "k", "TE": "trailers",
                       "Proxy-Authorization": "Basic x", "X-A": "1, 2",
                       "grpc-status": "0"}  # fmt: skip


PLAIN = b'{"a": "b"}'


@pytest.mark.parametrize(
    ("data", "coding"),
    [
        (gzip.compress(PLAIN) + b"junk", "gzip"),
        (b"\x1f\x8b\x08\x08" + b"\x00" * 6 + b"name\x00" + gzip.compress(PLAIN)[10:], "gzip"),
        (b"\x1f\x8b\x08\x10" + b"\x00" * 6 + b"note\x00" + gzip.compress(PLAIN)[10:], "gzip"),
        (zlib.compress(PLAIN) + b"x", "deflate"),
        (brotli.compress(PLAIN)[:-2], "br"),
        (
            zstandard.ZstdCompressor().compress(PLAIN) + struct.pack("<II", 0x184D2A5F, 1) + b"x",
            "zstd",
        ),
        (zstandard.ZstdCompressor().compress(PLAIN) + b"\x00", "zstd"),
    ],
    ids=[
        "gzip-trailing",
        "gzip-fname",
        "gzip-fcomment",
        "deflate-trailing",
        "br-truncated",
        "zstd-skippable",
        "zstd-trailing",
    ],
)
def test_bytes_a_decoder_would_not_scan_are_undecodable(data, coding):
    with pytest.raises(BodyUndecodable):
        decode_body(data, coding, 10_000)


def test_every_member_and_frame_is_decoded():
    assert decode_body(gzip.compress(b"one ") + gzip.compress(b"two"), "gzip", 100) == b"one two"
    zc = zstandard.ZstdCompressor()
    assert decode_body(zc.compress(b"one ") + zc.compress(b"two"), "zstd", 100) == b"one two"
    te = decode_body(gzip.compress(PLAIN), "", 100, transfer_encoding="gzip, chunked")
    assert te == PLAIN
    # Response classification stays lenient: what decodes is read.
    assert decode_body(gzip.compress(PLAIN) + b"junk", "gzip", 100, truncate=True) == PLAIN


def test_known_secrets_in_every_form():
    key = "iv_live_Q8h2Zr7KpW4xTn9LmC3vB6"
    known = KnownSecrets([key])
    for text in (key, key.upper(), key[::-1], key[:14], key[12:], "IV-LIVE-Q8H2ZR7.KPW4XTN9",
                 f"x-{key.replace('_', '.')}"):  # fmt: skip
        assert known.found_in([text]), text
    for text in ("iv_live_", "iv_live_A1b2C3d4E5f6G7h8", "hello", ""):
        assert not known.found_in([text]), text
    assert known.withhold(f"GET {key}") == "[withheld: sidecar credential]"
    assert not KnownSecrets([])


def test_short_known_secrets_are_found_whole_not_in_words():
    known = KnownSecrets(["changeme-admin", "kt_live_8d2e"])
    assert known.found_in(["token=changeme-admin"])
    assert known.found_in(["CHANGEME.ADMIN"])
    assert known.found_in(["x e2d8evil_tk x"])  # reversed
    assert not known.found_in(["please change me before the admin deploy"])
    assert not known.found_in(["changemeadmins"])
    assert known.found_in(["caf\udce9 kt-live-8d2e"])  # undecodable bytes around it


def test_known_secret_pieces_skip_the_provider_prefix():
    known = KnownSecrets(["sk-ant-api03-Zq8LmR2vT9xW4kP7nB3cY6hJ"])
    assert not known.found_in(["sk-ant-api03-AAAAAAAAAAAAAAAAAAAA"])  # another key of a kind
    assert known.found_in(["Zq8LmR2vT9xW"])


def test_addresses_are_judged_after_resolution():
    here = frozenset({ip("10.9.8.7")})  # this host's own address (the pod IP)
    own = [Listener.of("127.0.0.1", 9090, here), Listener.of("0.0.0.0", 8080, here)]
    internal = ["10.0.0.0/8", "*.svc.cluster.local"]
    judge = lambda host, port, *a: judge_addresses(host, port, [ip(x) for x in a], internal, own)  # noqa: E731
    assert judge("a.com", 443, "93.184.216.34").address == ip("93.184.216.34")
    assert judge("a.com", 443, "127.0.0.1").refusal == "loopback"
    assert judge("a.com", 443, "93.184.216.34", "169.254.169.254").refusal == "metadata"
    assert judge("a.com", 443, "10.1.2.3").refusal is None  # internal CIDR
    assert judge("db.svc.cluster.local", 5432, "172.16.0.4").refusal is None  # internal name
    assert judge("x.com", 9090, "127.0.0.5").refusal == OWN_ENDPOINT
    assert judge("x.com", 8080, "10.9.8.7").refusal == OWN_ENDPOINT  # wildcard: this host
    assert judge("x.com", 8080, "0.0.0.0").refusal == OWN_ENDPOINT
    assert judge("x.com", 8080, "::1").refusal == OWN_ENDPOINT
    # A wildcard listener is not every host on its port.
    assert judge("x.com", 8080, "93.184.216.34").refusal is None
    assert judge("x.com", 9090, "10.1.2.3").refusal is None


def test_tunnels_are_refused_only_when_every_request_would_be():
    policy = load_policy(None)
    engine = Engine(policy, internal_hosts=("10.0.0.0/8",))
    assert engine.judge_destination("api.example.com", 443).decision is Decision.ALLOW
    assert engine.judge_destination("127.0.0.1", 443).decision is Decision.DENY
    assert engine.judge_destination("10.1.2.3", 443).decision is Decision.ALLOW
    assert engine.judge_destination("", 443).decision is Decision.DENY


def test_destination_rules_with_request_conditions_do_not_refuse_tunnels(tmp_path):
    path = tmp_path / "p.yaml"
    rules = [
        "{rule_id: own-ok, match: {hosts: [api.x.com]},"
        " condition: {has_reason: [OWN_CREDENTIAL]}, action: ALLOW, priority: 3}",
        "{rule_id: deny-x, match: {hosts: [api.x.com]}, action: DENY, priority: 2}",
        "{rule_id: deny-paste, match: {hosts: [paste.x.com]}, action: DENY, priority: 2}",
        "{rule_id: deny-posts, match: {hosts: [post.x.com], methods: [POST]},"
        " action: DENY, priority: 2}",
        "{rule_id: allowlist, condition: {destination_not_in: ['*.x.com']},"
        " action: DENY, priority: 1}",
    ]
    path.write_text("name: t\nrules:\n" + "".join(f"  - {r}\n" for r in rules))
    engine = Engine(load_policy(path))
    assert engine.judge_destination("api.x.com", 443).decision is Decision.ALLOW
    paste = engine.judge_destination("paste.x.com", 443)
    assert paste.decision is Decision.DENY
    assert "POLICY:deny-paste" in paste.reason_codes
    assert engine.judge_destination("post.x.com", 443).decision is Decision.ALLOW
    assert engine.judge_destination("elsewhere.com", 443).decision is Decision.DENY


def test_a_sure_deny_after_an_uncertain_one_refuses_the_tunnel(tmp_path):
    rules = [
        "{rule_id: maybe, match: {hosts: [a.x.com]}, condition: {has_data_class: [PII]},"
        " action: DENY, priority: 3}",
        "{rule_id: risky, condition: {risk_at_least: 0.95}, action: ALLOW, priority: 2}",
        "{rule_id: surely, match: {hosts: [a.x.com]}, action: DENY, priority: 1}",
    ]
    path = tmp_path / "p.yaml"
    path.write_text("name: t\nrules:\n" + "".join(f"  - {r}\n" for r in rules))
    engine = Engine(load_policy(path))
    # `risky` could let a very risky request pass (risk is content), so the tunnel opens.
    assert engine.judge_destination("a.x.com", 443).decision is Decision.ALLOW
    path.write_text("name: t\nrules:\n" + "".join(f"  - {r}\n" for r in (rules[0], rules[2])))
    verdict = Engine(load_policy(path)).judge_destination("a.x.com", 443)
    assert verdict.decision is Decision.DENY
    assert "POLICY:surely" in verdict.reason_codes


def test_an_unparseable_destination_is_never_no_finding():
    verdict = Engine(load_policy(None)).decide("GET", "http://[::1/x", {}, None)
    assert verdict.decision is Decision.DENY
    assert verdict.reason_codes == ["DESTINATION_UNPARSEABLE"]
