"""Apply an LF suite to a dataset: the label matrix, with per-LF vote caching.

The rows are labeled a chunk at a time (``chunk_rows`` rows; a lazy frame, such
as a project's Parquet files, is read a chunk at a time too), so memory stays
bounded however many rows there are. One function labels a chunk,
:class:`ChunkApplier`, and both engines run it, so their matrices are identical by
construction:

* ``engine="local"`` (default): chunk after chunk in this process, Python LFs
  split over forked worker processes when a chunk is large enough for that to pay;
* another engine (``engine="ray"`` or a :class:`~labelflow.distributed.RayEngine`: Ray
  Data over Parquet shards on a Ray cluster): an object with the :class:`ChunkEngine`
  methods, or the name it is registered under (:func:`register_engine`). Engines sit over
  this module; it imports none of them.

Within a chunk, expression LFs are evaluated together in one vectorized polars
``select``. Python LFs run in one pass over the rows; an LF whose code reads the
row only as ``x.NAME`` (:meth:`~labelflow.lf.PythonLF.row_fields`) is called once
per distinct combination of those values in the chunk, not once per row.
Expression LFs whose vote on a row depends on other rows (aggregations, windows,
shifts) are evaluated over all rows at once, as are LFs of the :class:`FrameLF` protocol
(FM-based LFs), which return what they fit on the rows with their votes and keep nothing.

Votes are cached per LF under a key made of the LF's fingerprint and a hash of the
columns it reads, whichever engine computed them, so editing one LF re-applies
only that LF. An LF whose fingerprint cannot prove it unchanged
(:meth:`~labelflow.lf.LabelingFunction.uncovered`) is re-applied on every run, and
:attr:`VoteCache.uncached` says why.

LF code is untrusted in three ways: what it prints goes to stderr (stdout stays
for ``--json``); ``sys.exit()`` or any other escape from it is an LF error naming
the LF and the row; and a worker process that dies (killed, out of memory,
``os._exit``) stops the run with an error naming its rows and the LF it was
running, never a hang. An optional per-row time limit (``timeout_s``) turns a slow
LF call into an LF error too.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import multiprocessing
import multiprocessing.connection
import os
import signal
import threading
import time
import warnings
import zipfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

import numpy as np
import polars as pl

from labelflow.conventions import ABSTAIN, LABEL_DTYPE, LabelArray
from labelflow.dataset import Dataset, rows_to_label
from labelflow.errors import LFError
from labelflow.files import atomic_path
from labelflow.lf import ExpressionLF, LabelingFunction, PythonLF, Row, check_suite, stdout_to_stderr
from labelflow.matrix import LabelMatrix, LFFailure
from labelflow.validation import check_choice, check_int, check_number

if TYPE_CHECKING:
    from labelflow.fm.cache import FMCache

OnError = Literal["raise", "abstain"]
Engine = Literal["local", "ray"]
"""Engine names: ``"local"`` (this module) and those registered with :func:`register_engine`."""
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


class FrameVotes(Protocol):
    """What a :class:`FrameLF` returns: ``[n]`` int8 ``votes``, what it ``fitted`` on the rows (JSON values, kept
    in the vote cache beside the votes) and what its model ``run`` did (JSON values: ``calls``, ``computed``, ...)."""

    votes: np.ndarray

    @property
    def fitted(self) -> dict[str, Any]: ...

    @property
    def run(self) -> dict[str, Any]: ...


@runtime_checkable
class FrameLF(Protocol):
    """An LF voting over all rows at once from the outputs of a model over its columns (an FM LF).

    ``votes`` returns its votes and what it fit on the rows, keeping nothing on the LF; ``cache``
    keeps its model outputs, ``engine`` (a :class:`ChunkEngine` or ``None``) may host its model.
    A ``scoped`` LF votes only on the rows ``scope(others)`` leaves it, given the ``[n, m]`` votes
    of the suite's LFs that are not scoped.
    """

    name: str
    scoped: bool

    def scope(self, others: LabelArray) -> np.ndarray: ...

    def votes(self, frame: pl.DataFrame, *, cardinality: int, cache: Any, rows: np.ndarray | None = None,
              progress: bool = False, engine: Any = None) -> FrameVotes: ...


class ChunkEngine(Protocol):
    """An engine other than this process (:class:`labelflow.distributed.RayEngine`).

    ``apply_chunks`` labels every chunk of ``rows`` with ``applier`` (the very function the local
    engine runs) and returns the ``[n, m]`` votes and the failures per LF; ``data_hash`` names the
    rows' content. ``provider`` hosts the model of a :class:`FrameLF`.
    """

    def apply_chunks(self, rows: pl.DataFrame | pl.LazyFrame, applier: ChunkApplier, *, n: int, data_hash: str,
                     bar: Any) -> tuple[LabelArray, Failures]: ...

    def provider(self, kind: str, config: Mapping[str, Any]) -> Any: ...


_ENGINES: dict[str, Callable[[], ChunkEngine]] = {}


def register_engine(name: str, make: Callable[[], ChunkEngine]) -> None:
    """Let ``engine=name`` run on ``make()`` (:mod:`labelflow.distributed` registers ``"ray"``)."""
    _ENGINES[name] = make


def _engine(engine: str | ChunkEngine) -> ChunkEngine | None:
    """``None`` for the local engine, else the engine named or given."""
    if engine == "local":
        return None
    if isinstance(engine, str) and engine in _ENGINES:
        return _ENGINES[engine]()
    if isinstance(engine, str) or not hasattr(engine, "apply_chunks"):
        names = ", ".join(repr(name) for name in ["local", *_ENGINES])
        raise LFError(f"engine must be {names} or an engine such as a RayEngine; got {engine!r}")
    return engine


class VoteCache:
    """Per-LF votes on disk, one ``.npz`` file per (LF fingerprint, data hash) key.

    ``hits`` and ``misses`` list the LF names looked up since the cache was opened (an LF
    that cannot be cached counts as a miss); ``uncached`` maps each LF that was re-applied
    because its fingerprint cannot prove it unchanged to what the fingerprint cannot cover.
    For each :class:`FrameLF` applied, ``fitted`` holds what it fit on the rows (stored beside
    its votes, so a cache hit gives the same) and, for each one run rather than read from
    the cache, ``runs`` holds what its model run did (``calls``, ``computed``, ``cached``, ...).
    """

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.hits: list[str] = []
        self.misses: list[str] = []
        self.uncached: dict[str, str] = {}
        self.fitted: dict[str, dict[str, Any]] = {}
        self.runs: dict[str, dict[str, Any]] = {}

    def skip(self, lf_name: str, uncovered: Sequence[str]) -> None:
        """Record that ``lf_name`` is re-applied, neither read nor stored: its fingerprint misses ``uncovered``."""
        self.misses.append(lf_name)
        shown = "; ".join(uncovered[:3]) + (f"; and {len(uncovered) - 3} more" if len(uncovered) > 3 else "")
        self.uncached[lf_name] = f"fingerprint cannot cover {shown}"

    def get(self, key: str, lf_name: str, n: int, *, fitted: bool = False,
            ) -> tuple[np.ndarray, list[LFFailure], dict[str, Any] | None] | None:
        """The ``[n]`` votes, failures and fitted state stored under ``key``, or ``None``; with ``fitted``, an
        entry without fitted state (written before it was kept) is a miss too."""
        path = self.folder / f"{key}.npz"
        try:
            with np.load(path, allow_pickle=False) as npz:
                votes = npz["votes"]
                failures = [LFFailure(**f) for f in json.loads(str(npz["failures"]))]
                state = json.loads(str(npz["fitted"])) if "fitted" in npz.files else None
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):  # missing or corrupt: recompute
            self.misses.append(lf_name)
            return None
        if votes.shape != (n,) or (fitted and state is None):
            self.misses.append(lf_name)
            return None
        self.hits.append(lf_name)
        return votes, failures, state

    def put(self, key: str, votes: np.ndarray, failures: list[LFFailure], fitted: dict[str, Any] | None = None) -> None:
        """Store votes, failures and what the LF fit (if it fits anything) under ``key`` (atomically)."""
        extra = {} if fitted is None else {"fitted": np.array(json.dumps(fitted))}
        with atomic_path(self.folder / f"{key}.npz") as tmp, open(tmp, "wb") as fh:
            np.savez(fh, votes=votes, failures=np.array(json.dumps([f.__dict__ for f in failures])), **extra)


def apply_lfs(
    data: Dataset | pl.DataFrame | pl.LazyFrame | Any,
    lfs: Sequence[Any],
    *,
    cardinality: int | None = None,
    cache: VoteCache | None = None,
    on_error: OnError = "raise",
    n_jobs: int | None = None,
    progress: bool = False,
    fm_cache: FMCache | None = None,
    engine: Engine | ChunkEngine = "local",
    chunk_rows: int = CHUNK_ROWS,
    timeout_s: float | None = None,
) -> LabelMatrix:
    """Apply every LF to every row.

    Parameters
    ----------
    data
        A :class:`Dataset`, a polars or pandas frame, or a lazy frame (read ``chunk_rows``
        rows at a time, e.g. ``pl.scan_parquet(path)``); ``n`` rows. A frame without an
        ``id`` column gets row ids ``"0" .. "n-1"``, the rows' positions
        (:func:`~labelflow.dataset.rows_to_label`).
    lfs
        ``m`` labelflow or Snorkel LFs with unique names.
    cardinality
        Number of classes ``k``; votes must lie in ``-1 .. k-1``. ``None``: a
        :class:`Dataset`'s, from its class schema (a frame has none: give it).
    cache
        Reuse and store votes per LF; ``None`` applies everything.
    on_error
        ``"raise"``: the first exception an LF raises stops the run, naming the LF
        and the row id. ``"abstain"``: the LF abstains on that row, and the failure
        is kept in :attr:`LabelMatrix.failures`. An LF returning something other
        than a class index or ``ABSTAIN`` always raises. ``sys.exit()`` in an LF
        counts as an exception; a worker process dying always raises.
    n_jobs
        Worker processes for Python LFs on the local engine; ``None`` uses every CPU.
    progress
        Show progress bars (rows/s) on stderr.
    fm_cache
        Where FM-based LFs (:class:`FrameLF`) keep their model outputs; ``None`` recomputes them.
    engine
        ``"local"``, ``"ray"`` (a :class:`~labelflow.distributed.RayEngine` with its
        defaults: the running or a new local cluster), another registered name, or an
        engine object such as a ``RayEngine`` (see :class:`ChunkEngine`).
    chunk_rows
        Rows labeled at a time on the local engine (memory grows with it).
    timeout_s
        Seconds a Python LF may take on one row; a call that takes longer is
        interrupted and is an LF error (``on_error`` decides). Code that does not
        return to the interpreter is stopped by killing its worker process (Python
        LFs then run in worker processes where the platform can fork). ``None``: no limit.

    Returns
    -------
    LabelMatrix
        ``[n, m]`` votes, columns in suite order.
    """
    check_choice("on_error", on_error, OnError, error=LFError)
    runner = _engine(engine)
    check_int("chunk_rows", chunk_rows, minimum=1, error=LFError)
    check_number("timeout_s", timeout_s, above=0, unit="seconds", optional=True, error=LFError)
    if isinstance(data, Sequence) and not isinstance(lfs, Sequence):
        raise LFError(f"apply_lfs takes the data first, then the LFs: apply_lfs(data, lfs); got a "
                      f"{type(data).__name__} of LFs, then a {type(lfs).__name__}")
    if cardinality is None:
        if not isinstance(data, Dataset):
            raise LFError(f"give cardinality=, the number of classes, to label a {type(data).__name__} (a Dataset "
                          "has it in its class schema)")
        cardinality = data.schema.k
    rows = rows_to_label(data)
    suite = check_suite(lfs)
    with stdout_to_stderr():  # LF code (and forked workers) may print; stdout is for the caller's output
        return _apply(rows, suite, cardinality, cache, on_error, n_jobs, progress, fm_cache, runner, chunk_rows,
                      timeout_s)


def cached_votes(data: Dataset | pl.DataFrame | pl.LazyFrame, lfs: Sequence[LabelingFunction], *, cardinality: int,
                 cache: VoteCache, on_error: OnError = "raise", chunk_rows: int = CHUNK_ROWS) -> dict[str, np.ndarray]:
    """``{LF name: [n] votes}`` of those ``lfs`` whose votes on ``data`` (applied as :func:`apply_lfs` would,
    with ``on_error``) ``cache`` holds; applies nothing. Scoped LFs (:class:`FrameLF`) are left out (their votes
    depend on the rest of their suite)."""
    rows = data.frame if isinstance(data, Dataset) else data
    n = _height(rows)
    col_hashes = _column_hashes(rows, n, chunk_rows)
    out = {}
    for lf in lfs:
        if isinstance(lf, FrameLF) and lf.scoped:
            continue
        fingerprint, uncovered = lf.cache_identity()
        found = None if uncovered else cache.get(_cache_key(lf, fingerprint, col_hashes, cardinality, on_error),
                                                 lf.name, n, fitted=isinstance(lf, FrameLF))
        if found is not None:
            out[lf.name] = found[0]
    return out


def _apply(rows: pl.DataFrame | pl.LazyFrame, suite: list[LabelingFunction], cardinality: int,
           cache: VoteCache | None, on_error: OnError, n_jobs: int | None, progress: bool, fm_cache: FMCache | None,
           engine: ChunkEngine | None, chunk_rows: int, timeout_s: float | None) -> LabelMatrix:
    n = _height(rows)
    col_hashes = _column_hashes(rows, n, chunk_rows)
    frames = [lf for lf in suite if isinstance(lf, FrameLF)]
    scoped = [lf for lf in frames if lf.scoped]
    identities = {lf.name: lf.cache_identity() for lf in suite} if cache is not None else {}
    keys = {lf.name: _cache_key(lf, identities[lf.name][0], col_hashes, cardinality, on_error, timeout_s=timeout_s)
            for lf in suite if lf not in scoped and lf.name in identities and not identities[lf.name][1]}

    votes: dict[str, np.ndarray] = {}
    failures: Failures = {}
    fitted: dict[str, dict[str, Any]] = {}  # what each frame LF fit, and what the model runs did
    runs: dict[str, dict[str, Any]] = {}
    if cache is not None:
        for lf in suite:
            if identities[lf.name][1]:  # the fingerprint cannot prove the LF unchanged: re-apply, store nothing
                cache.skip(lf.name, identities[lf.name][1])
                continue
            found = cache.get(keys[lf.name], lf.name, n, fitted=lf in frames) if lf.name in keys else None
            if found is not None:
                votes[lf.name], failures[lf.name], state = found
                if lf in frames:
                    fitted[lf.name] = state  # type: ignore[assignment]
    todo = [lf for lf in suite if lf.name not in votes and lf not in scoped]

    whole = [lf for lf in todo if isinstance(lf, ExpressionLF) and not _row_wise(lf.expr)]
    per_chunk = [lf for lf in todo if isinstance(lf, PythonLF) or (isinstance(lf, ExpressionLF) and lf not in whole)]
    applier = ChunkApplier(tuple(per_chunk), cardinality, on_error, timeout_s)
    if applier.lfs:
        from tqdm.auto import tqdm

        with tqdm(total=n, desc=f"LFs ×{len(applier.lfs)}", unit="row", unit_scale=True, disable=not progress,
                  leave=False) as bar:
            if engine is None:
                values, chunk_failures = _apply_chunks(rows, applier, n, chunk_rows, n_jobs, bar)
            else:
                values, chunk_failures = engine.apply_chunks(rows, applier, n=n, data_hash=_data_hash(col_hashes),
                                                             bar=bar)
        votes.update({lf.name: values[:, j] for j, lf in enumerate(applier.lfs)})
        failures.update(chunk_failures)
    if whole:  # their votes depend on other rows: over all rows at once
        votes.update(_apply_expressions(_columns(rows, whole), whole, cardinality))
    run_frames = [lf for lf in frames if lf in todo or lf in scoped]
    frame = _columns(rows, run_frames) if run_frames else None
    for lf in todo:
        if lf in frames:
            result = lf.votes(frame, cardinality=cardinality, cache=fm_cache, progress=progress, engine=engine)
            votes[lf.name], fitted[lf.name], runs[lf.name] = result.votes, result.fitted, result.run
        if cache is not None and lf.name in keys:
            cache.put(keys[lf.name], votes[lf.name], failures.get(lf.name, []), fitted.get(lf.name))

    # scoped LFs see the votes of every other LF, and only vote (and call their model) where their scope allows
    if scoped:
        others = [lf.name for lf in suite if lf not in scoped]
        L_others = np.stack([votes[name] for name in others], axis=1) if others else np.full((n, 1), ABSTAIN, LABEL_DTYPE)
    for lf in scoped:
        allowed = lf.scope(L_others)
        cacheable = cache is not None and not identities[lf.name][1]
        key = _cache_key(lf, identities[lf.name][0], col_hashes, cardinality, on_error,
                         extra=hashlib.blake2b(allowed.tobytes()).hexdigest()) if cacheable else ""
        found = cache.get(key, lf.name, n, fitted=True) if cacheable else None  # type: ignore[union-attr]
        if found is None:
            result = lf.votes(frame, cardinality=cardinality, cache=fm_cache, rows=allowed, progress=progress,
                              engine=engine)
            found, runs[lf.name] = (result.votes, [], result.fitted), result.run
            if cacheable:
                cache.put(key, *found)  # type: ignore[union-attr]
        votes[lf.name], failures[lf.name], fitted[lf.name] = found  # type: ignore[assignment]
    if cache is not None:
        cache.fitted.update(fitted)
        cache.runs.update(runs)

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
    timeout_s
        Seconds a Python LF may take on one row (``None``: no limit), as in :func:`apply_lfs`.
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
            found = _apply_expressions(chunk, [self.lfs[j] for j in exprs], self.cardinality)  # type: ignore[misc]
            for j in exprs:
                out[:, j] = found[self.lfs[j].name]
        if pys:
            out[:, pys], failures = _apply_python(chunk, [self.lfs[j] for j in pys], self.cardinality,  # type: ignore[misc]
                                                  self.on_error, n_jobs, self.timeout_s, processes)
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


def _cache_key(lf: LabelingFunction, fingerprint: str, col_hashes: dict[str, str], cardinality: int, on_error: str,
               extra: str = "", *, timeout_s: float | None = None) -> str:
    """The vote cache key: the LF's fingerprint, the settings, and the hashes of the columns it reads (all
    columns when that is unknown). A Python LF's time limit counts when late calls abstain (they change votes)."""
    cols = lf.columns()
    used = sorted(col_hashes) if cols is None else sorted(set(cols) | {"id"})
    digest = hashlib.blake2b(digest_size=20)
    if timeout_s is not None and on_error == "abstain" and isinstance(lf, PythonLF):
        extra += f"timeout={float(timeout_s)!r}"
    parts = [fingerprint, str(cardinality), on_error, pl.__version__, extra]
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
_SLOT = 3
"""Per worker, in the shared ``state`` array: the row it labels, the LF it is calling (-1 between calls), and
when that call began (``time.monotonic_ns``, 0 between calls; kept only under a time limit)."""
POLL_S = 0.1
"""Seconds between the checks for LF calls past their time limit, while workers run under one (at most)."""
_NUDGE = getattr(signal, "SIGUSR1", None)
"""The signal the parent sends a worker whose LF call is past the time limit (it raises there)."""


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
        found, errors = _run_rows(frame.select(fields)[firsts], ids.gather(firsts), [lfs[j] for j in memo], k,
                                  on_error, n_jobs, timeout_s, processes)
        votes[:, memo] = found[inverse]
        for name, errs in errors.items():  # every row holding a failing value fails, in row order
            message = dict(errs)
            hit = np.flatnonzero(np.isin(inverse, list(message)))[:MAX_FAILURES_KEPT]
            failures[name] = [LFFailure(name, ids[int(i)], message[int(inverse[i])]) for i in hit]
    rest = [j for j in range(len(lfs)) if distinct is None or j not in memo]
    if rest:
        found, errors = _run_rows(frame, ids, [lfs[j] for j in rest], k, on_error, n_jobs, timeout_s, processes)
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
              n_jobs: int | None, timeout_s: float | None = None, processes: bool = True,
              ) -> tuple[LabelArray, dict[str, list[tuple[int, str]]]]:
    """Each LF on each row: ``[n, len(lfs)]`` votes and, per LF, ``(row, error)`` of its first failures.

    Rows are split into pieces run by forked worker processes when there are enough of them, or when a
    time limit needs a process that can be stopped; otherwise here.
    """
    n = frame.height
    _WORK.update(names=frame.columns, columns=[frame[c].to_list() for c in frame.columns], ids=ids.to_list(),
                 lfs=lfs, k=k, on_error=on_error, timeout_s=timeout_s)
    jobs = min(n_jobs or os.cpu_count() or 1, max(1, n // (PARALLEL_MIN_ROWS // 2)))
    bounds = np.linspace(0, n, jobs * 4 + 1 if jobs > 1 else 2).astype(int)
    pieces = list(zip(bounds[:-1].tolist(), bounds[1:].tolist()))
    can_fork = processes and "fork" in multiprocessing.get_all_start_methods() \
        and not multiprocessing.current_process().daemon  # a daemon process may not have children
    try:
        if can_fork and n and (jobs > 1 or timeout_s is not None):
            results = _run_pool(pieces, jobs)
        else:
            with _alarm(timeout_s) as alarm:
                results = [_run_piece(piece, alarm=alarm) for piece in pieces]
    finally:
        _WORK.clear()
    votes = np.concatenate([r[0] for r in results]) if results else np.empty((0, len(lfs)), LABEL_DTYPE)
    errors: dict[str, list[tuple[int, str]]] = {}
    for _, piece_errors in results:
        merge_failures(errors, piece_errors)
    return votes, errors


class _LFTimeout(BaseException):
    """Raised into an LF call that outlives the time limit (not an ``Exception``, so LF code catching those
    does not swallow it)."""


_ALARM: dict[str, Any] = {"armed": False, "state": None, "at": 0, "limit": 0}
"""Whether an LF call may be interrupted now; in a worker, where its start time is (to ignore a late nudge)."""


def _on_alarm(signum: int, frame: Any) -> None:
    if not _ALARM["armed"]:
        return
    state = _ALARM["state"]
    if state is not None and time.monotonic_ns() - state[_ALARM["at"] + 2] <= _ALARM["limit"]:
        return  # a nudge meant for a call that has ended since
    _ALARM["armed"] = False
    raise _LFTimeout


@contextmanager
def _alarm(timeout_s: float | None) -> Iterator[bool]:
    """In this process: interrupt LF calls past ``timeout_s`` with a SIGALRM timer set per call; yields whether
    it can (a time limit, a platform with ``setitimer``, the main thread). Restores the previous handler and timer."""
    if timeout_s is None or not hasattr(signal, "setitimer") \
            or threading.current_thread() is not threading.main_thread():
        yield False
        return
    previous = signal.signal(signal.SIGALRM, _on_alarm)
    timer = signal.setitimer(signal.ITIMER_REAL, 0)
    try:
        yield True
    finally:
        _ALARM["armed"] = False
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous if previous is not None else signal.SIG_DFL)
        if timer[0] > 0:
            signal.setitimer(signal.ITIMER_REAL, *timer)


def _run_piece(bounds: tuple[int, int], *, slot: int | None = None, skip: dict[tuple[int, int], str] | None = None,
               alarm: bool = False) -> tuple[LabelArray, dict[str, list[tuple[int, str]]]]:
    """Votes ``[end - start, m_python]`` of the Python LFs on rows ``start .. end-1``, and their first failures.

    ``slot``: this worker's place in the shared ``state`` array (``None`` in the parent process), where the
    parent watches the time calls take (and nudges, then kills, a worker past the limit); ``skip``:
    ``{(row, LF index): error}`` calls not to make again (their worker was stopped), failed with ``error``;
    ``alarm``: in the parent, interrupt calls past the time limit with a SIGALRM timer. A call found to have
    taken too long when it returns fails too.
    """
    start, end = bounds
    names, ids, lfs = _WORK["names"], _WORK["ids"], _WORK["lfs"]
    k, abstain_on_error, timeout = _WORK["k"], _WORK["on_error"] == "abstain", _WORK["timeout_s"]
    state = _WORK.get("state") if slot is not None else None
    at = _SLOT * slot if slot is not None else 0
    limit = int(timeout * 1e9) if timeout is not None else 0
    _ALARM.update(armed=False, state=state, at=at, limit=limit)
    valid = range(ABSTAIN, k)
    columns = [col[start:end] for col in _WORK["columns"]]
    out: list[list[int]] = [[] for _ in lfs]
    errors: dict[str, list[tuple[int, str]]] = {}
    # a plain PythonLF without resources is called as its bare function: one call fewer per row
    calls = [(j, lf, lf.func if type(lf) is PythonLF and not lf.resources else lf.__call__, out[j])
             for j, lf in enumerate(lfs)]
    for i, values in enumerate(zip(*columns), start):
        row = Row(**dict(zip(names, values)))
        if state is not None:
            state[at] = i
        for j, lf, call, sink in calls:
            try:
                if skip and (i, j) in skip:
                    raise _Skipped(skip[(i, j)])
                if state is not None:
                    state[at + 1] = j
                if timeout is None:
                    vote = call(row)
                else:
                    began = time.monotonic_ns()
                    if state is not None:
                        state[at + 2] = began
                    if alarm:
                        signal.setitimer(signal.ITIMER_REAL, timeout)
                    _ALARM["armed"] = True
                    vote = call(row)
                    _ALARM["armed"] = False
                    if alarm:
                        signal.setitimer(signal.ITIMER_REAL, 0)
                    if time.monotonic_ns() - began > limit:  # it swallowed the interrupt, or none could be sent
                        raise _LFTimeout
                if state is not None:
                    state[at + 2] = 0
                    state[at + 1] = -1
            except BaseException as exc:  # noqa: BLE001 (sys.exit() and the like from an LF are LF errors too)
                _ALARM["armed"] = False
                if alarm:
                    signal.setitimer(signal.ITIMER_REAL, 0)
                if state is not None:
                    state[at + 2] = 0
                    state[at + 1] = -1
                if isinstance(exc, KeyboardInterrupt):
                    raise LFError(f"interrupted while LF {lf.name!r} was labeling row id {ids[i]!r}") from None
                error = _describe(exc, timeout)
                if not abstain_on_error:
                    hint = "raise the time limit, or use" if isinstance(exc, _LFTimeout) else "use"
                    raise LFError(f"LF {lf.name!r} raised {error} on row id {ids[i]!r} ({hint} on_error='abstain' "
                                  "to abstain on such rows)") from (None if isinstance(exc, _LFTimeout) else exc)
                kept = errors.setdefault(lf.name, [])
                if len(kept) < MAX_FAILURES_KEPT:
                    kept.append((i, error))
                vote = ABSTAIN
            if type(vote) is not int or vote not in valid:
                vote = _coerce_vote(lf.name, vote, ids[i], k)
            sink.append(vote)
    votes = np.array(out, dtype=LABEL_DTYPE).T if lfs else np.empty((end - start, 0), LABEL_DTYPE)
    return votes.reshape(end - start, len(lfs)), errors


class _Skipped(Exception):
    """A call not made again: it ran past the time limit before and its worker had to be stopped."""


def _describe(exc: BaseException, timeout: float | None) -> str:
    """``"Type: message"`` of an exception an LF raised, as kept in failures."""
    if isinstance(exc, _Skipped):
        return str(exc)
    if isinstance(exc, _LFTimeout):
        return f"TimeoutError: took longer than the time limit of {timeout:g} s"
    if isinstance(exc, SystemExit):
        return f"SystemExit: the LF called sys.exit({exc.code!r}); an LF must return a vote"
    return f"{type(exc).__name__}: {exc}"


def _coerce_vote(name: str, vote: Any, row_id: str, k: int) -> int:
    """Accept NumPy integers in range; raise naming the LF and row for anything else."""
    if isinstance(vote, np.integer) and ABSTAIN <= int(vote) < k:
        return int(vote)
    raise LFError(
        f"LF {name!r} returned {vote!r} ({type(vote).__name__}) on row id {row_id!r}; "
        f"expected a class index 0..{k - 1} or ABSTAIN (-1)"
    )


# --- worker processes ----------------------------------------------------------------------------------


class _Worker:
    """One forked process labeling pieces of rows it is sent over a pipe; it inherits :data:`_WORK`."""

    def __init__(self, context: Any, slot: int) -> None:
        self.slot = slot
        self.piece: int | None = None
        self.conn, child = context.Pipe()
        self.process = context.Process(target=_worker_main, args=(slot, child), daemon=True,
                                       name=f"labelflow-lf-worker-{slot}")
        self.process.start()
        child.close()

    def give(self, piece: int, bounds: tuple[int, int], skip: dict[tuple[int, int], str] | None) -> None:
        self.piece = piece
        self.conn.send((bounds, skip))

    def receive(self) -> tuple[str, Any] | None:
        """The reply to the piece given, or ``None`` if the process died first."""
        try:
            if self.conn.poll():
                return self.conn.recv()
        except (EOFError, OSError):
            pass
        return None

    def exitcode(self) -> int | None:
        self.process.join(timeout=5)
        return self.process.exitcode

    def stop(self, *, kill: bool = False) -> None:
        if not kill and self.process.is_alive():
            try:
                self.conn.send(None)
            except OSError:
                kill = True
            else:
                self.process.join(timeout=5)
        if self.process.is_alive():
            self.process.kill()
        self.process.join()
        self.conn.close()


def _worker_main(slot: int, conn: Any) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl+C is the parent's to handle: it stops the workers
    if _NUDGE is not None:
        signal.signal(_NUDGE, _on_alarm)
    with stdout_to_stderr():
        while True:
            try:
                task = conn.recv()
            except (EOFError, OSError):  # the parent is gone
                return
            if task is None:
                return
            bounds, skip = task
            try:
                reply: tuple[str, Any] = ("ok", _run_piece(bounds, slot=slot, skip=skip))
            except BaseException as exc:  # noqa: BLE001 (sent back and raised in the parent)
                reply = ("error", exc if isinstance(exc, LFError) else LFError(f"{type(exc).__name__}: {exc}"))
            conn.send(reply)


def _run_pool(pieces: list[tuple[int, int]], jobs: int) -> list[tuple[LabelArray, dict[str, list[tuple[int, str]]]]]:
    """:func:`_run_piece` on every piece in up to ``jobs`` forked workers; results in piece order.

    A worker that dies raises :class:`LFError` naming its rows and the LF it was calling. Under a time
    limit, a call past it is interrupted (the worker is sent :data:`_NUDGE`); one that outlives it by a
    grace period (its code ignored the interrupt) has its worker killed: an LF error, or with
    ``on_error="abstain"`` the piece is labeled again skipping that call. The first error in row order is raised.
    """
    context = multiprocessing.get_context("fork")
    slots = max(1, min(jobs, len(pieces)))
    state = context.RawArray("q", _SLOT * slots)
    _WORK["state"] = state
    timeout = _WORK["timeout_s"]
    limit_ns = 0 if timeout is None else int(timeout * 1e9)
    hard_ns = 0 if timeout is None else int((timeout + max(1.0, timeout)) * 1e9)  # the grace: as long again, ≥ 1 s
    poll = None if timeout is None else min(POLL_S, timeout / 2)
    nudged: dict[int, int] = {}  # slot → start of the call it was nudged about
    results: list[Any] = [None] * len(pieces)
    todo = list(range(len(pieces)))  # kept sorted
    skips: dict[int, dict[tuple[int, int], str]] = {}
    errors: dict[int, LFError] = {}
    workers: list[_Worker | None] = [None] * slots
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*fork.*")  # workers never call into polars
            while True:
                first_error = min(errors, default=len(pieces))
                for slot in range(slots):
                    worker = workers[slot]
                    if worker is not None and worker.piece is not None and worker.piece > first_error:
                        worker.stop(kill=True)  # cannot raise an earlier error than the one known
                        workers[slot] = worker = None
                    if (worker is None or worker.piece is None) and todo and todo[0] < first_error:
                        if worker is not None and not worker.process.is_alive():  # died after its last reply
                            worker.stop(kill=True)
                            worker = None
                        if worker is None:
                            workers[slot] = worker = _Worker(context, slot)
                        state[_SLOT * slot:_SLOT * slot + _SLOT] = [-1, -1, 0]
                        piece = todo.pop(0)
                        worker.give(piece, pieces[piece], skips.get(piece))
                busy = [w for w in workers if w is not None and w.piece is not None]
                if not busy:
                    break
                ready = multiprocessing.connection.wait(
                    [w.conn for w in busy] + [w.process.sentinel for w in busy],
                    timeout=poll)
                for worker in busy:
                    if worker.conn not in ready and worker.process.sentinel not in ready:
                        continue
                    reply = worker.receive()
                    if reply is None:
                        raise _died(worker, pieces, state)
                    kind, value = reply
                    if kind == "ok":
                        results[worker.piece] = value  # type: ignore[index]
                    else:
                        errors[worker.piece] = value  # type: ignore[index]
                    worker.piece = None
                if timeout is not None:
                    for worker in busy:
                        began = _call_start(state, worker.slot) if worker.piece is not None else 0
                        if not began:
                            continue
                        late = time.monotonic_ns() - began
                        if late > hard_ns and _stop_overdue(worker, state, skips, todo):
                            workers[worker.slot] = None
                        elif _NUDGE is not None and late > limit_ns and nudged.get(worker.slot) != began:
                            nudged[worker.slot] = began  # interrupt the call (once); kill it if that does not help
                            with contextlib.suppress(ProcessLookupError):
                                os.kill(worker.process.pid, _NUDGE)
        if errors:
            raise errors[min(errors)]
    finally:
        for worker in workers:
            if worker is not None:
                worker.stop(kill=worker.piece is not None)
    return results


def _call_start(state: Any, slot: int) -> int:
    """When the LF call the worker in ``slot`` is in began (``time.monotonic_ns``), or 0 between calls."""
    at = _SLOT * slot
    lf, began = state[at + 1], state[at + 2]
    return began if lf >= 0 and began > 0 and state[at + 1] == lf else 0


def _stop_overdue(worker: _Worker, state: Any, skips: dict[int, dict[tuple[int, int], str]], todo: list[int]) -> bool:
    """Kill a worker stuck in an LF call past the time limit and requeue its piece, skipping that call; raise
    instead unless ``on_error="abstain"``. ``False`` (nothing done) if the call ended meanwhile."""
    at = _SLOT * worker.slot
    row, j, began = int(state[at]), int(state[at + 1]), int(state[at + 2])
    if j < 0 or not began:
        return False
    worker.stop(kill=True)
    piece, worker.piece = worker.piece, None
    stuck = (int(state[at]), int(state[at + 1]), int(state[at + 2])) == (row, j, began)
    if stuck:  # else the call returned just before the kill: the piece is labeled again in full
        name, row_id, timeout = _WORK["lfs"][j].name, _WORK["ids"][row], _WORK["timeout_s"]
        error = f"TimeoutError: took longer than the time limit of {timeout:g} s and ignored the interrupt"
        if _WORK["on_error"] != "abstain":
            raise LFError(f"LF {name!r} raised {error} on row id {row_id!r}; its worker process was stopped (raise "
                          "the time limit, or use on_error='abstain' to abstain on such rows)")
        skips.setdefault(piece, {})[(row, j)] = error  # type: ignore[arg-type]
    todo.append(piece)  # type: ignore[arg-type]
    todo.sort()
    return True


def _died(worker: _Worker, pieces: list[tuple[int, int]], state: Any) -> LFError:
    """The error for a worker process that exited while labeling a piece."""
    code = worker.exitcode()
    if code is not None and code < 0:
        try:
            how = f"killed by signal {signal.Signals(-code).name}"
        except ValueError:
            how = f"killed by signal {-code}"
        if code == -signal.SIGKILL:
            how += ", perhaps for lack of memory"
    else:
        how = f"exit status {code}"
    start, end = pieces[worker.piece]  # type: ignore[index]
    ids, lfs = _WORK["ids"], _WORK["lfs"]
    at = _SLOT * worker.slot
    row, j = int(state[at]), int(state[at + 1])
    rows = f"rows {ids[start]!r}..{ids[end - 1]!r}"
    if 0 <= j < len(lfs) and start <= row < end:
        doing = f"while LF {lfs[j].name!r} was labeling row id {ids[row]!r} (of {rows})"
    else:
        doing = f"while labeling {rows}"
    return LFError(f"a worker process died ({how}) {doing}; nothing was written. An LF must return a vote: look in it "
                   "for os._exit(), a crash in native code or heavy memory use (if memory ran out, use fewer worker "
                   "processes: n_jobs / --jobs)")
