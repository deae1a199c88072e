"""Majority vote: each row's class is the one most of its LFs vote for."""

from __future__ import annotations

from typing import Any

import numpy as np

from labelflow.conventions import GoldArray, LabelArray, ProbArray
from labelflow.labelmodels.base import LabelModel, register_label_model
from labelflow.matrix import vote_counts


@register_label_model
class MajorityVote(LabelModel):
    """Probabilities are each row's vote shares; rows no LF covers get a uniform distribution.

    Ties between classes are left to the tie policy of :meth:`predict`; with
    ``"random"`` they break exactly as Snorkel's ``MajorityLabelVoter``.

    Examples
    --------
    >>> mv = MajorityVote(2).fit(np.array([[0, 1, 1], [0, -1, -1], [-1, -1, -1]]))
    >>> mv.predict_proba(np.array([[0, 1, 1], [-1, -1, -1]])).round(2)
    array([[0.33, 0.67],
           [0.5 , 0.5 ]])
    """

    name = "majority_vote"

    def _fit(self, L: LabelArray, *, L_dev: LabelArray | None, y_dev: GoldArray | None,
             class_balance: np.ndarray | None, progress: bool) -> None:
        """Nothing to learn."""

    def _predict_proba(self, L: LabelArray) -> ProbArray:
        counts = vote_counts(L, self.cardinality).astype(np.float64)
        total = counts.sum(axis=1, keepdims=True)
        uncovered = total[:, 0] == 0
        counts[uncovered] = 1.0
        total[uncovered] = self.cardinality
        return counts / total

    def _state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        return {}, {}

    @classmethod
    def _from_state(cls, cardinality: int, seed: int, config: dict[str, Any], arrays: dict[str, np.ndarray]) -> "MajorityVote":
        return cls(cardinality, seed=seed)
