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

Within a chunk, :class:`~labelflow.chunk_applier.ChunkApplier` votes (expression LFs
vectorized, Python LFs memoized on the row fields they read). Expression LFs whose vote
on a row depends on other rows (aggregations, windows, shifts) are evaluated over all rows
at once, as are LFs of the :class:`FrameLF` protocol (FM-based LFs), which return what they
fit on the rows with their votes and keep nothing.

Votes are cached per LF (:mod:`labelflow.vote_cache`) under a key made of the LF's
fingerprint and a hash of the columns it reads, whichever engine computed them, so editing
one LF re-applies only that LF. An LF whose fingerprint cannot prove it unchanged
(:meth:`~labelflow.lf.LabelingFunction.uncovered`) is re-applied on every run, and
:attr:`~labelflow.vote_cache.VoteCache.uncached` says why.

LF code is untrusted in three ways: what it prints goes to stderr (stdout stays
for ``--json``); ``sys.exit()`` or any other escape from it is an LF error naming
the LF and the row; and a worker process that dies (killed, out of memory,
``os._exit``) stops the run with an error naming its rows and the LF it was
running, never a hang. An optional per-row time limit (``timeout_s``) turns a slow
LF call into an LF error too. :mod:`labelflow.lf_workers` runs Python LFs on rows so.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

import numpy as np
import polars as pl

from labelflow.chunk_applier import ChunkApplier, Failures, OnError, apply_expressions
from labelflow.chunks import chunk_bounds, read_chunk, row_count
from labelflow.conventions import ABSTAIN, LABEL_DTYPE, LabelArray
from labelflow.dataset import Dataset, rows_to_label
from labelflow.errors import LFError
from labelflow.lf import ExpressionLF, LabelingFunction, PythonLF, check_suite
from labelflow.lf_workers import merge_failures
from labelflow.matrix import LabelMatrix
from labelflow.quiet import stdout_to_stderr
from labelflow.validation import check_choice, check_int, check_number
from labelflow.vote_cache import VoteCache, cache_key, column_hashes, data_hash

if TYPE_CHECKING:
    from labelflow.fm.cache import FMCache

Engine = Literal["local", "ray"]
"""Engine names: ``"local"`` (this module) and those registered with :func:`register_engine`."""
CHUNK_ROWS = 250_000
"""Rows labeled (and read) at a time by default."""


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
    n = row_count(rows)
    col_hashes = column_hashes(rows, n, chunk_rows)
    out = {}
    for lf in lfs:
        if isinstance(lf, FrameLF) and lf.scoped:
            continue
        fingerprint, uncovered = lf.cache_identity()
        found = None if uncovered else cache.get(cache_key(lf, fingerprint, col_hashes, cardinality, on_error),
                                                 lf.name, n, fitted=isinstance(lf, FrameLF))
        if found is not None:
            out[lf.name] = found[0]
    return out


def _apply(rows: pl.DataFrame | pl.LazyFrame, suite: list[LabelingFunction], cardinality: int,
           cache: VoteCache | None, on_error: OnError, n_jobs: int | None, progress: bool, fm_cache: FMCache | None,
           engine: ChunkEngine | None, chunk_rows: int, timeout_s: float | None) -> LabelMatrix:
    n = row_count(rows)
    col_hashes = column_hashes(rows, n, chunk_rows)
    frames = [lf for lf in suite if isinstance(lf, FrameLF)]
    scoped = [lf for lf in frames if lf.scoped]
    identities = {lf.name: lf.cache_identity() for lf in suite} if cache is not None else {}
    keys = {lf.name: cache_key(lf, identities[lf.name][0], col_hashes, cardinality, on_error, timeout_s=timeout_s)
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
                values, chunk_failures = engine.apply_chunks(rows, applier, n=n, data_hash=data_hash(col_hashes),
                                                             bar=bar)
        votes.update({lf.name: values[:, j] for j, lf in enumerate(applier.lfs)})
        failures.update(chunk_failures)
    if whole:  # their votes depend on other rows: over all rows at once
        votes.update(apply_expressions(_columns(rows, whole), whole, cardinality))
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
        key = cache_key(lf, identities[lf.name][0], col_hashes, cardinality, on_error,
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


