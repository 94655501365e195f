"""Streaming a response to the agent while keeping a bounded copy for classification."""

from __future__ import annotations

from sidecar.config.settings import SCAN_API_MAX_BODY_BYTES


class ResponseTap:
    """A mitmproxy stream callable: passes every chunk on unchanged, at once, and keeps
    the first `limit` bytes so the body can still be posted when the stream ends."""

    def __init__(self, limit: int = SCAN_API_MAX_BODY_BYTES) -> None:
        self._limit = limit
        self._captured = bytearray()
        self.total = 0

    def __call__(self, chunk: bytes) -> bytes:
        self.total += len(chunk)
        room = self._limit - len(self._captured)
        if room > 0:
            self._captured += chunk[:room]
        return chunk

    @property
    def captured(self) -> bytes:
        return bytes(self._captured)
