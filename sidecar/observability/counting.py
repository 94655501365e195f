"""Metrics from a `Judgement`: every path (HTTP, WebSocket, raw TCP) counts the same facts
the same way, because they all count through here."""

from __future__ import annotations

from sidecar.judge.judge import REFUSED_VALUE, Judgement
from sidecar.observability.metrics import SidecarMetrics


def count_judgement(metrics: SidecarMetrics, judgement: Judgement, scope: str) -> None:
    """The facts behind a judgement: scan time, scan errors and what the fail mode made
    of them, local refusals (labelled with `scope`), and shadow mode's would-be decision."""
    e = judgement.enforcement
    if judgement.backend is not None and judgement.scan_seconds is not None:
        metrics.scan_duration.labels(judgement.backend).observe(judgement.scan_seconds)
    if judgement.error is not None:
        metrics.scan_errors.labels(judgement.error).inc()
        if judgement.fail == "open":
            metrics.fail_open_forwards.labels(judgement.error).inc()
        elif judgement.fail == "closed" and e.would is None:  # shadow: a would-deny instead
            metrics.fail_closed_blocks.labels(judgement.error).inc()
    if judgement.refusal is not None:
        metrics.refusals.labels(scope, judgement.refusal).inc()
    reason = "value" if judgement.refusal == REFUSED_VALUE else "unbound"
    for name in judgement.broker_refused:
        metrics.broker_refusals.labels(name, reason).inc()
    if e.would is not None:
        metrics.shadow_decisions.labels(e.would.value, metrics.tool_label(e.tool)).inc()
