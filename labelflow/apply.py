"""Apply an LF suite to a dataset: the label matrix, with per-LF vote caching.

The rows are labeled a chunk at a time (``chunk_rows`` rows; a lazy frame, such
as a project's Parquet files, is read a chunk at a time too), so memory stays
bounded however many rows there are. One function labels a chunk,
:class:`ChunkApplier`, and both engines run it, so their matrices are identical by
construction:

* ``engine="local"`` (default): chunk after chunk in this process, Python LFs
  split over forked worker processes when a chunk is large enough for that to pay;
* ``engine="ray"`` or a :class:`~labelflow.distributed.RayEngine`: Ray Data over
  Parquet shards on a Ray cluster (see :mod:`labelflow.distributed`).

Within a chunk, expression LFs are evaluated together in one vectorized polars
``select``. Python LFs run in one pass over the rows; an LF whose code reads the
row only as ``x.NAME`` (:meth:`~labelflow.lf.PythonLF.row_fields`) is called once
per distinct combination of those values in the chunk, not once per row.
Expression LFs whose vote on a row depends on other rows (aggregations, windows,
shifts) are evaluated over all rows at once, as are FM-based LFs.

Votes are cached per LF under a key made of the LF's fingerprint and a hash of the
columns it reads, whichever engine computed them, so editing one LF re-applies
only that LF.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import warnings
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import polars as pl

from labelflow.dataset import Dataset
from labelflow.distributed import RayEngine
from labelflow.errors import LFError
from labelflow.fm.cache import FMCache
from labelflow.fm.lfs import FMLF, budget_rows
from labelflow.io import atomic_path
from labelflow.lf import ExpressionLF, LabelingFunction, PythonLF, Row, check_suite
from labelflow.matrix import LabelMatrix, LFFailure
from labelflow.typing import ABSTAIN, LABEL_DTYPE, LabelArray

OnError = Literal["raise", "abstain"]
Engine = Literal["local", "ray"]
CHUNK_ROWS = 250_000
"""Rows labeled (and read) at a time by default."""
PARALLEL_MIN_ROWS = 20_000
"""Python LFs use worker processes only from this many rows up; below it, start-up costs more than it saves."""
MAX_FAILURES_KEPT = 100
"""Per LF, how many failures (row id and exception) are kept when errors abstain."""
_MEMO_DTYPES = (pl.String, pl.Boolean, pl.Date, pl.Datetime, pl.Null)
"""Column types (besides integers) whose distinct values Python LFs are memoized on (floats are not: NaN, -0.0)."""

Failures = dict[str, list[LFFailure]]
"""Per LF name, its failures in row order (at most :data:`MAX_FAILURES_KEPT`)."""


class VoteCache:
    """Per-LF votes on disk, one ``.npz`` file per (LF fingerprint, data hash) key.

    ``hits`` and ``misses`` list the LF names looked up since the cache was opened.
    """

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.hits: list[str] = []
        self.misses: list[str] = []

    def get(self, key: str, lf_name: str, n: int) -> tuple[np.ndarray, list[LFFailure]] | None:
        """The ``[n]`` votes and failures stored under ``key``, or ``None``."""
        path = self.folder / f"{key}.npz"
        try:
            with np.load(path, allow_pickle=False) as npz:
                votes = npz["votes"]
                failures = [LFFailure(**f) for f in json.loads(str(npz["failures"]))]
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):  # missing or corrupt: recompute
            self.misses.append(lf_name)
            return None
        if votes.shape != (n,):
            self.misses.append(lf_name)
            return None
        self.hits.append(lf_name)
        return votes, failures

    def put(self, key: str, votes: np.ndarray, failures: list[LFFailure]) -> None:
        """Store votes and failures under ``key`` (atomically)."""
        with atomic_path(self.folder / f"{key}.npz") as tmp, open(tmp, "wb") as fh:
            np.savez(fh, votes=votes, failures=np.array(json.dumps([f.__dict__ for f in failures])))


def apply_lfs(
    data: Dataset | pl.DataFrame | pl.LazyFrame,
    lfs: Sequence[Any],
    *,
    cardinality: int,
    cache: VoteCache | None = None,
    on_error: OnError = "raise",
    n_jobs: int | None = None,
    progress: bool = False,
    fm_cache: FMCache | None = None,
    engine: Engine | RayEngine = "local",
    chunk_rows: int = CHUNK_ROWS,
) -> LabelMatrix:
    """Apply every LF to every row.

    Parameters
    ----------
    data
        A :class:`Dataset`, a frame, or a lazy frame (read ``chunk_rows`` rows at a
        time, e.g. ``pl.scan_parquet(path)``) with an ``id`` column; ``n`` rows.
    lfs
        ``m`` labelflow or Snorkel LFs with unique names.
    cardinality
        Number of classes ``k``; votes must lie in ``-1 .. k-1``.
    cache
        Reuse and store votes per LF; ``None`` applies everything.
    on_error
        ``"raise"``: the first exception an LF raises stops the run, naming the LF
        and the row id. ``"abstain"``: the LF abstains on that row, and the failure
        is kept in :attr:`LabelMatrix.failures`. An LF returning something other
        than a class index or ``ABSTAIN`` always raises.
    n_jobs
        Worker processes for Python LFs on the local engine; ``None`` uses every CPU.
    progress
        Show progress bars (rows/s) on stderr.
    fm_cache
        Where FM-based LFs keep their model outputs; ``None`` recomputes them.
    engine
        ``"local"``, ``"ray"`` (a :class:`~labelflow.distributed.RayEngine` with its
        defaults: the running or a new local cluster) or a ``RayEngine``.
    chunk_rows
        Rows labeled at a time on the local engine (memory grows with it).

    Returns
    -------
    LabelMatrix
        ``[n, m]`` votes, columns in suite order.
    """
    if on_error not in ("raise", "abstain"):
        raise LFError(f"on_error must be 'raise' or 'abstain'; got {on_error!r}")
    ray = RayEngine.of(engine)
    if isinstance(chunk_rows, bool) or not isinstance(chunk_rows, int) or chunk_rows < 1:
        raise LFError(f"chunk_rows must be an integer ≥ 1; got {chunk_rows!r}")
    rows = data.frame if isinstance(data, Dataset) else data
    schema = rows.collect_schema()
    if "id" not in schema:
        raise LFError(f"the data to label needs an 'id' column; it has {schema.names()}")
    suite = check_suite(lfs)
    n = _height(rows)
    col_hashes = _column_hashes(rows, n, chunk_rows)
    budgeted = [lf for lf in suite if isinstance(lf, FMLF) and lf.budget is not None]
    keys = {lf.name: _cache_key(lf, col_hashes, cardinality, on_error) for lf in suite if lf not in budgeted}

    votes: dict[str, np.ndarray] = {}
    failures: Failures = {}
    if cache is not None:
        for lf in suite:
            found = cache.get(keys[lf.name], lf.name, n) if lf.name in keys else None
            if found is not None:
                votes[lf.name], failures[lf.name] = found
    todo = [lf for lf in suite if lf.name not in votes and lf not in budgeted]

    whole = [lf for lf in todo if isinstance(lf, ExpressionLF) and not _row_wise(lf.expr)]
    per_chunk = [lf for lf in todo if isinstance(lf, PythonLF) or (isinstance(lf, ExpressionLF) and lf not in whole)]
    applier = ChunkApplier(tuple(per_chunk), cardinality, on_error)
    if applier.lfs:
        from tqdm.auto import tqdm

        with tqdm(total=n, desc=f"LFs ×{len(applier.lfs)}", unit="row", unit_scale=True, disable=not progress,
                  leave=False) as bar:
            if ray is None:
                values, chunk_failures = _apply_chunks(rows, applier, n, chunk_rows, n_jobs, bar)
            else:
                values, chunk_failures = ray.apply_chunks(rows, applier, n=n, data_hash=_data_hash(col_hashes),
                                                          bar=bar)
        votes.update({lf.name: values[:, j] for j, lf in enumerate(applier.lfs)})
        failures.update(chunk_failures)
    if whole:  # their votes depend on other rows: over all rows at once
        votes.update(_apply_expressions(_columns(rows, whole), whole, cardinality))
    fms = [lf for lf in suite if isinstance(lf, FMLF) and (lf in todo or lf in budgeted)]
    fm_frame = _columns(rows, fms) if fms else None
    for lf in todo:
        if isinstance(lf, FMLF):
            votes[lf.name] = lf.votes(fm_frame, cardinality=cardinality, cache=fm_cache, progress=progress, engine=ray)
        if cache is not None:
            cache.put(keys[lf.name], votes[lf.name], failures.get(lf.name, []))

    # budgeted FM LFs see the votes of every other LF, and only vote (and call their model) where allowed
    if budgeted:
        others = [lf.name for lf in suite if lf not in budgeted]
        L_others = np.stack([votes[name] for name in others], axis=1) if others else np.full((n, 1), ABSTAIN, LABEL_DTYPE)
    for lf in budgeted:
        allowed = budget_rows(L_others, lf.budget)  # type: ignore[arg-type]
        key = _cache_key(lf, col_hashes, cardinality, on_error, extra=hashlib.blake2b(allowed.tobytes()).hexdigest())
        found = cache.get(key, lf.name, n) if cache is not None else None
        if found is None:
            found = lf.votes(fm_frame, cardinality=cardinality, cache=fm_cache, rows=allowed, progress=progress,
                             engine=ray), []
            if cache is not None:
                cache.put(key, *found)
        votes[lf.name], failures[lf.name] = found

    L = np.empty((n, len(suite)), dtype=LABEL_DTYPE)
    for j, lf in enumerate(suite):
        L[:, j] = votes.pop(lf.name)
    all_failures = tuple(f for lf in suite for f in failures.get(lf.name, []))
    ids = _columns(rows, [])["id"].cast(pl.String)
    return LabelMatrix(L, tuple(lf.name for lf in suite), ids, cardinality, all_failures)


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
        As in :func:`apply_lfs`.
    """

    lfs: tuple[ExpressionLF | PythonLF, ...]
    cardinality: int
    on_error: OnError

    def __call__(self, chunk: pl.DataFrame, *, n_jobs: int | None = 1) -> tuple[LabelArray, Failures]:
        """``[rows, m]`` int8 votes on ``chunk`` (columns in ``lfs`` order) and the failures per LF."""
        out = np.empty((chunk.height, len(self.lfs)), dtype=LABEL_DTYPE)
        failures: Failures = {}
        exprs = [j for j, lf in enumerate(self.lfs) if isinstance(lf, ExpressionLF)]
        pys = [j for j, lf in enumerate(self.lfs) if isinstance(lf, PythonLF)]
        if exprs:
            found = _apply_expressions(chunk, [self.lfs[j] for j in exprs], self.cardinality)  # type: ignore[misc]
            for j in exprs:
                out[:, j] = found[self.lfs[j].name]
        if pys:
            out[:, pys], failures = _apply_python(chunk, [self.lfs[j] for j in pys], self.cardinality,  # type: ignore[misc]
                                                  self.on_error, n_jobs)
        return out, failures


