"""Validators that turn a pattern hit into a finding: checksums, structure, context.

Patterns find candidates; these decide. A format with a checksum (Luhn, IBAN mod-97,
GitHub's CRC32, Base58Check, Bech32, BIP-39) is checked; documented example values and
template placeholders are never findings. A body can hold thousands of distinct
candidates, so each check is kept to a few microseconds.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import json
import math
import operator
import re
import unicodedata
import zlib
from collections import Counter
from functools import cache

_PLACEHOLDER = re.compile(
    r"(?i)(example|sample|dummy|placeholder|changeme|change_me|your[_-]?(api[_-]?)?key|"
    r"xxxx|\*\*\*\*|<[^>]*>|\$\{[^}]*\}|\{\{[^}]*\}\}|%\([^)]*\)s|redacted|insert[_-]?key|"
    r"not[_-]?a[_-]?real|fake|12345678|abcdefgh)"
)
# The same, for lower-cased ASCII: several times faster than matching ignoring case.
_PLACEHOLDER_LOWER = re.compile(_PLACEHOLDER.pattern.removeprefix("(?i)"))
_UUID = re.compile(r"(?i)^[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}$")
_HEX_DIGEST = re.compile(
    r"(?i)^(?:[0-9a-f]{32}|[0-9a-f]{40}|[0-9a-f]{56}|[0-9a-f]{64}|[0-9a-f]{128})$"
)


def entropy(value: str) -> float:
    """Shannon entropy in bits per character."""
    if not value:
        return 0.0
    counts = Counter(value)
    n = len(value)
    return -sum(c / n * math.log2(c / n) for c in counts.values())


def is_placeholder(value: str) -> bool:
    """Documented examples, template variables, masks and repeated characters."""
    found = (
        _PLACEHOLDER_LOWER.search(value.lower()) if value.isascii() else _PLACEHOLDER.search(value)
    )
    if found:
        return True
    stripped = value.strip("-_=.")
    return len(set(stripped)) <= 3


def looks_like_identifier(value: str) -> bool:
    """UUIDs and hex digests are high-entropy but not secrets on their own."""
    return bool(_UUID.match(value) or _HEX_DIGEST.match(value))


MIN_SECRET = 16  # characters: shorter values are never taken for generic secrets


def generic_secret(value: str) -> bool:
    """A keyword-adjacent value that is random enough to be a credential."""
    if len(value) < MIN_SECRET or is_placeholder(value) or looks_like_identifier(value):
        return False
    if value.isdigit() or value.isalpha():
        return False
    return entropy(value) >= 3.5


def luhn(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


_CARD_PREFIX = re.compile(
    r"^(?:4|5[1-5]|2(?:2[2-9]|[3-6]\d|7[01]|720)|3[47]|3[068]|35|6011|65|64[4-9]|62)"
)


def credit_card(candidate: str) -> bool:
    digits = re.sub(r"[ -]", "", candidate)
    if not 13 <= len(digits) <= 19 or len(set(digits)) < 4:
        return False
    return bool(_CARD_PREFIX.match(digits)) and luhn(digits)


def us_ssn(candidate: str) -> bool:
    area, group, serial = candidate.split("-")
    if area in ("000", "666") or area[0] == "9":
        return False
    if group == "00" or serial == "0000":
        return False
    # Numbers the SSA reserved for advertising and documentation.
    return candidate not in ("078-05-1120", "219-09-9999", "123-45-6789")


# IBAN length per country (ISO 13616 registry, the common ones).
IBAN_LENGTHS = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22,
    "BR": 29, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DK": 18, "DO": 28, "EE": 20,
    "EG": 29, "ES": 24, "FI": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23, "GL": 18,
    "GR": 27, "GT": 28, "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IS": 26, "IT": 27, "JO": 30,
    "KW": 30, "KZ": 20, "LB": 28, "LI": 21, "LT": 20, "LU": 20, "LV": 21, "MC": 27, "MD": 24,
    "ME": 22, "MK": 19, "MR": 27, "MT": 31, "MU": 30, "NL": 18, "NO": 15, "PK": 24, "PL": 28,
    "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "SA": 24, "SE": 24, "SI": 19, "SK": 24,
    "SM": 27, "TN": 24, "TR": 26, "UA": 29, "VG": 24, "XK": 20,
}  # fmt: skip


def iban(candidate: str) -> bool:
    value = candidate.replace(" ", "").upper()
    if IBAN_LENGTHS.get(value[:2]) != len(value):
        return False
    rearranged = value[4:] + value[:4]
    number = "".join(str(int(ch, 36)) for ch in rearranged)
    return int(number) % 97 == 1


_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def _base62(n: int, width: int) -> str:
    out = ""
    while n:
        n, r = divmod(n, 62)
        out = _BASE62[r] + out
    return out.rjust(width, "0")


def github_token(candidate: str) -> bool:
    """New-format GitHub tokens end in a base62 CRC32 of the 30 random characters."""
    body = candidate.partition("_")[2]
    if len(body) != 36:
        return False
    random_part, checksum = body[:30], body[30:]
    return _base62(zlib.crc32(random_part.encode()), 6) == checksum


def _b64url_json(segment: str) -> object:
    padded = segment + "=" * (-len(segment) % 4)
    return json.loads(base64.urlsafe_b64decode(padded))


def jwt(candidate: str) -> bool:
    """Header and payload must decode to JSON objects, the header naming an algorithm."""
    parts = candidate.split(".")
    if len(parts) != 3:
        return False
    try:
        header, payload = _b64url_json(parts[0]), _b64url_json(parts[1])
    except (ValueError, binascii.Error, UnicodeDecodeError):
        return False
    return isinstance(header, dict) and "alg" in header and isinstance(payload, dict)


def not_placeholder(candidate: str) -> bool:
    return not is_placeholder(candidate)


def url_password(candidate: str) -> bool:
    """`scheme://user:password@host`: the password is real, not a template."""
    password = candidate.rsplit("@", 1)[0].split("://", 1)[-1].split(":", 1)[-1]
    return (
        len(password) >= 3 and not is_placeholder(password) and password not in ("password", "pass")
    )


_B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


def base58check(candidate: str) -> bool:
    """Legacy Bitcoin addresses: version + payload + 4-byte double-SHA256 checksum."""
    n = 0
    for ch in candidate:
        idx = _B58.find(ch)
        if idx < 0:
            return False
        n = n * 58 + idx
    raw = n.to_bytes(25, "big") if n.bit_length() <= 200 else b""
    if len(raw) != 25:
        return False
    body, check = raw[:-4], raw[-4:]
    return hashlib.sha256(hashlib.sha256(body).digest()).digest()[:4] == check


_BECH32 = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
# BIP-173's generator terms XOR-ed together for each value of the checksum's top 5 bits.
_BECH32_GEN = tuple(
    functools.reduce(
        operator.xor,
        (g for i, g in enumerate((0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3))
         if top >> i & 1),
        0,
    )
    for top in range(32)
)  # fmt: skip


def bech32(candidate: str) -> bool:
    """Segwit addresses (bc1...): Bech32 or Bech32m checksum."""
    value = candidate.lower()
    hrp, _, data = value.rpartition("1")
    if hrp != "bc" or len(data) < 6 or any(c not in _BECH32 for c in data):
        return False
    values = [ord(c) >> 5 for c in hrp] + [0] + [ord(c) & 31 for c in hrp]
    values += [_BECH32.index(c) for c in data]
    chk = 1
    for v in values:
        chk = ((chk & 0x1FFFFFF) << 5 ^ v) ^ _BECH32_GEN[chk >> 25]
    return chk in (1, 0x2BC830A3)


def eth_address(candidate: str) -> bool:
    body = candidate[2:]
    return len(set(body.lower())) > 4


@cache
def _bip39() -> dict[str, int]:
    from mnemonic import Mnemonic

    return {word: i for i, word in enumerate(Mnemonic("english").wordlist)}


def bip39_words() -> frozenset[str]:
    return frozenset(_bip39())


_SEED_LENGTHS = (12, 15, 18, 21, 24)


def seed_phrase(candidate: str) -> bool:
    """12-24 BIP-39 words whose checksum is valid: `Mnemonic.check`, with each word's
    index looked up rather than searched for in the 2,048-word list (120 µs a phrase)."""
    words = candidate.lower().split()
    if len(words) not in _SEED_LENGTHS:
        return False
    words = unicodedata.normalize("NFKD", " ".join(words)).split(" ")
    if len(words) not in _SEED_LENGTHS:
        return False
    index = _bip39()
    try:
        bits = "".join(f"{index[word]:011b}" for word in words)
    except KeyError:
        return False
    size = len(bits) // 33
    data = int(bits[: size * 32], 2).to_bytes(size * 4, byteorder="big")
    checksum = bin(int(hashlib.sha256(data).hexdigest(), 16))[2:].zfill(256)[:size]
    return bits[-size:] == checksum
