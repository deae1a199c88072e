"""The best score any label model can reach on a WRENCH test split: an oracle ceiling.

A label model sees a row only through its vote pattern (the row of the label
matrix), so rows with equal patterns get equal predictions. This script groups the
test rows by pattern and, using the test labels themselves, gives every pattern its
best class: the majority class for accuracy; for the F1 of class 1, patterns
sorted by their share of class 1 and the best prefix called positive (thresholding
that share is F1-optimal). No real model can beat it except by tie-breaking luck.
It also prints how often class 1 appears on rows where no LF votes, beside rows
where some LF does.

Run::

    python bench/vote_pattern_ceiling.py ../shared/datasets/{youtube,sms,trec}/wrench

Human-readable lines first; the last line is one JSON object, a record per dataset.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", help="WRENCH dataset folders")
    return parser


def ceiling(L, y, metric: str) -> float:
    """Oracle score over ``[n, m]`` votes ``L`` and ``[n]`` gold ``y`` (see the module docstring)."""
    import numpy as np

    _, pattern = np.unique(L, axis=0, return_inverse=True)
    pattern = pattern.reshape(-1)
    counts = np.zeros((pattern.max() + 1, int(y.max()) + 1))
    np.add.at(counts, (pattern, y), 1)
    if metric == "accuracy":
        return float(counts.max(1).sum() / len(y))
    pos = counts[:, 1]
    order = np.argsort(-pos / counts.sum(1))
    tp, fp = np.cumsum(pos[order]), np.cumsum((counts.sum(1) - pos)[order])
    return float((2 * tp / (2 * tp + fp + (pos.sum() - tp))).max())


def main(cfg: argparse.Namespace) -> dict:
    import numpy as np

    from labelflow.dataset import read_wrench
    from labelflow.model_comparison import POSITIVE_CLASS_F1

    records = []
    for folder in map(Path, cfg.folders):
        name = folder.parent.name if folder.name == "wrench" else folder.name
        data, matrix = read_wrench(folder)
        test = data.frame["split"].to_numpy() == "test"
        L, y = matrix.values[test], data.gold()[test]
        metric = POSITIVE_CLASS_F1.get(name, "accuracy")
        covered = (L >= 0).any(1)
        record = {"dataset": name, "metric": metric, "ceiling": round(ceiling(L, y, metric), 4),
                  "patterns": int(len(np.unique(L, axis=0))), "uncovered": round(float(1 - covered.mean()), 4),
                  "class1_rate_covered": round(float((y[covered] == 1).mean()), 4),
                  "class1_rate_uncovered": round(float((y[~covered] == 1).mean()), 4) if (~covered).any() else None}
        print(f"{name}: best {metric} of any function of the vote pattern = {record['ceiling']:.3f} "
              f"({record['patterns']} patterns; {record['uncovered']:.0%} of rows uncovered; class 1 on "
              f"{record['class1_rate_covered']:.0%} of covered rows, {record['class1_rate_uncovered'] or 0:.0%} of uncovered)")
        records.append(record)
    print(json.dumps({"ceilings": records}))
    return {"ceilings": records}


if __name__ == "__main__":
    main(make_parser().parse_args())
