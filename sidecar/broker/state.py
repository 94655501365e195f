"""The broker's values, read by the sidecar only, and re-read when their files change.

`BrokerState` is one immutable snapshot (bindings, values, the matchers built from
them); `Broker.refresh` swaps in a new one when a value file changed — a Kubernetes
Secret update is a symlink swap, seen by `stat` through the link. A request takes the
snapshot current when it is judged and keeps it: in-flight requests finish with the old
value, new ones use the new one. A replaced value stays known (refused if the agent
sends it, withheld from log lines) for as long as the sidecar runs.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from sidecar.broker.bindings import Bindings, BindingsError, Credential, ValueSource
from sidecar.broker.scrub import Echo, Scrubber, ScrubTable
from sidecar.engine.known_secrets import LabelledSecrets

logger = logging.getLogger("egress_sidecar")

OWN = "own"  # the label of the sidecar's own keys among the known secrets
VALUE = "value:"  # + name: a brokered credential's real value (current or replaced)
PLACEHOLDER = "placeholder:"  # + name: its placeholder
MIN_VALUE = 8  # characters; anything shorter cannot be told from ordinary text
RETIRED_KEPT = 8  # replaced values remembered per credential
LOOK_EVERY = 1.0  # seconds between looks at the value files: in use well within 5 s

Stamp = tuple[int, int, int, int]


def read_value(credential: Credential) -> str:
    """The real value, stripped of the trailing newline files usually end with."""
    source = credential.value
    where = f"credential {credential.name!r} ({source.describe()})"
    if source.env is not None:
        value = os.environ.get(source.env)
        if value is None:
            raise BindingsError(f"{where}: the variable is not set in the sidecar's environment")
    else:
        assert source.file is not None
        try:
            value = source.file.read_text()
        except (OSError, UnicodeDecodeError) as e:
            raise BindingsError(f"{where}: {getattr(e, 'strerror', None) or e}") from None
    value = value.strip()
    if len(value) < MIN_VALUE:
        raise BindingsError(f"{where}: the value is empty or shorter than {MIN_VALUE} characters")
    if value == credential.placeholder:
        raise BindingsError(f"{where}: holds the placeholder, not the real value")
    if not all("!" <= c <= "~" for c in value):
        raise BindingsError(f"{where}: the value has characters other than printable ASCII")
    return value


def _stamp(source: ValueSource) -> Stamp | None:
    if source.file is None:
        return None
    try:
        st = os.stat(source.file)  # through the symlink: a swapped `..data` shows here
    except OSError:
        return None
    return (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size)


@dataclass(frozen=True)
class BrokerState:
    credentials: dict[str, Credential]
    values: dict[str, str] = field(repr=False)
    placeholders: dict[str, str]  # name -> placeholder
    secrets: LabelledSecrets = field(repr=False)
    _tables: dict[frozenset[str], ScrubTable] = field(default_factory=dict, repr=False)

    @classmethod
    def build(
        cls,
        credentials: dict[str, Credential],
        values: dict[str, str],
        own: list[str],
        retired: dict[str, list[str]] | None = None,
    ) -> BrokerState:
        placeholders = {n: c.placeholder for n, c in credentials.items()}
        groups: dict[str, list[str]] = {OWN: own}
        for name in credentials:
            groups[VALUE + name] = [values[name], *(retired or {}).get(name, [])]
            groups[PLACEHOLDER + name] = [placeholders[name]]
        secrets = LabelledSecrets(groups, lean=frozenset(groups) - {OWN})
        return cls(credentials, values, placeholders, secrets)

    def bound(self, name: str, method: str, url: str) -> bool:
        """May credential `name`'s value go with this request? (https, host, port, path
        as written — a `#` in a request target is never bound — and method)."""
        if "#" in url:
            return False
        parts = urlsplit(url)
        if parts.scheme not in ("https", "wss"):
            return False
        try:
            port = parts.port or 443
        except ValueError:
            return False
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        return self.credentials[name].bound(method, parts.hostname or "", port, path)

    def hosts_of(self, host: str) -> frozenset[str]:
        """The credentials bound to this host (any port, path or method)."""
        return frozenset(n for n, c in self.credentials.items() if c.serves_host(host))

    def scrubber(self, names: frozenset[str]) -> Scrubber:
        """Replaces, in what comes back, these credentials' real values by placeholders
        (the table is built once per snapshot and set of names)."""
        table = self._tables.get(names)
        if table is None:
            echoes = {}
            for n in sorted(names):
                value, prefix = self.values[n], self.credentials[n].shape_spec.prefix
                shared = len(prefix) if prefix and value.startswith(prefix) else 0
                echoes[value] = Echo(n, self.placeholders[n], shared)
            table = self._tables[names] = ScrubTable(echoes)
        return Scrubber(table)


class Broker:
    """The current snapshot, and the file stamps that say when to build the next."""

    def __init__(self, bindings: Bindings, own: list[str]) -> None:
        self._credentials = bindings.by_name()
        self._own = own
        values = {n: read_value(c) for n, c in self._credentials.items()}
        self._stamps = {n: _stamp(c.value) for n, c in self._credentials.items()}
        self._retired: dict[str, list[str]] = {n: [] for n in self._credentials}
        self._missing: set[str] = set()  # value files gone (said once)
        self.current = BrokerState.build(self._credentials, values, own)

    def refresh(self) -> list[tuple[str, str]]:
        """Re-read the value files whose stamp changed; returns (name, result) for each:
        `rotated`, `unchanged` (touched, same value), `invalid` (the old value stays) or
        `missing` (the file is gone; the old value stays). Each is said once per change."""
        changed: list[tuple[str, str]] = []
        values = dict(self.current.values)
        for name, credential in self._credentials.items():
            if credential.value.file is None:
                continue
            stamp = _stamp(credential.value)
            if stamp is None:
                if name not in self._missing:
                    self._missing.add(name)
                    logger.warning(
                        "brokered credential %s: %s is gone; the previous value stays",
                        name,
                        credential.value.file,
                    )
                    changed.append((name, "missing"))
                continue
            self._missing.discard(name)
            if stamp == self._stamps[name]:
                continue
            self._stamps[name] = stamp  # a bad file is said once, until it changes again
            try:
                value = read_value(credential)
            except BindingsError as e:
                logger.warning("brokered credential: %s; the previous value stays", e)
                changed.append((name, "invalid"))
                continue
            if value == values[name]:
                changed.append((name, "unchanged"))
                continue
            self._retired[name] = [values[name], *self._retired[name]][:RETIRED_KEPT]
            values[name] = value
            changed.append((name, "rotated"))
        if any(result == "rotated" for _, result in changed):
            self.current = BrokerState.build(self._credentials, values, self._own, self._retired)
            for name, result in changed:
                if result == "rotated":
                    logger.info("brokered credential %s: new value in use", name)
        return changed


async def watch(broker: Broker, report: Callable[[str, str], None]) -> None:
    """Look at the value files every `LOOK_EVERY` seconds (a Kubernetes Secret update is
    a symlink swap; `subPath` mounts never see one) and swap in what changed."""
    while True:
        await asyncio.sleep(LOOK_EVERY)
        try:
            changes = await asyncio.to_thread(broker.refresh)
        except Exception:  # never let a bad read stop the watch
            logger.exception("egress-sidecar: brokered values could not be re-read")
            continue
        for name, result in changes:
            report(name, result)