def merge_failures(into: dict[str, list[Any]], more: dict[str, list[Any]]) -> None:
    """Append the failures of a later chunk (or piece of one), keeping at most :data:`MAX_FAILURES_KEPT` per LF."""
    for name, found in more.items():
        kept = into.setdefault(name, [])
        kept.extend(found[:MAX_FAILURES_KEPT - len(kept)])


def chunk_bounds(n: int, size: int) -> Iterator[tuple[int, int]]:
    """``(start, stop)`` of consecutive chunks of at most ``size`` of ``n`` rows."""
    for start in range(0, n, size):
        yield start, min(start + size, n)


def read_chunk(rows: pl.DataFrame | pl.LazyFrame, start: int, stop: int) -> pl.DataFrame:
    """Rows ``start .. stop-1`` of a frame (a zero-copy slice) or a lazy frame (read from its source)."""
    part = rows.slice(start, stop - start)
    return part.collect() if isinstance(part, pl.LazyFrame) else part


def _apply_chunks(rows: pl.DataFrame | pl.LazyFrame, applier: ChunkApplier, n: int, chunk_rows: int,
                  n_jobs: int | None, bar: Any) -> tuple[LabelArray, Failures]:
    """The local engine: ``applier`` on each chunk in turn; ``[n, m]`` votes and the failures per LF."""
    out = np.empty((n, len(applier.lfs)), dtype=LABEL_DTYPE)
    failures: Failures = {}
    for start, stop in chunk_bounds(n, chunk_rows):
        out[start:stop], found = applier(read_chunk(rows, start, stop), n_jobs=n_jobs)
        merge_failures(failures, found)
        bar.update(stop - start)
    return out, failures


