"""Posting upstream response bodies for classification, off the agent's path.

The agent's response is never delayed: jobs go into a bounded queue and a few workers
post them (`scan_response`, with the backend's retry policy). A full queue or a failed
post drops the job and counts it; nothing else is lost silently.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass

from sidecar.backends.base import ObservedResponse, ScanBackend
from sidecar.backends.errors import INTERNAL_ERROR_KIND, ScanError
from sidecar.config.settings import SCAN_API_MAX_BODY_BYTES
from sidecar.judge.bodies import (
    BodyUndecodable,
    body_for_scan,
    decode_body,
    decoder_thread,
    media_type,
)
from sidecar.llm import LlmReply, read_reply
from sidecar.observability.metrics import SidecarMetrics

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ResponseScanJob:
    trace_id: str
    raw_body: bytes
    content_encoding: str
    content_type: str
    status: int
    latency_ms: int | None = None
    llm_provider: str | None = None  # the request was an LLM call to this provider


class ResponseScanQueue:
    """A bounded queue of response bodies and the workers that post them."""

    def __init__(
        self,
        backend: ScanBackend,
        metrics: SidecarMetrics,
        maxsize: int,
        workers: int,
        max_body_bytes: int = SCAN_API_MAX_BODY_BYTES,
        withheld: list[bytes] | None = None,
    ) -> None:
        """`withheld`: the sidecar's own API keys; a response echoing one is not posted."""
        self._backend = backend
        self._withheld = withheld or []
        self._metrics = metrics
        self._queue: asyncio.Queue[ResponseScanJob] = asyncio.Queue(maxsize)
        self._worker_count = workers
        self._max_body_bytes = max_body_bytes
        self._workers: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._workers = [
            asyncio.create_task(self._work(), name=f"response-scan-{i}")
            for i in range(self._worker_count)
        ]

    def submit(self, job: ResponseScanJob) -> bool:
        """Queue a job without waiting; a full queue drops it (counted)."""
        try:
            self._queue.put_nowait(job)
        except asyncio.QueueFull:
            self._metrics.response_dropped.labels("queue_full").inc()
            return False
        self._metrics.response_queue_depth.set(self._queue.qsize())
        return True

    async def close(self, grace: float) -> None:
        """Post what is queued within `grace` seconds, then stop; leftovers are counted."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(grace):
                await self._queue.join()
        for task in self._workers:
            task.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        left = self._queue.qsize()
        if left:
            self._metrics.response_dropped.labels("shutdown").inc(left)
        self._metrics.response_queue_depth.set(0)

    def _prepare(self, job: ResponseScanJob) -> tuple[bytes, object, LlmReply | None] | None:
        try:
            content = decode_body(
                job.raw_body, job.content_encoding, self._max_body_bytes, truncate=True
            )
        except BodyUndecodable:
            self._metrics.response_dropped.labels("undecodable").inc()
            return None
        if any(secret in content for secret in self._withheld):
            # One backend's key must not reach another API (or this one) in a body.
            self._metrics.response_dropped.labels("sidecar_credential").inc()
            return None
        reply = None
        if job.llm_provider is not None:
            reply = read_reply(job.llm_provider, content, job.content_type)
        streamed = media_type(job.content_type) == "text/event-stream"
        if reply is not None and streamed:
            # The assembled answer, not the raw events: a secret split across deltas is
            # whole only here.
            body: object = reply.text
        else:
            body = body_for_scan(content, job.content_type, archives=False)
        return content, body, reply

    async def _work(self) -> None:
        while True:
            job = await self._queue.get()
            try:
                await self._post(job)
            except Exception as e:  # a bug must not stop the worker: count it and go on
                self._metrics.response_dropped.labels(INTERNAL_ERROR_KIND).inc()
                logger.error("response scan for %s failed (%s)", job.trace_id, type(e).__name__)
            finally:
                self._queue.task_done()
                self._metrics.response_queue_depth.set(self._queue.qsize())

    async def _post(self, job: ResponseScanJob) -> None:
        # Decoding and parsing run off the event loop: the body is the upstream's choice.
        prepared = await asyncio.get_running_loop().run_in_executor(
            decoder_thread(), self._prepare, job
        )
        if prepared is None:
            return
        content, body, reply = prepared
        observed = ObservedResponse(
            trace_id=job.trace_id,
            body=body,
            status=job.status,
            body_bytes=len(content),
            latency_ms=job.latency_ms,
            text=reply.text if reply is not None else None,
            finish_reason=reply.finish_reason if reply is not None else None,
        )
        try:
            await self._backend.scan_response(observed)
        except ScanError as e:
            self._metrics.response_dropped.labels(e.kind).inc()
            logger.warning("response scan for %s not posted (%s)", job.trace_id, e.kind)
            return
        self._metrics.response_posted.inc()
