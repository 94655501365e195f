"""Turning a request into the pieces of text that are scanned, each with its location.

The URL (percent-decoded), every header, and the body: JSON walked value by value,
forms and multipart split into their values, anything else as text. Values hidden by
encodings (base64, hex, percent-encoding applied more than once) are decoded into extra
fields, to a bounded depth and a bounded total size.

Bodies can hold tens of thousands of values, so the per-value work here is kept small,
and a JSON location never grows past `MAX_LOCATION` (see `json_location`).
"""

from __future__ import annotations

import binascii
import bisect
import email.message
import email.parser
import email.policy
import hashlib
import json
import re
from collections.abc import Iterator
from itertools import accumulate
from typing import Any, NamedTuple
from urllib.parse import parse_qsl, unquote, urlsplit

import re2

from sidecar.engine.budget import Budget, ScanLimit

MAX_DEPTH = 3
PERCENT_PER_UNIT = 8  # percent escapes undone for one unit of a scan's budget
PART_COST = 64  # budget units a multipart part costs to parse (see `_charge_parsing`)
# Every walk of a JSON document (scan, redaction, hashing) recurses once per level: a
# document nested deeper is not scanned (`ScanLimit`), it could not be walked safely.
MAX_JSON_DEPTH = 256
# A longer JSON location is replaced by a digest of itself (`json_location`).
MAX_LOCATION = 256
# Shorter JSON strings cannot hold a finding, so they are not scanned: the shortest
# detector match is an email (`a@b.cd`), key-named secrets have 16+ characters, encoded
# values 24+.
MIN_TEXT = 6
# A JSON number can only be a card number, and only with 13+ digits before any point:
# smaller numbers (token ids, counts, embeddings) are not scanned.
MIN_NUMBER = 10**12
_B64 = re2.compile(rb"[A-Za-z0-9+/_\-]{24,}={0,2}")
_HEX = re2.compile(rb"\b(?:[0-9a-fA-F]{2}){16,}\b")
_PRINTABLE = re.compile(r"^[\x09\x0a\x0d\x20-\x7e\u00a0-\uffff]*$")

CREDENTIAL_HEADERS = frozenset(
    {"authorization", "proxy-authorization", "cookie", "x-api-key", "api-key",
     "x-goog-api-key", "x-auth-token", "private-token", "x-access-token"}
)  # fmt: skip


class Field(NamedTuple):
    """One scanned text. A named tuple: a body can hold tens of thousands of them, and
    a tuple is built several times faster than a frozen dataclass."""

    location: str  # "url", "header:authorization", "body", "body.$.a[0].b", "form:x", ...
    text: str
    key: str | None = None  # the JSON/form key naming this value, for keyword context
    encoding: str | None = None  # "base64", "hex", "percent": found inside an encoded value
    credential_header: bool = False

    @property
    def in_body(self) -> bool:
        return self.location == "body" or self.location.startswith(("body.", "form:", "part:"))


def request_fields(
    url: str, headers: dict[str, str], body: Any, method: str = "", budget: Budget | None = None
) -> list[Field]:
    """Every field of a request as sent (see `decoded_layers` for what hides inside):
    the method and the header names too, since they leave with it. Raises `ScanLimit`
    for a JSON body nested deeper than MAX_JSON_DEPTH, and for a multipart body whose
    parsing would cost more than `budget` holds."""
    fields = list(_url_fields(url)) if url else []
    if method:
        fields.append(Field("method", method))
    if headers:
        fields.append(Field("header-names", "\n".join(headers)))
    for name, value in headers.items():
        lower = name.lower()
        fields.append(
            Field(f"header:{lower}", value, credential_header=lower in CREDENTIAL_HEADERS)
        )
    content_type = next((v for k, v in headers.items() if k.lower() == "content-type"), "")
    fields.extend(_body_fields(body, content_type, budget))
    return fields


def _url_fields(url: str) -> Iterator[Field]:
    text = url
    for _ in range(MAX_DEPTH):
        decoded = unquote(text)
        if decoded == text:
            break
        text = decoded
    yield Field("url", text)
    for name, value in parse_qsl(urlsplit(url).query, keep_blank_values=False):
        if value:
            yield Field(f"query:{name}", value, key=name)


