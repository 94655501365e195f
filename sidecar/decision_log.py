"""One JSON line per decision: every fact about it, no secret values, no bodies.

Lines go to the `egress_sidecar.decisions` logger; `egress-sidecar run` sends them to
stdout, under plain mitmdump they appear in mitmproxy's event log.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

logger = logging.getLogger("egress_sidecar.decisions")


def log_decision(fields: dict[str, Any]) -> None:
    if not logger.isEnabledFor(logging.INFO):
        return
    kind = fields.pop("event_kind", "decision")
    line = {"ts": round(time.time(), 3), "event": kind, **fields}
    logger.info(json.dumps(line, separators=(",", ":"), default=str))
