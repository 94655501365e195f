"""Request corpora run end to end through the proxy (`python -m bench.detection_corpus`).

`attacks` holds exfiltration attempts by family; `benign` realistic agent traffic. Each
case is one request as an agent would send it to a real destination (the harness routes
every name to a local recording server), or, for WebSocket cases, the messages sent on
one connection. Nothing here is generated from the engine's rules.

`generated` is of another kind: labelled values for the detectors alone (no requests),
generated to valid formats from a seed (`python -m bench.detection_report`).
"""

from __future__ import annotations

from dataclasses import dataclass

B62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def base62(n: int, width: int) -> str:
    """`n` in base 62, zero-padded to `width` (GitHub and npm tokens end in their CRC32 so)."""
    out = ""
    while n:
        n, r = divmod(n, 62)
        out = B62[r] + out
    return out.rjust(width, "0")


@dataclass(frozen=True)
class Case:
    family: str  # attacks: url, headers, body, encodings, hostnames, ssrf, financial, websocket
    name: str  # unique within the corpus, short, kebab-case
    method: str
    url: str  # absolute URL with the real destination (http:// or https://; ws:// for WebSocket)
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""
    messages: tuple[str | bytes, ...] = ()  # WebSocket messages after the upgrade
    note: str = ""  # what the case carries and why it matters
