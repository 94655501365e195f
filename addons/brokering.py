"""Brokered credentials on the flow: the real value put in after the verdict, and taken
out of whatever comes back.

`substitute` runs only on a request the judge let through with bound placeholders; it
returns the scrubber the response then goes through: every header (`Location`
included), the body as it streams (an echo split across chunks is still found; the
framing is rewritten because the length changes) and trailers. A compressed body is
collected within the scan limit and sent back decoded (the request asked for identity
first, so this is rare); past that limit the flow is killed rather than let an echo by.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from mitmproxy import http

from sidecar.broker.carry import BODY_CARRIES, RequestParts, substitute
from sidecar.broker.scrub import Scrubber, StreamScrubber
from sidecar.judge.bodies import BodyTooLarge, BodyUndecodable, codings, decode_body, encode_body
from sidecar.judge.judge import Judgement
from sidecar.observability.metrics import SidecarMetrics

logger = logging.getLogger("egress_sidecar")


def substitute_request(
    request: http.Request, judgement: Judgement, limit: int
) -> tuple[list[str], Scrubber | None]:
    """Put the real values of the bound credentials in their carried positions; returns
    the names substituted and the scrubber for the response (None: nothing was)."""
    state = judgement.broker
    if state is None or not judgement.brokered:
        return [], None
    names = sorted(judgement.brokered)
    needs_body = any(state.credentials[n].carry_kind in BODY_CARRIES for n in names)
    body: bytes | None = None
    if needs_body and request.raw_content:
        body = decode_body(
            request.raw_content,
            request.headers.get("content-encoding", ""),
            limit,
            transfer_encoding=request.headers.get("transfer-encoding", ""),
        )
    before = RequestParts(tuple(request.headers.items(multi=True)), request.path, body)
    parts = before
    done = []
    for name in names:
        credential = state.credentials[name]
        after = substitute(
            credential.carry_kind,
            credential.carry_arg,
            parts,
            state.placeholders[name],
            state.values[name],
        )
        if after != parts:
            done.append(name)
        parts = after
    if not done:
        return [], None
    if parts.headers != before.headers:
        request.headers = http.Headers([(_raw(n), _raw(v)) for n, v in parts.headers])
    if parts.path != before.path:
        request.path = parts.path
    if parts.body is not None and parts.body != before.body:
        request.headers.pop("transfer-encoding", None)
        request.raw_content = encode_body(parts.body, request.headers.get("content-encoding", ""))
        request.headers["content-length"] = str(len(request.raw_content))
    # An echo is found in what is readable: ask for an uncompressed answer.
    request.headers["accept-encoding"] = "identity"
    return done, state.scrubber(frozenset(done))


def scrub_response_head(
    flow: http.HTTPFlow, scrubber: Scrubber, limit: int, on_kill: Callable[[], None]
) -> None:
    """Headers now (they leave when this hook returns); the body as it streams."""
    response = flow.response
    assert response is not None
    response.headers = scrubbed_headers(response.headers, scrubber)
    no_body = (
        flow.request.method.upper() == "HEAD"
        or response.status_code in (204, 304)
        or response.status_code < 200  # a WebSocket switch: its messages are scrubbed one by one
    )
    if no_body:
        return
    response.headers.pop("content-length", None)
    if flow.request.http_version == "HTTP/1.1":
        response.headers["transfer-encoding"] = "chunked"
    elif flow.request.http_version.startswith("HTTP/1"):
        response.headers["connection"] = "close"  # HTTP/1.0: the end is the close
    coding = response.headers.get("content-encoding", "")
    if [c for c in codings(coding) if c != "identity"]:
        response.headers.pop("content-encoding", None)
        response.stream = DecodedScrub(scrubber, coding, limit, on_kill)
    else:
        response.stream = StreamScrubber(scrubber)


def _raw(text: str) -> bytes:
    """A header name or value back to bytes, the way mitmproxy made it text."""
    return text.encode("utf-8", "surrogateescape")


def scrubbed_headers(headers: http.Headers, scrubber: Scrubber) -> http.Headers:
    return http.Headers([(_raw(n), _raw(scrubber.text(v))) for n, v in headers.items(multi=True)])


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


def chained(
    first: Callable[[bytes], bytes], then: Callable[[bytes], bytes]
) -> Callable[[bytes], list[bytes]]:
    """`then` sees what `first` let out; the end (`b""`) reaches both. Nothing to send
    is an empty list: an empty chunk would end a chunked body early (mitmproxy frames
    `b""` as the last chunk)."""

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
