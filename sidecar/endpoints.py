"""Where a connection may go once its name is resolved: the address-level judgement.

The engine judges a destination as written; this judges the addresses it resolved to,
so the address judged is the address connected to. The sidecar's own listeners (proxy,
transparent listener, admin server) are never a destination, whatever the internal-host
list says: an agent must not reach the approval endpoints or loop through the proxy.
Pure: no I/O.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sidecar.engine.destinations import IPAddress, address_refusal, parse_ip

OWN_ENDPOINT = "own_endpoint"


@dataclass(frozen=True, slots=True)
class Listener:
    """A socket the sidecar listens on; `address` None means every interface."""

    address: IPAddress | None
    port: int

    @classmethod
    def of(cls, host: str, port: int) -> Listener:
        address = parse_ip(host) if host not in ("", "localhost") else None
        if host == "localhost":
            address = ipaddress.IPv4Address("127.0.0.1")
        if address is not None and address.is_unspecified:
            address = None
        return cls(address, port)


def is_own_endpoint(address: IPAddress, port: int, listeners: Iterable[Listener]) -> bool:
    """True when (address, port) reaches one of the sidecar's own listeners.

    Loopback and unspecified addresses reach any loopback listener on that port, and a
    listener on every interface is reached by any address with its port.
    """
    for listener in listeners:
        if listener.port != port:
            continue
        if listener.address is None or listener.address == address:
            return True
        if address.is_loopback or address.is_unspecified:
            return True
    return False


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
