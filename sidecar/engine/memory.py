"""What the engine remembers between requests, each store bounded: fingerprints of
sensitive response values, the hosts credentials were presented to, and the data-like
subdomains seen per registrable name."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable

from sidecar.engine import destinations


class FingerprintStore:
    """Bounded memory of sensitive values seen in responses: hash → host it came from."""

    def __init__(self, capacity: int = 50_000) -> None:
        self._capacity = capacity
        self._seen: OrderedDict[str, str] = OrderedDict()
        self._lock = threading.Lock()

    def remember(self, hashes: Iterable[str], host: str) -> None:
        with self._lock:
            for h in hashes:
                self._seen[h] = host
                self._seen.move_to_end(h)
            while len(self._seen) > self._capacity:
                self._seen.popitem(last=False)

    def source(self, value_hash: str) -> str | None:
        with self._lock:
            return self._seen.get(value_hash)

    def sources(self, hashes: Iterable[str]) -> list[str | None]:
        """`source()` of each, under one lock (a request can carry thousands)."""
        with self._lock:
            return [self._seen.get(h) for h in hashes]

    def __len__(self) -> int:
        return len(self._seen)


MAX_NEW_USES = 16  # new values one request may add to `CredentialUses`


class CredentialUses:
    """Bounded memory of opaque credentials (hashes only) and the party each was first
    presented to: their issuer by use. The same value presented to another party later
    is a leak (`credential_reuse`)."""

    def __init__(self, capacity: int = 20_000) -> None:
        self._capacity = capacity
        self._issuer: OrderedDict[str, str] = OrderedDict()
        self._lock = threading.Lock()

    def present(self, value_hash: str, host: str, room: list[int] | None = None) -> bool:
        """Record a presentation; True when `host` is the value's issuer (or the first).
        `room`: new values one request may still record (a request of hundreds of cookies
        must not push every other value out); past it, a new value is not remembered."""
        party = destinations.registrable_domain(host)
        with self._lock:
            if value_hash not in self._issuer and room is not None:
                if room[0] <= 0:
                    return True
                room[0] -= 1
            issuer = self._issuer.setdefault(value_hash, party)
            self._issuer.move_to_end(value_hash)
            while len(self._issuer) > self._capacity:
                self._issuer.popitem(last=False)
        return issuer == party

    def issuers(self, hashes: Iterable[str]) -> list[str | None]:
        with self._lock:
            return [self._issuer.get(h) for h in hashes]

    def __len__(self) -> int:
        return len(self._issuer)


class SubdomainBudget:
    """Distinct data-like subdomains per registrable name, across requests: DNS-label
    exfiltration in pieces each too small to flag (`a1b2c3.evil.com`, `d4e5f6.evil.com`,
    ...). Past `limit` distinct ones for one name, every further one is flagged. Bounded:
    `names` registrable names, `limit` + 1 subdomains each."""

    def __init__(self, limit: int = 24, names: int = 4096) -> None:
        self._limit = limit
        self._names = names
        self._seen: OrderedDict[str, set[str]] = OrderedDict()
        self._lock = threading.Lock()

    def over_budget(self, host: str) -> bool:
        """True for a data-like subdomain first seen after `limit` others of its name
        (one seen before stays allowed; generated cloud names are not counted)."""
        sub = destinations.subdomain_labels(host)
        if not any(_data_like(label) for label in sub) or destinations.cloud_generated(host):
            return False
        name, key = destinations.registrable_domain(host), ".".join(sub)
        with self._lock:
            seen = self._seen.setdefault(name, set())
            self._seen.move_to_end(name)
            if key in seen:
                return False
            if len(seen) < self._limit:
                seen.add(key)
                return False
            while len(self._seen) > self._names:
                self._seen.popitem(last=False)
            return True


def _data_like(label: str) -> bool:
    """A label that could carry a piece of data: 8+ letters and digits, both kinds mixed
    (`k3x9q2m7p`), not a name with a number (`pr-1204`, `web01`, `us-east-1`)."""
    bare = label.replace("-", "")
    letters = sum(c.isalpha() for c in bare)
    return len(bare) >= 8 and bare.isalnum() and letters >= 2 and len(bare) - letters >= 2