def _body_fields(body: Any, content_type: str, budget: Budget | None) -> Iterator[Field]:
    if body is None:
        return
    if isinstance(body, (dict, list)):
        yield from _json_fields(body, "body.$", None)
        return
    text = str(body)
    media = content_type.split(";", 1)[0].strip().lower()
    if media == "application/x-www-form-urlencoded":
        pairs = _form_fields(text)
        if pairs is not None:
            yield from pairs
            return
    if media.startswith("multipart/"):
        parts = list(_multipart_fields(text, content_type, budget))
        if parts:
            yield from parts
            return
    yield Field("body", text)


def _form_fields(text: str) -> list[Field] | None:
    """The pairs `parse_qsl(text)` gives, as fields; None when it gives none (the body
    is then scanned as text). A value shorter than MIN_TEXT is not decoded: it cannot
    hold a finding, and a 256 KB form can hold 60,000 of them (parse_qsl takes ~1 µs
    each)."""
    out: list[Field] = []
    pairs = False
    for pair in text.split("&"):
        name, equals, value = pair.partition("=")
        if not (equals and value):
            continue  # parse_qsl drops a pair without `=` or without a value
        pairs = True
        if len(value) >= MIN_TEXT:
            name = unquote(name.replace("+", " "))
            out.append(Field(f"form:{name}", unquote(value.replace("+", " ")), key=name))
    return out if pairs else None


def json_location(path: str, step: str) -> str:
    """The location one step (`.key`, `[i]`) below `path`, as the scan and the redaction
    both name it. Past MAX_LOCATION characters it is a digest of itself, so that a long
    key or deep nesting cannot make every location below it long too (each is built
    once per value: a 128 KB key over 40,000 values would be 5 GB of locations)."""
    location = path + step
    if len(location) <= MAX_LOCATION:
        return location
    return "body.$~" + hashlib.sha256(location.encode("utf-8", "replace")).hexdigest()[:32]


def _json_fields(value: dict[Any, Any] | list[Any], path: str, key: str | None) -> list[Field]:
    out: list[Field] = []
    _walk_json(value, path, key, out, 0)
    return out


def _walk_json(
    value: dict[Any, Any] | list[Any], path: str, key: str | None, out: list[Field], depth: int
) -> None:
    # A plain recursive walk appending to one list: the hot path for large JSON bodies.
    # A value too short to hold any finding is skipped before its location is built.
    if depth == MAX_JSON_DEPTH:
        raise ScanLimit
    # A number is scanned only when it could be a card number (MIN_NUMBER or more):
    # the digits after a float's point are not one (an embedding's floats have sixteen).
    if isinstance(value, dict):
        for k, v in value.items():
            if isinstance(v, str):
                if len(v) >= MIN_TEXT:
                    out.append(Field(json_location(path, f".{k}"), v, str(k)))
            elif isinstance(v, (dict, list)):
                _walk_json(v, json_location(path, f".{k}"), str(k), out, depth + 1)
            elif isinstance(v, (int, float)) and not isinstance(v, bool) and abs(v) >= MIN_NUMBER:
                out.append(Field(json_location(path, f".{k}"), str(v), str(k)))
    else:
        for i, v in enumerate(value):
            if isinstance(v, str):
                if len(v) >= MIN_TEXT:
                    out.append(Field(json_location(path, f"[{i}]"), v, key))
            elif isinstance(v, (dict, list)):
                _walk_json(v, json_location(path, f"[{i}]"), key, out, depth + 1)
            elif isinstance(v, (int, float)) and not isinstance(v, bool) and abs(v) >= MIN_NUMBER:
                out.append(Field(json_location(path, f"[{i}]"), str(v), key))


def _multipart_fields(text: str, content_type: str, budget: Budget | None) -> Iterator[Field]:
    if budget is not None:
        _charge_parsing(text, content_type, budget)
    raw = f"Content-Type: {content_type}\r\n\r\n".encode() + text.encode("utf-8", "replace")
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(raw)
    if not message.is_multipart():
        return
    for i, part in enumerate(message.iter_parts()):
        name = part.get_param("name", header="content-disposition") or str(i)
        payload = part.get_payload(decode=True)
        text = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else ""
        yield Field(f"part:{name}", text, key=str(name))


def _charge_parsing(text: str, content_type: str, budget: Budget) -> None:
    """Charge what Python's email parser will take, before it runs: about 150 µs a part
    (PART_COST) and 2 µs a header line (a unit each), so a body of thousands of tiny
    parts (a second or more) stops first."""
    probe = email.message.Message()
    probe["Content-Type"] = content_type
    boundary = probe.get_boundary()
    if not boundary:
        return
    for part in text.split("--" + boundary)[1:]:  # every delimiter, and some look-alikes
        ends = [i for i in (part.find("\n\n"), part.find("\n\r\n")) if i >= 0]
        budget.spend(PART_COST + part.count("\n", 0, min(ends, default=len(part))))


