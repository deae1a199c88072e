"""A project's human gold labels: one annotator's label or a person's settlement stored for a row the dataset
holds (:class:`~labelflow.annotations.AnnotationStore`), and the gold label every row gets from them and the
data by the gold policy (:mod:`labelflow.gold`).

A function's ``project`` is the :class:`~labelflow.project.Project` whose step it runs (not imported here:
dependencies point down, as in :mod:`labelflow.suggest`).
"""

from __future__ import annotations

import numpy as np

from labelflow.annotations import ANY
from labelflow.errors import ProjectError
from labelflow.gold import gold_labels


def annotate(project, row_id: str, label: int | str | None, *, annotator: str, source: str = "app",
             expect: object = ANY) -> None:
    """Store ``annotator``'s gold label (a class index or name; ``None`` removes it) for row ``row_id`` of
    ``project`` at once.

    ``expect``: the label of ``annotator`` the caller last saw for the row (``None``: none); when another
    is stored (another tab or session), :class:`~labelflow.annotations.AnnotationConflict` is raised and
    nothing is written. Raises :class:`ProjectError` naming the row when it is not in the dataset, or the
    label when it is not a class.
    """
    _known_row(project, row_id, "annotation")
    if label is None:
        project.annotations.remove(row_id, annotator=annotator, expect=expect)
        return
    project.annotations.add(str(row_id), label, annotator=annotator, source=source, expect=expect)


def settle(project, row_id: str, label: int | str | None, *, resolver: str) -> None:
    """Settle the gold label of row ``row_id`` of ``project`` (``None`` withdraws the settlement), recorded with
    ``resolver`` and the time (see :meth:`~labelflow.annotations.AnnotationStore.settle`). Raises
    :class:`ProjectError` naming the row when it is not in the dataset."""
    _known_row(project, row_id, "settlement")
    project.annotations.settle(str(row_id), label, resolver=resolver)


def gold(project) -> np.ndarray:
    """``[n]`` gold class per row of ``project`` (``-1`` unknown) by the gold policy
    (:func:`~labelflow.gold.gold_labels`): the data's labels, overridden by the human labels annotators agree on
    or a person settled."""
    frame = project.columns("id", "label")
    return gold_labels(frame["id"], frame["label"], project.annotations.resolve()[0])


def _known_row(project, row_id: str, what: str) -> None:
    if not project.columns("id")["id"].is_in([str(row_id)]).any():
        raise ProjectError(f"{project.root}: no row with id {row_id!r} in the dataset (it may have been removed "
                           f"when the data was re-imported); the {what} was not saved")
