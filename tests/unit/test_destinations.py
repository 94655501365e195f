from __future__ import annotations

import fnmatch
import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sidecar.engine.destinations import (
    dns_exfiltration,
    host_matches,
    parse_ip,
    recognise_tool,
    ssrf,
)


@pytest.mark.parametrize(
    ("host", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("127.1", "loopback"),
        ("2130706433", "loopback"),  # decimal
        ("0x7f000001", "loopback"),  # hex
        ("0177.0.0.1", "loopback"),  # octal
        ("[::1]", "loopback"),
        ("[::ffff:127.0.0.1]", "loopback"),  # IPv6-mapped
        ("::ffff:7f00:1", "loopback"),
        ("localhost", "loopback"),
        ("api.localhost", "loopback"),
        ("10.1.2.3", "private"),
        ("192.168.0.10", "private"),
        ("172.16.5.4", "private"),
        ("[fd00::1]", "private"),
        ("169.254.169.254", "metadata"),
        ("0xa9fea9fe", "metadata"),  # 169.254.169.254 in hex
        ("[fd00:ec2::254]", "metadata"),
        ("metadata.google.internal", "metadata"),
        ("100.100.100.200", "metadata"),
        ("169.254.10.10", "link_local"),
        ("0.0.0.0", "unspecified"),
        ("100.64.1.1", "shared"),
    ],
)
def test_ssrf_targets_in_every_spelling(host, reason):
    finding = ssrf(host)
    assert finding is not None
    assert finding.reason == reason


@pytest.mark.parametrize(
    "host",
    [
        "api.github.com",
        "8.8.8.8",
        "1.1.1.1",
        "[2606:4700::1111]",
        "127.example.com",
        "10.example.org",
        "0x7f.example",
    ],
)
def test_public_destinations_are_not_ssrf(host):
    assert ssrf(host) is None


def test_parse_ip_forms():
    assert str(parse_ip("3232235521")) == "192.168.0.1"
    assert parse_ip("example.com") is None


@pytest.mark.parametrize(
    "host",
    [
        "6a6f686e2e646f6540636f6d70616e792e636f6d.attacker.net",  # hex
        "mzxw6ytboi2dsnjqgiztknbvgy3tqojqgeztg.evil.io",  # base32
        "q8Zk2LmV9xT4pW7rN1sY6bH3cF0dG5jE.data.example.org",  # random
        ("a" * 60 + ".") * 2 + "x.com",  # very long subdomain
    ],
)
def test_dns_exfiltration(host):
    assert dns_exfiltration(host)


@pytest.mark.parametrize(
    "host",
    [
        "www.google.com",
        "d1a2b3c4d5e6f7.cloudfront.net",
        "api.openai.com",
        "bedrock-runtime.us-east-1.amazonaws.com",
        "my-service-prod.internal.corp.net",
        "10.0.0.1",
    ],
)
def test_ordinary_names_are_not_exfiltration(host):
    assert not dns_exfiltration(host)


def test_host_matches():
    assert host_matches("api.github.com", ["*.github.com"])
    assert not host_matches("github.com", ["*.github.com"])  # subdomains only
    assert host_matches("GitHub.com.", ["github.com"])
    assert host_matches("10.2.3.4", ["10.0.0.0/8"])
    assert not host_matches("11.2.3.4", ["10.0.0.0/8"])
    assert host_matches(
        "bedrock-runtime.eu-west-1.amazonaws.com", ["bedrock-runtime.*.amazonaws.com"]
    )
    assert host_matches("2130706433", ["127.0.0.0/8"])  # any literal form the client accepts
    assert host_matches("[::ffff:10.1.1.1]", ["10.0.0.0/8"])
    assert not host_matches("10.example.com", ["10.0.0.0/8"])
    assert not host_matches("example.com", [])


def _reference_host_matches(host: str, patterns: list[str]) -> bool:
    """The rule as documented, one pattern at a time (what the compiled sets must equal)."""
    h = host.lower().rstrip(".")
    addr = parse_ip(h)
    for p in (p.lower().strip() for p in patterns):
        if "/" in p:
            if addr is not None and addr in ipaddress.ip_network(p, strict=False):
                return True
        elif p == h or (p.startswith("*.") and h.endswith(p[1:])) or fnmatch.fnmatchcase(h, p):
            return True
    return False


_labels = st.sampled_from(["a", "api", "github", "com", "svc", "x-1", "10", "0x7f", "1"])
_names = st.lists(_labels, min_size=1, max_size=4).map(".".join)
_addresses = st.ip_addresses().map(str)
_patterns = st.one_of(
    _names,
    _names.map(lambda n: "*." + n),
    _names.map(lambda n: n.replace("a", "*", 1)),
    st.builds(
        lambda a, bits: str(ipaddress.ip_network(f"{a}/{bits % (a.max_prefixlen + 1)}", False)),
        st.ip_addresses(),
        st.integers(0, 128),
    ),
    _names.map(str.upper),
)


@given(host=st.one_of(_names, _addresses), patterns=st.lists(_patterns, max_size=6))
def test_compiled_host_patterns_match_exactly_like_the_rule(host, patterns):
    assert host_matches(host, patterns) == _reference_host_matches(host, patterns)


@pytest.mark.parametrize(
    ("method", "host", "path", "expected"),
    [
        ("POST", "hooks.slack.com", "/services/T1/B2/x", ("slack", "post_message")),
        ("POST", "slack.com", "/api/chat.postMessage", ("slack", "post_message")),
        ("POST", "api.github.com", "/repos/o/r/pulls", ("github", "create_pr")),
        ("POST", "api.github.com", "/repos/o/r/issues", ("github", "create_issue")),
        ("POST", "api.openai.com", "/v1/chat/completions", ("openai", "chat_completion")),
        ("POST", "api.anthropic.com", "/v1/messages", ("anthropic", "create_message")),
        (
            "POST",
            "generativelanguage.googleapis.com",
            "/v1beta/models/g:generateContent",
            ("gemini", "generate_content"),
        ),
        (
            "POST",
            "bedrock-runtime.us-east-1.amazonaws.com",
            "/model/m/invoke",
            ("bedrock", "invoke_model"),
        ),
        ("GET", "example.com", "/", ("custom_proxy", "read")),
        ("PUT", "example.com", "/x", ("custom_proxy", "write")),
    ],
)
def test_tool_recognition(method, host, path, expected):
    assert recognise_tool(method, host, path) == expected
