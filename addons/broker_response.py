"""What comes back from a brokered credential's host: real values taken out before the
agent (or the response post) sees them.

Every header (`Location` included) and the reason phrase now, as they leave when the
hook returns; the body as it streams (an echo split across chunks is still found), its
framing rewritten because the length changes; trailers at the end. A compressed body is
collected within the scan limit and sent back decoded (brokered requests ask for
identity, so this is rare); past that limit the flow is killed rather than let an echo
by. Stream callables never return `b""` mid-stream: mitmproxy frames an empty chunk as
the end of a chunked body.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable

from mitmproxy import exceptions, http

from addons.broker_request import raw
from addons.stream_tap import ResponseTap
from sidecar.broker.scrub import Scrubber, StreamScrubber
from sidecar.judge.bodies import BodyTooLarge, BodyUndecodable, codings, decode_body
from sidecar.observability.metrics import SidecarMetrics

logger = logging.getLogger("egress_sidecar")

Stream = Callable[[bytes], bytes]


def scrubbed_headers(headers: http.Headers, scrubber: Scrubber) -> http.Headers:
    return http.Headers([(raw(n), raw(scrubber.text(v))) for n, v in headers.items(multi=True)])


def scrub_response(flow: http.HTTPFlow, scrubber: Scrubber, limit: int, tap: ResponseTap) -> None:
    """Headers now; the body (if one follows) through the scrubber, then the tap."""
    response = flow.response
    assert response is not None
    response.headers = scrubbed_headers(response.headers, scrubber)
    response.reason = scrubber.text(response.reason)
    if flow.request.method.upper() == "HEAD" or response.status_code in (204, 304):
        return
    if response.status_code < 200:  # a WebSocket switch: messages are scrubbed in layers
        return
    response.headers.pop("content-length", None)
    if flow.request.http_version == "HTTP/1.1":
        response.headers["transfer-encoding"] = "chunked"
        response.http_version = "HTTP/1.1"  # an HTTP/1.0 upstream's answer, re-framed
    elif flow.request.http_version.startswith("HTTP/1"):
        response.headers["connection"] = "close"  # HTTP/1.0: the end is the close
    coding = response.headers.get("content-encoding", "")
    scrub: Stream
    if [c for c in codings(coding) if c != "identity"]:
        response.headers.pop("content-encoding", None)
        scrub = DecodedScrub(scrubber, coding, limit, lambda: _kill(flow))
    else:
        scrub = StreamScrubber(scrubber)
    response.stream = chained(scrub, tap)


def _kill(flow: http.HTTPFlow) -> None:
    with contextlib.suppress(exceptions.ControlException):  # ended: nothing more goes out
        flow.kill()


class DecodedScrub:
    """A compressed body: collected within `limit`, decoded, scrubbed, sent at the end."""

    def __init__(
        self, scrubber: Scrubber, coding: str, limit: int, on_kill: Callable[[], None]
    ) -> None:
        self._s, self._coding, self._limit, self._kill = scrubber, coding, limit, on_kill
        self._held = bytearray()
        self._dead = False

    def __call__(self, chunk: bytes) -> bytes:
        if self._dead:
            return b""
        if chunk:
            self._held += chunk
            if len(self._held) > self._limit:
                self._die("compressed response larger than the scan limit")
            return b""
        try:
            return self._s.scrub(decode_body(bytes(self._held), self._coding, self._limit))
        except (BodyTooLarge, BodyUndecodable) as e:
            self._die(str(e))
            return b""

    def _die(self, why: str) -> None:
        self._dead = True
        self._held = bytearray()
        logger.warning("brokered response cut: %s (an echo could not be ruled out)", why)
        self._kill()


def chained(first: Stream, then: Stream) -> Callable[[bytes], list[bytes]]:
    """`then` sees what `first` let out; the end (`b""`) reaches both. Nothing to send is
    an empty list, never `b""`."""

    def both(chunk: bytes) -> list[bytes]:
        out = first(chunk)
        sent = [then(out)] if out else []
        if not chunk:
            then(b"")
        return sent

    return both


def count_scrubs(metrics: SidecarMetrics, scrubber: Scrubber) -> None:
    for name, n in scrubber.counts.items():
        metrics.broker_scrubs.labels(name).inc(n)
    scrubber.counts.clear()
