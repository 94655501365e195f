"""Every detector family through the running proxy, not only in the engine's unit tests.

For each family, a value of its shape (the same generators as its unit tests) leaves in a
JSON body for a collector that is not its issuer: refused (or, for personal data the
default policy redacts, forwarded without it). Each credential family with an issuer is
also presented to that issuer in an auth header, where it is the agent's own credential
and passes unchanged, and posted to it as content, where it is a leak all the same.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator

import pytest

from bench.corpora import Case
from bench.corpora.generated import corpus
from bench.detection_corpus import CorpusRig, contained, corpus_rig, false_positive
from sidecar.engine.detectors import BY_ID, FINANCIAL, PII
from tests.unit.test_providers import CASES

COLLECTOR = "https://collect.metrics-relay.net/v1/ingest"
# Personal data and wallet addresses the default policy lets through, classified (not a
# leak by themselves).
ALLOWED_KINDS = {
    d.id for d in BY_ID.values() if d.data_class in (PII, FINANCIAL) and not d.high_risk
}


def _samples() -> dict[str, str]:
    """One text per family: the provider cases, then the labelled corpus's positives."""
    texts = {kind: case.texts(case.make())[0] for kind, case in CASES.items()}
    for sample in corpus(random.Random(7).randrange(10**6)):
        if sample.positive and sample.grade != "example":
            texts.setdefault(sample.detector, sample.text)
    return texts


SAMPLES = _samples()


@pytest.fixture(scope="module")
def rig() -> Iterator[CorpusRig]:
    with corpus_rig() as running:
        yield running


def _post(rig: CorpusRig, url: str, text: str, name: str):
    body = json.dumps({"note": text}).encode()
    case = Case("family", name, "POST", url, (("Content-Type", "application/json"),), body)
    return rig.run(case)


def test_every_family_has_a_sample():
    assert set(BY_ID) | {"crypto_seed_phrase"} <= set(SAMPLES)


@pytest.mark.parametrize("kind", sorted(set(SAMPLES) - ALLOWED_KINDS))
def test_a_family_value_for_a_collector_is_contained(rig, kind):
    outcome = _post(rig, COLLECTOR, SAMPLES[kind], f"out-{kind}")
    assert contained(outcome), (kind, outcome)


ISSUED = sorted(kind for kind in SAMPLES if kind in BY_ID and BY_ID[kind].providers)


@pytest.mark.parametrize("kind", ISSUED)
def test_a_family_value_presented_to_its_issuer_passes(rig, kind):
    issuer = BY_ID[kind].providers[0]
    presented = " ".join(SAMPLES[kind].split())
    case = Case(
        "family", f"own-{kind}", "GET", f"https://{issuer}/v1/use", (("X-Api-Key", presented),)
    )
    outcome = rig.run(case)
    assert not false_positive(outcome), (kind, outcome)


@pytest.mark.parametrize("kind", ISSUED)
def test_a_family_value_as_content_is_contained_even_at_its_issuer(rig, kind):
    """Posted as content (an issue, a gist, a prompt, an uploaded file) a key is published
    or stored where others read it: a leak at its own provider too."""
    issuer = BY_ID[kind].providers[0]
    outcome = _post(rig, f"https://{issuer}/v1/notes", SAMPLES[kind], f"content-{kind}")
    assert contained(outcome), (kind, outcome)
