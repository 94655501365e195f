"""Finding detector hits in text in linear time, at a bounded cost per candidate.

All detector patterns are compiled into one RE2 set: one pass over the text says which
detectors can match at all. Only those are then run individually (also RE2, so no
pattern can backtrack) to get positions, and each hit is confirmed by its validator.

Text near-matching a detector over and over costs per candidate, not per byte, so
candidates are made cheap (RE2 reads the UTF-8 bytes directly, each distinct value is
validated once per scan) and counted against the scan's `Budget`, which stops a body
of nothing but near-matches at a known cost.
"""

from __future__ import annotations

import bisect
import hashlib
import re
from collections.abc import Callable, Collection, Iterator, Sequence
from itertools import accumulate, islice
from typing import Any, NamedTuple

import re2

from sidecar.engine import checks
from sidecar.engine.budget import Budget, ScanLimit
from sidecar.engine.detectors import DETECTORS, SEED_PHRASE, Detector
from sidecar.engine.fields import readable

_WORDS = re.compile(rb"[A-Za-z]+")
_SEED_SIZES = (24, 21, 18, 15, 12)


def _seed_run_pattern() -> str:
    """12+ consecutive BIP-39 words: the only text a seed phrase can hide in.

    One alternation of the 2048 words; RE2 turns it into an automaton, so ordinary
    prose (which rarely strings twelve list words together) costs one linear pass.
    """
    word = "(?:" + "|".join(sorted(checks.bip39_words(), key=len, reverse=True)) + ")"
    # Words apart by spaces, commas, or a numbered list's `2.` / `3)`.
    gap = r"(?:[\s,;]+(?:\d{1,2}[.):]\s*)?)"
    return rf"(?i)\b{word}(?:{gap}{word}){{11,}}\b"


# Joins texts for one pass: no detector pattern matches NUL, and `.` stops at newlines.
_SEPARATOR = "\n\x00\n"
CHUNK = 4096


class Hit(NamedTuple):
    """A confirmed match (a named tuple: cheap to build by the thousand)."""

    detector: Detector
    start: int
    end: int
    value: str  # kept in memory for redaction and correlation; never logged or exported
    confidence: str = checks.SHAPED  # verified, shaped or example (`checks.confidence`)

    @property
    def value_hash(self) -> str:
        return value_hash(self.value)


def value_hash(value: str) -> str:
    """What logs and signals may carry instead of a value."""
    return "sha256:" + hashlib.sha256(value.encode()).hexdigest()[:16]


def _whole_match(pattern: str, group: int) -> str | None:
    """`pattern` with capture group 1 made non-capturing, when that group is the whole
    match (only inline flags and `\\b` outside it), else None. RE2 finds a match's
    bounds with its DFA alone; capturing costs a second pass, most of a hit's time."""
    m = _CAPTURED.fullmatch(pattern)
    if group != 1 or m is None or _closing(pattern, m.start(3)) != m.end(3) - 1:
        return None
    flags, before, inner, after = m.group(1, 2, 4, 5)
    return f"{flags or ''}{before}(?:{inner}){after}"


_CAPTURED = re.compile(r"(\(\?[a-z]+\))?(\\b|)(\((?!\?)(.*)\))(\\b|)", re.DOTALL)


