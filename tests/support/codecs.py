"""Every Content-Encoding the sidecar decodes, as compress functions for test bodies."""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Callable

import brotli
import zstandard

ENCODERS: dict[str, Callable[[bytes], bytes]] = {
    "gzip": gzip.compress,
    "deflate": zlib.compress,
    "br": brotli.compress,
    "zstd": lambda b: zstandard.ZstdCompressor().compress(b),
    "identity": lambda b: b,
}


def brotli_with_metadata(hidden: bytes, content: bytes) -> bytes:
    """A valid brotli stream (RFC 7932) whose first meta-block is metadata — bytes every
    decoder skips — then `content` in an uncompressed meta-block. No encoder writes
    these; an agent with a shell can."""
    bits: list[int] = []

    def write(value: int, count: int) -> None:
        bits.extend((value >> i) & 1 for i in range(count))

    def align_and_copy(data: bytes) -> None:
        bits.extend([0] * (-len(bits) % 8))
        for byte in data:
            write(byte, 8)

    assert 0 < len(hidden) <= 65536
    assert 0 < len(content) <= 65536
    write(0, 1)  # WBITS: 16
    write(0, 1)  # ISLAST: no
    write(3, 2)  # MNIBBLES: 0, i.e. a metadata meta-block
    write(0, 1)  # reserved
    skip_bytes = 1 if len(hidden) <= 256 else 2  # the shortest: a zero top byte is invalid
    write(skip_bytes, 2)  # MSKIPBYTES
    write(len(hidden) - 1, 8 * skip_bytes)  # MSKIPLEN - 1
    align_and_copy(hidden)
    write(0, 1)  # ISLAST: no
    write(0, 2)  # MNIBBLES: 4
    write(len(content) - 1, 16)  # MLEN - 1
    write(1, 1)  # ISUNCOMPRESSED
    align_and_copy(content)
    write(1, 1)  # ISLAST
    write(1, 1)  # ISLASTEMPTY
    bits.extend([0] * (-len(bits) % 8))
    return bytes(
        sum(bit << i for i, bit in enumerate(bits[j : j + 8])) for j in range(0, len(bits), 8)
    )
