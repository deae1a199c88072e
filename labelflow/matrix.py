"""The label matrix: every LF's vote on every row, with LF names and row ids."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from labelflow.errors import LabelModelError
from labelflow.io import atomic_path
from labelflow.typing import ABSTAIN, LABEL_DTYPE, MAX_CLASSES, LabelArray


@dataclass(frozen=True)
class LFFailure:
    """An exception an LF raised on one row (kept when errors abstain)."""

    lf: str
    row_id: str
    error: str


@dataclass(frozen=True)
class LabelMatrix:
    """Votes of ``m`` LFs on ``n`` rows.

    Parameters
    ----------
    values
        ``[n, m]`` ``int8`` votes: a class in ``0 .. cardinality-1`` or ``ABSTAIN``.
    lf_names
        ``[m]`` LF names, unique, in column order.
    ids
        ``[n]`` row ids, in row order.
    cardinality
        Number of classes ``k``.
    failures
        Exceptions LFs raised on rows where they were made to abstain.
    """

    values: LabelArray
    lf_names: tuple[str, ...]
    ids: pl.Series
    cardinality: int
    failures: tuple[LFFailure, ...] = ()

    @classmethod
    def from_array(
        cls, L: np.ndarray, *, lf_names: Sequence[str], ids: pl.Series | Sequence[str] | None = None, cardinality: int
    ) -> "LabelMatrix":
        """Validate an ``[n, m]`` array of votes and wrap it (ids default to ``"0" .. "n-1"``)."""
        values = check_label_matrix(L, cardinality)
        if len(lf_names) != values.shape[1]:
            raise LabelModelError(f"lf_names has {len(lf_names)} names for a matrix with {values.shape[1]} LFs")
        if ids is None:
            ids = pl.Series("id", [str(i) for i in range(values.shape[0])])
        ids = pl.Series("id", ids, dtype=pl.String)
        if len(ids) != values.shape[0]:
            raise LabelModelError(f"ids has {len(ids)} entries for a matrix with {values.shape[0]} rows")
        return cls(values, tuple(lf_names), ids, cardinality)

    @property
    def shape(self) -> tuple[int, int]:
        """``(n, m)``."""
        return self.values.shape  # type: ignore[return-value]

    def rows(self, index: np.ndarray) -> "LabelMatrix":
        """The rows at ``index``: a boolean ``[n]`` mask or an integer index array."""
        index = np.asarray(index)
        idx = np.flatnonzero(index) if index.dtype == bool else index
        return LabelMatrix(self.values[idx], self.lf_names, self.ids.gather(idx), self.cardinality, self.failures)

    def to_frame(self) -> pl.DataFrame:
        """``[n, 1 + m]`` frame: ``id`` then one ``Int8`` column per LF."""
        cols = {name: self.values[:, j] for j, name in enumerate(self.lf_names)}
        return pl.DataFrame({"id": self.ids, **cols})

    def save(self, path: str | Path) -> None:
        """Write the matrix as Parquet (cardinality and failures in its metadata), atomically."""
        meta = {
            "labelflow.cardinality": str(self.cardinality),
            "labelflow.failures": json.dumps([f.__dict__ for f in self.failures]),
        }
        with atomic_path(path) as tmp:
            self.to_frame().write_parquet(tmp, metadata=meta)

    @staticmethod
    def read_lf_names(path: str | Path) -> tuple[str, ...]:
        """The LF names of a matrix written by :meth:`save`, read from its schema alone (no votes)."""
        return tuple(c for c in pl.read_parquet_schema(path) if c != "id")

    @classmethod
    def load(cls, path: str | Path) -> "LabelMatrix":
        """Read a matrix written by :meth:`save`."""
        meta = pl.read_parquet_metadata(path)
        frame = pl.read_parquet(path)
        names = cls.read_lf_names(path)
        values = frame.select(names).to_numpy().astype(LABEL_DTYPE) if names else np.empty((frame.height, 0), LABEL_DTYPE)
        failures = tuple(LFFailure(**f) for f in json.loads(meta.get("labelflow.failures", "[]")))
        return cls(values, names, frame["id"], int(meta["labelflow.cardinality"]), failures)


def check_label_matrix(L: np.ndarray, cardinality: int) -> LabelArray:
    """Validate a label matrix and return it as ``int8``.

    Parameters
    ----------
    L
        ``[n, m]`` integer votes in ``-1 .. cardinality-1``.
    cardinality
        Number of classes ``k``, ``2 ≤ k ≤ 127``.

    Raises
    ------
    LabelModelError
        Naming the shape, or the first out-of-range value and its position.

    Examples
    --------
    >>> check_label_matrix([[0, -1], [1, 1]], 2).dtype
    dtype('int8')
    >>> check_label_matrix([[0, 2]], 2)
    Traceback (most recent call last):
    ...
    labelflow.errors.LabelModelError: label matrix value 2 at row 0, LF 1 is outside -1..1 (cardinality 2)
    """
    if not 2 <= cardinality <= MAX_CLASSES:
        raise LabelModelError(f"cardinality must be within 2..{MAX_CLASSES}; got {cardinality}")
    arr = np.asarray(L)
    if arr.ndim != 2:
        raise LabelModelError(f"a label matrix must be 2-D [n rows, m LFs]; got shape {arr.shape}")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise LabelModelError(f"the label matrix is empty (shape {arr.shape}); it needs at least one row and one LF")
    if not np.issubdtype(arr.dtype, np.integer):
        if not np.issubdtype(arr.dtype, np.floating) or not np.all(np.mod(arr, 1) == 0):
            raise LabelModelError(f"a label matrix holds integer class indices; got dtype {arr.dtype}")
    bad = (arr < ABSTAIN) | (arr >= cardinality)
    if bad.any():
        i, j = np.argwhere(bad)[0]
        raise LabelModelError(
            f"label matrix value {arr[i, j]} at row {i}, LF {j} is outside -1..{cardinality - 1} (cardinality {cardinality})"
        )
    return arr.astype(LABEL_DTYPE, copy=False)
