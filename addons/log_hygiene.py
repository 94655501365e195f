"""mitmproxy's (and tornado's) log lines carry what clients send: bound and clean them.

mitmproxy logs request-controlled text as it is: a malformed TLS ClientHello as a hex
dump of everything the client sent ("Cannot parse ClientHello: 16030100..."), SNI names,
hosts, WebSocket ping payloads. An agent could write anything there — including a
secret, encoded. Every mitmproxy record is rewritten before any handler formats it:
long hex runs are withheld, control characters escaped, lines bounded, and a line that
carries one of the sidecar's own keys, or a brokered credential's real value, is
withheld whole.
"""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING

from sidecar.broker.state import VALUE
from sidecar.judge.request_surface import scannable
from sidecar.observability.decision_log import loggable

if TYPE_CHECKING:
    from addons.lifecycle import Lifecycle

MAX_LINE = 1000
_HEX_RUN = re.compile(r"(?:[0-9a-fA-F]{2}){16,}")
# Where mitmproxy logs connection and protocol events (layers log through the server), and
# where tornado logs what reached the admin server (its access log has the request line).
MITMPROXY_LOGGERS = (
    "mitmproxy.proxy.server",
    "mitmproxy.proxy.layers",
    "mitmproxy.addons",
    "tornado.access",
    "tornado.general",
    "tornado.application",
)
CLEANED_LOGGERS = ("mitmproxy", "tornado")


class _Hygiene(logging.Filter):
    def __init__(self, lifecycle: Lifecycle) -> None:
        super().__init__()
        self._life = lifecycle

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith(CLEANED_LOGGERS):
            return True
        try:
            record.msg = self._clean(record.getMessage())
        except Exception:  # a filter must never raise into the code that logs
            record.msg = f"[{record.name}: log line withheld]"
        record.args = None
        return True

    def _clean(self, text: str) -> str:
        text = scannable(text)
        text = _HEX_RUN.sub(lambda m: f"<{len(m.group()) // 2} bytes withheld>", text)
        runtime = self._life.runtime
        if runtime is not None:
            text = runtime.judge.known.withhold(text)
            broker = runtime.judge.broker
            if broker is not None and any(
                label.startswith(VALUE) for label in broker.current.secrets.labels_in((text,))
            ):  # a URL or header mitmproxy logs after a real value was put in
                return "[withheld: brokered credential]"
        return loggable(text, MAX_LINE)


class LogHygiene:
    """Installs the filter while the proxy runs (on mitmproxy's loggers and on every
    handler of the root logger, so whichever way a line goes, it is cleaned)."""

    def __init__(self, lifecycle: Lifecycle) -> None:
        self._filter = _Hygiene(lifecycle)
        self._where: list[logging.Filterer] = []

    def running(self) -> None:
        targets: list[logging.Filterer] = [logging.getLogger(n) for n in MITMPROXY_LOGGERS]
        targets += logging.getLogger().handlers
        for target in targets:
            target.addFilter(self._filter)
        self._where = targets

    def done(self) -> None:
        for target in self._where:
            target.removeFilter(self._filter)
        self._where = []
