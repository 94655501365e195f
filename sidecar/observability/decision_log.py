"""One JSON line per decision: every fact about it, no secret values, no bodies.

Lines go to the `egress_sidecar.decisions` logger; `egress-sidecar run` sends them to
stdout, under plain mitmdump they appear in mitmproxy's event log.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from typing import Any

logger = logging.getLogger("egress_sidecar.decisions")


# Reasons that mean what the agent wrote may carry the data found: a host is then logged
# as a digest (and its last two labels), a method that is not a standard one likewise.
_DATA_FOUND = frozenset(
    {"DNS_EXFILTRATION", "SIDECAR_CREDENTIAL", "SECRETS", "SECRET_EXFILTRATION", "PII",
     "PII_HIGH_RISK", "READ_THEN_WRITE", "BROKERED_CREDENTIAL_UNBOUND",
     "BROKERED_CREDENTIAL_VALUE"}
)  # fmt: skip
STANDARD_METHODS = frozenset(
    {"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
     "PROPFIND", "PROPPATCH", "MKCOL", "COPY", "MOVE", "LOCK", "UNLOCK", "REPORT",
     "SEARCH", "QUERY", "WEBSOCKET", "TCP"}
)  # fmt: skip


def loggable(text: str, limit: int = 255) -> str:
    """A request-controlled string made safe for a log line: bounded, and anything but
    printable ASCII escaped (no terminal escapes, no line breaks, no bidi tricks)."""
    cut = text[:limit]
    safe = cut.encode("ascii", "backslashreplace").decode("ascii")
    safe = "".join(c if " " <= c <= "~" else f"\\x{ord(c):02x}" for c in safe)
    return safe + ("…" if len(text) > limit else "")


def loggable_host(host: str, reasons: list[str] | tuple[str, ...]) -> str:
    """The host for a log line; a digest (plus its last two labels) when the name itself
    is the data being carried out."""
    if _DATA_FOUND.intersection(reasons):
        tail = ".".join(host.rsplit(".", 2)[-2:]) if "." in host else ""
        return _digest(host) + (f" (*.{loggable(tail, 64)})" if tail else "")
    return loggable(host, 255)


def loggable_method(method: str) -> str:
    """Standard methods as they are; any other (the agent chose it: it may be data) as a
    digest."""
    return method if method in STANDARD_METHODS else f"other:{_digest(method)}"


def _digest(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()[:16]


def log_decision(fields: dict[str, Any]) -> None:
    if not logger.isEnabledFor(logging.INFO):
        return
    kind = fields.pop("event_kind", "decision")
    line = {"ts": round(time.time(), 3), "event": kind, **fields}
    logger.info(json.dumps(line, separators=(",", ":"), default=str))
