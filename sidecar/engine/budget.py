"""The work one scan may do: counted, never timed, so a verdict cannot depend on load.

Scanning costs about the same per byte for any text, except per candidate: every match
a detector's pattern yields has to be checked, and every encoded run a decoder finds
has to be decoded. A body made of near-matches (`a@b.cd ` repeated, thousands of
base64 blocks) would hold the one scan worker for hundreds of milliseconds while every
other request waits. So each scan gets a budget of candidates in proportion to its
size; when it runs out, the scan stops with `ScanLimit` and the engine answers with
its documented safe verdict (`SCAN_LIMIT`) instead of a partial one.
"""

from __future__ import annotations

import sys

# Units of about 3 µs of work: a detector's candidate costs `Detector.cost`, a decoder's
# candidate or decoded value 1, a finding 1 more. Enough for dense ordinary bodies: a JSON
# list of 5,000 records with an email each (10,000 units), a 256 KB access log with an
# address a line (~6,500), 5,000 git hashes; a 256 KB body built of near-matches
# reaches it in 30-45 ms (`python -m bench.engine_bench`), as that list takes to scan.
MIN_CANDIDATES = 11_000
CHARS_PER_CANDIDATE = 24  # past 264,000 characters a scan gets proportionally more


class ScanLimit(Exception):
    """The scan's budget ran out before the scan finished."""


class Budget:
    """Candidates a scan may still examine; `spend()` raises `ScanLimit` past zero."""

    __slots__ = ("candidates",)

    def __init__(self, candidates: int) -> None:
        self.candidates = candidates

    @classmethod
    def for_chars(cls, chars: int) -> Budget:
        """The budget of a scan of `chars` characters of text (before decoding)."""
        return cls(max(MIN_CANDIDATES, chars // CHARS_PER_CANDIDATE))

    @classmethod
    def unlimited(cls) -> Budget:
        return cls(sys.maxsize)

    def spend(self, candidates: int = 1) -> None:
        self.candidates -= candidates
        if self.candidates < 0:
            raise ScanLimit

    @property
    def exhausted(self) -> bool:
        return self.candidates < 0
