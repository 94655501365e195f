"""Known secret values (the sidecar's own API keys) found wherever anything is scanned.

Exact-bytes matching is what an attacker defeats first: upper-casing, splitting a key
across two headers, reversing it, rewriting its separators, or sending half of it. Every
fragment of a dozen characters of each key (letters and digits; separators in between
are matched loosely), forwards and reversed, is compiled into one case-insensitive RE2
pattern (linear time), so any piece at least that long is found in one pass. Encoded
copies (base64, hex, percent) are found by running the same matcher over the decoded
layers the engine produces (`sidecar.engine.fields.decoded_layers`).

Pure: no I/O. Never exposes the values it holds.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import unquote

import re2

from sidecar.engine.fields import Field, decoded_layers, json_text

MIN_FRAGMENT = 8
MAX_FRAGMENT = 12
RANDOM_CHARS = 4  # a fragment holds at least this many characters past the key's prefix
# Provider prefixes (`iv_live_`, `sk-proj-`, `ghp_`) are shared by every key of a kind:
# a fragment that is mostly prefix would match the agent's own, unrelated keys.
_PREFIX = re.compile(r"^[A-Za-z0-9]{1,6}[_-](?:[A-Za-z]{2,8}[_-])?")
_SEPARATORS = re.compile(r"[^A-Za-z0-9]+")
_LOOSE = "[^A-Za-z0-9]{0,3}"  # between two characters of a fragment


class KnownSecrets:
    """A matcher for a fixed set of secret values; empty when there are none."""

    def __init__(self, values: Iterable[str]) -> None:
        fragments: set[str] = set()
        for value in values:
            value = value.strip()
            # Separators are matched loosely (`iv_live_` = `iv-live.`): an attacker may
            # rewrite them, e.g. to fit a key into DNS labels.
            prefix = m.end() if (m := _PREFIX.match(value)) else 0
            prefix = len(_SEPARATORS.sub("", value[:prefix]))
            core = _SEPARATORS.sub("", value)
            if len(core) < MIN_FRAGMENT:
                continue
            size = max(MIN_FRAGMENT, min(MAX_FRAGMENT, len(core) // 2))
            first = max(0, prefix + RANDOM_CHARS - size)  # forwards: skip prefix-heavy starts
            last = len(core) - max(size, prefix + RANDOM_CHARS)  # reversed: the same ones
            for i in range(first, len(core) - size + 1):
                fragments.add(core[i : i + size])
            reverse = core[::-1]
            for i in range(0, last + 1):
                fragments.add(reverse[i : i + size])
        self._pattern = None
        if fragments:
            options = re2.Options()
            options.case_sensitive = False
            options.max_mem = 64 << 20
            loose = (_LOOSE.join(re.escape(c) for c in f) for f in sorted(fragments))
            self._pattern = re2.compile("|".join(loose), options=options)

    def __bool__(self) -> bool:
        return self._pattern is not None

    def found_in(self, texts: Iterable[str]) -> bool:
        """True when any text carries a fragment of a known secret (any case, either way)."""
        if self._pattern is None:
            return False
        return any(text and self._pattern.search(text) for text in texts)

    def found_in_request(
        self, method: str, url: str, headers: dict[str, str], body: Any, raw: str = ""
    ) -> bool:
        """Anywhere in a request: the parts as sent (`raw`: the decoded body as text; a
        JSON body also unescaped), and every encoded layer the engine decodes in them."""
        if self._pattern is None:
            return False
        texts = [method, url, unquote(url), "\n".join(headers), *headers.values(), raw]
        if isinstance(body, (dict, list)) and "\\" in raw:
            texts.append(json_text(body))  # \u escapes undone
        elif isinstance(body, str) and "%" in raw:
            texts.append(unquote(raw))  # form bodies
        if self.found_in(texts):
            return True
        size = sum(len(t) for t in texts)
        budget = min(max(2 * size, 64 * 1024), 4 * 1024 * 1024)
        layers = decoded_layers([Field("request", t) for t in texts if t], budget)
        return self.found_in(f.text for f in layers)

    def withhold(self, text: str) -> str:
        """`text`, or a placeholder when it carries a known secret: for log lines."""
        return "[withheld: sidecar credential]" if self.found_in((text,)) else text
