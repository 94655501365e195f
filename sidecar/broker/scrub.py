"""Real values echoed back (error pages, debug endpoints) replaced by their placeholders
before the agent sees them: as written, JSON-escaped, percent-encoded, in hex, and in
base64 at each of its three alignments (either alphabet; replaced by a run of the same
length, so the rest of the base64 still decodes).

`StreamScrubber` does it on a stream cut anywhere: it holds back only a tail that could
still become an echo (a prefix of one), so a server-sent event that ends in a newline
goes out at once.
"""

from __future__ import annotations

import base64
import json
import re
from collections import Counter
from urllib.parse import quote, quote_plus


def _b64_cores(data: bytes, shift: int) -> tuple[str, str]:
    """The base64 characters (standard, URL-safe) that `data` alone determines, when it
    starts `shift` bytes into a 3-byte group."""
    encoded = base64.b64encode(b"\0" * shift + data).decode()
    start = -(-4 * shift // 3)
    end = 4 * (shift + len(data)) // 3
    core = encoded[start:end]
    return core, core.replace("+", "-").replace("/", "_")


def echoes(value: str, placeholder: str) -> dict[str, str]:
    """Each form of `value` a response may carry, and what replaces it."""
    forms = {value: placeholder}
    forms[json.dumps(value)[1:-1]] = json.dumps(placeholder)[1:-1]
    forms[value.replace("/", "\\/")] = placeholder
    forms[quote(value, safe="")] = quote(placeholder, safe="")
    forms[quote_plus(value, safe="")] = quote_plus(placeholder, safe="")
    raw = value.encode()
    forms[raw.hex()] = placeholder.encode().hex()[: 2 * len(raw)].ljust(2 * len(raw), "0")
    filler = (placeholder.encode() * (len(raw) // max(1, len(placeholder)) + 1))[: len(raw)]
    for shift in range(3):
        for echo, instead in zip(_b64_cores(raw, shift), _b64_cores(filler, shift), strict=True):
            if len(echo) >= 8:
                forms[echo] = instead
    return forms


class Scrubber:
    """Every echo of a set of values; `{value: (credential name, placeholder)}`."""

    def __init__(self, values: dict[str, tuple[str, str]]) -> None:
        self._replace: dict[bytes, tuple[str, bytes]] = {}
        for value, (name, placeholder) in values.items():
            for echo, instead in echoes(value, placeholder).items():
                self._replace.setdefault(echo.encode(), (name, instead.encode()))
        needles = sorted(self._replace, key=len, reverse=True)
        self._pattern = re.compile(b"|".join(re.escape(n) for n in needles))
        self.longest = len(needles[0]) if needles else 0
        self._prefixes = {n[:i] for n in needles for i in range(1, len(n))}
        self.counts: Counter[str] = Counter()  # echoes replaced, by credential name

    def _sub(self, m: re.Match[bytes]) -> bytes:
        name, instead = self._replace[m.group()]
        self.counts[name] += 1
        return instead

    def scrub(self, data: bytes) -> bytes:
        return self._pattern.sub(self._sub, data) if self._replace else data

    def text(self, text: str) -> str:
        """Header values, as mitmproxy holds them (UTF-8, undecodable bytes escaped)."""
        data = text.encode("utf-8", "surrogateescape")
        out = self.scrub(data)
        return text if out == data else out.decode("utf-8", "surrogateescape")

    def held_tail(self, data: bytes) -> int:
        """How many trailing bytes could still be the start of an echo."""
        for k in range(min(self.longest - 1, len(data)), 0, -1):
            if data[-k:] in self._prefixes:
                return k
        return 0


class StreamScrubber:
    """A body cut anywhere, scrubbed as it passes; `b""` ends it and flushes."""

    def __init__(self, scrubber: Scrubber) -> None:
        self._s = scrubber
        self._pending = b""

    def __call__(self, chunk: bytes) -> bytes:
        data = self._pending + chunk
        if not self._s.longest:
            return chunk
        if not chunk:
            self._pending = b""
            return self._s.scrub(data)
        safe_end = len(data) - self._s.held_tail(data)
        out = bytearray()
        pos = 0
        for m in self._s._pattern.finditer(data):
            if m.start() >= safe_end:
                break
            out += data[pos : m.start()] + self._s._sub(m)
            pos = m.end()
        cut = max(pos, safe_end)
        out += data[pos:cut]
        self._pending = data[cut:]
        return bytes(out)
