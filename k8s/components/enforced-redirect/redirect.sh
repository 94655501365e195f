#!/bin/sh
# Enforced mode: nothing leaves the pod around the sidecar.
#
# - Every outbound TCP connection (any port) is redirected to the sidecar's transparent
#   listener, which judges it (HTTP and TLS are inspected; anything else is refused
#   unless SIDECAR_RAW_TCP_HOSTS names it).
# - DNS is allowed to the cluster resolver(s) only (UDP and TCP 53).
# - All other UDP is rejected at once (QUIC/HTTP3 clients fall back to TCP, which is
#   redirected); every other protocol (ICMP, SCTP, ...) is dropped.
# - Exempt: the sidecar's own UID (it is the egress path), loopback, replies to inbound
#   connections, and IPv6 neighbour discovery. IPv6 traffic from other UIDs is refused.
#
# What remains by design: names the agent looks up through the cluster resolver (data
# can ride in DNS queries; filter them at the resolver), and services on the pod's own
# loopback.
set -eu
SIDECAR_UID="${SIDECAR_UID:-10001}"
TRANSPARENT_PORT="${TRANSPARENT_PORT:-15001}"
RESOLV_CONF="${RESOLV_CONF:-/etc/resolv.conf}"
# The resolvers DNS may go to: the pod's own (as Kubernetes writes resolv.conf) unless set.
DNS_SERVERS="${DNS_SERVERS:-$(awk '$1 == "nameserver" { print $2 }' "$RESOLV_CONF")}"

V4_DNS=""
V6_DNS=""
for ns in $DNS_SERVERS; do
  case "$ns" in
    *:*) V6_DNS="$V6_DNS $ns" ;;
    *) V4_DNS="$V4_DNS $ns" ;;
  esac
done

# --- IPv4: redirect every TCP connection to the sidecar --------------------------------
iptables -t nat -N EGRESS_SIDECAR
iptables -t nat -A EGRESS_SIDECAR -m owner --uid-owner "$SIDECAR_UID" -j RETURN
iptables -t nat -A EGRESS_SIDECAR -d 127.0.0.0/8 -j RETURN
for ns in $V4_DNS; do
  iptables -t nat -A EGRESS_SIDECAR -p tcp -d "$ns" --dport 53 -j RETURN
done
iptables -t nat -A EGRESS_SIDECAR -p tcp -j REDIRECT --to-ports "$TRANSPARENT_PORT"
iptables -t nat -A OUTPUT -p tcp -j EGRESS_SIDECAR

# --- Everything that is not redirected TCP -------------------------------------------
# only_judged_egress IPTABLES UDP_REJECT RESOLVERS [ICMPV6_TYPES]: the sidecar, loopback,
# replies and DNS to RESOLVERS pass; other TCP and UDP are rejected, the rest dropped.
only_judged_egress() {
  ipt="$1"
  $ipt -N EGRESS_SIDECAR_OUT
  $ipt -A EGRESS_SIDECAR_OUT -o lo -j ACCEPT
  $ipt -A EGRESS_SIDECAR_OUT -m owner --uid-owner "$SIDECAR_UID" -j ACCEPT
  $ipt -A EGRESS_SIDECAR_OUT -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT
  for type in ${4:-}; do  # IPv6 neighbour discovery
    $ipt -A EGRESS_SIDECAR_OUT -p ipv6-icmp --icmpv6-type "$type" -j ACCEPT
  done
  for ns in $3; do
    $ipt -A EGRESS_SIDECAR_OUT -p udp -d "$ns" --dport 53 -j ACCEPT
    $ipt -A EGRESS_SIDECAR_OUT -p tcp -d "$ns" --dport 53 -j ACCEPT
  done
  $ipt -A EGRESS_SIDECAR_OUT -p tcp -j REJECT --reject-with tcp-reset
  $ipt -A EGRESS_SIDECAR_OUT -p udp -j REJECT --reject-with "$2"
  $ipt -A EGRESS_SIDECAR_OUT -j DROP
  $ipt -A OUTPUT -j EGRESS_SIDECAR_OUT
}

only_judged_egress iptables icmp-port-unreachable "$V4_DNS"
# IPv6: no redirect, so TCP from other UIDs is refused outright.
if ip6tables -t filter -L OUTPUT >/dev/null 2>&1; then
  only_judged_egress ip6tables icmp6-port-unreachable "$V6_DNS" "133 135 136"
fi
echo "egress-redirect: all TCP -> 127.0.0.1:$TRANSPARENT_PORT; DNS only to:${V4_DNS}${V6_DNS}; other UDP and protocols refused (uid $SIDECAR_UID exempt)"
