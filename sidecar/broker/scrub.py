"""Real values echoed back (error pages, debug endpoints) replaced before the agent sees
them.

- The whole value, as written, JSON-escaped (`\\/`, or every character as `\\u00XX`),
  percent-encoded (the usual way, or every byte, either case), in hex (either case),
  and in base64 at each of its three alignments (either alphabet): replaced by the
  placeholder in the same form (base64 by a run of the same length, so the rest still
  decodes).
- Any run of at least `FRAGMENT` characters of the value, forwards or reversed (a
  truncated or reversed echo): replaced by the same stretch of a filler made of the
  placeholder, so lengths and offsets hold.

A run shorter than `FRAGMENT`, or a value transformed otherwise (case changed, ROT13,
UTF-16, MIME-wrapped base64, HTML entities), is not recognised: an upstream that hands
back its key that way defeats any scrubber (docs/brokering.md).

`StreamScrubber` does it on a stream cut anywhere: it holds back only a tail that could
still become an echo (the start of one, or a run still growing), so a server-sent event
that ends in a newline goes out at once.
"""

from __future__ import annotations

import base64
import json
import re
from collections import Counter
from dataclasses import dataclass, field
from urllib.parse import quote, quote_plus

import re2

FRAGMENT = 8  # characters of a real value in a row: an echo of it
PAST_PREFIX = 4  # a fragment holds at least this many characters past the value's prefix


