"""A DNS the tests control: names the test invents, answers that change between lookups.

Plugged into the sidecar's real resolver (`DestinationResolver(lookup=...)`), so the
caching and pinning under test are the production code; only the answers are scripted,
the way a hostile DNS server would script them.
"""

from __future__ import annotations

import ipaddress
import threading

from sidecar.engine.destinations import IPAddress
from sidecar.judge.resolver import DestinationResolver, ResolveError


class ScriptedDns:
    def __init__(self, **answers: list[str] | list[list[str]]) -> None:
        """`name=["1.2.3.4"]`, or `name=[["1.2.3.4"], ["127.0.0.1"]]` for a sequence of
        answers (the last one repeats). Names use `_` for `.` (`rebind_test`)."""
        self._answers: dict[str, list[list[str]]] = {}
        for key, value in answers.items():
            seq = value if value and isinstance(value[0], list) else [value]
            self._answers[key.replace("_", ".")] = seq  # type: ignore[assignment]
        self._lock = threading.Lock()
        self.lookups: list[str] = []

    async def lookup(self, host: str, port: int) -> list[IPAddress]:
        with self._lock:
            self.lookups.append(host)
            seq = self._answers.get(host)
            if seq is None:
                raise ResolveError("NXDOMAIN")
            answer = seq.pop(0) if len(seq) > 1 else seq[0]
        return [ipaddress.ip_address(a) for a in answer]

    def resolver(self) -> DestinationResolver:
        return DestinationResolver(lookup=self.lookup)
