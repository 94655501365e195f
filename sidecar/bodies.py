"""Body decoding for scanning: what is scanned is what is sent.

Content-Encoding layers (gzip, deflate, br, zstd, identity) are undone with a hard
bound on the decoded size, so a small compressed body cannot expand without limit.
Decoded bytes become the scan API's `body`: JSON as JSON, other text as text.
"""

from __future__ import annotations

import json
import zlib
from typing import Any

import brotli
import zstandard

_CHUNK = 4096
_BROTLI_CHUNK = 256  # brotli's ratio is extreme; feed it little at a time


class BodyTooLarge(ValueError):
    """The decoded body is larger than the limit."""

    kind = "too_large"


class BodyUndecodable(ValueError):
    """The Content-Encoding is unknown or the data does not decode."""

    kind = "undecodable"


def decode_body(raw: bytes, content_encoding: str, limit: int, truncate: bool = False) -> bytes:
    """Undo every Content-Encoding layer; at most `limit` bytes come out.

    With `truncate`, the first `limit` decoded bytes are returned instead of raising.
    """
    data = raw
    codings = [c.strip().lower() for c in content_encoding.split(",") if c.strip()]
    for coding in reversed(codings):
        data = _decode_one(data, coding, limit, truncate)
    if len(data) > limit:
        if not truncate:
            raise BodyTooLarge(f"body larger than {limit} bytes")
        return data[:limit]
    return data


def _decode_one(data: bytes, coding: str, limit: int, truncate: bool) -> bytes:
    if coding == "identity":
        return data
    try:
        if coding in ("gzip", "x-gzip"):
            return _zlib(data, zlib.MAX_WBITS | 16, limit, truncate)
        if coding == "deflate":
            try:
                return _zlib(data, zlib.MAX_WBITS, limit, truncate)
            except zlib.error:  # raw deflate, as some servers send it
                return _zlib(data, -zlib.MAX_WBITS, limit, truncate)
        if coding == "br":
            return _brotli(data, limit, truncate)
        if coding == "zstd":
            return _zstd(data, limit, truncate)
    except (zlib.error, brotli.error, zstandard.ZstdError) as e:
        raise BodyUndecodable(f"{coding} data does not decode: {type(e).__name__}") from None
    raise BodyUndecodable(f"unsupported Content-Encoding {coding!r}")


def _over(out_len: int, limit: int, truncate: bool) -> bool:
    if out_len <= limit:
        return False
    if truncate:
        return True
    raise BodyTooLarge(f"decoded body larger than {limit} bytes")


def _zlib(data: bytes, wbits: int, limit: int, truncate: bool) -> bytes:
    d = zlib.decompressobj(wbits)
    out = bytearray(d.decompress(data, limit + 1))
    while d.unconsumed_tail and not _over(len(out), limit, truncate):
        out += d.decompress(d.unconsumed_tail, limit + 1 - len(out))
    _over(len(out), limit, truncate)
    if not d.eof and not truncate and len(out) <= limit:
        raise zlib.error("truncated stream")
    return bytes(out)


def _brotli(data: bytes, limit: int, truncate: bool) -> bytes:
    d = brotli.Decompressor()
    out = bytearray()
    for i in range(0, len(data), _BROTLI_CHUNK):
        out += d.process(data[i : i + _BROTLI_CHUNK])
        if _over(len(out), limit, truncate):
            break
    return bytes(out)


def _zstd(data: bytes, limit: int, truncate: bool) -> bytes:
    reader = zstandard.ZstdDecompressor().stream_reader(data, read_across_frames=True)
    out = bytearray()
    while chunk := reader.read(min(_CHUNK * 16, limit + 1 - len(out)) or 1):
        out += chunk
        if _over(len(out), limit, truncate):
            break
    return bytes(out)


def media_type(content_type: str) -> str:
    """`text/event-stream; charset=utf-8` -> `text/event-stream`."""
    return content_type.split(";", 1)[0].strip().lower()


def _is_json_type(content_type: str) -> bool:
    media = media_type(content_type)
    return media == "application/json" or media.endswith("+json")


def body_for_scan(content: bytes, content_type: str) -> Any:
    """JSON bodies as JSON values, everything else as text (or None when empty).

    Bytes that are not UTF-8 are decoded with replacement characters: secrets and
    personal data are ASCII, so they survive, and nothing is silently dropped.
    """
    if not content:
        return None
    text = content.decode("utf-8", errors="replace")
    if _is_json_type(content_type) or text.lstrip()[:1] in ("{", "["):
        try:
            return json.loads(text)
        except ValueError:
            pass
    return text
