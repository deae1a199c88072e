"""The layout of exported probabilistic labels, and the one prediction policy that fills it.

An export has one row per data row and these columns: ``id``, the text field(s),
``split``, ``label`` (gold, null when unknown), ``prob_<class>`` for each class
(:func:`prob_columns`), ``pred`` and ``pred_name`` (by :func:`predict`), ``covered``
and ``tied``. The fine-tuner (``labelflow.finetune``) reads the same ``prob_<class>`` columns.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from labelflow.conventions import ABSTAIN
from labelflow.errors import ProjectError
from labelflow.files import atomic_path
from labelflow.labelmodels import LabelModel, probs_to_preds
from labelflow.labelmodels.base import tied_rows

PROB_PREFIX = "prob_"
"""Prefix of an export's class-probability columns: ``prob_<class>``."""
EXPORT_FORMATS = ("parquet", "csv", "jsonl")
"""File formats an export is written in (chosen by the file's suffix)."""


@dataclass(frozen=True)
class Predictions:
    """A label model's output for every row of a label matrix (see :func:`predict`)."""

    probs: np.ndarray
    """``[n, k]`` class probabilities."""
    pred: np.ndarray
    """``[n]`` predicted class: the argmax, exact ties broken by the row's position in the dataset."""
    tied: np.ndarray
    """``[n]`` booleans: ``pred`` came from a tie-break."""
    covered: np.ndarray
    """``[n]`` booleans: at least one LF voted on the row."""


def predict(model: LabelModel, L: np.ndarray) -> Predictions:
    """``model``'s prediction for every row of the ``[n, m]`` label matrix ``L`` of a whole dataset.

    A row's prediction is the argmax of the class probabilities; exact ties (within 1e-5)
    are broken by Snorkel's deterministic hash of the row's position (``tie_policy="random"``),
    so a row gets the same class whichever split or subset is looked at.
    """
    probs = model.predict_proba(L)
    return Predictions(probs=probs, pred=probs_to_preds(probs, tie_policy="random"), tied=tied_rows(probs),
                       covered=(L != ABSTAIN).any(axis=1))


def prob_columns(class_names: Sequence[str], probs: np.ndarray) -> list[pl.Series]:
    """The ``prob_<class>`` columns of ``[n, k]`` probabilities ``probs``, one per class, in class order.

    Examples
    --------
    >>> [s.name for s in prob_columns(["HAM", "SPAM"], np.array([[0.2, 0.8]]))]
    ['prob_HAM', 'prob_SPAM']
    """
    return [pl.Series(f"{PROB_PREFIX}{c}", probs[:, i]) for i, c in enumerate(class_names)]


def export_frame(rows: pl.DataFrame, *, gold: np.ndarray, predictions: Predictions,
                 class_names: Sequence[str]) -> pl.DataFrame:
    """``rows`` (``id``, text field(s), ``split``; ``[n]`` rows) with the export's label columns added.

    ``gold``: ``[n]`` gold classes (``ABSTAIN`` unknown); ``predictions`` of the same ``n`` rows.
    """
    names = np.array(class_names, dtype=object)
    return rows.with_columns(
        pl.Series("label", np.where(gold == ABSTAIN, None, gold).tolist(), dtype=pl.Int16),
        *prob_columns(class_names, predictions.probs),
        pl.Series("pred", predictions.pred, dtype=pl.Int16),
        pl.Series("pred_name", names[predictions.pred].tolist(), dtype=pl.String),
        pl.Series("covered", predictions.covered),
        pl.Series("tied", predictions.tied),
    )


def export_format(out: Path, fmt: str | None = None) -> str:
    """``fmt``, else the format ``out``'s suffix names; :class:`ProjectError` when it is not one of
    :data:`EXPORT_FORMATS`."""
    fmt = fmt or out.suffix.lstrip(".").lower()
    if fmt not in EXPORT_FORMATS:
        raise ProjectError(f"export format must be one of {list(EXPORT_FORMATS)}; got {fmt!r} (from {out})")
    return fmt


def write_export(frame: pl.DataFrame, out: Path, fmt: str) -> None:
    """Write an export frame to ``out`` in format ``fmt``, atomically."""
    with atomic_path(out) as tmp:
        getattr(frame, {"parquet": "write_parquet", "csv": "write_csv", "jsonl": "write_ndjson"}[fmt])(tmp)
