"""Body decoding for scanning: what is scanned is what is sent.

Content-Encoding (and, for HTTP/1 requests, Transfer-Encoding) layers — gzip, deflate,
br, zstd, identity — are undone with a hard bound on the decoded size, so a small
compressed body cannot expand without limit: every decoder is asked for at most what is
still wanted (brotli through brotlicffi, whose `process` takes an output limit — the
binding mitmproxy pins has none), and zstd frames may not ask for a window larger than
RFC 9659 allows HTTP senders (8 MiB). Decoding is strict: a server decodes every
gzip member and every zstd frame, so all of them are scanned, and whatever a decoder
would not turn into scanned text (bytes after the end of a stream, gzip's file name,
extra and comment fields, zstd skippable frames, a truncated stream) makes the body
undecodable, which the caller refuses. Decoded bytes become the scan API's `body`.
"""

from __future__ import annotations

import asyncio
import bz2
import functools
import gzip
import io
import json
import lzma
import re
import tarfile
import zipfile
import zlib
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import brotli
import brotlicffi
import zstandard

from sidecar.engine.fields import readable

_CHUNK = 4096
ZSTD_MAX_WINDOW = 8 * 1024 * 1024  # RFC 9659 §3: what an HTTP zstd sender may use

# gzip header flags (RFC 1952): fields a decoder skips, so bytes there are never scanned.
_GZIP_MAGIC = b"\x1f\x8b"
_FHCRC, _FEXTRA, _FNAME, _FCOMMENT, _FRESERVED = 0x02, 0x04, 0x08, 0x10, 0xE0
_ZSTD_MAGIC = 0xFD2FB528
_ZSTD_SKIPPABLE = 0x184D2A50  # ..0x184D2A5F: frames a decoder skips unread


class BodyTooLarge(ValueError):
    """The decoded body is larger than the limit."""

    kind = "too_large"


class BodyUndecodable(ValueError):
    """The encoding is unknown, the data does not decode, or it carries bytes no decoder
    would turn into scanned text."""

    kind = "undecodable"


def codings(content_encoding: str, transfer_encoding: str = "") -> list[str]:
    """Every coding applied to a body, innermost first: Content-Encoding, then the
    transfer codings other than `chunked` (framing, already undone by the proxy)."""
    out = [c.strip().lower() for c in content_encoding.split(",") if c.strip()]
    out += [
        c.strip().lower()
        for c in transfer_encoding.split(",")
        if c.strip() and c.strip().lower() != "chunked"
    ]
    return out


def decode_body(
    raw: bytes,
    content_encoding: str,
    limit: int,
    truncate: bool = False,
    transfer_encoding: str = "",
) -> bytes:
    """Undo every coding layer; at most `limit` bytes come out.

    With `truncate` (response classification), the first `limit` decoded bytes are
    returned instead of raising, and what lies past a decodable prefix is ignored.
    """
    data = raw
    for coding in reversed(codings(content_encoding, transfer_encoding)):
        data = _decode_one(data, coding, limit, truncate)
    if len(data) > limit:
        if not truncate:
            raise BodyTooLarge(f"body larger than {limit} bytes")
        return data[:limit]
    return data


async def decode_off_loop(
    raw: bytes,
    content_encoding: str,
    limit: int,
    truncate: bool = False,
    transfer_encoding: str = "",
) -> bytes:
    """`decode_body` in a worker thread when there is decoding to do (the event loop
    serves every other agent meanwhile); an unencoded body is returned at once."""
    if not codings(content_encoding, transfer_encoding):
        return decode_body(raw, "", limit, truncate)
    return await asyncio.get_running_loop().run_in_executor(
        decoder_thread(), decode_body, raw, content_encoding, limit, truncate, transfer_encoding
    )


@functools.cache
def decoder_thread() -> ThreadPoolExecutor:
    """One thread decodes for the whole process: each decode is bounded, and one thread
    keeps one malloc arena (every extra thread would keep its own decoder buffers)."""
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="egress-decode")


def _decode_one(data: bytes, coding: str, limit: int, truncate: bool) -> bytes:
    if coding == "identity":
        return data
    try:
        if coding in ("gzip", "x-gzip"):
            return _gzip(data, limit, truncate)
        if coding == "deflate":
            try:
                out, rest = _zlib_stream(data, zlib.MAX_WBITS, limit, truncate)
            except zlib.error:  # raw deflate, as some servers send it
                out, rest = _zlib_stream(data, -zlib.MAX_WBITS, limit, truncate)
            if rest and not truncate:
                raise BodyUndecodable("bytes after the end of the deflate stream")
            return out
        if coding == "br":
            return _brotli(data, limit, truncate)
        if coding == "zstd":
            if not truncate:
                _check_zstd_frames(data)
            return _zstd(data, limit, truncate)
    except (zlib.error, brotlicffi.error, zstandard.ZstdError) as e:
        raise BodyUndecodable(f"{coding} data does not decode: {type(e).__name__}") from None
    raise BodyUndecodable(f"unsupported encoding {coding!r}")


