"""Placeholders: what the agent holds instead of a brokered credential's real value.

A placeholder keeps the provider's visible shape (prefix, length, alphabet) so SDKs that
check it still start, is derived from the credential's name alone (stable across
restarts and machines, so it can live in a static manifest; unique per name), and
carries the marker `PHOLD0` (hex alphabet: `0ddba11`) right after the prefix. A real
key carrying that marker at that place has odds of 62^-6 (hex: 16^-7); a GitHub-style
token also gets a deliberately wrong checksum, and the sidecar refuses to start when a
value is its own placeholder (a copy-paste mistake).
"""

from __future__ import annotations

import hashlib
import zlib
from dataclasses import dataclass
from enum import StrEnum

BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
ALPHABETS = {
    "base62": BASE62,
    "base64url": BASE62 + "-_",
    "hex": "0123456789abcdef",
    "digits": "0123456789",
}
MARKERS = {"base62": "PHOLD0", "base64url": "PHOLD0", "hex": "0ddba11", "digits": "0000000"}


class Checksum(StrEnum):
    NONE = "none"
    GITHUB = "github"  # the last 6 characters: CRC32 of the rest, base62 (made wrong here)


@dataclass(frozen=True, slots=True)
class Shape:
    prefix: str
    length: int  # characters after the prefix
    alphabet: str = "base62"
    checksum: Checksum = Checksum.NONE


# The shapes SDKs and humans recognise; `generic` when nothing else fits.
PRESETS: dict[str, Shape] = {
    "openai": Shape("sk-proj-", 64),
    "anthropic": Shape("sk-ant-api03-", 95, "base64url"),
    "github": Shape("ghp_", 36, checksum=Checksum.GITHUB),
    "stripe": Shape("sk_live_", 99),
    "slack": Shape("xoxb-", 48),
    "generic": Shape("", 40),
}


def placeholder_for(name: str, shape: Shape) -> str:
    """The placeholder of credential `name`: the same for the same name, always."""
    alphabet = ALPHABETS[shape.alphabet]
    marker = MARKERS[shape.alphabet]
    room = shape.length - len(marker) - (6 if shape.checksum is Checksum.GITHUB else 0)
    stream = hashlib.shake_256(f"egress-sidecar/placeholder/v1/{name}".encode()).digest(2 * room)
    body = marker + "".join(alphabet[b % len(alphabet)] for b in stream[:room])
    if shape.checksum is Checksum.GITHUB:
        body += _wrong_github_checksum(body)
    return shape.prefix + body


def _wrong_github_checksum(body: str) -> str:
    """Six base62 characters that are not the CRC32 GitHub's format requires."""
    crc = zlib.crc32(body.encode())
    right = ""
    for _ in range(6):
        crc, digit = divmod(crc, 62)
        right = BASE62[digit] + right
    wrong = BASE62[(BASE62.index(right[-1]) + 1) % 62]
    return right[:-1] + wrong


def shortest(shape: Shape) -> int:
    """Shapes must leave room for the marker and enough of the name's hash to be unique."""
    return len(MARKERS[shape.alphabet]) + 12 + (6 if shape.checksum is Checksum.GITHUB else 0)
