"""Turning a request into the pieces of text that are scanned, each with its location.

The URL (percent-decoded), every header, and the body: JSON walked value by value (keys
too), forms and multipart split into their values, anything else as text. Whatever the
parsers understand, the raw text is scanned as well (a second look: form field names,
multipart headers and preambles), and short values that sit together (one JSON object's
strings, a URL's query values, headers named `X-Part-1`, `X-Part-2`) are joined, so a key
split in two is found whole. Values hidden by encodings (percent-encoding to any depth,
base64 in every alphabet and wrapping, base32, hex in every delimiter and escape style,
quoted-printable, `\\u` escapes, HTML entities, gzip inside any of them) and by text
tricks (zero-width characters, homoglyphs, full-width forms) are decoded into extra
fields, layer by layer, within a bounded depth and a bounded total size.

Bodies can hold tens of thousands of values, so the per-value work here is kept small,
and a JSON location never grows past `MAX_LOCATION` (see `json_location`).
"""

from __future__ import annotations

import base64
import binascii
import bisect
import bz2
import email.message
import email.parser
import email.policy
import hashlib
import html
import io
import json
import lzma
import quopri
import re
import unicodedata
import zipfile
import zlib
from collections.abc import Iterator
from functools import lru_cache
from itertools import accumulate
from typing import Any, NamedTuple
from urllib.parse import parse_qsl, unquote, urlsplit

import re2

from sidecar.engine.budget import Budget, ScanLimit
from sidecar.engine.destinations import subdomain_labels

MAX_DEPTH = 6  # decoding layers (URL -> base64 -> hex -> ...), within the size bound
RAW = "raw"  # a second look at the raw text a parser already split
JOINED = "joined"  # pieces that sit together, joined
REVERSED = "reversed"  # a text written backwards
UNWRAPPED = "unwrapped"  # a token cut over lines or spaced out, put back together
SWAPPED = "swapped"  # upper and lower case swapped
ROT13 = "rot13"  # letters rotated by 13
SECOND_LOOKS = frozenset({RAW, JOINED, REVERSED, UNWRAPPED, SWAPPED, ROT13})
_ROT13 = str.maketrans(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz",
    "NOPQRSTUVWXYZABCDEFGHIJKLMnopqrstuvwxyzabcdefghijklm",
)


def rot13(text: str) -> str:
    return text.translate(_ROT13)


MAX_REVERSED = 64 * 1024  # characters of a request also read backwards
JOIN_PIECE = 160  # longest piece joined (a split key's halves are short)
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
_B64 = re2.compile(rb"[A-Za-z0-9+/_\-]{20,}={0,2}")
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
        return self.location == "body" or self.location.startswith(
            ("body.", "body~", "form:", "part:")
        )


_CREDENTIAL_NAME = re.compile(
    r"auth(?!ority)|token|(?<!websocket-)key|secret|session|cookie|credential|signature|passw|"
    r"(?:^|-)api(?:$|-)"
)


@lru_cache(maxsize=1024)
def credential_header(name: str) -> bool:
    """Headers that present a credential to the destination: the common ones, and any
    whose (lower-case) name says so (`apikey`, `DD-API-KEY`, `X-Shopify-Access-Token`) —
    but not object metadata (`x-amz-meta-*`, ...), which is stored content."""
    if name.startswith(_STORED_METADATA):
        return False
    return name in CREDENTIAL_HEADERS or bool(_CREDENTIAL_NAME.search(name))


