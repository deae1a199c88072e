"""Apply an LF suite to a dataset: the label matrix, with per-LF vote caching.

Expression LFs are evaluated together in one vectorized polars ``select``. Python
LFs run in one pass over the rows (one :class:`~labelflow.lf.Row` per row, shared
by all Python LFs), split over forked worker processes when the data is large
enough for that to pay. Votes are cached per LF under a key made of the LF's
fingerprint and a hash of the columns it reads, so editing one LF re-applies
only that LF.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import warnings
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import polars as pl

from labelflow.dataset import Dataset
from labelflow.errors import LFError
from labelflow.fm.cache import FMCache
from labelflow.fm.lfs import FMLF, budget_rows
from labelflow.io import atomic_path
from labelflow.lf import ExpressionLF, LabelingFunction, PythonLF, Row, check_suite
from labelflow.matrix import LabelMatrix, LFFailure
from labelflow.typing import ABSTAIN, LABEL_DTYPE

OnError = Literal["raise", "abstain"]
PARALLEL_MIN_ROWS = 20_000
"""Python LFs use worker processes only from this many rows up; below it, start-up costs more than it saves."""
MAX_FAILURES_KEPT = 100
"""Per LF, how many failures (row id and exception) are kept when errors abstain."""


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
    data: Dataset | pl.DataFrame,
    lfs: Sequence[Any],
    *,
    cardinality: int,
    cache: VoteCache | None = None,
    on_error: OnError = "raise",
    n_jobs: int | None = None,
    progress: bool = False,
    fm_cache: FMCache | None = None,
) -> LabelMatrix:
    """Apply every LF to every row.

    Parameters
    ----------
    data
        A :class:`Dataset` or a frame with an ``id`` column; ``n`` rows.
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
        Worker processes for Python LFs; ``None`` uses every CPU.
    progress
        Show progress bars on stderr.
    fm_cache
        Where FM-based LFs keep their model outputs; ``None`` recomputes them.

    Returns
    -------
    LabelMatrix
        ``[n, m]`` votes, columns in suite order.
    """
    if on_error not in ("raise", "abstain"):
        raise LFError(f"on_error must be 'raise' or 'abstain'; got {on_error!r}")
    frame = data.frame if isinstance(data, Dataset) else data
    if "id" not in frame.columns:
        raise LFError(f"the data to label needs an 'id' column; it has {frame.columns}")
    suite = check_suite(lfs)
    n = frame.height
    col_hashes = _column_hashes(frame)
    budgeted = [lf for lf in suite if isinstance(lf, FMLF) and lf.budget is not None]
    keys = {lf.name: _cache_key(lf, col_hashes, cardinality, on_error) for lf in suite if lf not in budgeted}

    votes: dict[str, np.ndarray] = {}
    failures: dict[str, list[LFFailure]] = {}
    if cache is not None:
        for lf in suite:
            found = cache.get(keys[lf.name], lf.name, n) if lf.name in keys else None
            if found is not None:
                votes[lf.name], failures[lf.name] = found
    todo = [lf for lf in suite if lf.name not in votes and lf not in budgeted]

    exprs = [lf for lf in todo if isinstance(lf, ExpressionLF)]
    pys = [lf for lf in todo if isinstance(lf, PythonLF)]
    if exprs:
        votes.update(_apply_expressions(frame, exprs, cardinality))
    if pys:
        py_votes, py_failures = _apply_python(frame, pys, cardinality, on_error, n_jobs, progress)
        votes.update(py_votes)
        failures.update(py_failures)
    for lf in todo:
        if isinstance(lf, FMLF):
            votes[lf.name] = lf.votes(frame, cardinality=cardinality, cache=fm_cache, progress=progress)
        if cache is not None:
            cache.put(keys[lf.name], votes[lf.name], failures.get(lf.name, []))

    # budgeted FM LFs see the votes of every other LF, and only vote (and call their model) where allowed
    if budgeted:
        others = [lf.name for lf in suite if lf not in budgeted]
        L_others = np.stack([votes[name] for name in others], axis=1) if others else np.full((n, 1), ABSTAIN, LABEL_DTYPE)
    for lf in budgeted:
        rows = budget_rows(L_others, lf.budget)  # type: ignore[arg-type]
        key = _cache_key(lf, col_hashes, cardinality, on_error, extra=hashlib.blake2b(rows.tobytes()).hexdigest())
        found = cache.get(key, lf.name, n) if cache is not None else None
        if found is None:
            found = lf.votes(frame, cardinality=cardinality, cache=fm_cache, rows=rows, progress=progress), []
            if cache is not None:
                cache.put(key, *found)
        votes[lf.name], failures[lf.name] = found

    L = np.empty((n, len(suite)), dtype=LABEL_DTYPE)
    for j, lf in enumerate(suite):
        L[:, j] = votes[lf.name]
    all_failures = tuple(f for lf in suite for f in failures.get(lf.name, []))
    return LabelMatrix(L, tuple(lf.name for lf in suite), frame["id"].cast(pl.String), cardinality, all_failures)


# --- cache keys --------------------------------------------------------------------------------------


def _column_hashes(frame: pl.DataFrame) -> dict[str, str]:
    """A content hash of each column (names, dtypes and values)."""
    out = {}
    for name in frame.columns:
        col = frame[name]
        digest = hashlib.blake2b(f"{name}:{col.dtype}:{len(col)}".encode(), digest_size=16)
        digest.update(col.hash(seed=0).to_numpy().tobytes())
        out[name] = digest.hexdigest()
    return out


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


def _apply_python(
    frame: pl.DataFrame, lfs: list[PythonLF], k: int, on_error: OnError, n_jobs: int | None, progress: bool
) -> tuple[dict[str, np.ndarray], dict[str, list[LFFailure]]]:
    from tqdm.auto import tqdm

    n = frame.height
    _WORK.update(names=frame.columns, columns=[frame[c].to_list() for c in frame.columns],
                 ids=frame["id"].cast(pl.String).to_list(), lfs=lfs, k=k, on_error=on_error)
    jobs = min(n_jobs or os.cpu_count() or 1, max(1, n // (PARALLEL_MIN_ROWS // 2)))
    n_chunks = max(1, jobs * 4) if jobs > 1 else max(1, n // 10_000)
    bounds = np.linspace(0, n, n_chunks + 1).astype(int)
    chunks = list(zip(bounds[:-1].tolist(), bounds[1:].tolist()))
    bar = tqdm(total=n, desc=f"python LFs ×{len(lfs)}", unit="row", disable=not progress, leave=False)
    results = []
    try:
        if jobs > 1 and "fork" in multiprocessing.get_all_start_methods():
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=".*fork.*")  # workers never call into polars
                with multiprocessing.get_context("fork").Pool(jobs) as pool:
                    for res in pool.imap(_run_chunk, chunks):
                        results.append(res)
                        bar.update(res[0].shape[0])
        else:
            for chunk in chunks:
                results.append(_run_chunk(chunk))
                bar.update(chunk[1] - chunk[0])
    finally:
        bar.close()
        _WORK.clear()
    votes = np.concatenate([r[0] for r in results]) if results else np.empty((0, len(lfs)), LABEL_DTYPE)
    failures: dict[str, list[LFFailure]] = {lf.name: [] for lf in lfs}
    for _, chunk_failures in results:
        for f in chunk_failures:
            if len(failures[f.lf]) < MAX_FAILURES_KEPT:
                failures[f.lf].append(f)
    return {lf.name: votes[:, j] for j, lf in enumerate(lfs)}, failures


def _run_chunk(bounds: tuple[int, int]) -> tuple[np.ndarray, list[LFFailure]]:
    """Votes ``[end - start, m_python]`` of the Python LFs on rows ``start .. end-1``."""
    start, end = bounds
    names, ids, lfs = _WORK["names"], _WORK["ids"], _WORK["lfs"]
    k, abstain_on_error = _WORK["k"], _WORK["on_error"] == "abstain"
    valid = range(ABSTAIN, k)
    columns = [col[start:end] for col in _WORK["columns"]]
    out: list[list[int]] = [[] for _ in lfs]
    failures: list[LFFailure] = []
    # a plain PythonLF without resources is called as its bare function: one call fewer per row
    calls = [(lf, lf.func if type(lf) is PythonLF and not lf.resources else lf.__call__, out[j])
             for j, lf in enumerate(lfs)]
    for i, values in enumerate(zip(*columns)):
        row = Row(**dict(zip(names, values)))
        for lf, call, sink in calls:
            try:
                vote = call(row)
            except Exception as exc:
                if not abstain_on_error:
                    raise LFError(
                        f"LF {lf.name!r} raised {type(exc).__name__}: {exc} on row id {ids[start + i]!r}"
                        " (use on_error='abstain' to abstain on such rows)"
                    ) from exc
                failures.append(LFFailure(lf.name, ids[start + i], f"{type(exc).__name__}: {exc}"))
                vote = ABSTAIN
            if type(vote) is not int or vote not in valid:
                vote = _coerce_vote(lf.name, vote, ids[start + i], k)
            sink.append(vote)
    votes = np.array(out, dtype=LABEL_DTYPE).T if lfs else np.empty((end - start, 0), LABEL_DTYPE)
    return votes.reshape(end - start, len(lfs)), failures


def _coerce_vote(name: str, vote: Any, row_id: str, k: int) -> int:
    """Accept NumPy integers in range; raise naming the LF and row for anything else."""
    if isinstance(vote, np.integer) and ABSTAIN <= int(vote) < k:
        return int(vote)
    raise LFError(
        f"LF {name!r} returned {vote!r} ({type(vote).__name__}) on row id {row_id!r}; "
        f"expected a class index 0..{k - 1} or ABSTAIN (-1)"
    )
