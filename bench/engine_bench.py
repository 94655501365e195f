"""Embedded engine scan time by body size, its worst case, and event-loop stalls.

    python -m bench.engine_bench [--repeat 200] [--worst-repeat 15]

Bodies are realistic JSON (an LLM chat request: messages of prose and code, some
personal data) of about 2 KB, 64 KB and 256 KB. Prints median, p95 and p99 per size;
then the worst case: 256 KB bodies shaped to be slow (near-matches of every detector,
repeated or each one new, nested encodings, long runs without separators, wide or
deep JSON), and dense but ordinary 256 KB bodies, each with its median, its ratio to
the typical 256 KB body and its reason codes (`SCAN_LIMIT`: the scan's budget ran
out, see sidecar/engine/budget.py); then the longest pause a 1 ms ticker on the event
loop saw while 256 KB bodies were scanned through the local backend (which moves
large scans off the loop).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import random
import statistics
import string
import time
import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from mnemonic import Mnemonic

from sidecar.approvals.store import ApprovalStore
from sidecar.backends.contract import ScanRequest
from sidecar.backends.local import LocalBackend
from sidecar.engine import Engine
from sidecar.engine.policy_file import default_policy
from sidecar.judge.bodies import body_for_scan

SENTENCES = (
    "the build failed because the cache key changed after we bumped the lockfile",
    "please review the diff and rerun the pipeline once the fix lands on main",
)
WORDS = [word for sentence in SENTENCES for word in sentence.split()]
CODE = "def handler(event):\n    return {'status': 200, 'body': json.dumps(event)}\n"


def chat_body(target: int, rng: random.Random) -> dict[str, object]:
    messages: list[dict[str, str]] = [{"role": "system", "content": "You are a helpful agent."}]
    size = 0
    i = 0
    while size < target:
        text = " ".join(rng.choice(WORDS) for _ in range(60))
        if i % 5 == 0:
            text += "\n```python\n" + CODE * 3 + "```"
        if i % 17 == 0:
            text += f" contact ops-{i}@corp.io or +1 415 555 {1000 + i:04d}"
        messages.append({"role": "user" if i % 2 else "assistant", "content": text})
        size += len(text) + 40
        i += 1
    return {"model": "gpt-4o", "messages": messages, "temperature": 0.2}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def bench_sizes(engine: Engine, repeat: int) -> dict[str, dict[str, float]]:
    rng = random.Random(1)
    headers = {"Content-Type": "application/json", "Authorization": "Bearer sk-local"}
    results = {}
    for label, target in (("2KB", 2 * 1024), ("64KB", 64 * 1024), ("256KB", 256 * 1024)):
        body = chat_body(target, rng)
        actual = len(json.dumps(body))
        for _ in range(5):
            engine.decide("POST", "https://api.openai.com/v1/chat/completions", headers, body)
        times = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            engine.decide("POST", "https://api.openai.com/v1/chat/completions", headers, body)
            times.append((time.perf_counter() - t0) * 1000)
        results[label] = {
            "bytes": actual,
            "median_ms": statistics.median(times),
            "p95_ms": percentile(times, 0.95),
            "p99_ms": percentile(times, 0.99),
        }
    return results


WORST = 256 * 1024
URL = "https://api.example.com/v1/upload"


def _repeat(unit: str, size: int = WORST) -> str:
    return (unit * (size // len(unit) + 1))[:size]


def _random(alphabet: str, n: int, rng: random.Random) -> str:
    return "".join(rng.choice(alphabet) for _ in range(n))


def _nested_b64(text: str, layers: int) -> str:
    for _ in range(layers):
        text = base64.b64encode(text.encode()).decode()
    return text


def _distinct(template: str, size: int = WORST) -> str:
    """`template` formatted with 0, 1, 2, ... until `size` characters: no two hits alike."""
    return _joined(lambda i: template.format(i=i), size)


def _joined(make: Callable[[int], str], size: int = WORST) -> str:
    """make(0) + make(1) + ... cut to `size` characters."""
    parts, total, i = [], 0, 0
    while total < size:
        parts.append(make(i))
        total += len(parts[-1])
        i += 1
    return "".join(parts)[:size]


def worst_case_shapes() -> dict[str, tuple[str, str]]:
    """256 KB bodies (content type, text) built to be slow to scan: a near-match or a
    cheap match of every detector over and over (the same value, or a new one each time
    so no check is answered twice), encodings and their layers, long runs without a
    separator, and JSON or forms of tens of thousands of values, wide or deep."""
    rng = random.Random(5)
    alnum = string.ascii_letters + string.digits
    b58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
    words = Mnemonic("english").wordlist
    inner = _repeat("note=" + _random(alnum, 40, rng) + " ", WORST * 27 // 64 + 64)
    text = "text/plain"
    json_type = "application/json"
    form = "application/x-www-form-urlencoded"
    multipart = "multipart/form-data; boundary=b"
    return {
        "emails a@b.cd": (text, _repeat("a@b.cd ")),
        "emails no separator": (text, _repeat("a@b.cd")),
        "emails distinct": (text, _distinct("u{i}@c{i}.io ")),
        "emails non-ASCII": (text, _repeat("é a@b.cd ")),
        "AKIA + 16": (text, _repeat("AKIAAAAAAAAAAAAAAAAA ")),
        "AKIA distinct": (text, _joined(lambda i: "AKIA" + _random(alnum[26:], 16, rng) + " ")),
        "AKIA prefix only": (text, _repeat("AKIA ")),
        "card 4111": (text, _repeat("4111 1111 1111 1111 ")),
        "card distinct": (text, _distinct("4111 1111 {i:04d} 1111 ")),
        "digits": (text, _repeat("1234567890")),
        "phones": (text, _repeat("+1 415 555 0100 ")),
        "phones distinct": (text, _distinct("+1 415 {i:07d} ")),
        "ips": (text, _repeat("10.0.0.1 ")),
        "ips distinct": (text, _joined(lambda i: f"10.{i % 250}.{i // 250 % 250}.1 ")),
        "ssn": (text, _repeat("219-48-3307 ")),
        "iban": (text, _repeat("DE89 3704 0044 0532 0130 00 ")),
        "iban distinct": (text, _distinct("DE89 3704 0044 0532 {i:04d} 00 ")),
        "pem begin": (text, _repeat("-----BEGIN PRIVATE KEY-----\n")),
        "ghp distinct": (text, _joined(lambda i: "ghp_" + _random(alnum, 36, rng) + " ")),
        "jwt shape": (text, _repeat("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjMifQ.c2lnbmF0dXJl ")),
        "jwt distinct": (text, _distinct("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ{i:08d}.c2lnbmF0 ")),
        "jwt prefix": (text, _repeat("eyJhbGciOi.")),
        "secret keyword": (text, _repeat("password=" + _random(alnum, 20, rng) + " ")),
        "secret keyword distinct": (
            text,
            _joined(lambda i: "password=" + _random(alnum, 20, rng) + " "),
        ),
        "secret keyword only": (text, _repeat("password=hunter2 ")),
        "url credentials": (text, _repeat("https://u:pw1@h.io ")),
        "bitcoin": (text, _repeat("1BoatSLRHtKNngkdXEeobR76b53LETtpyT ")),
        "bitcoin distinct": (text, _joined(lambda i: "1" + _random(b58, 33, rng) + " ")),
        "segwit distinct": (text, _joined(lambda i: "bc1q" + _random(_BECH32, 38, rng) + " ")),
        "seed words": (text, _repeat("abandon ")),
        "seed phrases distinct": (
            text,
            _joined(lambda i: " ".join(rng.choice(words) for _ in range(12)) + ". "),
        ),
        "long alnum line": (text, _random(alnum, WORST, rng)),
        "long hex line": (text, _random(string.hexdigits[:16], WORST, rng)),
        "base64 x3": (text, _nested_b64(inner, 3)[:WORST]),
        "base64 blocks": (text, _repeat(base64.b64encode(b"token=" + b"A1b2" * 6).decode() + " ")),
        "base64 distinct": (
            text,
            _joined(lambda i: base64.b64encode(f"key {i:020d}".encode()).decode() + " "),
        ),
        "hex blocks": (text, _repeat(("password=" + "x" * 11).encode().hex() + " ")),
        "percent x3": (text, _repeat(quote(quote(quote("a@b.cd 10.0.0.1 "))))),
        "percent run": (text, _repeat("%41")),
        "slashes": (text, _repeat("ab/")),
        "form pairs": (form, _distinct("k{i}=value&")),
        "form tiny pairs": (form, _repeat("k=v&")),
        "multipart tiny parts": (multipart, _repeat(_PART) + "--b--\r\n"),
        "multipart many headers": (multipart, _PART[:-5] + _repeat("X: y\r\n") + "\r\nv\r\n--b--"),
        "json many keys": (json_type, _json_object('"k{i}": "value{i}", ')),
        "json many strings": (json_type, json.dumps(["abcdef"] * (WORST // 10))),
        "json small ints": (json_type, json.dumps([1] * (WORST // 3))),
        "json secret keys": (
            json_type,
            "[" + _joined(lambda i: f'{{"token": "{_random(alnum, 16, rng)}"}},')[:-1],
        ),
        "json deep": (json_type, "[" * (WORST // 2) + "]" * (WORST // 2)),
        "json deep 900": (json_type, "[" * 900 + "]" * 900),
        "json deep 250 wide": (json_type, _deep(250, '"abcdef"')),
        "json long key": (json_type, json.dumps({"k" * (WORST // 2): ["abcdef"] * (WORST // 20)})),
    }


def dense_ordinary_shapes() -> dict[str, tuple[str, str]]:
    """Bodies an agent might really send, each dense in what the engine looks at. The
    denser ones reach the scan's budget at 256 KB (a value every 20 bytes or so); a
    list of 5,000 records with an email each stays below it."""
    rng = random.Random(6)
    json_type = "application/json"
    return {
        "chat + personal data": (json_type, json.dumps(chat_body(WORST, random.Random(1)))),
        "json 5,000 emails": (
            json_type,
            _json_list('{{"id": {i}, "mail": "user{i}@corp.io"}}', 5000),
        ),
        "json emails, 256KB": (json_type, _json_list('{{"id": {i}, "mail": "user{i}@corp.io"}}')),
        "csv contacts": ("text/csv", _distinct("name {i},user{i}@corp.io,+1 415 555 {i:04d}\n")),
        "access log": ("text/plain", _joined(lambda i: _log_line(i, rng))),
        "git hashes": (
            json_type,
            json.dumps([_random("0123456789abcdef", 40, rng) for _ in range(WORST // 44)]),
        ),
        "uuids": (
            json_type,
            json.dumps(
                [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(WORST // 40)]
            ),
        ),
        "embeddings": (json_type, json.dumps([rng.uniform(-1, 1) for _ in range(WORST // 22)])),
        "token ids": (json_type, json.dumps([rng.randrange(100_000) for _ in range(WORST // 7)])),
    }


_BECH32 = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
_PART = '--b\r\nContent-Disposition: form-data; name="a"\r\n\r\nx\r\n'


def _log_line(i: int, rng: random.Random) -> str:
    ip = f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
    return f'{ip} - - [01/Jan/2026:00:00:{i % 60:02d}] "GET /api/v1/items/{i} HTTP/1.1" 200 512\n'


def _json_object(item: str) -> str:
    return "{" + _distinct(item, WORST - 200).rsplit(",", 1)[0] + "}"


def _deep(depth: int, item: str) -> str:
    """`item` repeated inside `depth` nested lists, about WORST characters in all."""
    items = ",".join([item] * ((WORST - 2 * depth) // (len(item) + 1)))
    return "[" * depth + items + "]" * depth


def _json_list(item: str, count: int | None = None) -> str:
    """A JSON list of `item` formatted with 0, 1, 2, ...: `count` items, or as many as fit
    in about WORST characters."""
    if count is not None:
        return "[" + ",".join(item.format(i=i) for i in range(count)) + "]"
    return "[" + _distinct(item + ",", WORST - 200).rsplit("}", 1)[0] + "}]"


def bench_worst_case(
    engine: Engine, repeat: int
) -> tuple[float, dict[str, dict[str, dict[str, Any]]]]:
    """The typical 256 KB median, then per section and shape: bytes, median, ratio to
    the typical body and reason codes."""
    typical = chat_body(WORST, random.Random(1))
    typical_ms = _median_ms(engine, {"Content-Type": "application/json"}, typical, repeat)
    sections: dict[str, dict[str, dict[str, Any]]] = {}
    for section, shapes in (
        ("built to be slow", worst_case_shapes()),
        ("dense but ordinary", dense_ordinary_shapes()),
    ):
        results = sections.setdefault(section, {})
        for name, (content_type, text) in shapes.items():
            headers = {"Content-Type": content_type}
            body = body_for_scan(text.encode(), content_type)
            median = _median_ms(engine, headers, body, repeat)
            verdict = engine.decide("POST", URL, headers, body)
            results[name] = {
                "bytes": len(text.encode()),
                "median_ms": median,
                "ratio": median / typical_ms,
                "reasons": ",".join(verdict.reason_codes) or "-",
            }
    return typical_ms, sections


def _median_ms(engine: Engine, headers: dict[str, str], body: Any, repeat: int) -> float:
    engine.decide("POST", URL, headers, body)
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        engine.decide("POST", URL, headers, body)
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


async def loop_stall(backend: LocalBackend, scans: int) -> float:
    """Longest gap between 1 ms ticks while `scans` 256 KB bodies are scanned."""
    body = chat_body(256 * 1024, random.Random(2))
    request = ScanRequest(method="POST", url="https://api.openai.com/v1/chat/completions",
                          headers={"Content-Type": "application/json"}, body=body,
                          body_bytes=len(json.dumps(body)))  # fmt: skip
    worst = 0.0
    done = asyncio.Event()

    async def ticker() -> None:
        nonlocal worst
        last = time.perf_counter()
        while not done.is_set():
            await asyncio.sleep(0.001)
            now = time.perf_counter()
            worst = max(worst, now - last - 0.001)
            last = now

    tick = asyncio.create_task(ticker())
    await asyncio.gather(*(backend.scan(request) for _ in range(scans)))
    done.set()
    await tick
    return worst * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=200)
    parser.add_argument("--worst-repeat", type=int, default=15)
    args = parser.parse_args()
    engine = Engine(default_policy())
    print(f"engine scan time, default policy, {args.repeat} runs each")
    print(f"{'body':<8}{'bytes':>9}{'median ms':>12}{'p95 ms':>10}{'p99 ms':>10}")
    for label, r in bench_sizes(engine, args.repeat).items():
        print(f"{label:<8}{r['bytes']:>9}{r['median_ms']:>12.3f}{r['p95_ms']:>10.3f}"
              f"{r['p99_ms']:>10.3f}")  # fmt: skip
    typical_ms, sections = bench_worst_case(engine, args.worst_repeat)
    print(f"\nworst case: 256 KB bodies, {args.worst_repeat} runs each "
          f"(typical 256 KB chat body: {typical_ms:.3f} ms median)")  # fmt: skip
    for section, results in sections.items():
        print(f"\n{section:<26}{'bytes':>9}{'median ms':>12}{'x typical':>11}  reasons")
        for name, r in results.items():
            print(f"{name:<26}{r['bytes']:>9}{r['median_ms']:>12.3f}{r['ratio']:>11.1f}  "
                  f"{r['reasons']}")  # fmt: skip
        slowest = max(results, key=lambda name: results[name]["median_ms"])
        print(f"slowest: {slowest}, {results[slowest]['median_ms']:.3f} ms median")
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        backend = LocalBackend(engine, ApprovalStore(Path(tmp), 60))
        stall = asyncio.run(loop_stall(backend, 20))
        print(f"longest event-loop pause while 20 x 256KB bodies were scanned: {stall:.2f} ms")
        asyncio.run(backend.aclose())


if __name__ == "__main__":
    main()
