"""Resolving a destination once, so the address judged is the address connected to.

The system resolver (getaddrinfo, off the event loop) answers; answers are kept for a
short time so that the request-time check and the connection that follows see the same
addresses, whatever the DNS says in between (rebinding). IP literals in every form a
client accepts (`0x7f.1`, `::ffff:127.0.0.1`) are parsed, never looked up.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Protocol

from sidecar.engine.destinations import IPAddress, parse_ip

CACHE_SECONDS = 30.0
CACHE_SIZE = 4096

Lookup = Callable[[str, int], Awaitable[list[IPAddress]]]


class ResolveError(OSError):
    """The name does not resolve (or resolves to nothing usable)."""


class Resolver(Protocol):
    async def resolve(self, host: str, port: int) -> list[IPAddress]:
        """Every address `host` stands for, in the order to try them."""
        ...


async def getaddrinfo(host: str, port: int) -> list[IPAddress]:
    """The system's answer (hosts file, DNS), as addresses."""
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as e:
        raise ResolveError(f"cannot resolve: {type(e).__name__}") from None
    addresses: list[IPAddress] = []
    for *_, sockaddr in infos:
        address = parse_ip(str(sockaddr[0]))
        if address is not None and address not in addresses:
            addresses.append(address)
    return addresses


class DestinationResolver:
    """Looks names up (`lookup`, the system's by default) and keeps each answer for
    `ttl` seconds in a bounded cache."""

    def __init__(
        self, ttl: float = CACHE_SECONDS, size: int = CACHE_SIZE, lookup: Lookup = getaddrinfo
    ) -> None:
        self._ttl = ttl
        self._size = size
        self._lookup = lookup
        self._cache: OrderedDict[str, tuple[float, list[IPAddress]]] = OrderedDict()

    async def resolve(self, host: str, port: int) -> list[IPAddress]:
        literal = parse_ip(host)
        if literal is not None:
            return [literal]
        key = host.lower().rstrip(".")
        now = time.monotonic()
        cached = self._cache.get(key)
        if cached is not None and cached[0] > now:
            return cached[1]
        addresses = await self._lookup(key, port)
        if not addresses:
            raise ResolveError("resolves to no address")
        self._cache[key] = (now + self._ttl, addresses)
        self._cache.move_to_end(key)
        while len(self._cache) > self._size:
            self._cache.popitem(last=False)
        return addresses
