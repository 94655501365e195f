"""The broker's values, read by the sidecar only, and re-read when their files change.

`BrokerState` is one immutable snapshot (bindings, values, the matchers built from
them); `Broker.refresh` swaps in a new one when a value file changed — a Kubernetes
Secret update is a symlink swap, seen by `stat` through the link. A request takes the
snapshot current when it is judged and keeps it: in-flight requests finish with the old
value, new ones use the new one.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from sidecar.broker.bindings import Bindings, BindingsError, Credential, ValueSource
from sidecar.broker.scrub import Scrubber
from sidecar.engine.known_secrets import LabelledSecrets

logger = logging.getLogger("egress_sidecar")

OWN = "own"  # the label of the sidecar's own keys among the known secrets
VALUE = "value:"  # + name: a brokered credential's real value
PLACEHOLDER = "placeholder:"  # + name: its placeholder
MIN_VALUE = 8  # characters; anything shorter cannot be told from ordinary text


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
    if any(ord(c) < 0x21 or ord(c) == 0x7F for c in value):
        raise BindingsError(f"{where}: the value has whitespace or control characters inside")
    return value


def _stamp(source: ValueSource) -> tuple[int, int, int, int] | None:
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
    by_placeholder: dict[str, str]  # placeholder -> name

    @classmethod
    def build(
        cls, credentials: dict[str, Credential], values: dict[str, str], own: list[str]
    ) -> BrokerState:
        placeholders = {n: c.placeholder for n, c in credentials.items()}
        groups: dict[str, list[str]] = {OWN: own}
        for name in credentials:
            groups[VALUE + name] = [values[name]]
            groups[PLACEHOLDER + name] = [placeholders[name]]
        return cls(
            credentials,
            values,
            placeholders,
            LabelledSecrets(groups, lean=frozenset(groups) - {OWN}),
            {p: n for n, p in placeholders.items()},
        )

    def bound(self, name: str, method: str, url: str) -> bool:
        parts = urlsplit(url)
        if parts.scheme not in ("https", "wss"):
            return False
        try:
            port = parts.port or 443
        except ValueError:
            return False
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        return self.credentials[name].bound(method, parts.hostname or "", port, path)

    def scrubber(self, names: frozenset[str]) -> Scrubber:
        """Replaces, in what comes back, these credentials' real values by placeholders."""
        return Scrubber({self.values[n]: (n, self.placeholders[n]) for n in sorted(names)})


class Broker:
    """The current snapshot, and the file stamps that say when to build the next."""

    def __init__(self, bindings: Bindings, own: list[str]) -> None:
        self._credentials = bindings.by_name()
        self._own = own
        values = {n: read_value(c) for n, c in self._credentials.items()}
        self._stamps = {n: _stamp(c.value) for n, c in self._credentials.items()}
        self.current = BrokerState.build(self._credentials, values, own)

    @property
    def names(self) -> list[str]:
        return list(self._credentials)

    def refresh(self) -> list[tuple[str, str]]:
        """Re-read the value files whose stamp changed; returns (name, result) for each:
        `rotated`, `unchanged` (touched, same value) or `invalid` (the old value stays)."""
        changed: list[tuple[str, str]] = []
        values = dict(self.current.values)
        for name, credential in self._credentials.items():
            stamp = _stamp(credential.value)
            if stamp is None or stamp == self._stamps[name]:
                continue
            try:
                value = read_value(credential)
            except BindingsError as e:
                logger.warning("brokered credential: %s; the previous value stays", e)
                changed.append((name, "invalid"))
                continue  # the stamp is kept: retried at the next look
            self._stamps[name] = stamp
            if value == values[name]:
                changed.append((name, "unchanged"))
                continue
            values[name] = value
            changed.append((name, "rotated"))
        if any(result == "rotated" for _, result in changed):
            self.current = BrokerState.build(self._credentials, values, self._own)
            for name, result in changed:
                if result == "rotated":
                    logger.info("brokered credential %s: new value in use", name)
        return changed


def file_sources(bindings: Bindings) -> list[Path]:
    return [c.value.file for c in bindings.credentials if c.value.file is not None]
