"""Every detector against our labelled corpus: all positives found, no negative flagged."""

from __future__ import annotations

import pytest

from bench.corpora.generated import Sample, corpus
from sidecar.engine.matcher import Matcher

MATCHER = Matcher()
SAMPLES = corpus()


def _kinds(text: str) -> set[str]:
    return {hit.detector.id for hit in MATCHER.find(text)}


@pytest.mark.parametrize("sample", [s for s in SAMPLES if s.positive], ids=lambda s: s.detector)
def test_positive_samples_are_found(sample: Sample):
    hits = MATCHER.find(sample.text)
    grades = {hit.confidence for hit in hits if hit.detector.id == sample.detector}
    assert grades, sample.text
    if sample.grade is not None:
        assert grades == {sample.grade}, sample.text


@pytest.mark.parametrize(
    "sample", [s for s in SAMPLES if not s.positive], ids=lambda s: f"{s.detector}-{s.note}"
)
def test_negative_samples_are_not_flagged(sample: Sample):
    assert sample.detector not in _kinds(sample.text), sample.text


def test_every_detector_has_positive_samples():
    from sidecar.engine.detectors import DETECTORS
    from sidecar.engine.providers import PROVIDER_DETECTORS

    covered = {s.detector for s in SAMPLES if s.positive}
    builtin = {d.id for d in DETECTORS} - {d.id for d in PROVIDER_DETECTORS}  # test_providers
    assert builtin | {"crypto_seed_phrase"} <= covered


def test_hits_carry_exact_spans():
    text = "key AKIAZ3MHSPKQ7WXYT4RN end"
    (hit,) = [h for h in MATCHER.find(text) if h.detector.id == "aws_access_key_id"]
    assert text[hit.start : hit.end] == "AKIAZ3MHSPKQ7WXYT4RN"
    assert hit.value_hash.startswith("sha256:")
    assert "AKIA" not in hit.value_hash


def test_find_all_maps_hits_back_to_their_texts():
    texts = ["nothing here", "mail bob.smith@corp.io please", "x", "AKIAZ3MHSPKQ7WXYT4RN"]
    found = {(i, h.detector.id, texts[i][h.start : h.end]) for i, h in MATCHER.find_all(texts)}
    assert found == {
        (1, "email", "bob.smith@corp.io"),
        (3, "aws_access_key_id", "AKIAZ3MHSPKQ7WXYT4RN"),
    }


def test_find_all_maps_hits_back_to_their_texts_across_chunks():
    from sidecar.engine.matcher import CHUNK, Matcher

    texts = [f"plain text number {i} with nothing in it" for i in range(3000)]
    planted = {0: "ops-a@corp.io", 1500: "ops-b@corp.io", 2999: "ops-c@corp.io"}
    for i, email in planted.items():
        texts[i] = f"mail {email} now"
    assert sum(len(t) for t in texts) > 10 * CHUNK  # really spans many chunks
    found = {i: hit.value for i, hit in Matcher().find_all(texts) if hit.detector.id == "email"}
    assert found == planted
    for i, hit in Matcher().find_all(texts):
        assert texts[i][hit.start : hit.end] == hit.value
