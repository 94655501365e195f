"""Where a request goes: SSRF targets, data smuggled in DNS labels, host lists, tools.

No DNS is resolved here (the engine is pure): a name is judged as written. IP literals
are parsed in every form a client accepts (decimal, hex, octal, short, IPv6-mapped).
"""

from __future__ import annotations

import fnmatch
import ipaddress
import re
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

from sidecar.engine.checks import entropy

METADATA_HOSTS = frozenset(
    {"metadata", "metadata.google.internal", "metadata.goog", "instance-data",
     "instance-data.ec2.internal", "metadata.azure.internal", "metadata.packet.net"}
)  # fmt: skip
METADATA_ADDRESSES = frozenset(
    {ipaddress.ip_address(a) for a in ("169.254.169.254", "169.254.170.2", "fd00:ec2::254",
                                        "100.100.100.200", "192.0.0.192")}
)  # fmt: skip
_SHARED = ipaddress.ip_network("100.64.0.0/10")


IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@lru_cache(maxsize=4096)  # every request asks this of its host, several times
def parse_ip(host: str) -> IPAddress | None:
    """The address a client would connect to for this literal, in any accepted form."""
    h = host.strip("[]").lower()
    try:
        addr = ipaddress.ip_address(h.split("%", 1)[0])
    except ValueError:
        pass
    else:
        if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
            return addr.ipv4_mapped
        return addr
    if not re.fullmatch(r"(?:0x[0-9a-f]+|\d+)(?:\.(?:0x[0-9a-f]+|\d+)){0,3}", h):
        return None
    try:  # inet_aton accepts decimal, hex, octal and short forms, like libc clients do
        return ipaddress.IPv4Address(socket.inet_aton(h))
    except OSError:
        return None


@dataclass(frozen=True, slots=True)
class SsrfFinding:
    reason: str  # "metadata", "loopback", "private", "link_local", ...


_NAT64 = ipaddress.ip_network("64:ff9b::/96")


