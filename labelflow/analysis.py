"""Label-model metrics (LF statistics are :func:`labelflow.matrix.lf_summary`)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from labelflow.conventions import ABSTAIN, GoldArray, PredArray
from labelflow.errors import LabelModelError
from labelflow.matrix import check_gold


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
    y = check_gold(y, len(y), k)
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
