"""Pieces of the resource bounds that need no proxy: rate-limited log lines, the
connection budget, and the decoders' output budgets."""

from __future__ import annotations

import logging

import brotli
import pytest
import zstandard

from addons.connection_guard import FD_RESERVE, connection_budget
from addons.tuning import MemoryKeeper, resident_bytes
from sidecar.backends.contract import ScanRequest
from sidecar.backends.local import INLINE_LIMIT, _size
from sidecar.judge.bodies import BodyTooLarge, BodyUndecodable, decode_body, encode_body
from sidecar.observability.log_limit import RateLimitedLog
from tests.support.clock import Clock


def test_repeated_failures_are_folded_into_one_line_per_interval(caplog):
    clock = Clock()
    log = RateLimitedLog(logging.getLogger("test.limit"), interval=10, clock=clock)
    with caplog.at_level(logging.INFO, logger="test.limit"):
        assert log.log("idle", "closed")
        assert not any(log.log("idle", "closed") for _ in range(999))
        assert log.log("other", "refused")  # each kind has its own budget
        clock.now += 10.0
        assert log.log("idle", "closed")
    lines = [r.getMessage() for r in caplog.records]
    assert lines == ["closed", "refused", "closed (999 more like this since the last line)"]


def test_the_connection_budget_leaves_file_descriptors_for_upstreams():
    assert connection_budget(1024, 1 << 20) == 1024
    assert connection_budget(1024, 1024) == (1024 - FD_RESERVE) // 2
    assert connection_budget(1024, 10) == 1


def test_a_brotli_bomb_decodes_no_further_than_the_limit():
    bomb = brotli.compress(b"\0" * (64 << 20), quality=4)
    with pytest.raises(BodyTooLarge):
        decode_body(bomb, "br", 256 * 1024)
    assert len(decode_body(bomb, "br", 256 * 1024, truncate=True)) == 256 * 1024


def test_brotli_bytes_after_the_stream_are_refused():
    encoded = brotli.compress(b"hello " * 100)
    assert decode_body(encoded, "br", 1 << 20) == b"hello " * 100
    with pytest.raises(BodyUndecodable):
        decode_body(encoded + b"tail", "br", 1 << 20)


def _zstd_frame(window_log: int) -> bytes:
    """A frame with no content size, the given window, and one raw block `abc`."""
    header = bytes([0x00, (window_log - 10) << 3])  # descriptor, window descriptor
    block = ((3 << 3) | 1).to_bytes(3, "little") + b"abc"  # last, raw, 3 bytes
    return (0xFD2FB528).to_bytes(4, "little") + header + block


def test_a_zstd_frame_asking_for_more_than_an_8_mib_window_is_refused():
    assert zstandard.get_frame_parameters(_zstd_frame(27)).window_size == 128 << 20
    assert decode_body(_zstd_frame(23), "zstd", 1 << 20) == b"abc"
    with pytest.raises(BodyUndecodable):
        decode_body(_zstd_frame(24), "zstd", 1 << 20)
    with pytest.raises(BodyUndecodable):
        decode_body(_zstd_frame(27), "zstd", 1 << 20)


@pytest.mark.parametrize("coding", ["gzip", "deflate", "br", "zstd", "gzip, br"])
def test_a_rewritten_body_is_encoded_again(coding):
    body = b'{"text": "[REDACTED:SECRETS]"}' * 50
    assert decode_body(encode_body(body, coding), coding, 1 << 20) == body


def test_memory_is_collected_when_grown_and_less_often_while_it_stays_in_use():
    keeper = MemoryKeeper(growth=16 * 1024 * 1024)
    assert not keeper.collect_if_grown()
    grown = bytearray(64 * 1024 * 1024)
    grown[::4096] = b"x" * len(grown[::4096])  # touch every page: resident now
    looks = []
    for _ in range(8):
        collected = keeper.collect_if_grown()
        looks.append(collected)
        if collected:
            keeper.settle()  # nothing could be freed: the memory is in use
    # Collected, then skipped 1, 3 looks as each collection freed nothing.
    assert looks == [True, False, True, False, False, False, True, False]
    del grown
    assert resident_bytes() > 0


def test_large_headers_are_scanned_off_the_event_loop_like_a_large_body():
    small = ScanRequest(method="GET", url="https://example.com/", headers={"a": "b"})
    padded = ScanRequest(method="GET", url="https://example.com/",
                         headers={f"x-pad-{i}": "p" * 1000 for i in range(60)})  # fmt: skip
    assert _size(small) <= INLINE_LIMIT
    assert _size(padded) > INLINE_LIMIT
