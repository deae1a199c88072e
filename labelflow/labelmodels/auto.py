"""``auto``: fit every registered label model and keep the one that scores best on dev gold."""

from __future__ import annotations

from typing import Any

import numpy as np

from labelflow.errors import LabelModelError
from labelflow.labelmodels.base import LabelModel, _REGISTRY, get_label_model, label_model_names, register_label_model
from labelflow.typing import GoldArray, LabelArray, ProbArray

PREFERENCE = ("labelflow", "snorkel", "majority_vote")
"""Order of preference among equal dev scores, and the choice when there is no dev gold."""


@register_label_model
class AutoLabelModel(LabelModel):
    """Chooses among the registered label models by dev accuracy.

    Each candidate is scored by 2-fold cross-validation on the dev rows: fit on
    ``L`` with one half of the dev gold, scored on the other half, and the other way
    round, so a semi-supervised model is judged as it will be used without being
    scored on labels it saw. The winner (ties go to :data:`PREFERENCE` order) is
    then refit with all of the dev gold. Without dev gold it takes the
    first available model of :data:`PREFERENCE`. :attr:`chosen`, :attr:`scores` and
    :attr:`reason` say what it picked and why.
    """

    name = "auto"

    def __init__(self, cardinality: int, *, seed: int = 123) -> None:
        super().__init__(cardinality, seed=seed)
        self.chosen: LabelModel | None = None
        self.scores: dict[str, float] = {}
        self.reason = ""

    def _fit(self, L: LabelArray, *, L_dev: LabelArray | None, y_dev: GoldArray | None,
             class_balance: np.ndarray | None, progress: bool) -> None:
        names = sorted((n for n in label_model_names() if n != self.name),
                       key=lambda n: PREFERENCE.index(n) if n in PREFERENCE else len(PREFERENCE))
        if L_dev is None or y_dev is None or len(y_dev) == 0:
            self.chosen = self._first_that_fits(names, L, class_balance, progress)
            self.reason = f"no dev gold to compare on; took {self.chosen.name!r}, the first of {names} that fits"
            return
        skipped = {}
        fold = np.random.default_rng(self.seed).permutation(len(y_dev)) % 2 == 0
        for name in names:
            hits = 0
            try:
                for held_out in (fold, ~fold):
                    model = get_label_model(name, self.cardinality, seed=self.seed)
                    model.fit(L, L_dev=L_dev[~held_out], y_dev=y_dev[~held_out], class_balance=class_balance,
                              progress=progress)
                    hits += int(np.sum(model.predict(L_dev[held_out]) == y_dev[held_out]))
            except LabelModelError as exc:
                skipped[name] = str(exc)
                continue
            self.scores[name] = hits / len(y_dev)
        if not self.scores:
            raise LabelModelError(f"no registered label model could be fit: {skipped}")
        best = max(self.scores, key=lambda n: (self.scores[n], -names.index(n)))
        self.chosen = get_label_model(best, self.cardinality, seed=self.seed)
        self.chosen.fit(L, L_dev=L_dev, y_dev=y_dev, class_balance=class_balance, progress=progress)
        ranked = ", ".join(f"{n} {s:.3f}" for n, s in sorted(self.scores.items(), key=lambda kv: -kv[1]))
        self.reason = f"{best!r} has the best 2-fold dev accuracy over {len(y_dev)} gold rows ({ranked})" + (
            f"; skipped {skipped}" if skipped else "")

    def _first_that_fits(self, names: list[str], L: LabelArray, class_balance: np.ndarray | None,
                         progress: bool) -> LabelModel:
        for name in names:
            try:
                return get_label_model(name, self.cardinality, seed=self.seed).fit(
                    L, class_balance=class_balance, progress=progress)
            except LabelModelError:
                continue
        raise LabelModelError(f"none of {names} could be fit on this matrix")

    def _predict_proba(self, L: LabelArray) -> ProbArray:
        return self.chosen._predict_proba(L)  # type: ignore[union-attr]  (L was checked by predict_proba)

    def _state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        config, arrays = self.chosen._state()  # type: ignore[union-attr]
        return {"chosen": self.chosen.name, "chosen_config": config, "scores": self.scores,  # type: ignore[union-attr]
                "reason": self.reason}, arrays

    @classmethod
    def _from_state(cls, cardinality: int, seed: int, config: dict[str, Any],
                    arrays: dict[str, np.ndarray]) -> "AutoLabelModel":
        model = cls(cardinality, seed=seed)
        chosen = _REGISTRY[config["chosen"]]._from_state(cardinality, seed, config["chosen_config"], arrays)
        model.chosen, model.scores, model.reason = chosen, config["scores"], config["reason"]
        return model
