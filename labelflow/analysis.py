"""LF statistics and label-model metrics."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import polars as pl

from labelflow.conventions import ABSTAIN, GoldArray, LabelArray, PredArray
from labelflow.errors import LabelModelError
from labelflow.labelmodels.majority import vote_counts
from labelflow.matrix import check_label_matrix


def lf_summary(
    L: LabelArray, *, lf_names: Sequence[str], cardinality: int, y: GoldArray | None = None
) -> pl.DataFrame:
    """One row per LF: what it votes, how often, and with whom it agrees.

    Parameters
    ----------
    L
        ``[n, m]`` votes.
    lf_names
        ``[m]`` names.
    cardinality
        Number of classes ``k``.
    y
        Optional ``[n]`` gold classes, ``ABSTAIN`` where unknown; accuracy is
        measured on the rows that have gold.

    Returns
    -------
    polars.DataFrame
        ``lf``, ``polarity`` (sorted classes voted), ``coverage`` (fraction of rows
        voted on), ``overlaps`` (fraction of rows voted on that another LF also votes
        on), ``conflicts`` (… on which another LF votes differently), and with ``y``:
        ``correct``, ``incorrect``, ``emp_acc`` (null where the LF never votes on gold rows).

    Examples
    --------
    >>> L = np.array([[0, 0, -1], [1, 0, -1], [-1, -1, 1]])
    >>> lf_summary(L, lf_names=["a", "b", "c"], cardinality=2, y=np.array([0, 1, -1])).rows()
    [('a', [0, 1], 0.6666666666666666, 0.6666666666666666, 0.3333333333333333, 2, 0, 1.0), \
('b', [0], 0.6666666666666666, 0.6666666666666666, 0.3333333333333333, 1, 1, 0.5), \
('c', [1], 0.3333333333333333, 0.0, 0.0, 0, 0, None)]
    """
    L = check_label_matrix(L, cardinality)
    n, m = L.shape
    if len(lf_names) != m:
        raise LabelModelError(f"lf_names has {len(lf_names)} names for a matrix with {m} LFs")
    voted = L != ABSTAIN
    n_voting = voted.sum(axis=1)
    counts = vote_counts(L, cardinality)
    polarity = [np.unique(L[voted[:, j], j]).tolist() for j in range(m)]
    overlaps = (voted & (n_voting >= 2)[:, None]).sum(axis=0) / n
    # a vote conflicts when some other LF on the row votes a different class
    same = np.take_along_axis(counts, np.where(voted, L, 0).astype(np.int64), axis=1)
    conflicts = (voted & (same < n_voting[:, None])).sum(axis=0) / n
    data = {
        "lf": list(lf_names),
        "polarity": polarity,
        "coverage": voted.sum(axis=0) / n,
        "overlaps": overlaps,
        "conflicts": conflicts,
    }
    if y is not None:
        y = _check_gold(y, n, cardinality)
        has_gold = y != ABSTAIN
        correct = (voted & has_gold[:, None] & (L == y[:, None])).sum(axis=0)
        attempted = (voted & has_gold[:, None]).sum(axis=0)
        data["correct"] = correct
        data["incorrect"] = attempted - correct
        data["emp_acc"] = [float(c / a) if a else None for c, a in zip(correct, attempted)]
    return pl.DataFrame(data, schema_overrides={"emp_acc": pl.Float64} if y is not None else None)


def classification_metrics(
    y: GoldArray, preds: PredArray, *, class_names: Sequence[str], covered: np.ndarray | None = None,
    tied: np.ndarray | None = None,
) -> dict[str, object]:
    """Accuracy (on all rows and on covered rows), macro-F1, per-class F1 and coverage of predictions against gold.

    Parameters
    ----------
    y
        ``[n]`` gold classes; rows with ``ABSTAIN`` (no gold) are skipped.
    preds
        ``[n]`` predicted classes; ``ABSTAIN`` counts as wrong.
    class_names
        ``k`` names, keys of ``per_class_f1``.
    covered
        Optional ``[n]`` booleans: rows at least one LF voted on. ``coverage`` is
        their fraction among the scored rows and ``accuracy_covered`` the accuracy on
        them (without ``covered`` every row counts as covered).
    tied
        Optional ``[n]`` booleans: rows whose prediction came from a tie-break;
        ``tied`` is their fraction among the scored rows (null when not given).

    Returns
    -------
    dict
        ``accuracy`` (all scored rows), ``accuracy_covered`` (covered rows; null when
        none is covered), ``macro_f1`` (all scored rows), ``per_class_f1`` (``{class: f1}``),
        ``coverage``, ``tied``, ``n`` (scored rows) and ``n_covered``.

    Examples
    --------
    >>> m = classification_metrics(np.array([0, 1, 1, -1]), np.array([0, 1, 0, 1]), class_names=["a", "b"],
    ...                            covered=np.array([True, True, False, True]))
    >>> m["accuracy"], m["accuracy_covered"], m["coverage"], m["per_class_f1"]
    (0.6666666666666666, 1.0, 0.6666666666666666, {'a': 0.6666666666666666, 'b': 0.6666666666666666})
    """
    k = len(class_names)
    y = _check_gold(y, len(y), k)
    preds = np.asarray(preds)
    if preds.shape != y.shape:
        raise LabelModelError(f"preds has shape {preds.shape} but y has {y.shape}")
    for name, mask in (("covered", covered), ("tied", tied)):
        if mask is not None and np.shape(mask) != y.shape:
            raise LabelModelError(f"{name} has shape {np.shape(mask)} but y has {y.shape}")
    keep = y != ABSTAIN
    y, preds = y[keep], preds[keep]
    n = int(keep.sum())
    if n == 0:
        raise LabelModelError("no rows with gold labels to score")
    covered = np.ones(n, dtype=bool) if covered is None else np.asarray(covered, dtype=bool)[keep]
    f1 = {}
    for c, name in enumerate(class_names):
        tp = np.sum((preds == c) & (y == c))
        denom = np.sum(preds == c) + np.sum(y == c)
        f1[name] = float(2 * tp / denom) if denom else 0.0
    correct = preds == y
    return {
        "accuracy": float(np.mean(correct)),
        "accuracy_covered": float(np.mean(correct[covered])) if covered.any() else None,
        "macro_f1": float(np.mean(list(f1.values()))),
        "per_class_f1": f1,
        "coverage": float(covered.mean()),
        "tied": None if tied is None else float(np.asarray(tied, dtype=bool)[keep].mean()),
        "n": n,
        "n_covered": int(covered.sum()),
    }


def _check_gold(y: GoldArray, n: int, k: int) -> GoldArray:
    y = np.asarray(y)
    if y.shape != (n,):
        raise LabelModelError(f"gold labels must have shape ({n},); got {y.shape}")
    bad = (y < ABSTAIN) | (y >= k)
    if bad.any():
        i = int(np.argmax(bad))
        raise LabelModelError(f"gold label {int(y[i])} at row {i} is outside the schema's classes 0..{k - 1}")
    return y.astype(np.int64)