def _height(rows: pl.DataFrame | pl.LazyFrame) -> int:
    return rows.height if isinstance(rows, pl.DataFrame) else rows.select(pl.len()).collect().item()


def _columns(rows: pl.DataFrame | pl.LazyFrame, lfs: Sequence[LabelingFunction]) -> pl.DataFrame:
    """All rows of ``id`` and of the columns ``lfs`` read (those the data has), in memory."""
    wanted = {"id"}.union(*(lf.columns() or () for lf in lfs))
    part = rows.select([c for c in rows.collect_schema() if c in wanted])
    return part.collect() if isinstance(part, pl.LazyFrame) else part


def _row_wise(expr: pl.Expr) -> bool:
    """Whether ``expr``'s value on a row depends on that row alone (so it may be evaluated in chunks):
    every node of its tree is row-separable (no aggregation, window, shift, rank, ...).

    Examples
    --------
    >>> _row_wise(pl.col("text").str.contains("x")), _row_wise(pl.col("n") > pl.col("n").mean())
    (True, False)
    """
    try:
        return expr.meta.is_row_separable() and all(_row_wise(e) for e in expr.meta.pop())
    except pl.exceptions.PolarsError:  # needs a schema (e.g. map_elements): evaluate over all rows
        return False


# --- cache keys --------------------------------------------------------------------------------------


