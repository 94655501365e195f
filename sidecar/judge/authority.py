"""The destination a request names, written one way, and whether all its names agree.

A request names its destination up to four times: the address the proxy connects to
(the CONNECT target, the absolute URL, or the original destination of a redirected
connection), the Host header, HTTP/2's `:authority`, and the TLS SNI. Servers and CDNs
route on the last three; the sidecar judges the first. They must be the same host (and
port, where one is given), or the destination judged is not the destination used
(domain fronting). Pure: no I/O, no mitmproxy.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from sidecar.engine.destinations import split_host_port

DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}


class AuthorityError(ValueError):
    """An authority that does not parse, or names that disagree."""


@dataclass(frozen=True, slots=True)
class Authority:
    host: str  # lower-case, no trailing dot, IPv6 without brackets
    port: int | None


def normalise_host(host: str) -> str:
    """`Example.COM.` -> `example.com`; `[::1]` -> `::1`; IPv6 compressed canonically;
    international names in their ASCII (IDNA) form, the one DNS is asked for — so
    `pastebin` in full-width letters is judged as the `pastebin` it resolves as."""
    h = host.strip().lower()
    if h.startswith("[") and h.endswith("]"):
        h = h[1:-1]
    h = h.rstrip(".")
    if not h.isascii():
        try:
            h = h.encode("idna").decode("ascii").lower()
        except UnicodeError:
            raise AuthorityError(f"not a host name: {host[:64]!r}") from None
    if "%" in h:  # an IPv6 zone id: local to this host, and free text the agent chooses
        raise AuthorityError(f"zone ids are not destinations: {host[:64]!r}")
    if ":" in h:
        try:
            return str(ipaddress.IPv6Address(h))
        except ValueError:
            raise AuthorityError(f"not an IPv6 address: {host[:64]!r}") from None
    return h


def parse_authority(value: str) -> Authority:
    """`host`, `host:port`, `[v6]`, `[v6]:port` (as in Host and :authority)."""
    v = value.strip()
    if not v or any(c in v for c in "/?#@ \t\\"):
        raise AuthorityError(f"not an authority: {value[:64]!r}")
    try:
        host, port = split_host_port(v)
    except ValueError as e:
        raise AuthorityError(str(e)) from None
    normal = normalise_host(host)
    if not normal:
        raise AuthorityError(f"empty host in {value[:64]!r}")
    return Authority(normal, port)


def absolute_url(scheme: str, host: str, port: int, path: str) -> str:
    """The URL as the upstream sees it; IPv6 literals keep their brackets, names keep the
    case they were written in (what a label carries is scanned as sent)."""
    h = normalise_host(host)
    if ":" in h:
        h = f"[{h}]"
    elif host.isascii() and host.lower().rstrip(".") == h:
        h = host.rstrip(".")
    default = DEFAULT_PORTS.get(scheme)
    netloc = h if port == default else f"{h}:{port}"
    if not path.startswith("/") and path != "*":
        path = "/" + path
    return f"{scheme}://{netloc}{path}"


def mismatch(host: str, port: int, names: list[tuple[str, str]]) -> str | None:
    """Why the request's other names disagree with the destination, or None.

    `names` are (what, value) pairs such as ("Host", "a.com:443") or ("SNI", "a.com").
    A name without a port matches any port of the same host; one with a port must name
    the destination's.
    """
    try:
        dest = normalise_host(host)
    except AuthorityError:
        return "the destination host does not parse"
    for what, value in names:
        try:
            if what == "SNI":
                named = Authority(normalise_host(value), None)
            else:
                named = parse_authority(value)
        except AuthorityError:
            return f"{what} does not parse"
        if named.host != dest:
            return f"{what} names another host than the destination"
        if named.port is not None and named.port != port:
            return f"{what} names another port than the destination"
    return None
