"""The votes of expression and Python LFs on one chunk of rows: what every engine runs per chunk.

Expression LFs are evaluated together in one vectorized polars ``select``. Python LFs run
in one pass over the rows (:mod:`labelflow.lf_workers`: here or in forked worker processes);
an LF whose code reads the row only as ``x.NAME`` (:meth:`~labelflow.lf.PythonLF.row_fields`)
is called once per distinct combination of those values in the chunk, not once per row.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Literal

import numpy as np
import polars as pl

from labelflow.conventions import ABSTAIN, LABEL_DTYPE, LabelArray
from labelflow.errors import LFError
from labelflow.lf import ExpressionLF, PythonLF
from labelflow.lf_workers import MAX_FAILURES_KEPT, run_rows
from labelflow.matrix import LFFailure

OnError = Literal["raise", "abstain"]
PARALLEL_MIN_ROWS = 20_000
"""Python LFs use worker processes only from this many rows up; below it, start-up costs more than it saves."""
_MEMO_DTYPES = (pl.String, pl.Boolean, pl.Date, pl.Datetime, pl.Null)
"""Column types (besides integers) whose distinct values Python LFs are memoized on (floats are not: NaN, -0.0)."""

Failures = dict[str, list[LFFailure]]
"""Per LF name, its failures in row order (at most :data:`MAX_FAILURES_KEPT`)."""


@dataclass(frozen=True)
class ChunkApplier:
    """The votes of expression and Python LFs on one chunk of rows: what both engines run per chunk.

    Parameters
    ----------
    lfs
        ``m`` row-wise expression LFs and Python LFs.
    cardinality
        Number of classes ``k``.
    on_error
        As in :func:`~labelflow.apply.apply_lfs`.
    timeout_s
        Seconds a Python LF may take on one row (``None``: no limit), as in :func:`~labelflow.apply.apply_lfs`.
    """

    lfs: tuple[ExpressionLF | PythonLF, ...]
    cardinality: int
    on_error: OnError
    timeout_s: float | None = None

    def __call__(self, chunk: pl.DataFrame, *, n_jobs: int | None = 1, processes: bool = True,
                 ) -> tuple[LabelArray, Failures]:
        """``[rows, m]`` int8 votes on ``chunk`` (columns in ``lfs`` order) and the failures per LF.

        ``n_jobs`` worker processes (``None``: one per CPU) run the Python LFs when the chunk is
        large enough, forked from this process; ``processes=False`` keeps them in this process
        (a Ray task), where a time limit interrupts an LF but cannot stop code that ignores it.
        """
        out = np.empty((chunk.height, len(self.lfs)), dtype=LABEL_DTYPE)
        failures: Failures = {}
        exprs = [j for j, lf in enumerate(self.lfs) if isinstance(lf, ExpressionLF)]
        pys = [j for j, lf in enumerate(self.lfs) if isinstance(lf, PythonLF)]
        if exprs:
            found = apply_expressions(chunk, [self.lfs[j] for j in exprs], self.cardinality)  # type: ignore[misc]
            for j in exprs:
                out[:, j] = found[self.lfs[j].name]
        if pys:
            out[:, pys], failures = _apply_python(chunk, [self.lfs[j] for j in pys], self.cardinality,  # type: ignore[misc]
                                                  self.on_error, n_jobs, self.timeout_s, processes)
        return out, failures


# --- expression LFs ----------------------------------------------------------------------------------


def apply_expressions(frame: pl.DataFrame, lfs: list[ExpressionLF], k: int) -> dict[str, np.ndarray]:
    try:
        out = frame.select([lf.expr.alias(lf.name) for lf in lfs])
    except pl.exceptions.PolarsError:
        for lf in lfs:  # find the LF at fault, to name it
            _evaluate_one(frame, lf)
        raise
    return {lf.name: _check_expression_votes(frame, lf, out[lf.name], k) for lf in lfs}


def _evaluate_one(frame: pl.DataFrame, lf: ExpressionLF) -> pl.Series:
    try:
        return frame.select(lf.expr.alias(lf.name)).to_series()
    except pl.exceptions.ColumnNotFoundError as exc:
        raise LFError(f"LF {lf.name!r} reads a column the data lacks ({exc}); columns are {frame.columns}") from None
    except pl.exceptions.PolarsError as exc:
        raise LFError(f"LF {lf.name!r}: its expression failed: {type(exc).__name__}: {exc}") from None


def _check_expression_votes(frame: pl.DataFrame, lf: ExpressionLF, col: pl.Series, k: int) -> np.ndarray:
    if not (col.dtype.is_integer() or col.dtype == pl.Null):
        raise LFError(f"LF {lf.name!r}: its expression gives {col.dtype} values; expected class indices (integers)")
    col = col.fill_null(ABSTAIN)
    bad = (col < ABSTAIN) | (col >= k)
    if bad.any():
        i = int(bad.arg_max())
        raise LFError(
            f"LF {lf.name!r} returned {col[i]!r} on row id {frame['id'][i]!r}; "
            f"expected a class index 0..{k - 1} or ABSTAIN (-1)"
        )
    return col.cast(pl.Int8).to_numpy()


# --- Python LFs --------------------------------------------------------------------------------------


def _apply_python(frame: pl.DataFrame, lfs: list[PythonLF], k: int, on_error: OnError, n_jobs: int | None,
                  timeout_s: float | None = None, processes: bool = True) -> tuple[LabelArray, Failures]:
    """``[n, len(lfs)]`` votes; LFs with known row fields run once per distinct combination of their values."""
    n = frame.height
    ids = frame["id"].cast(pl.String)
    votes = np.empty((n, len(lfs)), dtype=LABEL_DTYPE)
    failures: Failures = {lf.name: [] for lf in lfs}
    memo = [j for j, lf in enumerate(lfs) if _memoizable(lf, frame.schema)]
    fields = list(dict.fromkeys(f for j in memo for f in lfs[j].row_fields() or ()))
    distinct = _distinct_rows(frame, fields) if memo else None
    if distinct is not None:
        firsts, inverse = distinct
        found, errors = run_rows(frame.select(fields)[firsts], ids.gather(firsts), [lfs[j] for j in memo], k,
                                 on_error, _jobs(len(firsts), n_jobs), timeout_s, processes)
        votes[:, memo] = found[inverse]
        for name, errs in errors.items():  # every row holding a failing value fails, in row order
            message = dict(errs)
            hit = np.flatnonzero(np.isin(inverse, list(message)))[:MAX_FAILURES_KEPT]
            failures[name] = [LFFailure(name, ids[int(i)], message[int(inverse[i])]) for i in hit]
    rest = [j for j in range(len(lfs)) if distinct is None or j not in memo]
    if rest:
        found, errors = run_rows(frame, ids, [lfs[j] for j in rest], k, on_error, _jobs(n, n_jobs), timeout_s,
                                 processes)
        votes[:, rest] = found
        for name, errs in errors.items():
            failures[name] = [LFFailure(name, ids[i], message) for i, message in errs]
    return votes, failures


def _jobs(rows: int, n_jobs: int | None) -> int:
    """Worker processes for ``rows`` rows: ``n_jobs`` (``None``: one per CPU), fewer where start-up would cost more
    than it saves (:data:`PARALLEL_MIN_ROWS`)."""
    return min(n_jobs or os.cpu_count() or 1, max(1, rows // (PARALLEL_MIN_ROWS // 2)))


def _memoizable(lf: PythonLF, schema: pl.Schema) -> bool:
    fields = lf.row_fields()
    return fields is not None and all(
        f in schema and (schema[f].is_integer() or isinstance(schema[f], _MEMO_DTYPES)) for f in fields)


def _distinct_rows(frame: pl.DataFrame, fields: list[str]) -> tuple[np.ndarray, np.ndarray] | None:
    """``(firsts, inverse)``: the first row of each distinct value of ``fields`` (in order), and for
    each row the index of its value in ``firsts``; ``None`` if some value does not match itself."""
    keys = frame.select(fields).with_row_index("__first")
    firsts = keys.unique(subset=fields, keep="first", maintain_order=True)
    if firsts.height == frame.height:
        return np.arange(frame.height), np.arange(frame.height)
    codes = keys.join(firsts.with_row_index("__value").drop("__first"), on=fields, how="left", nulls_equal=True,
                      maintain_order="left")["__value"]
    if codes.null_count():
        return None
    return firsts["__first"].to_numpy(), codes.to_numpy()