def _column_hashes(rows: pl.DataFrame | pl.LazyFrame, n: int, chunk_rows: int) -> dict[str, str]:
    """A content hash of each column (name, dtype and values), read a chunk at a time."""
    digests = {name: hashlib.blake2b(f"{name}:{dtype}:{n}".encode(), digest_size=16)
               for name, dtype in rows.collect_schema().items()}
    for start, stop in chunk_bounds(n, max(chunk_rows, 1 << 20)):
        chunk = read_chunk(rows, start, stop)
        for name, digest in digests.items():
            digest.update(chunk[name].hash(seed=0).to_numpy().tobytes())
    return {name: digest.hexdigest() for name, digest in digests.items()}


def _data_hash(col_hashes: dict[str, str]) -> str:
    """One hash of all columns (names, order and contents)."""
    return hashlib.blake2b(json.dumps(col_hashes).encode(), digest_size=16).hexdigest()


def _cache_key(lf: LabelingFunction, col_hashes: dict[str, str], cardinality: int, on_error: str, extra: str = "") -> str:
    cols = lf.columns()
    used = sorted(col_hashes) if cols is None else sorted(set(cols) | {"id"})
    digest = hashlib.blake2b(digest_size=20)
    parts = [lf.fingerprint(), str(cardinality), on_error, pl.__version__, extra]
    parts += [f"{c}={col_hashes.get(c, 'missing')}" for c in used]
    digest.update("\n".join(parts).encode())
    return digest.hexdigest()


# --- expression LFs ----------------------------------------------------------------------------------


def _apply_expressions(frame: pl.DataFrame, lfs: list[ExpressionLF], k: int) -> dict[str, np.ndarray]:
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

_WORK: dict[str, Any] = {}
"""State handed to forked workers by inheritance (nothing is pickled)."""


def _apply_python(frame: pl.DataFrame, lfs: list[PythonLF], k: int, on_error: OnError,
                  n_jobs: int | None) -> tuple[LabelArray, Failures]:
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
        found, errors = _run_rows(frame.select(fields)[firsts], ids.gather(firsts), [lfs[j] for j in memo], k,
                                  on_error, n_jobs)
        votes[:, memo] = found[inverse]
        for name, errs in errors.items():  # every row holding a failing value fails, in row order
            message = dict(errs)
            hit = np.flatnonzero(np.isin(inverse, list(message)))[:MAX_FAILURES_KEPT]
            failures[name] = [LFFailure(name, ids[int(i)], message[int(inverse[i])]) for i in hit]
    rest = [j for j in range(len(lfs)) if distinct is None or j not in memo]
    if rest:
        found, errors = _run_rows(frame, ids, [lfs[j] for j in rest], k, on_error, n_jobs)
        votes[:, rest] = found
        for name, errs in errors.items():
            failures[name] = [LFFailure(name, ids[i], message) for i, message in errs]
    return votes, failures


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


