"""Only protocols the sidecar can read are relayed.

mitmproxy picks the layer that handles a connection's next bytes (`next_layer`): TLS to
intercept, HTTP to parse — or a raw TCP, UDP, DNS or QUIC relay, which would carry bytes
out unjudged. This addon lets HTTP and TLS through, refuses every other relay, and allows
raw TCP only to destinations named in `raw_tcp_hosts`: those streams are logged, counted
and scanned as they flow, each message with the tail of the one before (so a secret
split across two messages is whole in one scan), in slices no larger than the scan
limit; a message judged anything but ALLOW ends the stream.
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
from mitmproxy.proxy.layers import (
    ClientTLSLayer,
    DNSLayer,
    HttpLayer,
    ServerTLSLayer,
    TCPLayer,
    UDPLayer,
)
from mitmproxy.proxy.mode_specs import TransparentMode

from addons.layers import RefusedLayer, ScannedTcpLayer
from sidecar.engine.decisions import Decision
from sidecar.judge.authority import AuthorityError, absolute_url, normalise_host
from sidecar.judge.enforce import Enforcement, internal_error
from sidecar.judge.judge import Outbound
from sidecar.observability.counting import count_judgement
from sidecar.observability.decision_log import log_decision, loggable_host

if TYPE_CHECKING:
    from addons.lifecycle import Lifecycle

logger = logging.getLogger("egress_sidecar")

STREAM_OVERLAP = 4096  # bytes of the previous message scanned again with the next
UNDECIDED_LIMIT = 64 * 1024  # bytes buffered while waiting to know the protocol
MAX_LINE = 8 * 1024  # an HTTP/1 request line longer than this is not waited for
# An HTTP/1 request line: method token, request target, version.
_REQUEST_LINE = re.compile(rb"^[A-Za-z][!#$%&'*+\-.^_`|~0-9A-Za-z]* [^ \r\n]+ HTTP/\d\.\d\r?$")
_LINE_START = re.compile(rb"^[A-Za-z][!#$%&'*+\-.^_`|~0-9A-Za-z]{0,31}(?: [^ \r\n]*)?$")
TAIL_KEY = "egress_sidecar_tcp_tail"
_INSPECTABLE = (HttpLayer, ServerTLSLayer, ClientTLSLayer)
_REFUSAL_KINDS: dict[type, str] = {TCPLayer: "raw_tcp", UDPLayer: "udp", DNSLayer: "dns"}


class ProtocolGuard:
    """Refuses raw relays; scans raw TCP to the destinations allowed to carry it."""

    def __init__(self, lifecycle: Lifecycle) -> None:
        self._life = lifecycle

    def next_layer(self, nextlayer: layer.NextLayer) -> None:
        try:
            self._decide(nextlayer)
        except Exception:  # what mitmproxy chose would stand: refuse instead
            logger.exception("egress-sidecar: internal error while choosing a protocol")
            _replace(nextlayer, RefusedLayer)

    def _decide(self, nextlayer: layer.NextLayer) -> None:
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
        if isinstance(chosen, HttpLayer):
            # mitmproxy parses whatever is not TLS as HTTP (raw TCP relaying is off); the
            # sidecar decides first whether it is HTTP at all.
            speaks_http = _speaks_http(nextlayer.data_client())
            if speaks_http:
                return
            if speaks_http is None:  # too little to tell: ask again with more data
                _replace(nextlayer, None)
                return
            if self._raw_tcp_allowed(context):
                _replace(nextlayer, ScannedTcpLayer)
                return
            self._refuse(nextlayer, "raw_tcp")
            return
        if isinstance(chosen, _INSPECTABLE):
            return
        if isinstance(chosen, TCPLayer) and self._raw_tcp_allowed(context):
            _replace(nextlayer, ScannedTcpLayer)
            return
        self._refuse(nextlayer, _REFUSAL_KINDS.get(type(chosen), "other"))

    def _raw_tcp_allowed(self, context: Context) -> bool:
        """The destination is named in raw_tcp_hosts (a redirected connection's TLS SNI
        names it; otherwise the SNI, if any, must name the destination judged)."""
        address = context.server.address
        runtime = self._life.runtime
        if runtime is None or address is None or not runtime.settings.raw_tcp_hosts:
            return False
        host, port = str(address[0]), int(address[1])
        sni = context.client.sni
        try:
            if sni and isinstance(context.client.proxy_mode, TransparentMode):
                host = normalise_host(sni)  # the name asked for, as for HTTP
            elif sni and normalise_host(sni) != normalise_host(host):
                return False
        except AuthorityError:
            return False
        if not runtime.destinations.carries_raw_tcp(host, port):
            return False
        if host != address[0]:
            context.server.address = (host, port)  # resolved and judged at connect
        return True

    def _refuse(self, nextlayer: layer.NextLayer, kind: str) -> None:
        address = nextlayer.context.server.address
        self._life.metrics.refusals.labels("protocol", kind).inc()
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
        self._life.metrics.raw_tcp_connections.inc()
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
        started = time.monotonic()
        try:
            enforcement = await self._judge_stream(flow, message.content)
        except Exception:  # a hook that raises lets mitmproxy send the message
            logger.exception("egress-sidecar: internal error while judging a TCP stream")
            enforcement = internal_error()
        if not enforcement.forward or enforcement.replacement_body is not None:
            message.content = b""  # a stream cannot be rewritten: it ends here
            flow.kill()
        address = flow.server_conn.address
        log_decision(
            {
                "event_kind": "raw_tcp_message",
                "trace_id": enforcement.trace_id,
                "decision": enforcement.decision.value,
                "would": enforcement.would,
                "forwarded": enforcement.forward,
                "reasons": enforcement.reasons,
                "host": loggable_host(str(address[0]), enforcement.reasons) if address else None,
                "port": int(address[1]) if address else None,
                "bytes": len(message.content),
                "scan_ms": round((time.monotonic() - started) * 1000, 2),
            }
        )

    async def _judge_stream(self, flow: tcp.TCPFlow, content: bytes) -> Enforcement:
        """The new bytes with the tail of the stream before them, in slices that fit the
        scan limit (each overlapping the last); the first that is not ALLOW decides."""
        runtime = self._life.runtime
        if runtime is None:
            return internal_error()
        tail: bytes = flow.metadata.get(TAIL_KEY, b"")
        window = tail + content
        flow.metadata[TAIL_KEY] = window[-STREAM_OVERLAP:]
        address = flow.server_conn.address
        assert address is not None
        url = absolute_url("tcp", str(address[0]), int(address[1]), "/")
        size = max(runtime.settings.max_body_bytes, 2 * STREAM_OVERLAP)
        step = size - STREAM_OVERLAP
        enforcement: Enforcement | None = None
        for start in range(0, max(len(window) - STREAM_OVERLAP, 1), step):
            part = window[start : start + size]
            judgement = await runtime.judge.judge(Outbound("TCP", url, body=part, message=True))
            count_judgement(self._life.metrics, judgement, "tcp")
            enforcement = judgement.enforcement
            if enforcement.decision is not Decision.ALLOW:
                return enforcement
        assert enforcement is not None
        return enforcement


def _speaks_http(data: bytes) -> bool | None:
    """Whether the stream opens with an HTTP/1 request line, or None while too little
    has arrived to tell (part of a line that could still become one)."""
    line, newline, _ = data.partition(b"\n")
    if newline:
        return bool(_REQUEST_LINE.match(line))
    if len(line) <= MAX_LINE and _LINE_START.match(line):
        return None
    return False


def _replace(nextlayer: layer.NextLayer, make: Callable[[Context], layer.Layer] | None) -> None:
    """Swap mitmproxy's choice for ours (None: decide later). The layers it built leave
    the stack first: each layer adds itself to the context's stack when it is made."""
    stack = nextlayer.context.layers
    chosen = nextlayer.layer
    if chosen is not None and chosen in stack:
        del stack[stack.index(chosen) :]
    nextlayer.layer = None if make is None else make(nextlayer.context)
