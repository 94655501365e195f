"""Brokered credentials without a proxy: placeholders, the bindings file, where a value
is carried, echoes scrubbed from a stream cut anywhere, and rotation."""

from __future__ import annotations

import base64
import json
import urllib.parse
import zlib
from pathlib import Path

import pytest

from sidecar.broker.bindings import BindingsError, parse_bindings
from sidecar.broker.carry import RequestParts, substitute
from sidecar.broker.masking import mask_headers
from sidecar.broker.placeholders import BASE62, PRESETS, placeholder_for
from sidecar.broker.scrub import FRAGMENT, Echo, Scrubber, ScrubTable, StreamScrubber
from sidecar.broker.state import Broker, BrokerState
from sidecar.engine.known_secrets import LabelledSecrets
from tests.support.brokered import SecretMount

VALUE = "sk-proj-REALv4lue9KqZ2mX8pN3rT6wY1bV5cJ7hL0dF4gS2aE9uI3oK6zQ8xW1"
PH = "sk-proj-PLACEHOLDERxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"


def test_placeholders_are_stable_shaped_unique_and_never_valid():
    # A golden value: manifests hold placeholders, so the format never drifts silently.
    openai = placeholder_for("openai", PRESETS["openai"])
    assert openai == "sk-proj-PHOLD03abI3Oje5tESW2Bzs1dAb6HjmZAsA9ISkkqW2A7pNMwrJk1dOPUdxresi2"
    assert placeholder_for("other", PRESETS["openai"]) != openai
    for name, shape in PRESETS.items():
        ph = placeholder_for(name, shape)
        assert ph.startswith(shape.prefix)
        assert len(ph) == len(shape.prefix) + shape.length
    gh = placeholder_for("gh", PRESETS["github"])
    body, checksum = gh[4:-6], gh[-6:]
    crc, right = zlib.crc32(body.encode()), ""
    for _ in range(6):
        crc, digit = divmod(crc, 62)
        right = BASE62[digit] + right
    assert checksum != right  # a GitHub token's CRC32 never holds for a placeholder


GOOD = """
credentials:
  - name: openai
    value: {env: EGRESS_TEST_VALUE}
    agent_env: OPENAI_API_KEY
    shape: openai
    destinations: [{url: "https://api.openai.com/v1/", methods: [post]}]
    carry: bearer
"""


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("credentials: [x", "bindings.yaml: line 1 not valid YAML"),
        ("- a", "a bindings file is a mapping"),
        (GOOD.replace("https://api", "http://api"), "only https:// destinations"),
        (GOOD.replace("carry: bearer", "carry: {aws_sigv4: x}"), "signs requests"),
        (GOOD.replace("carry: bearer", "carry: hmac"), "signs requests"),
        (GOOD.replace("shape: openai", "shape: aws"), "signs requests"),
        (GOOD.replace("carry: bearer", "carry: {cookie: x}"), "carry is bearer, basic"),
        (GOOD.replace("name: openai", "name: Open AI"), "credentials[0] (Open AI) name"),
        (GOOD + GOOD.replace("credentials:\n", ""), "declared twice"),
        (GOOD.replace("{env: EGRESS_TEST_VALUE}", "{}"), "exactly one of file or env"),
        (GOOD.replace("api.openai.com", "mirror.corp"), "tunnelled without inspection"),
        (GOOD.replace("    carry: bearer\n", ""), "carry: Field required"),
        (GOOD.replace("api.openai.com", "*"), "no other wildcard"),
        (GOOD.replace("api.openai.com", "api.openai.*"), "no other wildcard"),
        (GOOD.replace("api.openai.com", "*.com"), "no other wildcard"),
        (GOOD.replace("https://api", "https://:pw@api"), "want https://HOST"),
        (GOOD.replace("OPENAI_API_KEY", "HTTPS_PROXY"), "set by `egress-sidecar env`"),
    ],
)
def test_bad_bindings_get_one_line_naming_where(text, error):
    with pytest.raises(BindingsError) as e:
        parse_bindings(text, "bindings.yaml", ["mirror.corp"])
    assert error in str(e.value)
    assert "\n" not in str(e.value)


