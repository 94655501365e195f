"""Known secret values (the sidecar's own API keys) found wherever anything is scanned.

Exact-bytes matching is what an attacker defeats first: upper-casing, splitting a key
across two headers, reversing it, rewriting its separators, or sending half of it. Every
fragment of ten characters of each long key (letters and digits, past its provider
prefix; separators in between are matched loosely), forwards and reversed, as written
and in ROT13, is compiled
into one case-insensitive RE2 pattern (linear time), so any piece at least that long is
found in one pass; a short key is found whole (not inside a longer word). Encoded
copies (base64, hex, percent) are found by running the same matcher over the decoded
layers the engine produces (`sidecar.engine.fields.decoded_layers`).

Pure: no I/O. Never exposes the values it holds.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import unquote

import re2

from sidecar.engine.fields import Field, decoded_layers, json_text, readable, rot13

FRAGMENT = 10  # characters (letters and digits) of a long key found on their own
WHOLE_BELOW = 24  # a key with fewer letters and digits is only found whole
RANDOM_CHARS = 6  # a fragment holds at least this many characters past the key's prefix
# Provider prefixes (`iv_live_`, `sk-ant-api03-`, `ghp_`) are shared by every key of a
# kind: a fragment that is mostly prefix would match the agent's own, unrelated keys.
_PREFIX = re.compile(r"^(?:[A-Za-z0-9]{1,6}[_-]){1,3}")
_SEPARATORS = re.compile(r"[^A-Za-z0-9]+")
_LOOSE = "[^A-Za-z0-9]{0,3}"  # between two characters of a fragment


MEMORY_PER_PATTERN_CHAR = 1536  # bytes of RE2 budget per character of the pattern
MAX_MEMORY = 256 << 20  # the most one pattern may use (its DFA cache is filled lazily)
ENCODED_PIECE = 9  # bytes of a key whose base64 or hex form is looked for as such


def _encoded_pieces(value: str, prefix: int) -> set[str]:
    """Short pieces of a key in base64 (at each of its three alignments, either
    alphabet) and hex: found by the same single pass, where decoders would need long runs
    (a key cut into dozen-character pieces, each encoded on its own)."""
    raw = value.encode()
    out: set[str] = set()
    first = max(0, prefix + RANDOM_CHARS - ENCODED_PIECE)
    for i in range(first, len(raw) - ENCODED_PIECE + 1):
        piece = raw[i : i + ENCODED_PIECE]
        out.add(piece.hex())
        for shift in range(3):
            encoded = base64.b64encode(b"\0" * shift + piece).decode()
            stable = encoded[-(-4 * shift // 3) : 4 * (shift + ENCODED_PIECE) // 3]
            out.update({stable, stable.replace("+", "-").replace("/", "_")})
    return out


def _one_apart(text: str) -> str:
    """Its characters, each perhaps one separator apart (`s k - p`, `\\s\\k\\-\\p`)."""
    return "[^A-Za-z0-9]?".join(re.escape(c) for c in text)


def _loose(text: str) -> str:
    return _LOOSE.join(re.escape(c) for c in text)


def request_texts(method: str, url: str, headers: dict[str, str], body: Any, raw: str) -> list[str]:
    """A request's parts as searched: as sent, the URL also unquoted, a JSON body's `\\u`
    escapes undone, a form body unquoted."""
    texts = [method, url, unquote(url), "\n".join(headers), *headers.values(), raw]
    if isinstance(body, (dict, list)) and "\\u" in raw:
        texts.append(json_text(body))  # \u escapes undone (others are separators)
    elif isinstance(body, str) and "%" in raw:
        texts.append(unquote(raw))  # form bodies
    return texts


def request_layers(texts: list[str]) -> list[Field]:
    """Every encoded layer the engine decodes in them, within a budget that cannot run
    out (decoded layers are smaller than what they decode): the request's size is bounded
    by the proxy (headers, body) before it gets here."""
    size = sum(len(t) for t in texts)
    return decoded_layers([Field("request", t) for t in texts if t], 2 * size + 1024)


class KnownSecrets:
    """A matcher for a fixed set of secret values; empty when there are none."""

    def __init__(self, values: Iterable[str], lean: Iterable[str] = ()) -> None:
        """`lean` values are found by their pieces forwards and reversed, as written and
        in ROT13 (any case), each character perhaps one separator apart, and in every
        layer the engine decodes; not with longer separators or as short encoded pieces:
        brokered credentials, of which a sidecar may hold many (each full value makes the
        one pattern much larger)."""
        alternatives: set[str] = set()
        for value in lean:
            core = _SEPARATORS.sub("", value.strip())
            if len(core) < WHOLE_BELOW:
                alternatives.update(
                    f"(?:^|[^A-Za-z0-9]){re.escape(t)}(?:[^A-Za-z0-9]|$)"
                    for t in (core, core[::-1], rot13(core), rot13(core)[::-1])
                )
                continue
            m = _PREFIX.match(value.strip())
            prefix = min(len(_SEPARATORS.sub("", m.group())) if m else 0, len(core) - FRAGMENT - 6)
            first = max(0, prefix + RANDOM_CHARS - FRAGMENT)
            last = len(core) - max(FRAGMENT, prefix + RANDOM_CHARS)
            for text in (core, rot13(core)):
                reverse = text[::-1]
                alternatives.update(
                    _one_apart(text[i : i + FRAGMENT])
                    for i in range(first, len(text) - FRAGMENT + 1)
                )
                alternatives.update(_one_apart(reverse[i : i + FRAGMENT]) for i in range(last + 1))
        for value in values:
            # Separators are matched loosely (`iv_live_` = `iv-live.`): an attacker may
            # rewrite them, e.g. to fit a key into DNS labels.
            core = _SEPARATORS.sub("", value.strip())
            if not core:
                continue
            if len(core) < WHOLE_BELOW:
                # Too short for pieces to be telling: the whole key, not inside a word.
                for text in (core, core[::-1], rot13(core), rot13(core)[::-1]):
                    alternatives.add(f"(?:^|[^A-Za-z0-9]){_loose(text)}(?:[^A-Za-z0-9]|$)")
                continue
            m = _PREFIX.match(value.strip())
            alternatives.update(
                re.escape(p) for p in _encoded_pieces(value.strip(), m.end() if m else 0)
            )
            prefix = len(_SEPARATORS.sub("", m.group())) if m else 0
            prefix = min(prefix, len(core) - FRAGMENT - RANDOM_CHARS)
            first = max(0, prefix + RANDOM_CHARS - FRAGMENT)  # skip prefix-heavy pieces
            last = len(core) - max(FRAGMENT, prefix + RANDOM_CHARS)  # the same, reversed
            for text in (core, rot13(core)):  # ROT13 too, as the engine reads it
                reverse = text[::-1]
                alternatives.update(
                    _loose(text[i : i + FRAGMENT]) for i in range(first, len(text) - FRAGMENT + 1)
                )
                alternatives.update(_loose(reverse[i : i + FRAGMENT]) for i in range(0, last + 1))
        self._pattern = None
        if alternatives:
            pattern = "|".join(sorted(alternatives))
            options = re2.Options()
            options.case_sensitive = False
            # RE2 gives up its DFA (and runs some twenty times slower) when the budget is
            # short for the program; the budget is an upper bound, used as texts need it.
            budget = len(pattern) * MEMORY_PER_PATTERN_CHAR
            options.max_mem = min(MAX_MEMORY, max(64 << 20, budget))
            self._pattern = re2.compile(pattern, options=options)

    def __bool__(self) -> bool:
        return self._pattern is not None

    def found_in(self, texts: Iterable[str]) -> bool:
        """True when any text carries a fragment of a known secret (any case, either way)."""
        if self._pattern is None:
            return False
        return any(text and self._pattern.search(readable(text)) for text in texts)

    def found_in_request(
        self, method: str, url: str, headers: dict[str, str], body: Any, raw: str = ""
    ) -> bool:
        """Anywhere in a request: the parts as sent (`raw`: the decoded body as text; a
        JSON body also unescaped), and every encoded layer the engine decodes in them."""
        if self._pattern is None:
            return False
        texts = request_texts(method, url, headers, body, raw)
        return self.found_in(texts) or self.found_in(f.text for f in request_layers(texts))

    def hits(self, texts: Iterable[str]) -> list[str]:
        """The texts that carry a fragment of a known secret."""
        if self._pattern is None:
            return []
        return [t for t in texts if t and self._pattern.search(readable(t))]

    def withhold(self, text: str) -> str:
        """`text`, or a placeholder when it carries a known secret: for log lines."""
        return "[withheld: sidecar credential]" if self.found_in((text,)) else text


class LabelledSecrets:
    """Several sets of known values, told apart: one pass of the union over a request,
    and only on a hit (rare, or a brokered request) one pass per set to say which."""

    def __init__(self, groups: Mapping[str, Iterable[str]], lean: frozenset[str]) -> None:
        """`lean`: the labels whose values are matched lean (see `KnownSecrets`)."""
        values = {label: [v for v in vs if v.strip()] for label, vs in groups.items()}
        self._groups = {
            label: KnownSecrets(vs) if label not in lean else KnownSecrets((), vs)
            for label, vs in values.items()
            if vs
        }
        self._union = KnownSecrets(
            (v for label, vs in values.items() if label not in lean for v in vs),
            (v for label, vs in values.items() if label in lean for v in vs),
        )

    def __bool__(self) -> bool:
        return bool(self._union)

    def labels_in_request(
        self, method: str, url: str, headers: dict[str, str], body: Any, raw: str = ""
    ) -> frozenset[str]:
        """One pass of the union over the parts and every decoded layer; only the parts
        and layers it hits are searched again, set by set (a brokered request: its
        Authorization header, not its body)."""
        if not self._union:
            return frozenset()
        texts = request_texts(method, url, headers, body, raw)
        hits = self._union.hits([*texts, *(f.text for f in request_layers(texts))])
        if not hits:
            return frozenset()
        if len(self._groups) == 1:
            return frozenset(self._groups)
        return frozenset(label for label, known in self._groups.items() if known.found_in(hits))

    def labels_in(self, texts: Iterable[str]) -> frozenset[str]:
        texts = list(texts)
        if not self._union.found_in(texts):
            return frozenset()
        return frozenset(label for label, k in self._groups.items() if k.found_in(texts))
