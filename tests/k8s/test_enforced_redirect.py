"""Class 9: enforced mode leaves no way out of the pod around the sidecar.

The redirect script runs for real, against recording stand-ins for `iptables` and
`ip6tables` on the PATH (no kernel rules here). The recorded rules are then evaluated
the way netfilter walks them (nat OUTPUT, then filter OUTPUT) for the packets an agent
could send: every TCP connection must end at the sidecar's transparent listener, DNS
may reach the cluster resolver only, UDP (QUIC included) and other protocols are
refused, and the sidecar's own traffic, loopback and replies pass.
"""

from __future__ import annotations

import ipaddress
import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "k8s/components/enforced-redirect/redirect.sh"
SIDECAR_UID, AGENT_UID, PORT = 10001, 1000, 15001
RESOLVER, RESOLVER6 = "10.96.0.10", "fd00:10:96::a"

STAND_IN = """#!/bin/sh
echo "$(basename "$0") $*" >> "$RECORD"
"""


@pytest.fixture(scope="module")
def rules(tmp_path_factory: pytest.TempPathFactory) -> list[list[str]]:
    tmp = tmp_path_factory.mktemp("iptables")
    for name in ("iptables", "ip6tables"):
        tool = tmp / name
        tool.write_text(STAND_IN)
        tool.chmod(0o755)
    resolv = tmp / "resolv.conf"
    resolv.write_text(f"search agents.svc.cluster.local\nnameserver {RESOLVER}\n"
                      f"nameserver {RESOLVER6}\noptions ndots:5\n")  # fmt: skip
    record = tmp / "record"
    env = {"PATH": f"{tmp}:{os.environ['PATH']}", "RECORD": str(record),
           "RESOLV_CONF": str(resolv), "SIDECAR_UID": str(SIDECAR_UID),
           "TRANSPARENT_PORT": str(PORT)}  # fmt: skip
    done = subprocess.run(["sh", str(SCRIPT)], env=env, capture_output=True, text=True,
                          check=False, timeout=30)  # fmt: skip
    assert done.returncode == 0, done.stderr
    return [line.split() for line in record.read_text().splitlines()]


@dataclass
class Packet:
    family: int  # 4 or 6
    proto: str  # tcp, udp, icmp, ipv6-icmp, sctp
    dst: str
    dport: int = 0
    uid: int | None = AGENT_UID  # None: sent by the kernel itself
    out: str = "eth0"
    state: str = "NEW"
    icmpv6_type: int = 0
    fields: dict[str, str] = field(default_factory=dict)


class Netfilter:
    """The subset of iptables semantics the script uses, walked like the kernel does."""

    def __init__(self, recorded: list[list[str]], family: int) -> None:
        tool = "iptables" if family == 4 else "ip6tables"
        self.chains: dict[tuple[str, str], list[list[str]]] = {}
        for argv in recorded:
            if argv[0] != tool:
                continue
            args = argv[1:]
            table = "filter"
            if args[:1] == ["-t"]:
                table, args = args[1], args[2:]
            if args[0] == "-N":
                self.chains[(table, args[1])] = []
            elif args[0] == "-A":
                self.chains.setdefault((table, args[1]), []).append(args[2:])

    def verdict(self, packet: Packet) -> str:
        """What happens to a new connection: REDIRECT:<port>, ACCEPT, REJECT or DROP."""
        nat = self._walk("nat", "OUTPUT", packet)
        if nat.startswith("REDIRECT"):
            packet = Packet(packet.family, packet.proto, "127.0.0.1", PORT, packet.uid, "lo",
                            packet.state)  # fmt: skip
        filtered = self._walk("filter", "OUTPUT", packet)
        if nat.startswith("REDIRECT") and filtered == "ACCEPT":
            return nat
        return filtered

    def _walk(self, table: str, chain: str, p: Packet) -> str:
        for rule in self.chains.get((table, chain), []):
            if not self._matches(rule, p):
                continue
            target = rule[rule.index("-j") + 1]
            if target == "REDIRECT":
                return f"REDIRECT:{rule[rule.index('--to-ports') + 1]}"
            if target in ("ACCEPT", "REJECT", "DROP"):
                return target
            if target == "RETURN":
                return "CONTINUE"
            result = self._walk(table, target, p)
            if result != "CONTINUE":
                return result
        return "CONTINUE" if chain != "OUTPUT" else "ACCEPT"  # policy ACCEPT

    @staticmethod
    def _matches(rule: list[str], p: Packet) -> bool:
        i = 0
        while i < len(rule):
            opt = rule[i]
            if opt == "-j":
                return True
            value = rule[i + 1] if i + 1 < len(rule) else ""
            if opt == "-p" and value != p.proto:
                return False
            if opt == "-d" and ipaddress.ip_address(p.dst) not in ipaddress.ip_network(value):
                return False
            if opt == "-o" and value != p.out:
                return False
            if opt == "--dport" and int(value) != p.dport:
                return False
            if opt == "--uid-owner" and (p.uid is None or int(value) != p.uid):
                return False
            if opt == "--ctstate" and p.state not in value.split(","):
                return False
            if opt == "--icmpv6-type" and int(value) != p.icmpv6_type:
                return False
            if opt == "-m":
                i += 2
                continue
            if opt.startswith("-"):
                i += 2
                continue
            i += 1
        return True