def test_destinations_bind_host_port_path_and_method():
    c = parse_bindings(GOOD, "b", []).credentials[0]
    assert c.bound("POST", "api.openai.com", 443, "/v1/chat")
    assert c.bound("post", "API.OPENAI.COM.", 443, "/v1")
    assert not c.bound("GET", "api.openai.com", 443, "/v1/chat")
    assert not c.bound("POST", "api.openai.com", 8443, "/v1/chat")
    assert not c.bound("POST", "evil.com", 443, "/v1/chat")
    assert not c.bound("POST", "api.openai.com.evil.com", 443, "/v1/chat")
    assert not c.bound("POST", "api.openai.com", 443, "/v2/x")
    assert not c.bound("POST", "api.openai.com", 443, "/v1x")
    assert not c.bound("POST", "api.openai.com", 443, "/v1-secrets")
    bare = parse_bindings(GOOD.replace("/v1/", "/v1"), "b", []).credentials[0]
    assert bare.bound("POST", "api.openai.com", 443, "/v1")
    assert bare.bound("POST", "api.openai.com", 443, "/v1/chat")
    for sibling in ("/v1-admin", "/v1admin", "/v1.admin"):
        assert not bare.bound("POST", "api.openai.com", 443, sibling), sibling
    for climb in (
        "/v1/../admin",
        "/v1/%2e%2e/admin",
        "/v1/.%2E/x",
        "/v1%2f..%2fx",
        "/v1/..;/admin",
        "/v1/%252e%252e/admin",
        "/v1/..%5cx",
        "/v1/.;x=1/",
    ):
        assert not c.bound("POST", "api.openai.com", 443, climb), climb


def parts(headers=(), path="/", body=None) -> RequestParts:
    return RequestParts(tuple(headers), path, body)


def test_each_carry_puts_the_value_only_in_its_position():
    p = parts([("Authorization", f"Bearer {PH}"), ("X-Key", PH)], f"/a/{PH}?k={PH}&o={PH}",
              json.dumps({"a": {"k": PH}, "n": PH}).encode())  # fmt: skip
    bearer = substitute("bearer", "", p, PH, VALUE)
    assert bearer.headers == (("Authorization", f"Bearer {VALUE}"), ("X-Key", PH))
    assert bearer.path == p.path
    assert bearer.body == p.body
    header = substitute("header", "x-key", p, PH, VALUE)
    assert header.headers == (("Authorization", f"Bearer {PH}"), ("X-Key", VALUE))
    query = substitute("query", "k", p, PH, VALUE)
    assert query.path == f"/a/{PH}?k={VALUE}&o={PH}"
    path = substitute("path", "", p, PH, VALUE)
    assert path.path == f"/a/{VALUE}?k={PH}&o={PH}"
    js = substitute("json", "a.k", p, PH, VALUE)
    assert json.loads(js.body or b"") == {"a": {"k": VALUE}, "n": PH}
    form = substitute("form", "key", parts(body=f"key={PH}&x={PH}".encode()), PH, VALUE)
    assert form.body == f"key={VALUE}&x={PH}".encode()
    anywhere = substitute("anywhere", "", p, PH, VALUE)
    assert PH not in json.dumps([anywhere.headers, anywhere.path, (anywhere.body or b"").decode()])
    basic = base64.b64encode(f"api:{PH}".encode()).decode()
    out = substitute("basic", "", parts([("authorization", f"Basic {basic}")]), PH, VALUE)
    assert base64.b64decode(out.headers[0][1].split()[1]).decode() == f"api:{VALUE}"
    # Not there (or not exactly the bearer token): nothing changes.
    assert substitute("bearer", "", parts([("Authorization", f"Bearer x{PH}")]), PH, VALUE) == \
        parts([("Authorization", f"Bearer x{PH}")])  # fmt: skip


ECHOES = [
    VALUE,
    json.dumps(VALUE)[1:-1],
    "".join(f"\\u{b:04X}" for b in VALUE.encode()),
    base64.b64encode(b"Bearer " + VALUE.encode()).decode(),
    base64.urlsafe_b64encode(b"x" + VALUE.encode()).decode(),
    base64.b64encode(b"ab" + VALUE.encode()).decode(),
    VALUE.encode().hex(),
    VALUE.encode().hex().upper(),
    "".join(f"%{b:02x}" for b in VALUE.encode()),
    VALUE[:-1],  # truncated, at either end
    VALUE[9:],
    VALUE[::-1],
    VALUE[20:40][::-1],
]


def _readable(out: bytes) -> list[bytes]:
    """`out` and what each of its words decodes to (base64, hex, percent, JSON)."""
    texts = [out]
    for word in out.split():
        for decode in (
            lambda w: base64.b64decode(w + b"=" * (-len(w) % 4), altchars=b"-_"),
            lambda w: bytes.fromhex(w.decode()),
            lambda w: urllib.parse.unquote_to_bytes(w),
            lambda w: json.loads(b'"' + w + b'"').encode(),
        ):
            try:
                texts.append(decode(word))  # type: ignore[arg-type]
            except (ValueError, UnicodeDecodeError):
                continue
    return texts


def _carries_value(out: bytes) -> bool:
    """Any run of FRAGMENT characters of VALUE past its prefix, either way."""
    raw = VALUE.encode()
    windows = {raw[i : i + FRAGMENT] for i in range(4, len(raw) - FRAGMENT + 1)}
    windows |= {w[::-1] for w in windows}
    return any(w in text for text in _readable(out) for w in windows)