def _over(out_len: int, limit: int, truncate: bool) -> bool:
    if out_len <= limit:
        return False
    if truncate:
        return True
    raise BodyTooLarge(f"decoded body larger than {limit} bytes")


def _zlib_stream(data: bytes, wbits: int, limit: int, truncate: bool) -> tuple[bytes, bytes]:
    """One zlib/gzip/raw-deflate stream: (decoded, the bytes after its end)."""
    d = zlib.decompressobj(wbits)
    out = bytearray(d.decompress(data, limit + 1))
    while d.unconsumed_tail and not _over(len(out), limit, truncate):
        out += d.decompress(d.unconsumed_tail, limit + 1 - len(out))
    if _over(len(out), limit, truncate):
        return bytes(out), b""
    if not d.eof:
        if truncate:
            return bytes(out), b""
        raise zlib.error("truncated stream")
    return bytes(out), d.unused_data


def _gzip(data: bytes, limit: int, truncate: bool) -> bytes:
    """Every member, as servers decode them (RFC 1952 allows several)."""
    out = bytearray()
    rest = data
    while True:
        if not truncate:
            _check_gzip_header(rest)
        member, rest = _zlib_stream(rest, zlib.MAX_WBITS | 16, limit - len(out), truncate)
        out += member
        if _over(len(out), limit, truncate) or not rest:
            return bytes(out)
        if not rest.startswith(_GZIP_MAGIC):
            if truncate:
                return bytes(out)
            raise BodyUndecodable("bytes after the end of the gzip stream")


def _check_gzip_header(data: bytes) -> None:
    if len(data) < 10 or not data.startswith(_GZIP_MAGIC) or data[2] != 8:
        raise BodyUndecodable("not a gzip member")
    flags = data[3]
    if flags & (_FEXTRA | _FNAME | _FCOMMENT | _FRESERVED):
        # Decoders skip these fields: bytes in them would reach the server unscanned.
        raise BodyUndecodable("gzip header carries name, extra or comment fields")


def _check_zstd_frames(data: bytes) -> None:
    """Walk the frames by their headers: only zstd frames, nothing skipped, nothing after."""
    pos = 0
    while pos < len(data):
        if len(data) - pos < 4:
            raise BodyUndecodable("bytes after the last zstd frame")
        magic = int.from_bytes(data[pos : pos + 4], "little")
        if magic & 0xFFFFFFF0 == _ZSTD_SKIPPABLE:
            raise BodyUndecodable("zstd skippable frame (its bytes would never be scanned)")
        if magic != _ZSTD_MAGIC:
            raise BodyUndecodable("bytes after the last zstd frame")
        pos = _zstd_frame_end(data, pos + 4)


def _zstd_frame_end(data: bytes, pos: int) -> int:
    """The offset just past a zstd frame whose header starts at `pos` (RFC 8878)."""
    if pos >= len(data):
        raise BodyUndecodable("truncated zstd frame")
    descriptor = data[pos]
    single_segment = descriptor & 0x20
    pos += 1 + (0 if single_segment else 1)  # window descriptor
    pos += (0, 1, 2, 4)[descriptor & 0x03]  # dictionary id
    fcs_flag = descriptor >> 6
    pos += (1 if single_segment else 0, 2, 4, 8)[fcs_flag]  # frame content size
    while True:
        if pos + 3 > len(data):
            raise BodyUndecodable("truncated zstd frame")
        header = int.from_bytes(data[pos : pos + 3], "little")
        last, block_type, size = header & 1, (header >> 1) & 3, header >> 3
        if block_type == 3:
            raise BodyUndecodable("reserved zstd block type")
        pos += 3 + (1 if block_type == 1 else size)
        if last:
            break
    if descriptor & 0x04:  # content checksum
        pos += 4
    if pos > len(data):
        raise BodyUndecodable("truncated zstd frame")
    return pos


