"""A project's label matrix with its embedding-extended LF columns (:mod:`labelflow.extend`), never stale.

The columns are a pure function of the suite's votes (the matrix's other columns), an
embedding column, the dev rows' gold labels (annotations included) and the ``extend``
settings; the store's extension record holds fingerprints of all four and of the matrix it
was saved with. When any differs (LFs re-applied, ``fm embed`` run again, a dev row
labelled, settings changed) the columns are recomputed and the matrix saved again.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from labelflow.conventions import ABSTAIN
from labelflow.errors import ProjectError
from labelflow.extend import ExtendConfig, base_columns, extend_votes
from labelflow.matrix import LabelMatrix
from labelflow.store import ProjectStore


def embeddings(rows: pl.LazyFrame, column: str, *, where: Path) -> np.ndarray:
    """``[n, d]`` ``float32`` embedding of every row of ``rows`` (a project's dataset with its FM outputs) from array
    column ``column`` (NaN rows where it is null), in dataset order. Raises :class:`ProjectError` naming the project
    folder ``where``, the column and the command that makes it."""
    schema = rows.collect_schema()
    arrays = [c for c, t in schema.items() if isinstance(t, (pl.Array, pl.List))]
    if column not in schema:
        raise ProjectError(f"{where}: no embedding column {column!r} in the dataset (array columns: {arrays}); "
                           f"run `labelflow fm embed -p {where}` first (it writes column 'embedding'), or "
                           "name another array column (`--extend COLUMN`)")
    dtype = schema[column]
    inner = getattr(dtype, "inner", None)
    if not isinstance(dtype, (pl.Array, pl.List)) or inner is None or not inner.is_numeric():
        raise ProjectError(f"{where}: column {column!r} is {dtype}, not an embedding (an array of numbers); "
                           f"run `labelflow fm embed -p {where}` for one")
    values = rows.select(column).collect()[column]
    present = values.is_not_null().to_numpy()
    kept = values.filter(pl.Series(present))
    width = dtype.size if isinstance(dtype, pl.Array) else (kept.list.len().unique().to_list() or [0])
    if isinstance(width, list):
        if len(width) > 1:
            raise ProjectError(f"{where}: column {column!r} holds lists of lengths {sorted(width)[:5]}; an "
                               "embedding has one length")
        width = width[0]
        kept = kept.list.to_array(width) if width else kept
    X = np.full((len(values), width), np.nan, dtype=np.float32)
    if width and present.any():
        X[present] = kept.to_numpy().astype(np.float32)
    return X


def without_extension(matrix: LabelMatrix, store: ProjectStore) -> LabelMatrix:
    """``matrix`` without extension columns (saved so in ``store`` when it had some)."""
    base = _base(matrix)
    if base is not matrix:
        _save(store, base, None)
    return base


def with_extension(matrix: LabelMatrix, config: ExtendConfig, *, store: ProjectStore, dev: np.ndarray,
                   gold: np.ndarray, embedding: Callable[[str], np.ndarray]) -> LabelMatrix:
    """``matrix`` with the extension columns ``config`` asks for, recomputed (and the matrix saved again in
    ``store``) when what they were computed from changed.

    ``dev``: ``[n]`` booleans, the dev rows; ``gold``: ``[n]`` gold classes; ``embedding(column)``:
    the ``[n, d]`` embedding column (see :func:`embeddings`), read only when its file changed.
    """
    base = _base(matrix)
    gold = np.where(dev, gold, ABSTAIN)
    key = {"version": 1, "config": config.to_dict(), "base": base.fingerprint(),
           "dev_gold": hashlib.blake2b(dev.tobytes() + gold.astype(np.int64).tobytes(), digest_size=16).hexdigest()}
    stamp = _embedding_stamp(store, config.embedding)
    record = store.extension_record()
    X = None
    if all(record.get(k) == v for k, v in key.items()) and record.get("matrix") == matrix.fingerprint():
        if record.get("embedding_file") == stamp:
            return matrix
        X = embedding(config.embedding)
        if record.get("embedding") == _array_digest(X):
            return matrix
    X = embedding(config.embedding) if X is None else X
    ext = extend_votes(base.values, X, dev_rows=dev, y_dev=gold[dev], cardinality=matrix.cardinality,
                       lf_names=base.lf_names, config=config)
    extended = LabelMatrix(ext.values, ext.names, base.ids, base.cardinality, base.failures)
    _save(store, extended, {**key, "embedding": _array_digest(X), "embedding_file": stamp,
                            "matrix": extended.fingerprint(), "lfs": [e.to_dict() for e in ext.lfs]})
    return extended


def _base(matrix: LabelMatrix) -> LabelMatrix:
    """``matrix``'s LF columns without the extension ones (``matrix`` itself when it has none)."""
    base_idx = base_columns(matrix.lf_names)
    if len(base_idx) == len(matrix.lf_names):
        return matrix
    return LabelMatrix(matrix.values[:, base_idx], tuple(matrix.lf_names[j] for j in base_idx), matrix.ids,
                       matrix.cardinality, matrix.failures)


def _save(store: ProjectStore, matrix: LabelMatrix, record: dict[str, Any] | None) -> None:
    """Save a matrix whose extension columns changed, and its record; on a read-only store it stays in memory
    (it is recomputed on the next read)."""
    try:
        matrix.save(store.matrix)
        store.write_extension_record(record)
    except OSError:
        pass


def _embedding_stamp(store: ProjectStore, column: str) -> list[Any]:
    """``[file, size, mtime_ns]`` of the file holding ``column`` (a quick test that it is unchanged)."""
    path = store.fm_output(column)
    path = path if path.is_file() else store.dataset
    try:
        st = path.stat()
    except OSError:
        return [path.name, None, None]
    return [path.name, st.st_size, st.st_mtime_ns]


def _array_digest(X: np.ndarray) -> str:
    """A hash of an array's shape and bytes."""
    h = hashlib.blake2b(repr(X.shape).encode(), digest_size=16)
    h.update(np.ascontiguousarray(X).data)
    return h.hexdigest()
