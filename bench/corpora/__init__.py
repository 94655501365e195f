"""Request corpora run end to end through the proxy (`python -m bench.detection_corpus`).

`attacks` holds exfiltration attempts by family; `benign` realistic agent traffic. Each
case is one request as an agent would send it to a real destination (the harness routes
every name to a local recording server), or, for WebSocket cases, the messages sent on
one connection. Nothing here is generated from the engine's rules.
"""

from __future__ import annotations

from dataclasses import dataclass


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
