"""Holding a request until a human decides (REQUIRE_APPROVAL).

Each hold is one coroutine awaiting the backend's approval status, so a held request
never stalls other flows. The hold ends on a decision, on the approval timeout, or as
soon as the agent hangs up. The number of concurrent holds is bounded.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from enum import StrEnum

from sidecar.backends.base import ScanBackend
from sidecar.backends.errors import ScanError
from sidecar.engine.decisions import ApprovalStatus
from sidecar.observability.metrics import SidecarMetrics

logger = logging.getLogger(__name__)

# How often a hold checks that the agent is still there between status polls.
_DISCONNECT_CHECK = 0.2


class ApprovalOutcome(StrEnum):
    APPROVED = "approved"
    DENIED = "denied"
    EXPIRED = "expired"
    TIMED_OUT = "timed_out"
    ABANDONED = "abandoned"


_FINAL = {
    ApprovalStatus.APPROVED: ApprovalOutcome.APPROVED,
    ApprovalStatus.DENIED: ApprovalOutcome.DENIED,
    ApprovalStatus.EXPIRED: ApprovalOutcome.EXPIRED,
}


class ApprovalCapacityExceeded(Exception):
    """Too many requests are already held."""


class ApprovalWaiter:
    """Polls the backend for an approval's status until it is final."""

    def __init__(
        self,
        backend: ScanBackend,
        metrics: SidecarMetrics,
        timeout: float,
        poll_interval: float,
        max_pending: int,
    ) -> None:
        self._backend = backend
        self._metrics = metrics
        self._timeout = timeout
        self._poll_interval = poll_interval
        self._max_pending = max_pending
        self.pending = 0

    async def wait(self, approval_id: str, still_wanted: Callable[[], bool]) -> ApprovalOutcome:
        """Hold until final; raise ApprovalCapacityExceeded when full."""
        if self.pending >= self._max_pending:
            raise ApprovalCapacityExceeded(f"{self.pending} requests already held")
        self.pending += 1
        self._metrics.approvals_pending.inc()
        started = time.monotonic()
        outcome = ApprovalOutcome.ABANDONED  # if cancelled: the flow or the proxy went away
        try:
            outcome = await self._poll(approval_id, still_wanted, started + self._timeout)
            return outcome
        finally:
            self.pending -= 1
            self._metrics.approvals_pending.dec()
            self._metrics.approval_wait.labels(outcome.value).observe(time.monotonic() - started)

    async def _poll(
        self, approval_id: str, still_wanted: Callable[[], bool], deadline: float
    ) -> ApprovalOutcome:
        while True:
            if not still_wanted():
                return ApprovalOutcome.ABANDONED
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return ApprovalOutcome.TIMED_OUT
            try:
                async with asyncio.timeout(remaining):
                    state = await self._backend.approval_status(approval_id)
            except TimeoutError:
                return ApprovalOutcome.TIMED_OUT
            except ScanError as e:
                # A failed poll is not a decision: keep holding until the deadline.
                logger.warning("approval status check failed (%s): %s", e.kind, e)
            else:
                if state.status in _FINAL:
                    return _FINAL[state.status]
            next_poll = min(time.monotonic() + self._poll_interval, deadline)
            while (left := next_poll - time.monotonic()) > 0:
                if not still_wanted():
                    return ApprovalOutcome.ABANDONED
                await asyncio.sleep(min(left, _DISCONNECT_CHECK))