def decoded_layers(
    fields: list[Field], max_chars: int, budget: Budget | None = None
) -> list[Field]:
    """Fields found by decoding base64, hex and percent-encoding, layer by layer.

    Candidates are searched in all fields of a layer at once; at most `max_chars`
    characters of decoded text are produced in total. With a scan `budget`, each
    base64 or hex candidate is charged to it, every PERCENT_PER_UNIT escapes a text
    holds, and each decoded field once more (it is scanned in turn); decoding past
    `max_chars` raises `ScanLimit` (what lies in the undecoded rest is unknown).
    Without one, decoding stops there.
    """
    out: list[Field] = []
    layer = fields
    spent = 0
    for _ in range(MAX_DEPTH):
        found: list[Field] = []
        for i, encoding, decoded in _decodings([f.text for f in layer], budget):
            spent += len(decoded)
            if spent > max_chars:
                if budget is not None:
                    raise ScanLimit
                return out + found
            if budget is not None:
                budget.spend()
            f = layer[i]
            found.append(Field(f.location, decoded, f.key, encoding, f.credential_header))
        if not found:
            break
        out.extend(found)
        layer = found
    return out


_SURROGATE = re.compile("[\ud800-\udfff]")


def readable(text: str) -> str:
    """Text RE2 can read (it reads UTF-8): lone surrogates — undecodable bytes kept by
    mitmproxy, or JSON `\\ud83d` escapes — become U+FFFD, one for one, so offsets hold."""
    if text.isascii():
        return text
    return _SURROGATE.sub("\ufffd", text)


def _decodings(texts: list[str], budget: Budget | None) -> Iterator[tuple[int, str, str]]:
    for i, text in enumerate(texts):
        if "%" in text:
            if budget is not None:
                budget.spend(text.count("%") // PERCENT_PER_UNIT)
            decoded = unquote(text)
            if decoded != text:
                yield i, "percent", decoded
    # The candidates' patterns are ASCII: RE2 reads the joined texts as UTF-8 bytes, and
    # each byte offset is mapped back to its text through the texts' byte lengths.
    joined = readable("\n".join(texts)).encode()
    if len(joined) == sum(map(len, texts)) + len(texts) - 1:
        starts = [0, *accumulate(len(t) + 1 for t in texts[:-1])]
    else:
        # a lone surrogate (U+FFFD once readable) is three bytes either way
        lengths = (len(t.encode("utf-8", "surrogatepass")) + 1 for t in texts[:-1])
        starts = [0, *accumulate(lengths)]
    for m in _B64.finditer(joined):
        if budget is not None:
            budget.spend()
        start, end = m.span()
        decoded_b64 = _b64(joined[start:end])
        if decoded_b64:
            yield _owner(starts, start), "base64", decoded_b64
    for m in _HEX.finditer(joined):
        if budget is not None:
            budget.spend()
        start, end = m.span()
        decoded_hex = _utf8(binascii.unhexlify(joined[start:end]))
        if decoded_hex is not None and _PRINTABLE.match(decoded_hex):
            yield _owner(starts, start), "hex", decoded_hex


def _owner(starts: list[int], position: int) -> int:
    return bisect.bisect_right(starts, position) - 1


def _b64(candidate: bytes) -> str | None:
    # `base64.urlsafe_b64decode` and `b64decode(validate=True)`, without their wrapping:
    # a body can hold thousands of candidates.
    padded = candidate + b"=" * (-len(candidate) % 4)
    try:
        if b"-" in candidate or b"_" in candidate:
            raw = binascii.a2b_base64(padded.translate(_URLSAFE), strict_mode=False)
        else:
            raw = binascii.a2b_base64(padded, strict_mode=True)
    except binascii.Error:
        return None
    decoded = _utf8(raw)
    if decoded is None or len(decoded) < 8 or not _PRINTABLE.match(decoded):
        return None
    return decoded


_URLSAFE = bytes.maketrans(b"-_", b"+/")


def _utf8(raw: bytes) -> str | None:
    """`raw` as UTF-8 text, or None (without raising: most candidates are not text)."""
    if raw.isascii():
        return raw.decode("ascii")
    text = raw.decode("utf-8", "replace")  # invalid bytes become U+FFFD, so it differs:
    return None if "\ufffd" in text and text.encode() != raw else text


def json_text(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
