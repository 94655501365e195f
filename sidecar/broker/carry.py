"""Putting a real value where its placeholder is carried, and nowhere else.

Pure: the proxy hands in a request's parts (headers, the target path, the decoded
body) and writes back what comes out. A placeholder found in any other position goes
out as it is: it is worthless, and the destination is bound anyway.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import parse_qsl, quote, quote_plus, unquote_plus, urlencode

_BEARER = re.compile(r"^(\s*bearer\s+)(\S+)(\s*)$", re.IGNORECASE)
BASIC = re.compile(r"^(\s*basic\s+)(\S+)(\s*)$", re.IGNORECASE)
BODY_CARRIES = ("form", "json", "anywhere")


@dataclass(frozen=True, slots=True)
class RequestParts:
    headers: tuple[tuple[str, str], ...]
    path: str  # the request target: path and query, as written
    body: bytes | None = None  # decoded (content codings undone); None: not needed
    content_type: str = ""


def substitute(kind: str, arg: str, parts: RequestParts, ph: str, real: str) -> RequestParts:
    """`parts` with the placeholder replaced in the carried position (unchanged if it is
    not there)."""
    if kind == "bearer":
        return _headers(parts, "authorization", lambda v: _bearer(v, ph, real))
    if kind == "basic":
        return _headers(parts, "authorization", lambda v: _basic(v, ph, real))
    if kind == "header":
        return _headers(parts, arg.lower(), lambda v: v.replace(ph, real))
    if kind == "query":
        return replace(parts, path=_query(parts.path, arg, ph, real))
    if kind == "path":
        path, sep, query = parts.path.partition("?")
        return replace(parts, path=path.replace(ph, quote(real, safe="")) + sep + query)
    if kind == "form" and parts.body is not None:
        return replace(parts, body=_form(parts.body, arg, ph, real))
    if kind == "json" and parts.body is not None:
        return replace(parts, body=_json(parts.body, arg, ph, real))
    if kind == "anywhere":
        headers = tuple((n, v.replace(ph, real)) for n, v in parts.headers)
        path, sep, query = parts.path.partition("?")
        path = path.replace(ph, quote(real, safe="")) + sep + query.replace(ph, quote_plus(real))
        body = None
        if parts.body is not None:  # written the way the body writes strings
            media = parts.content_type.split(";")[0].strip().lower()
            if media == "application/json" or media.endswith("+json"):
                written = json.dumps(real)[1:-1]
            elif media == "application/x-www-form-urlencoded":
                written = quote_plus(real)
            else:
                written = real
            body = parts.body.replace(ph.encode(), written.encode())
        return RequestParts(headers, path, body, parts.content_type)
    return parts


def _headers(parts: RequestParts, name: str, change: Callable[[str], str]) -> RequestParts:
    headers = tuple((n, change(v) if n.lower() == name else v) for n, v in parts.headers)
    return replace(parts, headers=headers)


def _bearer(value: str, ph: str, real: str) -> str:
    m = _BEARER.match(value)
    if m is None or m.group(2) != ph:
        return value
    return f"{m.group(1)}{real}{m.group(3)}"


def basic_credentials(value: str) -> str | None:
    """`user:password` of an `Authorization: Basic` value (None: not one)."""
    m = BASIC.match(value)
    if m is None:
        return None
    try:
        return base64.b64decode(m.group(2), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None


def _basic(value: str, ph: str, real: str) -> str:
    m = BASIC.match(value)
    decoded = basic_credentials(value)
    if m is None or decoded is None:
        return value
    user, sep, password = decoded.partition(":")
    if ph not in (user, password) or not sep:
        return value
    user, password = (real if user == ph else user), (real if password == ph else password)
    encoded = base64.b64encode(f"{user}:{password}".encode()).decode()
    return f"{m.group(1)}{encoded}{m.group(3)}"


def _query(target: str, param: str, ph: str, real: str) -> str:
    path, sep, query = target.partition("?")
    if not sep:
        return target
    out = []
    for item in query.split("&"):
        key, eq, value = item.partition("=")
        if eq and unquote_plus(key) == param and unquote_plus(value) == ph:
            item = f"{key}={quote_plus(real)}"
        out.append(item)
    return f"{path}?{'&'.join(out)}"


def _form(body: bytes, field: str, ph: str, real: str) -> bytes:
    try:
        pairs = parse_qsl(body.decode("ascii"), keep_blank_values=True, strict_parsing=True)
    except (UnicodeDecodeError, ValueError):
        return body
    if not any(k == field and v == ph for k, v in pairs):
        return body
    return urlencode([(k, real if k == field and v == ph else v) for k, v in pairs]).encode()


def _json(body: bytes, path: str, ph: str, real: str) -> bytes:
    try:
        doc = json.loads(body)
    except ValueError:
        return body
    keys = path.split(".")
    node: Any = doc
    for key in keys[:-1]:
        node = node.get(key) if isinstance(node, dict) else None
    if not isinstance(node, dict) or node.get(keys[-1]) != ph:
        return body
    node[keys[-1]] = real
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode()
