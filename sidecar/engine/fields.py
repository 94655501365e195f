"""Turning a request into the pieces of text that are scanned, each with its location.

The URL (percent-decoded), every header, and the body: JSON walked value by value,
forms and multipart split into their values, anything else as text. Values hidden by
encodings (base64, hex, percent-encoding applied more than once) are decoded into extra
fields, to a bounded depth and a bounded total size.
"""

from __future__ import annotations

import base64
import binascii
import bisect
import email.parser
import email.policy
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import re2

MAX_DEPTH = 3
_B64 = re2.compile(r"[A-Za-z0-9+/_\-]{24,}={0,2}")
_HEX = re2.compile(r"\b(?:[0-9a-fA-F]{2}){16,}\b")
_PRINTABLE = re.compile(r"^[\x09\x0a\x0d\x20-\x7e\u00a0-\uffff]*$")

CREDENTIAL_HEADERS = frozenset(
    {"authorization", "proxy-authorization", "cookie", "x-api-key", "api-key",
     "x-goog-api-key", "x-auth-token", "private-token", "x-access-token"}
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Field:
    location: str  # "url", "header:authorization", "body", "body.$.a[0].b", "form:x", ...
    text: str
    key: str | None = None  # the JSON/form key naming this value, for keyword context
    encoding: str | None = None  # "base64", "hex", "percent": found inside an encoded value
    credential_header: bool = False

    @property
    def in_body(self) -> bool:
        return self.location == "body" or self.location.startswith(("body.", "form:", "part:"))


def request_fields(url: str, headers: dict[str, str], body: Any, method: str = "") -> list[Field]:
    """Every field of a request as sent (see `decoded_layers` for what hides inside):
    the method and the header names too, since they leave with it."""
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
    fields.extend(_body_fields(body, content_type))
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


def _body_fields(body: Any, content_type: str) -> Iterator[Field]:
    if body is None:
        return
    if isinstance(body, (dict, list)):
        yield from _json_fields(body, "body.$", None)
        return
    text = str(body)
    media = content_type.split(";", 1)[0].strip().lower()
    if media == "application/x-www-form-urlencoded":
        pairs = parse_qsl(text, keep_blank_values=False)
        if pairs:
            for name, value in pairs:
                yield Field(f"form:{name}", value, key=name)
            return
    if media.startswith("multipart/"):
        parts = list(_multipart_fields(text, content_type))
        if parts:
            yield from parts
            return
    yield Field("body", text)


def _json_fields(value: Any, path: str, key: str | None) -> list[Field]:
    out: list[Field] = []
    _walk_json(value, path, key, out)
    return out


def _walk_json(value: Any, path: str, key: str | None, out: list[Field]) -> None:
    # A plain recursive walk appending to one list: the hot path for large JSON bodies.
    if isinstance(value, str):
        out.append(Field(path, value, key))
    elif isinstance(value, dict):
        for k, v in value.items():
            _walk_json(v, f"{path}.{k}", str(k), out)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _walk_json(v, f"{path}[{i}]", key, out)
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        out.append(Field(path, str(value), key))


def _multipart_fields(text: str, content_type: str) -> Iterator[Field]:
    raw = f"Content-Type: {content_type}\r\n\r\n".encode() + text.encode("utf-8", "replace")
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(raw)
    if not message.is_multipart():
        return
    for i, part in enumerate(message.iter_parts()):
        name = part.get_param("name", header="content-disposition") or str(i)
        payload = part.get_payload(decode=True)
        text = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else ""
        yield Field(f"part:{name}", text, key=str(name))


def decoded_layers(fields: list[Field], budget: int) -> list[Field]:
    """Fields found by decoding base64, hex and percent-encoding, layer by layer.

    Candidates are searched in all fields of a layer at once; at most `budget`
    characters of decoded text are produced in total.
    """
    out: list[Field] = []
    layer = fields
    spent = 0
    for _ in range(MAX_DEPTH):
        found: list[Field] = []
        for i, encoding, decoded in _decodings([f.text for f in layer]):
            spent += len(decoded)
            if spent > budget:
                return out + found
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


def _decodings(texts: list[str]) -> Iterator[tuple[int, str, str]]:
    for i, text in enumerate(texts):
        if "%" in text:
            decoded = unquote(text)
            if decoded != text:
                yield i, "percent", decoded
    starts, joined = _join(texts)
    joined = readable(joined)
    for m in _B64.finditer(joined):
        decoded_b64 = _b64(m.group())
        if decoded_b64:
            yield _owner(starts, m.start()), "base64", decoded_b64
    for m in _HEX.finditer(joined):
        try:
            decoded_hex = binascii.unhexlify(m.group()).decode("utf-8")
        except (ValueError, UnicodeDecodeError):
            continue
        if _PRINTABLE.match(decoded_hex):
            yield _owner(starts, m.start()), "hex", decoded_hex


def _join(texts: list[str]) -> tuple[list[int], str]:
    starts, offset = [], 0
    for t in texts:
        starts.append(offset)
        offset += len(t) + 1
    return starts, "\n".join(texts)


def _owner(starts: list[int], position: int) -> int:
    return bisect.bisect_right(starts, position) - 1


def _b64(candidate: str) -> str | None:
    padded = candidate + "=" * (-len(candidate) % 4)
    try:
        raw = (
            base64.urlsafe_b64decode(padded)
            if ("-" in candidate or "_" in candidate)
            else base64.b64decode(padded, validate=True)
        )
        decoded = raw.decode("utf-8")
    except (ValueError, binascii.Error, UnicodeDecodeError):
        return None
    if len(decoded) < 8 or not _PRINTABLE.match(decoded):
        return None
    return decoded


def json_text(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