def _brotli(data: bytes, limit: int, truncate: bool) -> bytes:
    d = brotlicffi.Decompressor()
    out = bytearray()
    pos = 0
    while not d.is_finished():
        if d.can_accept_more_data():
            if pos >= len(data):
                break
            chunk, pos = data[pos : pos + _CHUNK], pos + _CHUNK
        else:
            chunk = b""  # output is pending: take it before giving more input
        out += d.process(chunk, output_buffer_limit=limit + 1 - len(out))
        if _over(len(out), limit, truncate):
            return bytes(out)
    if truncate:
        return bytes(out)
    if not d.is_finished():
        raise BodyUndecodable("truncated brotli stream")
    if pos < len(data) or not d.can_accept_more_data():  # input left after the end
        raise BodyUndecodable("bytes after the end of the brotli stream")
    return bytes(out)


def _zstd(data: bytes, limit: int, truncate: bool) -> bytes:
    decompressor = zstandard.ZstdDecompressor(max_window_size=ZSTD_MAX_WINDOW)
    reader = decompressor.stream_reader(data, read_across_frames=True)
    out = bytearray()
    while chunk := reader.read(min(_CHUNK * 16, limit + 1 - len(out)) or 1):
        out += chunk
        if _over(len(out), limit, truncate):
            break
    return bytes(out)


def encode_body(content: bytes, content_encoding: str) -> bytes:
    """Apply Content-Encoding again to a rewritten body, at settings that cost little
    (mitmproxy's own re-encoding uses brotli's slowest quality)."""
    data = content
    for coding in codings(content_encoding):
        if coding in ("gzip", "x-gzip"):
            data = gzip.compress(data, compresslevel=6, mtime=0)
        elif coding == "deflate":
            data = zlib.compress(data, 6)
        elif coding == "br":
            data = brotli.compress(data, quality=4)
        elif coding == "zstd":
            data = zstandard.ZstdCompressor(level=3).compress(data)
        elif coding != "identity":
            raise BodyUndecodable(f"unsupported encoding {coding!r}")
    return data


def media_type(content_type: str) -> str:
    """`text/event-stream; charset=utf-8` -> `text/event-stream`."""
    return content_type.split(";", 1)[0].strip().lower()


def _is_json_type(content_type: str) -> bool:
    media = media_type(content_type)
    return media == "application/json" or media.endswith("+json")


def body_for_scan(content: bytes, content_type: str, archives: bool = True) -> Any:
    """JSON bodies as JSON values, everything else as text (or None when empty).

    Bytes that are not UTF-8 are decoded with replacement characters: secrets and
    personal data are ASCII, so they survive, and nothing is silently dropped. UTF-16
    (a BOM, a charset, or NULs between ASCII letters) is read as UTF-16; archives and
    compressed files (zip, tar, gzip, bzip2, xz) as the text of their members
    (`archive_text`; `archives=False` for responses, classified as sent). JSON nested
    deeper than Python can parse (RecursionError), and JSON with a key given twice
    (servers disagree on which value counts), are scanned as text.
    """
    if not content:
        return None
    if archives and (archived := archive_text(content)) is not None:
        return archived
    text = _as_text(content, content_type)
    if _is_json_type(content_type) or text.lstrip()[:1] in ("{", "["):
        try:
            doc = json.loads(text, object_pairs_hook=_unique_keys)
            if "\\u" in text:  # a `\\ud83d` escape decodes to a lone surrogate, which
                # no UTF-8 (a scan API request, RE2) can carry: U+FFFD stands in for it
                doc = json.loads(readable(json.dumps(doc, ensure_ascii=False)))
        except (ValueError, RecursionError):
            pass
        else:
            return doc
    return text


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    doc = dict(pairs)
    if len(doc) != len(pairs):
        raise ValueError("a key given twice")
    return doc


def _as_text(content: bytes, content_type: str) -> str:
    charset = content_type.lower().partition("charset=")[2].strip(" \"';")
    if charset.startswith("utf-32") or content[:4] in (b"\xff\xfe\x00\x00", b"\x00\x00\xfe\xff"):
        try:
            return content.decode("utf-32")
        except UnicodeDecodeError:
            pass
    utf16 = charset.startswith("utf-16") or content[:2] in (b"\xff\xfe", b"\xfe\xff")
    if not utf16 and len(content) >= 8:
        sample = content[:64]
        half = len(sample) // 2 - 1
        utf16 = sample[1::2].count(0) >= half or sample[::2].count(0) >= half
    if utf16:
        try:
            if content[:2] in (b"\xff\xfe", b"\xfe\xff"):
                return content.decode("utf-16")
            little = content[1::2].count(0) >= content[::2].count(0)
            return content.decode("utf-16-le" if little else "utf-16-be", "replace")
        except UnicodeDecodeError:
            pass
    return content.decode("utf-8", errors="replace")


