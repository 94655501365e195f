"""The running sidecar makes TLS connections (agent side and upstream side) whose idle
buffers are released: the mode is on the context each connection is built from."""

from __future__ import annotations

import asyncio

from mitmproxy import tls
from OpenSSL import SSL

from tests.support.sidecar import WAIT, run_client

JSON = {"Content-Type": "application/json"}


class _ContextProbe:
    """Loaded last: sees each connection as the earlier addons left it."""

    def __init__(self) -> None:
        self.modes: list[tuple[str, int]] = []

    def tls_start_client(self, data: tls.TlsData) -> None:
        self._record("agent side", data)

    def tls_start_server(self, data: tls.TlsData) -> None:
        self._record("upstream side", data)

    def _record(self, side: str, data: tls.TlsData) -> None:
        assert data.ssl_conn is not None
        self.modes.append((side, data.ssl_conn.get_context().set_mode(0)))  # reads the mode


def _on_loop(sidecar, action) -> None:  # type: ignore[no-untyped-def]
    async def run() -> None:
        action()

    asyncio.run_coroutine_threadsafe(run(), sidecar.master.event_loop).result(WAIT)


def test_tls_connections_release_their_buffers_when_idle(sidecar, upstream):
    probe = _ContextProbe()
    _on_loop(sidecar, lambda: sidecar.master.addons.add(probe))
    try:
        result = run_client(sidecar, "httpx", "POST", upstream.https + "/allow/tls", b"{}", JSON)
    finally:
        _on_loop(sidecar, lambda: sidecar.master.addons.remove(probe))
    assert result.status == 200
    assert {side for side, _ in probe.modes} == {"agent side", "upstream side"}
    assert all(mode & SSL.MODE_RELEASE_BUFFERS for _, mode in probe.modes), probe.modes
