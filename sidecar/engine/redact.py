"""SANITIZE: remove what was found and keep the document's shape.

JSON stays valid JSON of the same structure: only the offending substrings of string
values change, each replaced by `[REDACTED:<KIND>]`. A value whose secret sat inside an
encoding (base64, hex, ...) is replaced whole, since the encoded form cannot be cut.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode

from sidecar.engine.fields import json_location


@dataclass(frozen=True, slots=True)
class Redaction:
    location: str
    start: int
    end: int
    kind: str
    whole_value: bool  # the hit was inside an encoded form of the value


def marker(kind: str) -> str:
    return f"[REDACTED:{kind.upper()}]"


def redact_text(text: str, redactions: Iterable[Redaction]) -> str:
    items = list(redactions)
    whole = next((r for r in items if r.whole_value), None)
    if whole is not None:
        return marker(whole.kind)
    out, last = [], 0
    for r in sorted(items, key=lambda r: r.start):
        if r.start < last:  # overlapping hits: the earlier marker covers them, to the end
            last = max(last, r.end)
            continue
        out.append(text[last : r.start])
        out.append(marker(r.kind))
        last = r.end
    out.append(text[last:])
    return "".join(out)


def redact_body(body: Any, redactions: Iterable[Redaction]) -> Any:
    """The body with every redaction applied: JSON stays JSON, text stays text.

    None when the body cannot be redacted safely.
    """
    by_location: dict[str, list[Redaction]] = defaultdict(list)
    for r in redactions:
        by_location[r.location].append(r)
    if isinstance(body, (dict, list)):
        return _redact_json(body, "body.$", by_location)
    if isinstance(body, str):
        return _redact_flat(body, by_location)
    return body


def _redact_json(value: Any, path: str, by_location: dict[str, list[Redaction]]) -> Any:
    if isinstance(value, dict):
        return {
            k: _redact_json(v, json_location(path, f".{k}"), by_location) for k, v in value.items()
        }
    if isinstance(value, list):
        return [
            _redact_json(v, json_location(path, f"[{i}]"), by_location) for i, v in enumerate(value)
        ]
    hits = by_location.get(path)
    if not hits:
        return value
    if isinstance(value, str):
        return redact_text(value, hits)
    return marker(hits[0].kind)  # a number (a card number sent as an integer)


def _redact_flat(text: str, by_location: dict[str, list[Redaction]]) -> str | None:
    """Plain text (spans cut out) or a form (offending values replaced whole).

    None when the findings sit where they cannot be cut out safely (multipart parts):
    the caller must then refuse rather than forward.
    """
    if set(by_location) <= {"body"}:
        return redact_text(text, by_location.get("body", []))
    if not all(loc.startswith("form:") for loc in by_location):
        return None
    pairs = parse_qsl(text, keep_blank_values=True)
    out = [
        (name, marker(by_location[f"form:{name}"][0].kind) if f"form:{name}" in by_location else v)
        for name, v in pairs
    ]
    return urlencode(out)