def embedded_ipv4(addr: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one carries to (6to4, NAT64, Teredo, IPv4-compatible)."""
    if not isinstance(addr, ipaddress.IPv6Address):
        return None
    if addr.sixtofour is not None:
        return addr.sixtofour
    if addr.teredo is not None:
        return addr.teredo[1]
    if addr in _NAT64 or (0 < int(addr) < 2**32 and int(addr) > 1):
        return ipaddress.IPv4Address(int(addr) & 0xFFFFFFFF)
    return None


def ssrf(host: str) -> SsrfFinding | None:
    h = host.lower().rstrip(".")
    if h in METADATA_HOSTS:
        return SsrfFinding("metadata")
    if h == "localhost" or h.endswith(".localhost"):
        return SsrfFinding("loopback")
    addr = parse_ip(h)
    if addr is None:
        return None
    inner = embedded_ipv4(addr)
    if inner is not None and (found := ssrf(str(inner))) is not None:
        return found
    if addr in METADATA_ADDRESSES:
        return SsrfFinding("metadata")
    for reason, flagged in (
        ("loopback", addr.is_loopback),
        ("unspecified", addr.is_unspecified),
        ("link_local", addr.is_link_local),
        ("private", addr.is_private),
        ("shared", isinstance(addr, ipaddress.IPv4Address) and addr in _SHARED),
        ("reserved", addr.is_reserved or addr.is_multicast),
    ):
        if flagged:
            return SsrfFinding(reason)
    return None


def address_refusal(host: str, address: IPAddress, internal: Iterable[str]) -> str | None:
    """Why connecting to `address` (what `host` resolved to) is refused, or None.

    The name as written was judged already; this judges where it actually leads, so a
    public name pointing at loopback or the metadata service is caught. Internal names
    and CIDR blocks the operator listed are allowed.
    """
    patterns = tuple(internal)
    if host_matches(host, patterns) or host_matches(str(address), patterns):
        return None
    target = ssrf(str(address))
    return None if target is None else target.reason


_HEXISH = re.compile(r"^[0-9a-f]{20,}$")
_BASE32ISH = re.compile(r"^[a-z2-7]{24,}=*$")


def dns_exfiltration(host: str) -> bool:
    """Subdomain labels that carry encoded or random data rather than names."""
    if parse_ip(host) is not None:
        return False
    labels = host.lower().rstrip(".").split(".")
    sub = labels[:-2]
    if not sub:
        return False
    if sum(len(label) for label in sub) > 100:
        return True
    for label in sub:
        if _HEXISH.match(label) or (len(label) >= 24 and _BASE32ISH.match(label)):
            return True
        if len(label) >= 24 and entropy(label) >= 3.8:
            return True
    return False


def host_matches(host: str, patterns: Iterable[str]) -> bool:
    """Exact names, `*.example.com` (subdomains only), `*` wildcards, and CIDR blocks."""
    return _host_set(tuple(patterns)).matches(host)


def check_host_patterns(patterns: list[str]) -> list[str]:
    """Load-time check: a pattern with "/" must be a CIDR block (else it never matches)."""
    for pattern in patterns:
        if "/" in pattern:
            try:
                ipaddress.ip_network(pattern.strip(), strict=False)
            except ValueError:
                raise ValueError(f"{pattern!r} is not a CIDR block (e.g. 10.0.0.0/8)") from None
    return patterns


def split_host_port(value: str) -> tuple[str, int | None]:
    """`host`, `host:port`, `[v6]`, `[v6]:port` -> (host without brackets, port or None)."""
    v = value.strip()
    if v.startswith("["):
        host, closed, rest = v[1:].partition("]")
        if not closed:
            raise ValueError(f"unclosed IPv6 literal in {value[:64]!r}")
        if not rest:
            return host, None
        if not rest.startswith(":") or not rest[1:].isdigit():
            raise ValueError(f"bad port in {value[:64]!r}")
        digits = rest[1:]
    elif v.count(":") == 1:
        host, _, digits = v.partition(":")
        if not digits.isdigit():
            raise ValueError(f"bad port in {value[:64]!r}")
    elif ":" in v:
        raise ValueError(f"write IPv6 addresses in brackets, e.g. [fd00::1]:5432: {value[:64]!r}")
    else:
        return v, None
    port = int(digits)
    if not 0 < port < 65536:
        raise ValueError(f"bad port in {value[:64]!r}")
    return host, port


def parse_destination_pattern(entry: str) -> tuple[str, int | None]:
    """`HOST[:PORT]` -> (host pattern, port or None); IPv6 literals and blocks in brackets."""
    try:
        host, port = split_host_port(entry)
    except ValueError as e:
        raise ValueError(f"{entry!r}: expected HOST[:PORT] ({e})") from None
    if not host or " " in host:
        raise ValueError(f"{entry!r}: expected HOST[:PORT]")
    check_host_patterns([host])
    return host.lower(), port


@dataclass(frozen=True, slots=True)
class DestinationPatterns:
    """`HOST[:PORT]` patterns (see `parse_destination_pattern`), parsed once."""

    entries: tuple[tuple[str, int | None], ...]

    def matches(self, host: str, port: int) -> bool:
        return any(
            (want is None or want == port) and host_matches(host, (pattern,))
            for pattern, want in self.entries
        )

    def __bool__(self) -> bool:
        return bool(self.entries)


@lru_cache(maxsize=64)
def destination_patterns(entries: tuple[str, ...]) -> DestinationPatterns:
    return DestinationPatterns(tuple(parse_destination_pattern(e) for e in entries))


@dataclass(frozen=True, slots=True)
class _HostSet:
    """Host patterns compiled once: a set lookup, one regex, and a few networks."""

    exact: frozenset[str]
    wildcards: re.Pattern[str] | None
    networks: tuple[IPNetwork, ...]

    def matches(self, host: str) -> bool:
        h = host.lower().rstrip(".")
        if h in self.exact or (self.wildcards is not None and self.wildcards.match(h)):
            return True
        if self.networks:
            addr = parse_ip(h)
            return addr is not None and any(addr in net for net in self.networks)
        return False


@lru_cache(maxsize=256)  # policy and engine lists: a handful of distinct tuples
def _host_set(patterns: tuple[str, ...]) -> _HostSet:
    exact, wildcards, networks = set(), [], []
    for pattern in patterns:
        p = pattern.lower().strip()
        if "/" in p:  # a CIDR block; never a host name (names have no "/")
            networks.append(ipaddress.ip_network(p, strict=False))  # checked at load
        elif any(c in p for c in "*?["):
            wildcards.append(fnmatch.translate(p))  # `*.x` covers subdomains only
        else:
            exact.add(p)
    regex = re.compile("|".join(wildcards)) if wildcards else None
    return _HostSet(frozenset(exact), regex, tuple(networks))


def belongs_to(host: str, providers: Iterable[str]) -> bool:
    """True when `host` is one of the provider's domains or a subdomain of one."""
    h = host.lower().rstrip(".")
    return any(h == p or h.endswith("." + p) for p in providers)


# (host pattern, method or "*", path regex, tool, operation); first match wins.
_TOOLS: tuple[tuple[str, str, str, str, str], ...] = (
    ("hooks.slack.com", "*", r"^/services/", "slack", "post_message"),
    ("slack.com", "*", r"^/api/chat\.postMessage", "slack", "post_message"),
    ("slack.com", "*", r"^/api/files\.(upload|getUploadURLExternal)", "slack", "upload_file"),
    ("slack.com", "*", r"^/api/conversations\.(history|replies)", "slack", "read_messages"),
    ("api.github.com", "POST", r"^/repos/[^/]+/[^/]+/pulls/?$", "github", "create_pr"),
    ("api.github.com", "POST", r"^/repos/[^/]+/[^/]+/issues/?$", "github", "create_issue"),
    ("api.github.com", "POST", r"^/repos/[^/]+/[^/]+/(issues|pulls)/\d+/comments", "github", "comment"),
    ("api.github.com", "PUT", r"^/repos/[^/]+/[^/]+/contents/", "github", "write_file"),
    ("api.github.com", "POST", r"^/gists", "github", "create_gist"),
    ("api.github.com", "GET", r".", "github", "read"),
    ("api.openai.com", "POST", r"^/v1/chat/completions", "openai", "chat_completion"),
    ("api.openai.com", "POST", r"^/v1/responses", "openai", "response"),
    ("api.openai.com", "POST", r"^/v1/embeddings", "openai", "embedding"),
    ("api.anthropic.com", "POST", r"^/v1/messages", "anthropic", "create_message"),
    ("generativelanguage.googleapis.com", "POST", r":(stream)?[gG]enerateContent", "gemini", "generate_content"),
    ("bedrock-runtime.*.amazonaws.com", "POST", r"^/model/.+/(invoke|converse)", "bedrock", "invoke_model"),
    ("discord.com", "POST", r"^/api/webhooks/", "discord", "post_message"),
    ("api.telegram.org", "*", r"/send(Message|Document|Photo)", "telegram", "send_message"),
    ("api.stripe.com", "POST", r"^/v1/(charges|payment_intents)", "stripe", "create_payment"),
    ("api.sendgrid.com", "POST", r"^/v3/mail/send", "sendgrid", "send_email"),
    ("gmail.googleapis.com", "POST", r"/messages/send", "gmail", "send_email"),
    ("*.s3.amazonaws.com", "PUT", r".", "s3", "put_object"),
    ("pastebin.com", "POST", r"^/api/", "pastebin", "create_paste"),
    ("webhook.site", "*", r".", "webhook_site", "post"),
    ("api.notion.com", "POST", r"^/v1/pages", "notion", "create_page"),
    ("*.atlassian.net", "POST", r"/rest/api/\d+/issue", "jira", "create_issue"),
)  # fmt: skip
_TOOL_PATHS = [re.compile(t[2]) for t in _TOOLS]


def recognise_tool(method: str, host: str, path: str) -> tuple[str, str]:
    """(tool_name, operation) for well-known SaaS APIs; `custom_proxy` otherwise."""
    for path_re, tool, operation in _tools_at(method, host.lower().rstrip(".")):
        if path_re.search(path):
            return tool, operation
    return "custom_proxy", "read" if method in ("GET", "HEAD", "OPTIONS") else "write"


@lru_cache(maxsize=1024)  # agents talk to few hosts; the path is checked per request
def _tools_at(method: str, host: str) -> tuple[tuple[re.Pattern[str], str, str], ...]:
    return tuple(
        (path_re, tool, operation)
        for (pattern, want, _, tool, operation), path_re in zip(_TOOLS, _TOOL_PATHS, strict=True)
        if want in ("*", method) and host_matches(host, (pattern,))
    )
