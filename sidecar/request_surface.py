"""Everything about a request that leaves with it, so that all of it is judged.

What is forwarded is what is scanned: every header (hop-by-hop ones included, since
mitmproxy forwards them), header names, trailers and the method. The two headers meant
for the proxy itself (`Proxy-Authorization`, `Proxy-Connection`) are removed before the
request leaves instead. Methods must be HTTP tokens of sane length, and protocol
upgrades are allowed only where the sidecar can inspect what follows. Pure: no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from enum import StrEnum

# Meant for the proxy, never for the upstream: removed before forwarding.
PROXY_ONLY_HEADERS = frozenset({"proxy-authorization", "proxy-connection"})
MAX_METHOD_LENGTH = 32
_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")


class Upgrade(StrEnum):
    NONE = "none"
    WEBSOCKET = "websocket"  # RFC 6455 version 13: the sidecar reads every message
    STRIP = "strip"  # h2c: an optional upgrade the server may ignore; removed
    REFUSE = "refuse"  # anything else would become an unscanned pipe


def method_problem(method: str) -> str | None:
    """Why a method cannot be forwarded, or None."""
    if len(method) > MAX_METHOD_LENGTH:
        return f"method longer than {MAX_METHOD_LENGTH} characters"
    if not _TOKEN.match(method):
        return "method is not an HTTP token"
    return None


def _tokens(values: Iterable[str]) -> list[str]:
    return [t.strip().lower() for v in values for t in v.split(",") if t.strip()]


def classify_upgrade(
    method: str,
    http_version: str,
    upgrade: list[str],
    websocket_version: list[str],
) -> Upgrade:
    """What to do with a request's `Upgrade` (all header values as sent)."""
    wanted = _tokens(upgrade)
    if not wanted:
        return Upgrade.NONE  # a 101 without an upgrade asked for is refused on arrival
    if wanted == ["websocket"]:
        if method == "GET" and http_version == "HTTP/1.1" and websocket_version == ["13"]:
            return Upgrade.WEBSOCKET
        return Upgrade.REFUSE
    if wanted == ["h2c"]:
        return Upgrade.STRIP
    return Upgrade.REFUSE


def scanned_headers(
    headers: Iterable[tuple[str, str]], trailers: Iterable[tuple[str, str]] = ()
) -> dict[str, str]:
    """Every forwarded header and trailer, repeated names joined (as the scan API takes
    them); names keep the case the agent sent."""
    out: dict[str, str] = {}
    seen: dict[str, str] = {}
    for name, value in [*headers, *trailers]:
        lower = name.lower()
        if lower in PROXY_ONLY_HEADERS:
            continue
        key = seen.setdefault(lower, name)
        out[key] = f"{out[key]}, {value}" if key in out else value
    return out


def volatile_free(headers: dict[str, str], volatile: Iterable[str]) -> dict[str, str]:
    """The headers that tie an approval to its request: all but the volatile ones."""
    skip = frozenset(volatile)
    return {k: v for k, v in headers.items() if k.lower() not in skip}
