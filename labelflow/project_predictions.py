"""What a fitted label model says about a project's rows: its prediction for every row by labelflow's one
prediction policy, the metrics of those predictions on each split's gold labels, and the exported file of
probabilistic labels (layout: :mod:`labelflow.export`).

A function's ``project`` is the :class:`~labelflow.project.Project` whose step it runs (not imported here:
dependencies point down, as in :mod:`labelflow.suggest`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import polars as pl

from labelflow.analysis import classification_metrics
from labelflow.conventions import ABSTAIN
from labelflow.dataset import canonical_split
from labelflow.errors import ProjectError
from labelflow.export import Predictions, export_format, export_frame, predict, write_export
from labelflow.labelmodels import LabelModel


def predictions(project, model: LabelModel | str | None = None) -> Predictions:
    """The label model's prediction for every row of ``project``'s dataset, by labelflow's one prediction policy.

    **Policy.** A row's prediction is the argmax of the label model's class
    probabilities. Exact ties (equal within 1e-5, including rows no LF votes on
    when the model gives them a uniform distribution) are broken by Snorkel's
    deterministic hash (``tie_policy="random"``) of the row's position in the
    project's full dataset, so a row gets the same class whichever split or
    subset is looked at. A model may give uncovered rows a non-uniform
    distribution (an estimated class prior); then the argmax decides them like
    any other row. Nothing is left unpredicted: ``pred`` is always a class, and
    ``tied`` says which rows a tie-break decided. ``fit``'s and ``evaluate``'s
    metrics, ``export``, ``analyze`` and the app all read their predictions
    from here (or, equally, from ``model.predict`` on the full matrix), so they
    agree by construction. (``labelflow bench label-models`` keys the same hash by
    the row's position in the test split, as WRENCH's and Snorkel's published
    figures do.)

    Parameters
    ----------
    model
        A fitted label model, or the name of a saved one (default: the project's).
    """
    matrix = project.matrix()
    lm = model if isinstance(model, LabelModel) else project.label_model(model, matrix=matrix)
    return predict(lm, matrix.values)


def evaluate(project, model: LabelModel | str | None = None) -> dict[str, dict[str, Any]]:
    """Metrics of ``model`` (as :func:`predictions`) on every split of ``project`` that has gold labels:
    ``{split: metrics}``.

    Each split's metrics are :func:`~labelflow.analysis.classification_metrics` of
    :func:`predictions` on its gold rows: ``accuracy`` (all rows), ``accuracy_covered``
    (rows some LF voted on), ``macro_f1``, ``per_class_f1``, ``coverage``, ``tied``
    (the fraction decided by a tie-break), ``n`` and ``n_covered``.
    """
    predicted, splits = predictions(project, model), project.columns("split")["split"]
    gold, split = project.gold(), splits.to_numpy()
    out = {}
    for name in splits.unique(maintain_order=True).to_list():
        rows = (split == name) & (gold != ABSTAIN)
        if rows.any():
            out[name] = classification_metrics(gold[rows], predicted.pred[rows], class_names=project.schema.names,
                                               covered=predicted.covered[rows], tied=predicted.tied[rows])
    return out


def export(project, out: str | Path, *, model: str | None = None, splits: Sequence[str] | None = None,
           fmt: str | None = None) -> pl.DataFrame:
    """Write ``project``'s probabilistic labels to ``out`` atomically: one row per data row (of ``splits``, default
    all), in the layout of :mod:`labelflow.export`, predicted by :func:`predictions`; returns the frame written.

    ``fmt``: the file format (default: from the suffix of ``out``). Raises :class:`ProjectError` naming
    the splits when ``splits`` names one the dataset lacks.
    """
    out = Path(out)
    fmt = export_format(out, fmt)
    rows = project.columns("id", *project.config.text, "split")
    present = rows["split"].unique(maintain_order=True).to_list()
    if splits:
        splits = [canonical_split(s) for s in splits]
        unknown = sorted(set(splits) - set(present))
        if unknown:
            raise ProjectError(f"unknown split(s) {unknown}; the dataset's splits are {present}")
    frame = export_frame(rows, gold=project.gold(), predictions=predictions(project, model),
                         class_names=project.schema.names)
    if splits:
        frame = frame.filter(pl.col("split").is_in(list(splits)))
    write_export(frame, out, fmt)
    return frame