def _run_rows(frame: pl.DataFrame, ids: pl.Series, lfs: list[PythonLF], k: int, on_error: OnError,
              n_jobs: int | None) -> tuple[LabelArray, dict[str, list[tuple[int, str]]]]:
    """Each LF on each row: ``[n, len(lfs)]`` votes and, per LF, ``(row, error)`` of its first failures."""
    n = frame.height
    _WORK.update(names=frame.columns, columns=[frame[c].to_list() for c in frame.columns], ids=ids.to_list(),
                 lfs=lfs, k=k, on_error=on_error)
    jobs = min(n_jobs or os.cpu_count() or 1, max(1, n // (PARALLEL_MIN_ROWS // 2)))
    bounds = np.linspace(0, n, jobs * 4 + 1 if jobs > 1 else 2).astype(int)
    pieces = list(zip(bounds[:-1].tolist(), bounds[1:].tolist()))
    try:
        if jobs > 1 and "fork" in multiprocessing.get_all_start_methods():
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=".*fork.*")  # workers never call into polars
                with multiprocessing.get_context("fork").Pool(jobs) as pool:
                    results = pool.map(_run_piece, pieces)
        else:
            results = [_run_piece(piece) for piece in pieces]
    finally:
        _WORK.clear()
    votes = np.concatenate([r[0] for r in results]) if results else np.empty((0, len(lfs)), LABEL_DTYPE)
    errors: dict[str, list[tuple[int, str]]] = {}
    for _, piece_errors in results:
        merge_failures(errors, piece_errors)
    return votes, errors


def _run_piece(bounds: tuple[int, int]) -> tuple[LabelArray, dict[str, list[tuple[int, str]]]]:
    """Votes ``[end - start, m_python]`` of the Python LFs on rows ``start .. end-1``, and their first failures."""
    start, end = bounds
    names, ids, lfs = _WORK["names"], _WORK["ids"], _WORK["lfs"]
    k, abstain_on_error = _WORK["k"], _WORK["on_error"] == "abstain"
    valid = range(ABSTAIN, k)
    columns = [col[start:end] for col in _WORK["columns"]]
    out: list[list[int]] = [[] for _ in lfs]
    errors: dict[str, list[tuple[int, str]]] = {}
    # a plain PythonLF without resources is called as its bare function: one call fewer per row
    calls = [(lf, lf.func if type(lf) is PythonLF and not lf.resources else lf.__call__, out[j])
             for j, lf in enumerate(lfs)]
    for i, values in enumerate(zip(*columns), start):
        row = Row(**dict(zip(names, values)))
        for lf, call, sink in calls:
            try:
                vote = call(row)
            except Exception as exc:
                if not abstain_on_error:
                    raise LFError(
                        f"LF {lf.name!r} raised {type(exc).__name__}: {exc} on row id {ids[i]!r}"
                        " (use on_error='abstain' to abstain on such rows)"
                    ) from exc
                kept = errors.setdefault(lf.name, [])
                if len(kept) < MAX_FAILURES_KEPT:
                    kept.append((i, f"{type(exc).__name__}: {exc}"))
                vote = ABSTAIN
            if type(vote) is not int or vote not in valid:
                vote = _coerce_vote(lf.name, vote, ids[i], k)
            sink.append(vote)
    votes = np.array(out, dtype=LABEL_DTYPE).T if lfs else np.empty((end - start, 0), LABEL_DTYPE)
    return votes.reshape(end - start, len(lfs)), errors


def _coerce_vote(name: str, vote: Any, row_id: str, k: int) -> int:
    """Accept NumPy integers in range; raise naming the LF and row for anything else."""
    if isinstance(vote, np.integer) and ABSTAIN <= int(vote) < k:
        return int(vote)
    raise LFError(
        f"LF {name!r} returned {vote!r} ({type(vote).__name__}) on row id {row_id!r}; "
        f"expected a class index 0..{k - 1} or ABSTAIN (-1)"
    )
