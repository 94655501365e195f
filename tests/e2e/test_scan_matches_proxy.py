"""`egress-sidecar scan` prints the verdict the proxy applies: both corpora, every case,
once through the running proxy and once through the CLI (one process, `--requests`),
and every decision compared.

The proxy runs with the default backend and policy, every name resolving to the one
recording server (an internal host); the CLI judges names as written (`--no-resolve`),
with the same internal host listed, so resolution is the one input they do not share —
and with every name leading to an allowed internal address, it changes no verdict.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.corpora import Case
from bench.corpora.attacks import ATTACKS
from bench.corpora.benign import BENIGN
from bench.detection_corpus import UPSTREAM, CorpusRig, Outcome, corpus_rig

EXE = str(Path(sys.executable).with_name("egress-sidecar"))
CASES = [*ATTACKS, *BENIGN]


@pytest.fixture(scope="module")
def rig() -> Iterator[CorpusRig]:
    with corpus_rig() as running:
        yield running


def _proxy_decision(outcome: Outcome) -> str:
    """What the proxy did, in the CLI's words: a refused tunnel or a bare error status is
    a DENY; a WebSocket case is ALLOW only when every message arrived as sent."""
    if outcome.decision == "REFUSED_CONNECT" or outcome.decision.startswith("HTTP_4"):
        return "DENY"
    return outcome.decision


def _requests(case: Case, rig: CorpusRig) -> list[dict[str, object]]:
    url = rig.routed(case.url)
    head = {"method": case.method, "url": url, "headers": [list(h) for h in case.headers],
            "body_base64": base64.b64encode(case.body).decode()}  # fmt: skip
    lines = [head]
    for message in case.messages:
        data = message.encode() if isinstance(message, str) else message
        lines.append({"method": "WEBSOCKET", "url": url, "text": isinstance(message, str),
                      "body_base64": base64.b64encode(data).decode()})  # fmt: skip
    return lines


def _cli_decision(results: list[dict[str, object]], case: Case) -> str:
    if case.messages:  # the upgrade, then each message: forwarded unchanged or not
        return "ALLOW" if all(r["decision"] == "ALLOW" for r in results) else "DENY"
    return str(results[0]["decision"])


def test_every_corpus_verdict_of_the_cli_is_the_proxy_verdict(rig, tmp_path):
    batch, owners = [], []
    for case in CASES:
        for line in _requests(case, rig):
            batch.append(line)
            owners.append(case.name)
    requests = tmp_path / "requests.jsonl"
    requests.write_text("".join(json.dumps(line) + "\n" for line in batch))
    result = subprocess.run(
        [EXE, "scan", "--requests", str(requests), "--no-resolve", "--internal-hosts", UPSTREAM],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    printed = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(printed) == len(batch)
    by_case: dict[str, list[dict[str, object]]] = {}
    for name, doc in zip(owners, printed, strict=True):
        by_case.setdefault(name, []).append(doc)
    differ = {}
    for case in CASES:
        proxy = _proxy_decision(rig.run(case))
        cli = _cli_decision(by_case[case.name], case)
        if proxy != cli:
            differ[case.name] = (proxy, cli)
    assert differ == {}
    assert len(by_case) == len(CASES) >= 600
