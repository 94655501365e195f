"""Shared fixtures: loopback servers (session-wide) and a fresh sidecar per test."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.leaks import CollectingHandler
from tests.support.recorders import H2Recorder, TcpRecorder, WsRecorder
from tests.support.servers import LoopThread, ScanApiDouble, Upstream, rule_by_path
from tests.support.sidecar import Sidecar, start_sidecar


@pytest.fixture(scope="session", autouse=True)
def collect_everything_logged() -> Iterator[None]:
    """Every log line of the suite (INFO and up, all loggers) goes to the leak check."""
    handler = CollectingHandler(level=logging.INFO)
    root = logging.getLogger()
    root.addHandler(handler)
    for name in ("egress_sidecar", "sidecar", "mitmproxy", "addons"):
        logging.getLogger(name).setLevel(logging.INFO)
    yield
    root.removeHandler(handler)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The credential leak check reads what every other test produced: it runs last."""
    last = [i for i in items if i.name == "test_no_credential_leaked_anywhere"]
    items[:] = [i for i in items if i not in last] + last


@pytest.fixture(scope="session")
def server_loop() -> Iterator[LoopThread]:
    loop = LoopThread("test-servers")
    yield loop
    loop.stop()


@pytest.fixture(scope="session")
def upstream(server_loop: LoopThread, tmp_path_factory: pytest.TempPathFactory) -> Upstream:
    return Upstream(server_loop, tmp_path_factory.mktemp("upstream"))


@pytest.fixture
def scan_api(server_loop: LoopThread) -> ScanApiDouble:
    """A fresh scan-API double per test, so recordings never leak between tests."""
    return ScanApiDouble(server_loop)


@pytest.fixture(scope="session")
def confdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("confdir")


@pytest.fixture
def make_sidecar(confdir: Path, scan_api: ScanApiDouble, upstream: Upstream) -> Iterator[object]:
    started: list[Sidecar] = []

    def make(**settings: object) -> Sidecar:
        where = Path(str(settings.pop("confdir", confdir)))
        sidecar = start_sidecar(where, scan_api.url, upstream.ca_file, **settings)
        started.append(sidecar)
        return sidecar

    yield make
    for sidecar in started:
        sidecar.stop()


@pytest.fixture
def sidecar(make_sidecar) -> Sidecar:  # type: ignore[no-untyped-def]
    return make_sidecar()  # type: ignore[no-any-return]


@pytest.fixture
def tcp_recorder(server_loop: LoopThread) -> Iterator[Callable[..., TcpRecorder]]:
    made: list[TcpRecorder] = []

    def make(host: str = "127.0.0.2", reply_to_head: bytes | None = None) -> TcpRecorder:
        recorder = TcpRecorder(server_loop, host, reply_to_head)
        made.append(recorder)
        return recorder

    yield make
    for recorder in made:
        server_loop.loop.call_soon_threadsafe(recorder.stop)


@pytest.fixture
def ws_recorder(server_loop: LoopThread) -> Iterator[WsRecorder]:
    recorder = WsRecorder(server_loop)
    yield recorder
    server_loop.loop.call_soon_threadsafe(recorder.stop)


@pytest.fixture
def h2_recorder(server_loop: LoopThread, upstream: Upstream) -> Iterator[H2Recorder]:
    """An HTTP/2-only upstream, trusted by the sidecar (the upstream's CA)."""
    recorder = H2Recorder(server_loop, upstream.ca)
    yield recorder
    server_loop.loop.call_soon_threadsafe(recorder.stop)


__all__ = ["rule_by_path"]
