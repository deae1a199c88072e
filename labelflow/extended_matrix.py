"""A project's label matrix with its embedding-extended LF columns (:mod:`labelflow.extend`), never stale.

The columns are a pure function of the suite's votes (the matrix's other columns), an
embedding column, the dev rows' gold labels (annotations included) and the ``extend``
settings; the store's extension record holds fingerprints of all four and of the matrix it
was saved with. When any differs (LFs re-applied, ``fm embed`` run again, a dev row
labelled, settings changed) the columns are recomputed and the matrix saved again.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from labelflow.conventions import ABSTAIN
from labelflow.errors import ProjectError
from labelflow.extend import base_columns, extend_votes
from labelflow.matrix import LabelMatrix

if TYPE_CHECKING:
    from labelflow.project import Project


def embeddings(project: Project, column: str) -> np.ndarray:
    """``[n, d]`` ``float32`` embedding of every row of ``project`` from array column ``column`` (NaN rows where it
    is null), in dataset order. Raises :class:`ProjectError` naming the column and the command that makes it."""
    rows = project.rows()
    schema = rows.collect_schema()
    arrays = [c for c, t in schema.items() if isinstance(t, (pl.Array, pl.List))]
    if column not in schema:
        raise ProjectError(f"{project.root}: no embedding column {column!r} in the dataset (array columns: {arrays}); "
                           f"run `labelflow fm embed -p {project.root}` first (it writes column 'embedding'), or "
                           "name another array column (`--extend COLUMN`)")
    dtype = schema[column]
    inner = getattr(dtype, "inner", None)
    if not isinstance(dtype, (pl.Array, pl.List)) or inner is None or not inner.is_numeric():
        raise ProjectError(f"{project.root}: column {column!r} is {dtype}, not an embedding (an array of numbers); "
                           f"run `labelflow fm embed -p {project.root}` for one")
    values = rows.select(column).collect()[column]
    present = values.is_not_null().to_numpy()
    kept = values.filter(pl.Series(present))
    width = dtype.size if isinstance(dtype, pl.Array) else (kept.list.len().unique().to_list() or [0])
    if isinstance(width, list):
        if len(width) > 1:
            raise ProjectError(f"{project.root}: column {column!r} holds lists of lengths {sorted(width)[:5]}; an "
                               "embedding has one length")
        width = width[0]
        kept = kept.list.to_array(width) if width else kept
    X = np.full((len(values), width), np.nan, dtype=np.float32)
    if width and present.any():
        X[present] = kept.to_numpy().astype(np.float32)
    return X


def with_extension(project: Project, matrix: LabelMatrix) -> LabelMatrix:
    """``matrix`` with the extension columns the project's ``extend`` setting asks for, recomputed (and the matrix
    saved again) when what they were computed from changed; without the setting, extension columns are dropped."""
    base_idx = base_columns(matrix.lf_names)
    base = matrix if len(base_idx) == len(matrix.lf_names) else LabelMatrix(
        matrix.values[:, base_idx], tuple(matrix.lf_names[j] for j in base_idx), matrix.ids, matrix.cardinality,
        matrix.failures)
    config, store = project.extend_config, project.store
    if config is None:
        if base is not matrix:
            _save(project, base, None)
        return base
    dev = project.columns("split")["split"].to_numpy() == "dev"
    gold = np.where(dev, project.gold(), ABSTAIN)
    key = {"version": 1, "config": config.to_dict(), "base": base.fingerprint(),
           "dev_gold": hashlib.blake2b(dev.tobytes() + gold.astype(np.int64).tobytes(), digest_size=16).hexdigest()}
    stamp = _embedding_stamp(project, config.embedding)
    record = store.extension_record()
    X = None
    if all(record.get(k) == v for k, v in key.items()) and record.get("matrix") == matrix.fingerprint():
        if record.get("embedding_file") == stamp:
            return matrix
        X = embeddings(project, config.embedding)
        if record.get("embedding") == _array_digest(X):
            return matrix
    X = embeddings(project, config.embedding) if X is None else X
    ext = extend_votes(base.values, X, dev_rows=dev, y_dev=gold[dev], cardinality=project.schema.k,
                       lf_names=base.lf_names, config=config)
    extended = LabelMatrix(ext.values, ext.names, base.ids, base.cardinality, base.failures)
    _save(project, extended, {**key, "embedding": _array_digest(X), "embedding_file": stamp,
                              "matrix": extended.fingerprint(), "lfs": [e.to_dict() for e in ext.lfs]})
    return extended


def _save(project: Project, matrix: LabelMatrix, record: dict[str, Any] | None) -> None:
    """Save a matrix whose extension columns changed, and its record; on a read-only store it stays in memory
    (it is recomputed on the next read)."""
    try:
        matrix.save(project.store.matrix)
        project.store.write_extension_record(record)
    except OSError:
        pass


def _embedding_stamp(project: Project, column: str) -> list[Any]:
    """``[file, size, mtime_ns]`` of the file holding ``column`` (a quick test that it is unchanged)."""
    path = project.store.fm_output(column)
    path = path if path.is_file() else project.store.dataset
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