_STORED_METADATA = ("x-amz-meta-", "x-goog-meta-", "x-ms-meta-", "x-object-meta-", "x-oss-meta-")


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
        fields.append(Field("header-names", "\x00".join(headers)))  # one name, one text
    families: dict[str, list[str]] = {}
    cookies: list[str] = []
    for name, value in headers.items():
        lower = name.lower()
        presented = credential_header(lower)
        fields.append(Field(f"header:{lower}", value, credential_header=presented))
        if presented and len(value) <= JOIN_PIECE * 4:
            # the header's name is the keyword its value lacks (`DD-API-KEY: <32 hex>`)
            keyed = f"{lower}={value}"
            fields.append(Field(f"header:{lower}*", keyed, encoding=JOINED, credential_header=True))
            words = value.split()
            if len(words) > 2:  # `Bearer <half> <half>`: the words after the scheme
                fields.append(Field(f"header:{lower}*", "".join(words[1:]), encoding=JOINED))
        if lower == "cookie":
            cookies += [v.split("=", 1)[-1].strip() for v in value.split(";")]
        if ", " in value and len(value) <= JOIN_PIECE * 2:  # a repeated header, folded
            fields.append(Field(f"header:{lower}*", value.replace(", ", ""), encoding=JOINED))
        if len(value) <= JOIN_PIECE:
            families.setdefault(_HEADER_STEM.sub("", lower), []).append(value)
    for stem, values in families.items():
        if len(values) > 1:  # `X-Part-1`, `X-Part-2`: one family
            fields.append(Field(f"header:{stem}*", "".join(values), encoding=JOINED))
    if len(cookies) > 1 and sum(map(len, cookies)) <= JOIN_PIECE * 4:
        # cookie values, in order: a key cut across cookies
        fields.append(Field("header:cookie*", "".join(cookies), encoding=JOINED))
    content_type = next((v for k, v in headers.items() if k.lower() == "content-type"), "")
    fields.extend(_body_fields(body, content_type, budget))
    return fields


_HEADER_STEM = re.compile(r"[-_.]?(?:part|chunk|seg|segment|piece|frag)?[-_.]?(?:\d+|[a-z])$")


def _url_fields(url: str) -> Iterator[Field]:
    text = url
    for _ in range(MAX_DEPTH):
        decoded = unquote(text)
        if decoded == text:
            break
        text = decoded
    yield Field("url", text)
    try:
        labels = subdomain_labels(urlsplit(url).hostname or "")
    except ValueError:
        labels = []
    if len(labels) > 1:  # a key cut into DNS labels
        yield Field("host*", "".join(labels), encoding=JOINED)
    try:
        segments = [s for s in unquote(urlsplit(url).path).split("/") if s]
    except ValueError:
        segments = []
    if 1 < len(segments) <= 64:  # a key cut into path segments (a file name's dot too)
        yield Field("path*", "".join(s.split(".", 1)[0] for s in segments), encoding=JOINED)
    pieces = []
    for name, value in parse_qsl(urlsplit(url).query, keep_blank_values=False):
        if value:
            yield Field(f"query:{name}", value, key=name)
            if len(value) <= JOIN_PIECE:
                pieces.append(value)
    if len(pieces) > 1:
        yield Field("query*", "".join(pieces), encoding=JOINED)


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
            # names too, and whatever does not parse as pairs (a PEM sent with -d)
            yield Field("body~raw", unquote(text.replace("+", " ")), encoding=RAW)
            return
    if media.startswith("multipart/"):
        parts = list(_multipart_fields(text, content_type, budget))
        if parts:
            yield from parts
            # part headers, file names, preamble, epilogue, nested parts
            yield Field("body~raw", text, encoding=RAW)
            return
    yield Field("body", text)


def _form_fields(text: str) -> list[Field] | None:
    """The pairs `parse_qsl(text)` gives, as fields; None when it gives none (the body
    is then scanned as text). A value shorter than MIN_TEXT is not decoded: it cannot
    hold a finding, and a 256 KB form can hold 60,000 of them (parse_qsl takes ~1 µs
    each)."""
    out: list[Field] = []
    pairs = False
    pieces = []
    for pair in text.split("&"):
        name, equals, value = pair.partition("=")
        if not (equals and value):
            continue  # parse_qsl drops a pair without `=` or without a value
        pairs = True
        if len(value) >= MIN_TEXT:
            name = unquote(name.replace("+", " "))
            decoded = unquote(value.replace("+", " "))
            out.append(Field(f"form:{name}", decoded, key=name))
            if len(decoded) <= JOIN_PIECE:
                pieces.append(decoded)
    if len(pieces) > 1 and len(pieces) <= 64:
        out.append(Field("form*", "".join(pieces), encoding=JOINED))
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
    keys: dict[str, None] = {}  # distinct keys, in order
    _walk_json(value, path, key, out, 0, keys)
    if keys:
        out.append(Field("body~keys", "\x00".join(keys)))  # no pattern spans two keys
    return out


