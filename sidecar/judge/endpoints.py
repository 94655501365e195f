"""Where a connection may go once its name is resolved: the address-level judgement.

The engine judges a destination as written; this judges the addresses it resolved to,
so the address judged is the address connected to. The sidecar's own listeners (proxy,
transparent listener, admin server) are never a destination, whatever the internal-host
list says: an agent must not reach the approval endpoints or loop through the proxy.
Pure, but for `local_addresses`, which asks the system once at start.
"""

from __future__ import annotations

import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sidecar.engine.destinations import IPAddress, address_refusal, parse_ip

OWN_ENDPOINT = "own_endpoint"


@dataclass(frozen=True, slots=True)
class Listener:
    """A socket the sidecar listens on, and the addresses that reach it."""

    address: IPAddress | None  # None: every interface
    port: int
    local: frozenset[IPAddress] = frozenset()  # this host's addresses (for `address` None)

    @classmethod
    def of(cls, host: str, port: int, local: frozenset[IPAddress] = frozenset()) -> Listener:
        address = parse_ip("127.0.0.1" if host == "localhost" else host) if host else None
        if address is not None and address.is_unspecified:
            address = None
        return cls(address, port, local)

    def reached_by(self, address: IPAddress, port: int) -> bool:
        if port != self.port:
            return False
        if address.is_unspecified or address == self.address:
            return True  # connecting to 0.0.0.0 / :: reaches this host
        if self.address is None:
            return address.is_loopback or address in self.local
        return self.address.is_loopback and address.is_loopback


def local_addresses() -> frozenset[IPAddress]:
    """This host's own addresses as its name resolves (the pod IP, in Kubernetes)."""
    found: set[IPAddress] = set()
    try:
        infos = socket.getaddrinfo(socket.gethostname(), None)
    except OSError:
        infos = []
    for *_, sockaddr in infos:
        address = parse_ip(str(sockaddr[0]))
        if address is not None:
            found.add(address)
    return frozenset(found)


def is_own_endpoint(address: IPAddress, port: int, listeners: Iterable[Listener]) -> bool:
    """True when (address, port) reaches one of the sidecar's own listeners."""
    return any(listener.reached_by(address, port) for listener in listeners)


@dataclass(frozen=True, slots=True)
class AddressJudgement:
    address: IPAddress | None  # the one to connect to, when allowed
    refusal: str | None  # ssrf target kind or OWN_ENDPOINT


def judge_addresses(
    host: str,
    port: int,
    addresses: Sequence[IPAddress],
    internal: Iterable[str],
    listeners: Iterable[Listener],
) -> AddressJudgement:
    """All addresses must be allowed (a name that also points inside is refused); the
    first is the one to connect to."""
    internal = tuple(internal)
    listeners = tuple(listeners)
    for address in addresses:
        if is_own_endpoint(address, port, listeners):
            return AddressJudgement(None, OWN_ENDPOINT)
    for address in addresses:
        reason = address_refusal(host, address, internal)
        if reason is not None:
            return AddressJudgement(None, reason)
    return AddressJudgement(addresses[0] if addresses else None, None)