@pytest.mark.parametrize("echo", ECHOES)
def test_an_echo_cut_at_any_point_never_gets_through(echo):
    body = f"data: one\n\ndata: {echo} tail\n\n".encode()
    assert _carries_value(body)
    for cut in range(1, len(body)):
        scrubber = Scrubber(ScrubTable({VALUE: Echo("openai", PH, len("sk-proj-"))}))
        stream = StreamScrubber(scrubber)
        out = stream(body[:cut]) + stream(body[cut:]) + stream(b"")
        assert not _carries_value(out), (cut, out)
        assert out.startswith(b"data: one\n\ndata: ")
        assert out.endswith(b" tail\n\n")
        assert scrubber.counts["openai"] >= 1


def test_pieces_shorter_than_a_fragment_pass_as_documented():
    scrubber = Scrubber(ScrubTable({VALUE: Echo("openai", PH, len("sk-proj-"))}))
    piece = VALUE[20 : 20 + FRAGMENT - 1].encode()
    assert scrubber.scrub(b"x " + piece + b" y") == b"x " + piece + b" y"
    assert scrubber.scrub(b"sk-proj-other-key") == b"sk-proj-other-key"  # the prefix alone


def test_a_stream_with_no_echo_passes_at_once():
    stream = StreamScrubber(Scrubber(ScrubTable({VALUE: Echo("openai", PH, len("sk-proj-"))})))
    assert stream(b"data: hello\n\n") == b"data: hello\n\n"  # nothing held back
    assert stream(b"data: sk-pr") == b"data: "  # could be the start of one
    assert stream(b"ocket\n") == b"sk-procket\n"


def test_bound_placeholders_are_masked_for_the_scan_backend(monkeypatch):
    monkeypatch.setenv("EGRESS_TEST_VALUE", VALUE)
    bindings = parse_bindings(GOOD, "b", [])
    state = Broker(bindings, []).current
    ph = state.placeholders["openai"]
    basic = base64.b64encode(f"u:{ph}".encode()).decode()
    masked = mask_headers(
        {"authorization": f"Basic {basic}", "x": ph}, state, frozenset({"openai"})
    )
    assert masked == {"authorization": "Basic u:[brokered:openai]", "x": "[brokered:openai]"}


def test_labelled_secrets_tell_values_placeholders_and_own_keys_apart():
    own = "iv_live_TESTKEY_never_forward_3f9a1c"
    secrets = LabelledSecrets({"own": [own], "value:a": [VALUE], "placeholder:a": [PH]},
                              lean=frozenset({"value:a", "placeholder:a"}))  # fmt: skip
    find = secrets.labels_in_request
    assert find("GET", "https://x/", {}, None, "hello") == frozenset()
    assert find("GET", "https://x/", {"a": own}, None, "") == {"own"}
    assert find("POST", "https://x/", {}, None, base64.b64encode(VALUE.encode()).decode()) == {
        "value:a"
    }
    assert find("POST", "https://x/", {}, None, VALUE[::-1]) == {"value:a"}
    assert find("POST", "https://x/", {}, None, f"k={PH[8:30]}") == {"placeholder:a"}
    escaped = json.dumps({"d": "".join(f"\\u{ord(c):04x}" for c in VALUE)})  # \\u text
    assert find("POST", "https://x/", {}, json.loads(escaped), escaped) == {"value:a"}
    spaced = " ".join(VALUE[i : i + 9] for i in range(0, len(VALUE), 9))
    assert find("POST", "https://x/", {}, None, spaced) == {"value:a"}


def test_rotation_swaps_the_snapshot_and_keeps_a_bad_file_out(tmp_path: Path):
    mount = SecretMount(tmp_path / "s")
    mount.update({"key": VALUE})
    text = GOOD.replace("{env: EGRESS_TEST_VALUE}", f"{{file: {mount.path('key')}}}")
    broker = Broker(parse_bindings(text, "b", []), [])
    first = broker.current
    assert broker.refresh() == []
    mount.update({"key": VALUE[::-1]})
    assert broker.refresh() == [("openai", "rotated")]
    assert broker.current.values["openai"] == VALUE[::-1]
    assert first.values["openai"] == VALUE  # in-flight requests keep theirs
    assert broker.current.secrets.labels_in([VALUE]) == {"value:openai"}  # still refused
    mount.update({"key": ""})
    assert broker.refresh() == [("openai", "invalid")]
    assert broker.current.values["openai"] == VALUE[::-1]
    mount.update({"key": broker.current.placeholders["openai"]})
    assert broker.refresh() == [("openai", "invalid")]  # the placeholder is no value
    assert broker.refresh() == []  # said once, until the file changes again
    mount.path("key").unlink()
    assert broker.refresh() == [("openai", "missing")]
    assert broker.refresh() == []
    assert broker.current.values["openai"] == VALUE[::-1]
    assert isinstance(broker.current, BrokerState)