# Archives in request bodies are read, not passed blind: the text of every member is
# scanned (names too), within these bounds; past them the body is refused (400).
MAX_ARCHIVE_TEXT = 4 << 20  # bytes of member content read, all members together
MAX_ARCHIVE_MEMBERS = 1000
MAX_ARCHIVE_DEPTH = 3  # archives inside archives (a .tar.gz is two)
_PRINTABLE_RUNS = re.compile(rb"[\x09\x0a\x0d\x20-\x7e]{8,}")


def archive_text(content: bytes, depth: int = 0, budget: list[int] | None = None) -> str | None:
    """The members of a zip, tar, gzip, bzip2 or xz file as text (`name` line, then
    content; binary content as its printable runs), or None when `content` is none of
    them. Raises `BodyUndecodable` for an archive past the bounds above, encrypted,
    truncated or corrupt: what it holds cannot be known, so it is not forwarded."""
    kind = archive_kind(content)
    if kind is None:
        return None
    if depth >= MAX_ARCHIVE_DEPTH:
        raise BodyUndecodable("archives nested too deep to scan")
    try:
        budget = budget if budget is not None else [MAX_ARCHIVE_TEXT, MAX_ARCHIVE_MEMBERS]
        members = _members(kind, content, budget)
        parts: list[str] = []
        for name, data in members:
            inner = archive_text(data, depth + 1, budget) if data else None
            parts.append(f"{name}\n{inner if inner is not None else _member_text(data)}")
        return "\n".join(parts)
    except BodyUndecodable:
        raise
    except (OSError, EOFError, ValueError, zlib.error, zipfile.BadZipFile, tarfile.TarError,
            lzma.LZMAError, RuntimeError, NotImplementedError) as e:  # fmt: skip
        raise BodyUndecodable(f"unreadable {kind} archive: {type(e).__name__}") from None


def archive_kind(content: bytes) -> str | None:
    """Which archive or compressed-file format `content` starts as, if any."""
    if content[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        return "zip"
    if content[:2] == b"\x1f\x8b":
        return "gzip"
    if content[:3] == b"BZh":
        return "bzip2"
    if content[:6] == b"\xfd7zXZ\x00":
        return "xz"
    if content[257:262] == b"ustar":
        return "tar"
    return None


def _member_text(data: bytes) -> str:
    text = data.decode("utf-8", errors="replace")
    if "\ufffd" not in text:
        return text
    return "\n".join(run.decode("ascii") for run in _PRINTABLE_RUNS.findall(data))


def _bounded_read(read: Any, budget: list[int]) -> bytes:
    data: bytes = read(budget[0] + 1)
    budget[0] -= len(data)
    if budget[0] < 0:
        raise BodyUndecodable("archive holds more than the scan limit")
    return data


def _count_members(count: int, budget: list[int]) -> None:
    budget[1] -= count
    if budget[1] < 0:
        raise BodyUndecodable("archive has too many members to scan")


def _members(kind: str, content: bytes, budget: list[int]) -> list[tuple[str, bytes]]:
    """The members, reading from `budget` ([bytes, members] left for the whole body, nested
    archives included)."""
    if kind in ("gzip", "bzip2", "xz"):
        stream: Any = {"gzip": gzip.GzipFile, "bzip2": bz2.BZ2File, "xz": lzma.LZMAFile}[kind]
        with (
            stream(fileobj=io.BytesIO(content))
            if kind == "gzip"
            else stream(io.BytesIO(content)) as f
        ):
            return [(f"({kind})", _bounded_read(f.read, budget))]
    out: list[tuple[str, bytes]] = []
    if kind == "zip":
        with zipfile.ZipFile(io.BytesIO(content)) as z:
            infos = z.infolist()
            _count_members(len(infos), budget)
            for info in infos:
                if info.flag_bits & 0x1:
                    raise BodyUndecodable("encrypted archive members cannot be scanned")
                with z.open(info) as f:
                    out.append((info.filename, _bounded_read(f.read, budget)))
        return out
    with tarfile.open(fileobj=io.BytesIO(content), mode="r:") as t:
        for member in t:
            _count_members(1, budget)
            f = t.extractfile(member) if member.isfile() else None
            data = _bounded_read(f.read, budget) if f is not None else b""
            out.append((member.name + (f" -> {member.linkname}" if member.linkname else ""), data))
    return out
