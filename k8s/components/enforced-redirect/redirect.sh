#!/bin/sh
# Enforced mode: redirect the pod's outbound TCP (80, 443 by default) to the sidecar's
# transparent listener. The sidecar's own traffic (its UID) and loopback are exempt, so it
# can still reach upstreams. IPv6 TCP from other UIDs is refused rather than left open.
set -eu
SIDECAR_UID="${SIDECAR_UID:-10001}"
TRANSPARENT_PORT="${TRANSPARENT_PORT:-15001}"
PORTS="${REDIRECT_PORTS:-80,443}"

iptables -t nat -N EGRESS_SIDECAR
iptables -t nat -A EGRESS_SIDECAR -m owner --uid-owner "$SIDECAR_UID" -j RETURN
iptables -t nat -A EGRESS_SIDECAR -d 127.0.0.0/8 -j RETURN
iptables -t nat -A EGRESS_SIDECAR -p tcp -m multiport --dports "$PORTS" -j REDIRECT --to-ports "$TRANSPARENT_PORT"
iptables -t nat -A OUTPUT -p tcp -j EGRESS_SIDECAR

if ip6tables -t filter -L OUTPUT >/dev/null 2>&1; then
  ip6tables -A OUTPUT -o lo -j ACCEPT
  ip6tables -A OUTPUT -m owner --uid-owner "$SIDECAR_UID" -j ACCEPT
  ip6tables -A OUTPUT -p tcp -j REJECT --reject-with tcp-reset
fi
echo "egress-redirect: tcp ports $PORTS -> 127.0.0.1:$TRANSPARENT_PORT (uid $SIDECAR_UID exempt; IPv6 TCP refused)"