def _b64_cores(data: bytes, shift: int) -> tuple[str, str]:
    """The base64 characters (standard, URL-safe) that `data` alone determines, when it
    starts `shift` bytes into a 3-byte group."""
    encoded = base64.b64encode(b"\0" * shift + data).decode()
    start = -(-4 * shift // 3)
    end = 4 * (shift + len(data)) // 3
    core = encoded[start:end]
    return core, core.replace("+", "-").replace("/", "_")


def _every(data: bytes, form: str) -> str:
    return "".join(form.format(b) for b in data)


def echoes(value: str, placeholder: str) -> dict[str, str]:
    """Each encoded form of the whole `value` a response may carry, and what replaces it."""
    forms = {value: placeholder}
    forms[json.dumps(value)[1:-1]] = json.dumps(placeholder)[1:-1]
    forms[value.replace("/", "\\/")] = placeholder
    forms[quote(value, safe="")] = quote(placeholder, safe="")
    forms[quote_plus(value, safe="")] = quote_plus(placeholder, safe="")
    raw, ph = value.encode(), placeholder.encode()
    for form in ("%{:02x}", "%{:02X}", "\\u00{:02x}", "\\u00{:02X}", "{:02x}", "{:02X}"):
        forms[_every(raw, form)] = _every(ph, form)
    filler = _filler(ph, len(raw))
    for shift in range(3):
        for echo, instead in zip(_b64_cores(raw, shift), _b64_cores(filler, shift), strict=True):
            if len(echo) >= FRAGMENT:
                forms[echo] = instead
    return forms


def _filler(placeholder: bytes, size: int) -> bytes:
    return (placeholder * (size // max(1, len(placeholder)) + 1))[:size]


@dataclass(frozen=True, slots=True)
class _Run:
    """A window of a value (or of its reverse), and what replaces a run grown from it."""

    name: str
    value: bytes = field(repr=False)  # the value, oriented as the window reads
    filler: bytes = field(repr=False)  # the same length, made of the placeholder, alike
    offset: int = 0  # where the window starts in `value`


@dataclass(frozen=True, slots=True)
class Echo:
    """A value to take out: its credential's name, placeholder, and how many of its
    leading characters are a provider prefix every key of that kind shares."""

    name: str
    placeholder: str
    prefix: int = 0


class ScrubTable:
    """What to look for and what replaces it, for a set of values: built once per
    snapshot and set of credentials (`BrokerState.scrubber`), shared by every flow."""

    def __init__(self, values: dict[str, Echo]) -> None:
        self._replace: dict[bytes, tuple[str, bytes]] = {}
        self._runs: dict[bytes, _Run] = {}
        for value, echo in values.items():
            for form, instead in echoes(value, echo.placeholder).items():
                self._replace.setdefault(form.encode(), (echo.name, instead.encode()))
            raw = value.encode()
            prefix = min(echo.prefix, len(raw) - FRAGMENT)
            filler = _filler(echo.placeholder.encode(), len(raw))
            for oriented, fill, reverse in ((raw, filler, False), (raw[::-1], filler[::-1], True)):
                for k in range(len(raw) - FRAGMENT + 1):
                    # Original span [start, start + FRAGMENT): at least PAST_PREFIX of it
                    # beyond the prefix (every key of that provider shares the prefix).
                    start = len(raw) - k - FRAGMENT if reverse else k
                    if start + FRAGMENT - prefix < PAST_PREFIX:
                        continue
                    window = oriented[k : k + FRAGMENT]
                    self._runs.setdefault(window, _Run(echo.name, oriented, fill, k))
        needles = sorted({*self._replace, *self._runs}, key=len, reverse=True)
        self._pattern = (
            re2.compile(b"|".join(re.escape(n) for n in needles), options=_OPTIONS)
            if needles
            else None
        )
        self.longest = len(needles[0]) if needles else 0
        self._prefixes = frozenset(n[:i] for n in needles for i in range(1, len(n)))

    def next_echo(self, data: bytes, pos: int) -> tuple[int, int, bytes, str] | None:
        """The next echo at or after `pos`: (start, end, replacement, name)."""
        if self._pattern is None:
            return None
        m = self._pattern.search(data, pos)
        if m is None:
            return None
        found = m.group()
        if found in self._replace:
            name, instead = self._replace[found]
            return m.start(), m.end(), instead, name
        run = self._runs[found]
        end, j = m.end(), run.offset + FRAGMENT
        while end < len(data) and j < len(run.value) and data[end] == run.value[j]:
            end, j = end + 1, j + 1
        return m.start(), end, run.filler[run.offset : j], run.name

    def held_tail(self, data: bytes) -> int:
        """How many trailing bytes could still be the start of an echo."""
        for k in range(min(self.longest - 1, len(data)), 0, -1):
            if data[-k:] in self._prefixes:
                return k
        return 0


_OPTIONS = re2.Options()
_OPTIONS.max_mem = 64 << 20
# Linear time, and two orders of magnitude faster than `re` on the event loop (a brokered
# download runs through it); leftmost-longest, so a whole value wins over its pieces.
_OPTIONS.longest_match = True


class Scrubber:
    """A flow's scrubbing: the shared table, and how many echoes it replaced."""

    def __init__(self, table: ScrubTable) -> None:
        self.table = table
        self.counts: Counter[str] = Counter()  # echoes replaced, by credential name

    def scrub(self, data: bytes) -> bytes:
        out, _ = self.scrub_some(data, final=True)
        return out

    def scrub_some(self, data: bytes, final: bool) -> tuple[bytes, int]:
        """The scrubbed bytes that can go now, and where the rest (held) begins."""
        table = self.table
        safe_end = len(data) if final else len(data) - table.held_tail(data)
        out = bytearray()
        pos = 0
        while (found := table.next_echo(data, pos)) is not None:
            start, end, instead, name = found
            if start >= safe_end or (not final and end == len(data)):
                safe_end = min(safe_end, start)  # it may still grow: wait for more
                break
            out += data[pos:start] + instead
            self.counts[name] += 1
            pos = end
        cut = max(pos, safe_end)
        out += data[pos:cut]
        return bytes(out), cut

    def text(self, text: str) -> str:
        """Header values, as mitmproxy holds them (UTF-8, undecodable bytes escaped)."""
        data = text.encode("utf-8", "surrogateescape")
        out = self.scrub(data)
        return text if out == data else out.decode("utf-8", "surrogateescape")


class StreamScrubber:
    """A body cut anywhere, scrubbed as it passes; `b""` ends it and flushes."""

    def __init__(self, scrubber: Scrubber) -> None:
        self._s = scrubber
        self._pending = b""

    def __call__(self, chunk: bytes) -> bytes:
        data = self._pending + chunk
        out, cut = self._s.scrub_some(data, final=not chunk)
        self._pending = data[cut:]
        return out
