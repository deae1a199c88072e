"""A project's label matrix: the LF suite applied to every row and saved (cached votes, locally or on Ray), read
back in the dataset's row order with its embedding-extended columns, and its LFs' statistics on one split.

A function's ``project`` is the :class:`~labelflow.project.Project` whose step it runs (not imported here:
dependencies point down, as in :mod:`labelflow.suggest`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import polars as pl

from labelflow.apply import Engine, apply_lfs
from labelflow.chunk_applier import OnError
from labelflow.conventions import ABSTAIN
from labelflow.dataset import canonical_split
from labelflow.distributed import RayEngine
from labelflow.errors import LabelModelError, ProjectError
from labelflow.lf import LabelingFunction
from labelflow.matrix import LabelMatrix, lf_summary
from labelflow.project_extension import extended
from labelflow.vote_cache import VoteCache


def apply_suite(project, *, lfs: str | Path | Sequence[LabelingFunction] | None = None,
                on_error: OnError | None = None, n_jobs: int | None = None, progress: bool = False,
                engine: Engine | RayEngine = "local", address: str | None = None,
                timeout_s: float | None = None) -> tuple[LabelMatrix, VoteCache]:
    """Apply ``project``'s LF suite to every row, reusing cached votes; saves the store's label matrix (without the
    embedding-extended columns: :func:`read_matrix` adds those).

    A project has one suite, and the matrix holds its LFs: ``lfs=None`` applies the configured
    suite; a suite file (``apply --lfs FILE``) becomes the project's suite once it applied
    (:meth:`~labelflow.project.Project.set_suite`). LF objects are applied as given (the caller's
    list, e.g. the configured suite already loaded): where they differ from the suite,
    :func:`~labelflow.project_suite.stray_lfs` names them and the app says so. The rows are read
    and labeled a chunk at a time, here or on Ray (``engine="ray"``, see
    :func:`~labelflow.project_suite.ray_engine`); ``timeout_s`` limits each Python LF call and
    ``on_error`` (default: the config's) decides what an LF raising on a row does (see
    :func:`~labelflow.apply.apply_lfs`).

    Returns
    -------
    tuple
        The ``[n, m]`` label matrix saved and the vote cache (hits and misses).
    """
    cache = project.store.vote_cache()
    given = isinstance(lfs, Sequence) and not isinstance(lfs, str)
    suite = lfs if given else project.lfs(lfs)
    matrix = apply_lfs(project.rows(), suite, cardinality=project.schema.k, cache=cache,
                       on_error=on_error or project.config.on_error, n_jobs=n_jobs, progress=progress,
                       fm_cache=project.fm_cache, engine=project.ray_engine(engine, address) or "local",
                       timeout_s=timeout_s)
    if lfs is not None and not given:
        project.set_suite(lfs)
    matrix.save(project.store.matrix)
    return matrix, cache


def read_matrix(project) -> LabelMatrix:
    """The ``[n, m]`` label matrix of ``project``'s last :func:`apply_suite`, its rows in the dataset's order.

    The matrix's row ids are checked against the dataset's: rows are re-ordered by id when it holds
    exactly the dataset's rows, and anything else (rows missing or extra, votes out of range or null,
    see :meth:`LabelMatrix.load`) raises :class:`ProjectError` naming the file and asking for
    ``labelflow apply``. With the ``extend`` setting it ends with the embedding-extended LFs'
    ``NAME~ext`` columns, recomputed whenever what they were computed from changed
    (:mod:`labelflow.extended_matrix`).
    """
    store, schema = project.store, project.schema
    path = store.existing(store.matrix, f"{project.root} has no label matrix yet; run `labelflow apply` first")
    try:
        try:
            matrix = LabelMatrix.load(path)
        except LabelModelError:  # say first which rows it lacks, when that is what changed
            LabelMatrix.load(path, check_content=False).aligned(project.columns("id")["id"], where=str(path))
            raise
        if matrix.cardinality != schema.k:
            raise LabelModelError(f"{path} holds votes for {matrix.cardinality} classes; the project has "
                                  f"{schema.k} ({list(schema.names)})")
        matrix = matrix.aligned(project.columns("id")["id"], where=str(path))
    except LabelModelError as exc:
        raise ProjectError(f"{exc}; run `labelflow apply` again to rebuild it") from None
    return extended(project, matrix)


def split_summary(project, split: str = "dev") -> pl.DataFrame:
    """Statistics of ``project``'s LFs on the rows of ``split`` (:func:`~labelflow.matrix.lf_summary`; accuracy from
    their gold labels, where they have them). Raises :class:`ProjectError` naming the splits when it has no rows."""
    matrix, splits = project.matrix(), project.columns("split")["split"]
    split = canonical_split(split)
    rows = splits.to_numpy() == split
    if not rows.any():
        raise ProjectError(f"{project.root}: no rows in split {split!r}; splits are "
                           f"{splits.unique(maintain_order=True).to_list()}")
    gold = project.gold()[rows]
    return lf_summary(matrix.values[rows], lf_names=matrix.lf_names, cardinality=project.schema.k,
                      y=gold if (gold != ABSTAIN).any() else None)
