"""Precision and recall of every detector on our labelled corpus (bench/corpora/generated.py).

    python -m bench.detection_report

A positive counts as found when its detector fires on it; a negative counts as a false
positive when its detector fires on it. Negatives also list any *other* detector that
fired, so cross-detector noise is visible too.
"""

from __future__ import annotations

from collections import defaultdict

from bench.corpora.generated import corpus
from sidecar.engine.matcher import Matcher


def main() -> None:
    matcher = Matcher()
    stats: dict[str, dict[str, int]] = defaultdict(lambda: {"tp": 0, "fn": 0, "fp": 0, "tn": 0})
    other_noise = 0
    samples = corpus()
    for s in samples:
        kinds = {h.detector.id for h in matcher.find(s.text)}
        row = stats[s.detector]
        if s.positive:
            row["tp" if s.detector in kinds else "fn"] += 1
        else:
            row["fp" if s.detector in kinds else "tn"] += 1
            other_noise += bool(kinds - {s.detector})
    print(f"{'detector':<28}{'pos':>5}{'neg':>5}{'recall':>9}{'precision':>11}")
    totals = {"tp": 0, "fn": 0, "fp": 0, "tn": 0}
    for name in sorted(stats):
        row = stats[name]
        for k in totals:
            totals[k] += row[k]
        pos, neg = row["tp"] + row["fn"], row["fp"] + row["tn"]
        recall = row["tp"] / pos if pos else float("nan")
        flagged = row["tp"] + row["fp"]
        precision = row["tp"] / flagged if flagged else float("nan")
        print(f"{name:<28}{pos:>5}{neg:>5}{recall:>9.3f}{precision:>11.3f}")
    recall = totals["tp"] / (totals["tp"] + totals["fn"])
    precision = totals["tp"] / (totals["tp"] + totals["fp"])
    print(f"{'ALL':<28}{totals['tp'] + totals['fn']:>5}{totals['fp'] + totals['tn']:>5}"
          f"{recall:>9.3f}{precision:>11.3f}")  # fmt: skip
    negatives = totals["fp"] + totals["tn"]
    print(f"negatives on which another detector fired: {other_noise} of {negatives}")


if __name__ == "__main__":
    main()