def _walk_json(
    value: dict[Any, Any] | list[Any],
    path: str,
    key: str | None,
    out: list[Field],
    depth: int,
    keys: dict[str, None],
) -> None:
    # A plain recursive walk appending to one list: the hot path for large JSON bodies.
    # A value too short to hold any finding is skipped before its location is built.
    if depth == MAX_JSON_DEPTH:
        raise ScanLimit
    # A number is scanned only when it could be a card number (MIN_NUMBER or more):
    # the digits after a float's point are not one (an embedding's floats have sixteen).
    if isinstance(value, dict):
        pieces = []
        for k, v in value.items():
            if len(k) >= MIN_TEXT:
                keys[k] = None  # a key is sent like a value
            if isinstance(v, str):
                if 2 < len(v) <= JOIN_PIECE and " " not in v:
                    pieces.append(v)  # token-like pieces only: prose is no key's half
                if len(v) >= MIN_TEXT:
                    out.append(Field(json_location(path, f".{k}"), v, str(k)))
            elif isinstance(v, (dict, list)):
                _walk_json(v, json_location(path, f".{k}"), str(k), out, depth + 1, keys)
            elif isinstance(v, (int, float)) and not isinstance(v, bool) and abs(v) >= MIN_NUMBER:
                out.append(Field(json_location(path, f".{k}"), _number(v), str(k)))
        if 1 < len(pieces) <= 16:  # one object's strings: a key split across its fields
            out.append(Field(json_location(path, "~joined"), "".join(pieces), encoding=JOINED))
    else:
        if len(value) >= 12 and all(type(v) is int and 9 <= v <= 126 for v in value):
            # character codes (`String.fromCharCode`, a byte array): the text they spell
            out.append(Field(path, "".join(map(chr, value)), key, "char-codes"))
            return
        chunks = [
            v for v in value[:64] if type(v) is str and 2 < len(v) <= JOIN_PIECE and " " not in v
        ]
        if len(chunks) > 1:  # a key cut into an array's strings
            out.append(Field(json_location(path, "~joined"), "".join(chunks), encoding=JOINED))
            if 12 <= len(chunks) <= 24 and all(c.isalpha() for c in chunks):
                out.append(Field(json_location(path, "~words"), " ".join(chunks), key))  # a seed
        for i, v in enumerate(value):
            if isinstance(v, str):
                if len(v) >= MIN_TEXT:
                    out.append(Field(json_location(path, f"[{i}]"), v, key))
            elif isinstance(v, (dict, list)):
                _walk_json(v, json_location(path, f"[{i}]"), key, out, depth + 1, keys)
            elif isinstance(v, (int, float)) and not isinstance(v, bool) and abs(v) >= MIN_NUMBER:
                out.append(Field(json_location(path, f"[{i}]"), _number(v), key))


def _number(value: float) -> str:
    """A JSON number as its digits (`4012888888881881.0` is the card number it holds)."""
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


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
        text = ""
        if isinstance(payload, bytes):
            text = payload.decode("utf-8", "replace")
            if "\ufffd" in text:  # binary: compressed, archived, or a key among bytes
                text = _text_of(payload) or text
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


def reversed_fields(fields: list[Field]) -> list[Field]:
    """Every text of 16+ characters written backwards (a key reversed is still a key),
    for requests of up to MAX_REVERSED characters."""
    if sum(len(f.text) for f in fields) > MAX_REVERSED:
        return []
    return [
        Field(f.location, f.text[::-1], f.key, REVERSED, f.credential_header)
        for f in fields
        if len(f.text) >= 16 and f.encoding is None
    ]