@pytest.fixture(scope="module")
def v4(rules: list[list[str]]) -> Netfilter:
    return Netfilter(rules, 4)


@pytest.fixture(scope="module")
def v6(rules: list[list[str]]) -> Netfilter:
    return Netfilter(rules, 6)


@pytest.mark.parametrize("port", [80, 443, 22, 25, 5432, 6379, 8080, 9000, 65535])
def test_every_agent_tcp_connection_goes_to_the_sidecar(v4, port):
    assert v4.verdict(Packet(4, "tcp", "93.184.216.34", port)) == f"REDIRECT:{PORT}"
    assert v4.verdict(Packet(4, "tcp", "10.1.2.3", port)) == f"REDIRECT:{PORT}"  # cluster too


def test_dns_reaches_the_cluster_resolver_only(v4, v6):
    assert v4.verdict(Packet(4, "udp", RESOLVER, 53)) == "ACCEPT"
    assert v4.verdict(Packet(4, "tcp", RESOLVER, 53)) == "ACCEPT"
    assert v6.verdict(Packet(6, "udp", RESOLVER6, 53)) == "ACCEPT"
    assert v4.verdict(Packet(4, "udp", "8.8.8.8", 53)) == "REJECT"
    assert v4.verdict(Packet(4, "tcp", "8.8.8.8", 53)) == f"REDIRECT:{PORT}"  # then judged
    assert v6.verdict(Packet(6, "udp", "2001:4860:4860::8888", 53)) == "REJECT"


@pytest.mark.parametrize("port", [443, 80, 123, 5353, 51820])
def test_other_udp_is_refused_so_quic_falls_back_to_tcp(v4, v6, port):
    assert v4.verdict(Packet(4, "udp", "93.184.216.34", port)) == "REJECT"
    assert v6.verdict(Packet(6, "udp", "2606:2800:220:1::", port)) == "REJECT"


def test_other_protocols_are_dropped(v4, v6):
    assert v4.verdict(Packet(4, "icmp", "93.184.216.34")) == "DROP"
    assert v4.verdict(Packet(4, "sctp", "93.184.216.34", 9)) == "DROP"
    assert v6.verdict(Packet(6, "ipv6-icmp", "2606:2800:220:1::", icmpv6_type=128)) == "DROP"


def test_ipv6_tcp_from_the_agent_is_refused(v6):
    assert v6.verdict(Packet(6, "tcp", "2606:2800:220:1::", 443)) == "REJECT"


def test_what_passes_by_design(v4, v6):
    sidecar = Packet(4, "tcp", "93.184.216.34", 443, uid=SIDECAR_UID)
    assert v4.verdict(sidecar) == "ACCEPT"  # the sidecar is the egress path
    assert v6.verdict(Packet(6, "tcp", "2606:2800:220:1::", 443, uid=SIDECAR_UID)) == "ACCEPT"
    assert v4.verdict(Packet(4, "tcp", "127.0.0.1", 8080, out="lo")) == "ACCEPT"  # the proxy
    reply = Packet(4, "udp", "10.1.2.3", 40000, state="ESTABLISHED")
    assert v4.verdict(reply) == "ACCEPT"  # answers to connections that came in
    ndp = Packet(6, "ipv6-icmp", "ff02::1:ff00:1", uid=None, icmpv6_type=135)
    assert v6.verdict(ndp) == "ACCEPT"
