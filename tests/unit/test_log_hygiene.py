"""Log lines carrying request-controlled text are cleaned before any handler sees them."""

from __future__ import annotations

import logging
from types import SimpleNamespace

from addons.log_hygiene import _Hygiene
from sidecar.broker.bindings import parse_bindings
from sidecar.broker.state import Broker
from sidecar.engine.known_secrets import KnownSecrets
from sidecar.observability.decision_log import loggable, loggable_host

KEY = "iv_live_Q8h2Zr7KpW4xTn9LmC3vB6abcd"
BROKERED = "sk-proj-LOGv4lue9KqZ2mX8pN3rT6wY1bV5cJ7hL0dF4gS2aE9uI3oK6zQ8xW1"
BINDINGS = """
credentials:
  - name: openai
    value: {env: EGRESS_LOG_TEST_VALUE}
    destinations: [{url: "https://api.openai.com/v1/"}]
    carry: bearer
"""


def _cleaned(name: str, msg: str, *args: object, broker: Broker | None = None) -> str:
    judge = SimpleNamespace(known=KnownSecrets([KEY]), broker=broker)
    guard = SimpleNamespace(runtime=SimpleNamespace(judge=judge))
    record = logging.LogRecord(name, logging.WARNING, __file__, 1, msg, args, None)
    assert _Hygiene(guard).filter(record) is True  # type: ignore[arg-type]
    return record.getMessage()


def test_hex_dumps_control_characters_and_keys_are_withheld():
    dump = _cleaned("mitmproxy.proxy.server", "Cannot parse ClientHello: %s", "16" * 300)
    assert dump == "Cannot parse ClientHello: <300 bytes withheld>"
    escaped = _cleaned("mitmproxy.proxy.server", "for %s", "evil\x1b[31m\u202e.example")
    assert "\x1b" not in escaped
    assert "\u202e" not in escaped
    assert (
        _cleaned("mitmproxy.proxy.server", "x %s", KEY.upper()) == "[withheld: sidecar credential]"
    )
    assert len(_cleaned("mitmproxy.proxy.server", "%s", "x" * 5000)) <= 1001
    assert _cleaned("mitmproxy.proxy.server", "caf%s", "\udce9") == "caf\\ufffd"


def test_a_line_with_a_brokered_value_is_withheld(monkeypatch):
    monkeypatch.setenv("EGRESS_LOG_TEST_VALUE", BROKERED)
    broker = Broker(parse_bindings(BINDINGS, "b", []), [KEY])
    line = f"HTTP/2 protocol error: GET https://api.openai.com/v1/x?key={BROKERED}"
    cleaned = _cleaned("mitmproxy.proxy.server", "%s", line, broker=broker)
    assert cleaned == "[withheld: brokered credential]"
    plain = _cleaned("mitmproxy.proxy.server", "%s", "server connect api.openai.com", broker=broker)
    assert plain == "server connect api.openai.com"


def test_other_loggers_and_broken_records_are_handled():
    assert _cleaned("egress_sidecar", "%s", "\x1b kept") == "\x1b kept"  # ours: already clean
    broken = _cleaned("mitmproxy.proxy.server", "%d", "not a number")
    assert broken == "[mitmproxy.proxy.server: log line withheld]"


def test_decision_log_fields_are_escaped_and_bounded():
    assert loggable("GE\x1bT\u202e") == "GE\\x1bT\\u202e"
    assert loggable("a" * 300, 10) == "aaaaaaaaaa…"
    digest = loggable_host("4141414b.evil.example", ["DNS_EXFILTRATION"])
    assert digest.startswith("sha256:")
    assert "4141414b" not in digest
