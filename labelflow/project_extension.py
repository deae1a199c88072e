"""A project's embedding-extended LFs (:mod:`labelflow.extend`): the embedding rows they read, the extension
columns its ``extend`` setting adds to the label matrix (kept fresh by :mod:`labelflow.extended_matrix`), what
each LF's extension gave, and the LFs whose extension would add votes (``"extend"`` suggestions).

A function's ``project`` is the :class:`~labelflow.project.Project` whose step it runs (not imported here:
dependencies point down, as in :mod:`labelflow.suggest`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from labelflow.extend import ExtendConfig, ExtensionCandidate, extension_candidates
from labelflow.extended_matrix import embeddings, with_extension, without_extension
from labelflow.matrix import LabelMatrix


def extend_config(project) -> ExtendConfig | None:
    """The ``extend`` settings of ``project``'s ``labelflow.json`` (``None``: no extended LFs)."""
    return None if project.config.extend is None else ExtendConfig.from_dict(project.config.extend)


def project_embeddings(project, column: str | None = None) -> np.ndarray:
    """``[n, d]`` ``float32`` embedding of every row of ``project`` (NaN rows where the column is null), in dataset
    order, from ``column``: an array column of the dataset or an FM output (default: the ``extend`` setting's,
    else ``embedding``, which ``labelflow fm embed`` writes). Raises :class:`ProjectError` naming the column and
    the command that makes it."""
    column = column or (extend_config(project) or ExtendConfig()).embedding
    return embeddings(project.rows(), column, where=project.root)


def extended(project, matrix: LabelMatrix) -> LabelMatrix:
    """``matrix`` (``project``'s, ``[n, m]``) with the extension columns the ``extend`` setting asks for, never stale
    (see :mod:`labelflow.extended_matrix`); without the setting, extension columns are dropped."""
    config = extend_config(project)
    if config is None:
        return without_extension(matrix, project.store)
    dev = project.columns("split")["split"].to_numpy() == "dev"
    return with_extension(matrix, config, store=project.store, dev=dev, gold=project.gold(),
                          embedding=project.embeddings)


def extension_report(project) -> list[dict[str, Any]]:
    """Per LF, what ``project``'s current matrix's extension gave (:class:`~labelflow.extend.LFExtension` as dicts:
    radius, dev evidence, votes cast, or why it got no column); ``[]`` without extended LFs."""
    if project.config.extend is None:
        return []
    project.matrix()  # recomputes the extension when its inputs changed
    return project.store.extension_record()["lfs"]


def candidates(project, *, rows: np.ndarray | None = None) -> list[ExtensionCandidate]:
    """The LFs whose embedding extension would add votes to ``project``'s current matrix, best first:
    :func:`~labelflow.extend.extension_candidates` over the matrix, the ``extend`` setting's embedding column
    (else ``embedding``) and the dev gold. ``rows``: a ``[n]`` mask or row indices (for example a slice's) whose
    extended votes are counted as ``in_rows``. Accepting one is adding its LF to the setting's ``lfs``."""
    matrix, config = project.matrix(), extend_config(project) or ExtendConfig()
    dev = project.columns("split")["split"].to_numpy() == "dev"
    return extension_candidates(matrix.values, project.embeddings(config.embedding), dev_rows=dev,
                                y_dev=project.gold()[dev], cardinality=project.schema.k, lf_names=matrix.lf_names,
                                config=config, rows=rows)