def variant_fields(fields: list[Field]) -> list[Field]:
    """After decoding: what was decoded, read backwards too (base64 of a reversed key);
    every text with its case swapped (`GHP_...`) and in ROT13. For requests of up to
    MAX_REVERSED characters, like `reversed_fields`."""
    if sum(len(f.text) for f in fields) > MAX_REVERSED:
        return []
    out = []
    for f in fields:
        if len(f.text) < 16 or f.encoding in SECOND_LOOKS:
            continue
        if f.encoding is not None:
            out.append(Field(f.location, f.text[::-1], f.key, REVERSED, f.credential_header))
        out.append(Field(f.location, f.text.swapcase(), f.key, SWAPPED, f.credential_header))
        out.append(Field(f.location, rot13(f.text), f.key, ROT13, f.credential_header))
    return out


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
    for depth in range(MAX_DEPTH):
        found: list[Field] = []
        for i, encoding, decoded in _decodings([f.text for f in layer], budget, depth == 0):
            spent += len(decoded)
            if spent > max_chars:
                if budget is not None:
                    raise ScanLimit
                return out + found
            if budget is not None:
                budget.spend()
            f = layer[i]
            if f.encoding in SECOND_LOOKS:
                encoding = f.encoding  # still a second look, judged as one
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


def _decodings(
    texts: list[str], budget: Budget | None, as_sent: bool = True
) -> Iterator[tuple[int, str, str]]:
    """What each text decodes to; `as_sent`: the texts are the request's own (layout
    tricks — wrapped, spaced-out tokens — are undone there, not in decoded text)."""
    for i, text in enumerate(texts):
        if _may_decode(text):
            yield from _text_decodings(i, text, budget)
    # The candidates' patterns are ASCII: RE2 reads the joined texts as UTF-8 bytes, and
    # each byte offset is mapped back to its text through the texts' byte lengths.
    joined = readable("\x00".join(texts)).encode()  # no pattern crosses a NUL
    if len(joined) == sum(map(len, texts)) + len(texts) - 1:
        starts = [0, *accumulate(len(t) + 1 for t in texts[:-1])]
    else:
        # a lone surrogate (U+FFFD once readable) is three bytes either way
        lengths = (len(t.encode("utf-8", "surrogatepass")) + 1 for t in texts[:-1])
        starts = [0, *accumulate(lengths)]
    if as_sent and b"\n" in joined:  # base64 wrapped over lines (PEM, MIME, `base64`)
        for m in _B64_WRAPPED.finditer(joined):
            if budget is not None:
                budget.spend()
            decoded_b64 = _b64(_WHITESPACE.sub(b"", m.group()))
            if decoded_b64:
                yield _owner(starts, m.start()), "base64", decoded_b64
        for m in _TOKEN_WRAPPED.finditer(joined):
            if budget is not None:
                budget.spend()
            yield _owner(starts, m.start()), UNWRAPPED, _WHITESPACE.sub(b"", m.group()).decode()
    for m in _SPACED.finditer(joined) if as_sent else ():
        spaced = m.group()
        if len(set(spaced[1::2])) > 3:
            continue  # ordinary punctuation, not one separator repeated
        if budget is not None:
            budget.spend()
        yield _owner(starts, m.start()), UNWRAPPED, spaced[::2].decode()
    for m in _B64.finditer(joined):
        if budget is not None:
            budget.spend()
        start, end = m.span()
        if _ALL_HEX.fullmatch(joined, start, end):
            continue  # hex (a digest, an id), decoded as hex below, not as base64
        decoded_b64 = _b64(joined[start:end])
        if decoded_b64:
            yield _owner(starts, start), "base64", decoded_b64
    for m in _HEX.finditer(joined):
        if budget is not None:
            budget.spend()
        start, end = m.span()
        digits = _NOT_HEX.sub(b"", _HEX_PREFIX.sub(b"", m.group()))
        # a bare digest-sized run is a hash unless it spells text: no binary read out
        digest = len(digits) == end - start and len(digits) in _DIGEST_SIZES
        decoded_hex = _text_of(binascii.unhexlify(digits), printable_only=digest)
        if decoded_hex is not None:
            yield _owner(starts, start), "hex", decoded_hex
    for m in _B58.finditer(joined):
        if budget is not None:
            budget.spend(B58_COST)
        decoded_b58 = _base58(m.group())
        if decoded_b58 is not None:
            yield _owner(starts, m.start()), "base58", decoded_b58
    for m in _B32.finditer(joined):
        if budget is not None:
            budget.spend()
        candidate = m.group()
        try:
            raw = base64.b32decode(candidate + b"=" * (-len(candidate) % 8), casefold=True)
        except (binascii.Error, ValueError):
            continue
        decoded_b32 = _text_of(raw, printable_only=True)
        if decoded_b32 is not None:
            yield _owner(starts, m.start()), "base32", decoded_b32


