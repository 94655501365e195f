"""Only protocols the sidecar can read are relayed.

mitmproxy picks the layer that handles a connection's next bytes (`next_layer`): TLS to
intercept, HTTP to parse — or a raw TCP, UDP, DNS or QUIC relay, which would carry bytes
out unjudged. This addon lets HTTP and TLS through, refuses every other relay, and allows
raw TCP only to destinations named in `raw_tcp_hosts`: those streams are logged, counted
and scanned as they flow, each message with the tail of the one before (so a secret
split across two messages is whole in one scan); a message judged DENY ends the stream.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from mitmproxy import ctx, tcp
from mitmproxy.proxy import layer
from mitmproxy.proxy.context import Context
from mitmproxy.proxy.layers import ClientTLSLayer, HttpLayer, ServerTLSLayer, TCPLayer

from addons.layers import RefusedLayer, ScannedTcpLayer
from sidecar.authority import AuthorityError, absolute_url, normalise_host
from sidecar.backends.errors import ScanError
from sidecar.decision_log import log_decision, loggable_host
from sidecar.enforce import SIDECAR_CREDENTIAL, Enforcement, from_verdict, local_block, shadowed
from sidecar.engine.destinations import destination_matches
from sidecar.request_surface import MAX_METHOD_LENGTH

if TYPE_CHECKING:
    from addons.egress_guard import EgressGuard

logger = logging.getLogger("egress_sidecar")

STREAM_OVERLAP = 4096  # bytes of the previous message scanned again with the next
UNDECIDED_LIMIT = 64 * 1024  # bytes buffered while waiting to know the protocol
_HTTP_START = re.compile(rb"^[A-Za-z][!#$%&'*+\-.^_`|~0-9A-Za-z]{0,31} \S")
_TOKEN_PREFIX = re.compile(rb"^[A-Za-z][!#$%&'*+\-.^_`|~0-9A-Za-z]*(?: )?$|^$")
TAIL_KEY = "egress_sidecar_tcp_tail"
_INSPECTABLE = (HttpLayer, ServerTLSLayer, ClientTLSLayer)


class ProtocolGuard:
    """Refuses raw relays; scans raw TCP to the destinations allowed to carry it."""

    def __init__(self, guard: EgressGuard) -> None:
        self._guard = guard

    def next_layer(self, nextlayer: layer.NextLayer) -> None:
        if nextlayer.layer is None:
            # Under `mitmdump -s` this addon runs before mitmproxy's own chooser: ask it
            # first, then judge what it chose (under `egress-sidecar run` it ran already).
            chooser = ctx.master.addons.get("nextlayer")
            if chooser is not None:
                chooser.next_layer(nextlayer)
        chosen = nextlayer.layer
        context = nextlayer.context
        if chosen is None:
            if len(nextlayer.data_client()) > UNDECIDED_LIMIT:
                self._refuse(nextlayer, "undecided")
            return
        address = context.server.address
        if isinstance(chosen, HttpLayer):
            # mitmproxy parses whatever is not TLS as HTTP (raw TCP relaying is off); the
            # sidecar decides first whether it is HTTP at all.
            speaks_http = _speaks_http(nextlayer.data_client())
            if speaks_http:
                return
            if speaks_http is None:  # too little to tell: ask again with more data
                _replace(nextlayer, None)
                return
            if address is not None and self._raw_tcp_allowed(context, address):
                _replace(nextlayer, ScannedTcpLayer)
                return
            self._refuse(nextlayer, "TCPLayer")
            return
        if isinstance(chosen, _INSPECTABLE):
            return
        if isinstance(chosen, TCPLayer) and address and self._raw_tcp_allowed(context, address):
            _replace(nextlayer, ScannedTcpLayer)
            return
        self._refuse(nextlayer, type(chosen).__name__)

    def _raw_tcp_allowed(self, context: Context, address: tuple[str, int]) -> bool:
        settings = self._guard.settings
        if settings is None or not settings.raw_tcp_hosts:
            return False
        host, port = str(address[0]), int(address[1])
        sni = context.client.sni
        if sni:  # TLS around the stream: the name the upstream sees must be the one judged
            try:
                if normalise_host(sni) != normalise_host(host):
                    return False
            except AuthorityError:
                return False
        return destination_matches(host, port, settings.raw_tcp_hosts)

    def _refuse(self, nextlayer: layer.NextLayer, what: str) -> None:
        guard = self._guard
        address = nextlayer.context.server.address
        kind = _REFUSAL_KINDS.get(what, "other")
        guard.metrics.refusals.labels("protocol", kind).inc()
        host = loggable_host(str(address[0]), []) if address else None
        logger.warning("refused %s to %s: the sidecar cannot inspect it", kind, host)
        log_decision(
            {
                "event_kind": "protocol_refused",
                "protocol": kind,
                "host": host,
                "port": int(address[1]) if address else None,
            }
        )
        _replace(nextlayer, RefusedLayer)

    # --- raw TCP to allowed destinations -------------------------------------------------

    def tcp_start(self, flow: tcp.TCPFlow) -> None:
        address = flow.server_conn.address
        self._guard.metrics.raw_tcp_connections.inc()
        log_decision(
            {
                "event_kind": "raw_tcp",
                "host": loggable_host(str(address[0]), []) if address else None,
                "port": int(address[1]) if address else None,
            }
        )

    async def tcp_message(self, flow: tcp.TCPFlow) -> None:
        message = flow.messages[-1]
        del flow.messages[:-1]  # no history: the scan window below is all that is kept
        if not message.from_client or flow.error is not None:
            return
        guard = self._guard
        tail: bytes = flow.metadata.get(TAIL_KEY, b"")
        window = tail + message.content
        flow.metadata[TAIL_KEY] = window[-STREAM_OVERLAP:]
        started = time.monotonic()
        enforcement = await self._judge_stream(flow, window)
        if guard.shadow:
            enforcement = shadowed(enforcement)
        if not enforcement.forward:
            message.content = b""
            flow.kill()
        log_decision(
            {
                "event_kind": "raw_tcp_message",
                "trace_id": enforcement.trace_id,
                "decision": enforcement.decision.value,
                "would": enforcement.would,
                "forwarded": enforcement.forward,
                "reasons": enforcement.reasons,
                "bytes": len(message.content),
                "scan_ms": round((time.monotonic() - started) * 1000, 2),
            }
        )

    async def _judge_stream(self, flow: tcp.TCPFlow, window: bytes) -> Enforcement:
        guard = self._guard
        backend, settings = guard.backend, guard.settings
        assert backend is not None
        assert settings is not None
        text = window.decode("latin-1")
        if guard.known.found_in_request("", "", {}, text, text):
            return local_block(SIDECAR_CREDENTIAL, "stream carries a sidecar credential", 403)
        address = flow.server_conn.address
        assert address is not None
        url = absolute_url("tcp", str(address[0]), int(address[1]), "/")
        try:
            request = guard.scan_request("TCP", url, {}, window[-settings.max_body_bytes :], "")
            return from_verdict(await backend.scan(request))
        except ScanError as e:
            guard.metrics.scan_errors.labels(e.kind).inc()
            return guard.without_verdict(e)


def _speaks_http(data: bytes) -> bool | None:
    """Whether the stream opens with an HTTP/1 request line (a method token, a space),
    or None while too few bytes have arrived to tell."""
    head = data[:64]
    if _HTTP_START.match(head):
        return True
    if len(head) <= MAX_METHOD_LENGTH and _TOKEN_PREFIX.match(head):
        return None
    return False


_REFUSAL_KINDS = {
    "TCPLayer": "raw_tcp",
    "UDPLayer": "udp",
    "DNSLayer": "dns",
    "RawQuicLayer": "quic",
    "ServerQuicLayer": "quic",
    "ClientQuicLayer": "quic",
    "undecided": "undecided",
}


def _replace(nextlayer: layer.NextLayer, make: Callable[[Context], layer.Layer] | None) -> None:
    """Swap mitmproxy's choice for ours (None: decide later). The layers it built leave
    the stack first: each layer adds itself to the context's stack when it is made."""
    stack = nextlayer.context.layers
    chosen = nextlayer.layer
    if chosen is not None and chosen in stack:
        del stack[stack.index(chosen) :]
    nextlayer.layer = None if make is None else make(nextlayer.context)