def _closing(pattern: str, start: int) -> int:
    """The index of the `)` closing the group opened at `start` (escapes and character
    classes skipped), or -1."""
    depth, i, in_class = 0, start, False
    while i < len(pattern):
        c = pattern[i]
        if c == "\\":
            i += 2
            continue
        if in_class:
            in_class = c != "]"
        elif c == "[":
            in_class = True
            if pattern[i + 1 : i + 2] == "^":
                i += 1
            if pattern[i + 1 : i + 2] == "]":
                i += 1  # a leading `]` is a literal
        elif c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return -1


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
        # (compiled pattern, group to read): the group's bounds are the match's when the
        # group is the whole match, so that one is compiled without capturing.
        self._compiled: list[tuple[Any, int]] = []
        for d in detectors:
            whole = _whole_match(d.pattern, d.group)
            pattern, group = (whole, 0) if whole is not None else (d.pattern, d.group)
            self._compiled.append((re2.compile(pattern, options=_options()), group))
        self._word_run = re2.compile(seed_run, options=_options(256 << 20))

    def find_all(
        self,
        texts: Sequence[str],
        budget: Budget | None = None,
        classes: Collection[str] | None = None,
    ) -> Iterator[tuple[int, Hit]]:
        """Hits in many texts at the cost of one: (index of the text, hit within it).

        The texts are scanned joined by a separator no pattern can cross, so the RE2
        set and each candidate detector make one pass, not one pass per text. Every
        candidate is charged to `budget` (`ScanLimit` when it runs out); `classes`
        limits the scan to detectors of those data classes.
        """
        budget = budget if budget is not None else Budget.unlimited()
        validated: dict[int, dict[str, str | None]] = {}
        # Where each text starts and ends once joined (one C pass, not a loop per text:
        # a JSON body can hold tens of thousands of small values).
        ends = list(accumulate(len(t) + len(_SEPARATOR) for t in texts))
        starts = [0, *ends[:-1]]
        first = 0
        while first < len(texts):
            # Chunks of about CHUNK characters: a detector the set saw re-scans only the
            # chunks it matched in, not the whole body (most of the cost on big bodies).
            limit = starts[first] + CHUNK + len(_SEPARATOR)
            last = max(first + 1, bisect.bisect_right(ends, limit, first))
            joined = readable(_SEPARATOR.join(texts[first:last]))
            base = starts[first]
            for detector, start, end, value, grade in self._hits(
                joined, budget, validated, classes
            ):
                i = bisect.bisect_right(starts, base + start, first, last) - 1
                offset = starts[i] - base
                if end - offset > len(texts[i]):
                    continue  # crossed into the next text
                yield i, Hit(detector, start - offset, end - offset, value, grade)
            first = last

    def find(
        self,
        text: str,
        budget: Budget | None = None,
        classes: Collection[str] | None = None,
    ) -> Iterator[Hit]:
        budget = budget if budget is not None else Budget.unlimited()
        for detector, start, end, value, grade in self._hits(text, budget, {}, classes):
            yield Hit(detector, start, end, value, grade)

    def _hits(
        self,
        text: str,
        budget: Budget,
        validated: dict[int, dict[str, str | None]],
        classes: Collection[str] | None,
    ) -> Iterator[tuple[Detector, int, int, str, str]]:
        """(detector, start, end, value, confidence) of each confirmed hit, offsets in
        characters.

        RE2 reads UTF-8: given bytes, it skips the wrapper's per-match translation of
        offsets (most of the cost of a hit); ASCII offsets need none, others are
        translated here, in one forward pass per detector. A value seen again in the
        same scan reuses its validator's answer (repeating one is the cheap attack).
        """
        if not text:
            return
        data = text.encode()
        matched = self._set.Match(data)
        if not matched:
            return
        for index in matched:
            if index == self._seed_index:
                if classes is None or SEED_PHRASE.data_class in classes:
                    yield from self._seed_phrases(text, data, budget)
                continue
            detector = self._detectors[index]
            if classes is not None and detector.data_class not in classes:
                continue
            cost = detector.cost
            answers = validated.setdefault(index, {})  # value -> its grade (None: no hit)
            regex, group = self._compiled[index]
            chars = _char_offsets(text, data)
            if chars is not None:
                cost += 1  # translating offsets costs about as much again
            for m in regex.finditer(data):
                budget.candidates -= cost  # `spend()` inlined: this is the hot loop
                if budget.candidates < 0:
                    raise ScanLimit
                start, end = m.span(group)
                if start < 0:
                    continue  # the group took no part in the match
                if chars is not None:
                    start, end = chars(start), chars(end)
                value = text[start:end]
                if value in answers:
                    grade = answers[value]
                else:
                    grade = answers[value] = assess(detector, value)
                if grade is None:
                    continue
                yield detector, start, end, value, grade

    def _seed_phrases(
        self, text: str, data: bytes, budget: Budget
    ) -> Iterator[tuple[Detector, int, int, str, str]]:
        """A checksum-valid phrase of 24, 21, 18, 15 or 12 words at the start of each run
        of list words: only those words are split out, however long the run."""
        chars = _char_offsets(text, data)
        for run in self._word_run.finditer(data):
            budget.spend(SEED_PHRASE.cost)
            start, end = run.span()
            words = list(islice(_WORDS.finditer(data, start, end), _SEED_SIZES[0]))
            for size in _SEED_SIZES:
                if len(words) >= size:
                    phrase = " ".join(w.group().decode().lower() for w in words[:size])
                    budget.spend(SEED_PHRASE.cost)
                    if checks.seed_phrase(phrase):
                        first, last = words[0].start(), words[size - 1].end()
                        if chars is not None:
                            first, last = chars(first), chars(last)
                        yield SEED_PHRASE, first, last, phrase, checks.VERIFIED
                        break


def assess(detector: Detector, value: str) -> str | None:
    """A candidate's grade (`checks.confidence`), or None when it is no finding: its
    validator rejects it, or it is a template placeholder."""
    if detector.validator is not None and not detector.validator(value):
        return None
    if not detector.graded:
        return checks.SHAPED
    if not detector.checked and checks.is_template(value):
        return None  # (a checked format's checksum already rules templates out)
    if checks.is_documented_example(value) or (
        detector.example is not None and detector.example(value)
    ):
        return checks.EXAMPLE
    if detector.checked or (detector.checksum is not None and detector.checksum(value)):
        return checks.VERIFIED
    return checks.SHAPED


def _char_offsets(text: str, data: bytes) -> Callable[[int], int] | None:
    """Byte offset in `data` (UTF-8 of `text`) to character offset; None for ASCII, where
    they are equal. Cheap when asked in increasing order, as hits come."""
    if len(data) == len(text):
        return None
    done_bytes = done_chars = 0

    def chars(offset: int) -> int:
        nonlocal done_bytes, done_chars
        if offset < done_bytes:
            done_bytes = done_chars = 0
        done_chars += len(data[done_bytes:offset].decode())
        done_bytes = offset
        return done_chars

    return chars
