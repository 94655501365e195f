"""A brokered credential's real value put into a request, after the verdict.

Runs only on a request the judge let through with bound placeholders, and only in the
positions their `carry` names. The request then asks for an answer the scrubber can
read whole: uncompressed, not a byte range (pieces of an echo shorter than what is
recognised could be collected one range at a time), no transfer coding.
"""

from __future__ import annotations

from mitmproxy import http

from sidecar.broker.carry import BODY_CARRIES, RequestParts, substitute
from sidecar.judge.bodies import decode_body, encode_body
from sidecar.judge.judge import Judgement

UNREADABLE_ANSWERS = ("range", "request-range", "if-range", "te")  # dropped from a brokered request


def substitute_request(request: http.Request, judgement: Judgement, limit: int) -> list[str]:
    """Put the real values of the bound credentials in their carried positions; returns
    the names substituted (none: the request is unchanged)."""
    state = judgement.broker
    if state is None or not judgement.bound:
        return []
    names = sorted(judgement.bound)
    needs_body = any(state.credentials[n].carry_kind in BODY_CARRIES for n in names)
    body: bytes | None = None
    if needs_body and request.raw_content:
        body = decode_body(
            request.raw_content,
            request.headers.get("content-encoding", ""),
            limit,
            transfer_encoding=request.headers.get("transfer-encoding", ""),
        )
    content_type = request.headers.get("content-type", "")
    before = RequestParts(
        tuple(request.headers.items(multi=True)), request.path, body, content_type
    )
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
        return []
    if parts.headers != before.headers:
        request.headers = http.Headers([(raw(n), raw(v)) for n, v in parts.headers])
    if parts.path != before.path:
        request.path = parts.path
    if parts.body is not None and parts.body != before.body:
        request.headers.pop("transfer-encoding", None)
        request.raw_content = encode_body(parts.body, request.headers.get("content-encoding", ""))
        request.headers["content-length"] = str(len(request.raw_content))
    for name in UNREADABLE_ANSWERS:
        request.headers.pop(name, None)
    request.headers["accept-encoding"] = "identity"
    return done


def raw(text: str) -> bytes:
    """A header name or value back to bytes, the way mitmproxy made it text."""
    return text.encode("utf-8", "surrogateescape")
