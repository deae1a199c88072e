"""Error analysis: a label model's (or a student's) predictions on a gold split, and the slices where they fail."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import polars as pl

from labelflow.conventions import ABSTAIN
from labelflow.errors import LabelflowError
from labelflow.slices import Slice, find_slices

@dataclass(frozen=True)
class Analysis:
    """The label model's predictions on a gold split, and the slices where they fail."""

    model_name: str
    split: str
    rows: pl.DataFrame
    """One row per gold-labelled row of ``split``: ``id, text, gold, pred, correct, covered``."""
    accuracy: float
    confusion: np.ndarray
    """``[k, k]`` counts, gold × predicted."""
    class_names: list[str]
    slices: list[Slice]
    embedding_2d: np.ndarray | None
    """``[len(rows), 2]`` PCA of the rows' embeddings (``None`` without an embedding column)."""
    fit_settings: dict = field(default_factory=lambda: {"seed": 123, "use_dev": False})
    """The saved label model's ``seed`` and ``use_dev``; suggestions are measured with the same."""


def analyze(project, *, model: str | None = None, split: str = "dev", embedding: str | None = None,
            predictions: pl.DataFrame | None = None) -> Analysis:
    """The saved label model's predictions on the gold rows of ``split`` and the slices where they fail.

    ``predictions``: analyse these instead (a frame with ``id`` and ``pred``, the class
    index, for example a fine-tuned student's from ``labelflow predict``); every
    analysed row needs one. ``embedding`` names an array column of the dataset (an FM
    output such as ``labelflow fm embed``'s); by default the first such column, if any.
    Suggestions are still measured with the label model ``model``.
    """
    lm = project.label_model(model)
    matrix, frame = project.matrix(), project.dataset().frame
    rows = gold_rows(project, split)
    if not rows.any():
        raise LabelflowError(f"{project.root}: no gold-labelled rows in split {split!r} to analyse; label some first")
    L = matrix.values[rows]
    gold, pred = project.gold()[rows], lm.predict(matrix.values, tie_policy="random")[rows]  # ties: row index, as evaluate
    model_name = getattr(getattr(lm, "chosen", None), "name", lm.name)
    if predictions is not None:
        pred = _external_predictions(predictions, frame["id"].filter(pl.Series(rows)), project.schema.k)
    sub = frame.filter(pl.Series(rows))
    k = project.schema.k
    confusion = np.zeros((k, k), dtype=np.int64)
    np.add.at(confusion, (gold, pred), 1)
    arrays = [c for c, t in sub.schema.items() if isinstance(t, pl.Array)]
    column = embedding or (arrays[0] if arrays else None)
    X = _embedding(sub, column) if column else None
    reserved = {"id", "split", "label", "text", *project.config.text, *arrays}
    metadata = sub.select([c for c in sub.columns if c not in reserved]) if len(sub.columns) > len(reserved) else None
    slices = find_slices(sub["id"].to_list(), sub["text"].to_list(), gold, pred, L=L, lf_names=matrix.lf_names,
                         class_names=project.schema.names, embeddings=X, metadata=metadata)
    table = sub.select("id", "text").with_columns(pl.Series("gold", gold), pl.Series("pred", pred),
                                                  pl.Series("correct", gold == pred),
                                                  pl.Series("covered", (L != ABSTAIN).any(axis=1)))
    embedding_2d = None if X is None or len(X) < 2 else _pca_2d(X)
    return Analysis(model_name, split, table, float((gold == pred).mean()), confusion, list(project.schema.names),
                    slices, embedding_2d, project.fit_settings(model))


def _external_predictions(predictions: pl.DataFrame, ids: pl.Series, k: int) -> np.ndarray:
    """``[len(ids)]`` classes from a frame of ``id, pred``, in the order of ``ids``."""
    missing_cols = {"id", "pred"} - set(predictions.columns)
    if missing_cols:
        raise LabelflowError(f"predictions need columns 'id' and 'pred'; missing {sorted(missing_cols)}")
    joined = pl.DataFrame({"id": ids}).join(predictions.select(pl.col("id").cast(pl.String), "pred"), on="id",
                                           how="left", maintain_order="left")
    absent = joined.filter(pl.col("pred").is_null())["id"]
    if len(absent):
        raise LabelflowError(f"predictions lack {len(absent)} analysed row(s), e.g. id {absent[0]!r}")
    pred = joined["pred"].to_numpy().astype(np.int64)
    bad = (pred < 0) | (pred >= k)
    if bad.any():
        raise LabelflowError(f"prediction {pred[bad][0]} for row {joined['id'][int(np.argmax(bad))]!r} is not a class 0..{k - 1}")
    return pred


def gold_rows(project, split: str) -> np.ndarray:
    """``[n]`` booleans: the project's rows of ``split`` with a gold label (annotations included)."""
    return (project.dataset().frame["split"].to_numpy() == split) & (project.gold() != ABSTAIN)


def _embedding(frame: pl.DataFrame, column: str) -> np.ndarray | None:
    values = frame[column]
    if values.null_count():
        return None
    return values.to_numpy().astype(np.float64)


def _pca_2d(X: np.ndarray) -> np.ndarray:
    """``[n, 2]`` PCA projection of ``[n, d]`` ``X``."""
    from sklearn.decomposition import PCA

    return PCA(n_components=2).fit_transform(X)
