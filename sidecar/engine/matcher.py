"""Finding detector hits in text in linear time.

All detector patterns are compiled into one RE2 set: one pass over the text says which
detectors can match at all. Only those are then run individually (also RE2, so no
pattern can backtrack) to get positions, and each hit is confirmed by its validator.
"""

from __future__ import annotations

import bisect
import hashlib
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import re2

from sidecar.engine import checks
from sidecar.engine.detectors import DETECTORS, SEED_PHRASE, Detector
from sidecar.engine.fields import readable

_WORDS = re.compile(r"[a-z]+")


def _seed_run_pattern() -> str:
    """12+ consecutive BIP-39 words: the only text a seed phrase can hide in.

    One alternation of the 2048 words; RE2 turns it into an automaton, so ordinary
    prose (which rarely strings twelve list words together) costs one linear pass.
    """
    word = "(?:" + "|".join(sorted(checks.bip39_words(), key=len, reverse=True)) + ")"
    return rf"\b{word}(?:\s+{word}){{11,}}\b"


# Joins texts for one pass: no detector pattern matches NUL, and `.` stops at newlines.
_SEPARATOR = "\n\x00\n"
CHUNK = 4096


@dataclass(frozen=True, slots=True)
class Hit:
    detector: Detector
    start: int
    end: int
    value: str  # kept in memory for redaction and correlation; never logged or exported

    @property
    def value_hash(self) -> str:
        return value_hash(self.value)


def value_hash(value: str) -> str:
    """What logs and signals may carry instead of a value."""
    return "sha256:" + hashlib.sha256(value.encode()).hexdigest()[:16]


def _options(max_mem: int = 64 << 20) -> Any:
    """RE2 builds its DFA lazily within `max_mem`; past it, it falls back to a slower NFA."""
    opts = re2.Options()
    opts.max_mem = max_mem
    return opts


class Matcher:
    """Compiled once; `find()` is thread-safe and allocation-light."""

    def __init__(self, detectors: tuple[Detector, ...] = DETECTORS) -> None:
        self._detectors = detectors
        self._set = re2.Set.SearchSet(_options(256 << 20))
        for detector in detectors:
            self._set.Add(detector.pattern)
        seed_run = _seed_run_pattern()
        self._seed_index = self._set.Add(seed_run)
        self._set.Compile()
        self._compiled = [re2.compile(d.pattern, options=_options()) for d in detectors]
        self._word_run = re2.compile(seed_run, options=_options(256 << 20))

    def find_all(self, texts: Sequence[str]) -> Iterator[tuple[int, Hit]]:
        """Hits in many texts at the cost of one: (index of the text, hit within it).

        The texts are scanned joined by a separator no pattern can cross, so the RE2
        set and each candidate detector make one pass, not one pass per text.
        """
        first = 0
        while first < len(texts):
            # Chunks of about CHUNK characters: a detector the set saw re-scans only the
            # chunks it matched in, not the whole body (most of the cost on big bodies).
            last, size = first, 0
            while last < len(texts) and (last == first or size + len(texts[last]) <= CHUNK):
                size += len(texts[last]) + len(_SEPARATOR)
                last += 1
            yield from self._find_in(texts, first, last)
            first = last

    def _find_in(self, texts: Sequence[str], first: int, last: int) -> Iterator[tuple[int, Hit]]:
        starts: list[int] = []
        offset = 0
        for t in texts[first:last]:
            starts.append(offset)
            offset += len(t) + len(_SEPARATOR)
        joined = readable(_SEPARATOR.join(texts[first:last]))
        for hit in self.find(joined):
            i = bisect.bisect_right(starts, hit.start) - 1
            base = starts[i]
            if hit.end - base > len(texts[first + i]):
                continue  # crossed into the next text
            yield first + i, Hit(hit.detector, hit.start - base, hit.end - base, hit.value)

    def find(self, text: str) -> Iterator[Hit]:
        if not text:
            return
        matched = self._set.Match(text)
        if not matched:
            return
        for index in matched:
            if index == self._seed_index:
                yield from self._seed_phrases(text)
                continue
            detector = self._detectors[index]
            for m in self._compiled[index].finditer(text):
                value = m.group(detector.group)
                if value is None:
                    continue
                if detector.validator is not None and not detector.validator(value):
                    continue
                yield Hit(detector, m.start(detector.group), m.end(detector.group), value)

    def _seed_phrases(self, text: str) -> Iterator[Hit]:
        wordlist = checks.bip39_words()
        for run in self._word_run.finditer(text):
            words = [(w.group(), run.start() + w.start(), run.start() + w.end())
                     for w in _WORDS.finditer(run.group())]  # fmt: skip
            i = 0
            while i < len(words):
                j = i
                while j < len(words) and words[j][0] in wordlist:
                    j += 1
                for size in (24, 21, 18, 15, 12):
                    if j - i >= size:
                        window = words[i : i + size]
                        phrase = " ".join(w for w, _, _ in window)
                        if checks.seed_phrase(phrase):
                            yield Hit(SEED_PHRASE, window[0][1], window[-1][2], phrase)
                            break
                i = max(j, i + 1)