def _may_decode(text: str) -> bool:
    """Whether `_text_decodings` could find anything (memchr-fast tests, not a regex)."""
    return (
        not text.isascii()
        or "%" in text
        or "\\" in text
        or "&" in text
        or "=" in text
        or (len(text) >= 35 and ("," in text or "0" in text))
    )


def _text_decodings(i: int, text: str, budget: Budget | None) -> Iterator[tuple[int, str, str]]:
    """The decodings a whole text may need: escapes and entities, and text tricks."""
    if "%" in text:
        if budget is not None:
            budget.spend(text.count("%") // PERCENT_PER_UNIT)
        decoded = unquote(text)
        if decoded != text:
            yield i, "percent", decoded
    if ("\\" in text or "%u" in text) and _ESCAPE.search(text):
        if budget is not None:
            budget.spend(text.count("\\") // PERCENT_PER_UNIT)
        decoded = _ESCAPE.sub(_unescape, text)
        if decoded != text:
            yield i, "escape", decoded
    if "&" in text and _ENTITY.search(text):
        if budget is not None:
            budget.spend(text.count("&") // PERCENT_PER_UNIT)
        decoded = html.unescape(text)
        if decoded != text:
            yield i, "html", decoded
    if "=" in text and len(_QP.findall(text, 0, 4096)) >= 3:
        if budget is not None:
            budget.spend(text.count("=") // PERCENT_PER_UNIT)
        decoded_qp = _utf8(quopri.decodestring(text.encode("utf-8", "replace")))
        if decoded_qp is not None and decoded_qp != text:
            yield i, "quoted-printable", decoded_qp
    if not text.isascii():
        if budget is not None:
            budget.spend(len(text) // 256)
        folded = normalise(text)
        if folded != text:
            yield i, "normalised", folded
    head = text[:MAX_NUMBER_SCAN]
    for pattern, convert, encoding, mark, least in _NUMBER_RUNS:
        if head.count(mark) >= least:
            for m in pattern.finditer(head):
                if budget is not None:
                    budget.spend()
                spelled = convert(m.group())
                if spelled is not None:
                    yield i, encoding, spelled


MAX_NUMBER_SCAN = 1 << 16  # characters of a text searched for number-coded strings


def _char_codes(run: str) -> str | None:
    """`115,107,45,...` (`String.fromCharCode`, byte arrays): the characters."""
    codes = [int(n) for n in re.findall(r"\d+", run)]
    if any(not 9 <= c <= 126 for c in codes):
        return None
    return "".join(map(chr, codes))


def _bits(run: str) -> str | None:
    """`01000001 01001011 ...`: eight bits a character."""
    raw = bytes(int(b, 2) for b in run.split())
    return _text_of(raw, printable_only=True)


# Each repeated group can match one way only (a comma or a space must follow its
# digits), so these cannot backtrack; a text is searched only when it holds enough of
# the mark (commas; zeros) for a dozen character codes or eight bytes of bits.
_NUMBER_RUNS = (
    (re.compile(r"\b(?:\d{2,3}\s*,\s*){11,}\d{2,3}\b"), _char_codes, "char-codes", ",", 11),
    (re.compile(r"\b(?:[01]{8}\s+){7,}[01]{8}\b"), _bits, "binary", "0", 24),
)


_B64_WRAPPED = re2.compile(rb"(?:[A-Za-z0-9+/]{4,}=*\r?\n[ \t]*){2,}[A-Za-z0-9+/]*={0,2}")
# A token cut over lines (YAML folded and literal blocks, wrapped output): joined again.
_TOKEN_WRAPPED = re2.compile(rb"(?:[A-Za-z0-9_\-+/=.]{8,}\r?\n[ \t]*)+[A-Za-z0-9_\-+/=.]{4,}")
# One character, one separator, over and over (`g-h-p-_`, `s k _ l i v e`, `a!b#c*`).
_SPACED = re2.compile(rb"(?:[A-Za-z0-9_+/=][ \-!#*|.,:;~]){16,}[A-Za-z0-9_+/=]?")
_WHITESPACE = re.compile(rb"\s+")
# Hex as a run (`414b49`), delimited (`41-4b`, `41:4b`, `41 4b`, `41,4b`) or escaped
# (`\x41\x4b`, `0x41, 0x4b`): sixteen bytes or more.
_HEX = re2.compile(
    rb"\b(?:[0-9a-fA-F]{2}){16,}\b"
    rb"|(?:[0-9a-fA-F]{2}[-:, ]){15,}[0-9a-fA-F]{2}\b"
    rb"|(?:\\x[0-9a-fA-F]{2}){12,}"
    rb"|(?:0x[0-9a-fA-F]{2},? ?){12,}"
)
_HEX_PREFIX = re.compile(rb"\\x|0x")
_ALL_HEX = re.compile(rb"[0-9a-fA-F]+")
_DIGEST_SIZES = frozenset({32, 40, 56, 64, 96, 128})
_NOT_HEX = re.compile(rb"[^0-9a-fA-F]")
# Base58 (Bitcoin's alphabet: no 0, O, I, l): runs of 32-200 characters, decoded only
# when they spell text. Decoding is a big-integer conversion, charged as B58_COST units.
_B58 = re2.compile(rb"\b[1-9A-HJ-NP-Za-km-z]{32,200}\b")
_B58_ALPHABET = b"123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
B58_COST = 8


def _base58(run: bytes) -> str | None:
    n = 0
    for c in run:
        n = n * 58 + _B58_ALPHABET.index(c)
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return _text_of(raw, printable_only=True)


_B32 = re2.compile(rb"\b[A-Z2-7]{24,}={0,6}|\b[a-z2-7]{24,}={0,6}")
_ESCAPE = re.compile(
    r"(?:\\|%)u([0-9a-fA-F]{4})|\\x([0-9a-fA-F]{2})|\\([0-7]{3})|\\u\{([0-9a-fA-F]{1,6})\}"
    r"|\\([0-9a-fA-F]{1,6}) ?"  # CSS last
)
_ENTITY = re.compile(r"&(?:#\d{1,7}|#[xX][0-9a-fA-F]{1,6}|[A-Za-z]{2,8});")
_QP = re.compile(r"=[0-9A-F]{2}")


def _unescape(m: re.Match[str]) -> str:
    digits, base = next((d, b) for d, b in zip(m.groups(), (16, 16, 8, 16, 16), strict=True) if d)
    code = int(digits, base)
    if code > 0x10FFFF:
        return "\ufffd"
    return chr(code) if code < 0xD800 or code > 0xDFFF else "\ufffd"


# Characters an attacker puts in a key to break a pattern without changing how it reads.
_INVISIBLE: dict[int, int | None] = dict.fromkeys(
    map(ord, "\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180e\u200b\u200c\u200d\u200e"
             "\u200f\u202a\u202b\u202c\u202d\u202e\u2060\u2061\u2062\u2063\u2064\u206a"
             "\u206b\u206c\u206d\u206e\u206f\ufeff\ufe00\ufe0f"),
)  # fmt: skip
# Letters that read as Latin ones (Cyrillic, Greek, a few others), folded to them.
_HOMOGLYPHS = str.maketrans(
    "АВСЕНІЈКМОРЅТХУаеіјорсѕхуԁԛԜԝΑΒΕΖΗΙΚΜΝΟΡΤΥΧορνϲаᎪᏴᏟᎠᎬᏀᎻᏆᏦᏞᎷᏒᏚᏙᏔ",
    "ABCEHIJKMOPSTXYaeijopcsxydqWwABEZHIKMNOPTYXopvcaABCDEGHIKLMRSVW",
)


# Unicode tag characters (U+E0020-U+E007E) mirror ASCII invisibly: "ASCII smuggling".
_TAGS = {0xE0000 + c: c for c in range(0x20, 0x7F)}


_FOLDABLE = re.compile(
    "["
    + re.escape("".join(map(chr, _INVISIBLE)) + "".join(map(chr, _HOMOGLYPHS)))
    + "\U000e0000-\U000e007f]"
)


def normalise(text: str) -> str:
    """Text as it reads: invisible characters removed, tag characters read as the ASCII
    they mirror, compatibility forms (full-width, ligatures, circled letters) and
    homoglyphs folded to ASCII letters."""
    if not _FOLDABLE.search(text) and unicodedata.is_normalized("NFKC", text):
        return text  # (translating is slow: most non-ASCII text has nothing to fold)
    text = text.translate(_INVISIBLE).translate(_TAGS)
    return unicodedata.normalize("NFKC", text).translate(_HOMOGLYPHS)


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
    return _text_of(raw)


_URLSAFE = bytes.maketrans(b"-_", b"+/")


MAX_INFLATED = 1 << 20  # bytes a compressed value inside a field may inflate to
_MIN_RUN = 8
_RUNS = re.compile(rb"[\x09\x0a\x0d\x20-\x7e]{8,}")


def _inflated(raw: bytes) -> bytes:
    """Compressed or archived bytes (gzip, zlib, bzip2, xz, zip members), inflated to at
    most MAX_INFLATED; empty when `raw` is none of them."""
    try:
        if raw[:2] == b"\x1f\x8b" or (raw[:1] == b"\x78" and raw[1] in (0x01, 0x5E, 0x9C, 0xDA)):
            return zlib.decompressobj(47).decompress(raw, MAX_INFLATED)
        if raw[:3] == b"BZh":
            return bz2.BZ2Decompressor().decompress(raw, MAX_INFLATED)
        if raw[:6] == b"\xfd7zXZ\x00":
            return lzma.LZMADecompressor().decompress(raw, MAX_INFLATED)
        if raw[:4] == b"PK\x03\x04":
            with zipfile.ZipFile(io.BytesIO(raw)) as z:
                out = b""
                for info in z.infolist()[:64]:
                    with z.open(info) as f:
                        out += info.filename.encode() + b"\n" + f.read(MAX_INFLATED - len(out))
                    if len(out) >= MAX_INFLATED:
                        break
                return out
    except (zlib.error, OSError, EOFError, ValueError, lzma.LZMAError, zipfile.BadZipFile,
            RuntimeError, NotImplementedError):  # fmt: skip
        return b""
    return b""


MAX_INFLATIONS = 3  # compressed data inside compressed data inside a value, at most


def _text_of(raw: bytes, printable_only: bool = False, inflations: int = 0) -> str | None:
    """What decoded bytes say as text: themselves when they are text; inflated when they
    are gzip or zlib data; else their printable runs (eight characters or more, like
    `strings`), since a key stays a key with binary bytes around it. None when nothing
    readable is in them. `printable_only`: the bytes must be text (base32 runs are too
    common in ordinary text to read binary out of them)."""
    decoded = _utf8(raw)
    if decoded is not None and len(decoded) >= _MIN_RUN and _PRINTABLE.match(decoded):
        return decoded
    if len(raw) >= 2 * _MIN_RUN and raw[1::2].count(0) >= len(raw) // 2 - 1:
        wide = raw.decode("utf-16-le", "replace")  # PowerShell's -EncodedCommand
        if _PRINTABLE.match(wide):
            return wide
    if printable_only or len(raw) < _MIN_RUN:
        return None
    inflated = _inflated(raw) if inflations < MAX_INFLATIONS else b""
    if inflated:
        return _text_of(inflated, inflations=inflations + 1)
    runs = _RUNS.findall(raw)
    return b"\n".join(runs).decode("ascii") if runs else None


def _utf8(raw: bytes) -> str | None:
    """`raw` as UTF-8 text, or None (without raising: most candidates are not text)."""
    if raw.isascii():
        return raw.decode("ascii")
    text = raw.decode("utf-8", "replace")  # invalid bytes become U+FFFD, so it differs:
    return None if "\ufffd" in text and text.encode() != raw else text


def json_text(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
