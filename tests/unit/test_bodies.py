from __future__ import annotations

import gzip
import zlib

import brotli
import pytest

from sidecar.judge.bodies import BodyTooLarge, BodyUndecodable, body_for_scan, decode_body
from tests.support.codecs import ENCODERS

PLAIN = b'{"token": "secret"}' * 10


@pytest.mark.parametrize("coding", sorted(ENCODERS))
def test_each_encoding_decodes(coding):
    assert decode_body(ENCODERS[coding](PLAIN), coding, 10_000) == PLAIN


def test_raw_deflate_and_layered_encodings():
    raw = zlib.compressobj(wbits=-15)
    data = raw.compress(PLAIN) + raw.flush()
    assert decode_body(data, "deflate", 10_000) == PLAIN
    layered = brotli.compress(gzip.compress(PLAIN))
    assert decode_body(layered, "gzip, br", 10_000) == PLAIN


@pytest.mark.parametrize("coding", ["gzip", "deflate", "br", "zstd"])
def test_bombs_stop_at_the_limit(coding):
    bomb = ENCODERS[coding](b"\0" * 20_000_000)
    assert len(bomb) < 100_000
    with pytest.raises(BodyTooLarge):
        decode_body(bomb, coding, 1024)
    assert len(decode_body(bomb, coding, 1024, truncate=True)) == 1024


def test_plain_body_over_limit():
    with pytest.raises(BodyTooLarge):
        decode_body(b"x" * 2000, "", 1000)
    assert decode_body(b"x" * 2000, "", 1000, truncate=True) == b"x" * 1000


@pytest.mark.parametrize(("data", "coding"), [(b"not gzip", "gzip"), (b"x", "compress")])
def test_undecodable(data, coding):
    with pytest.raises(BodyUndecodable):
        decode_body(data, coding, 1000)


def test_truncated_gzip_is_undecodable():
    with pytest.raises(BodyUndecodable):
        decode_body(gzip.compress(PLAIN)[:-12], "gzip", 10_000)


def test_body_for_scan():
    assert body_for_scan(b"", "application/json") is None
    assert body_for_scan(b'{"a": 1}', "application/json; charset=utf-8") == {"a": 1}
    assert body_for_scan(b"[1, 2]", "application/vnd.api+json") == [1, 2]
    assert body_for_scan(b'{"a": 1}', "") == {"a": 1}  # JSON without a content type
    assert body_for_scan(b"{not json", "application/json") == "{not json"
    assert body_for_scan(b"a=1&b=2", "application/x-www-form-urlencoded") == "a=1&b=2"
    assert body_for_scan(b"key=AKIA\xff\xfe", "") == "key=AKIA\ufffd\ufffd"
