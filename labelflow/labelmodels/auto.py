"""``auto``: fit every registered label model and keep the one that scores best on dev gold."""

from __future__ import annotations

from typing import Any

import numpy as np

from labelflow.errors import LabelModelError
from labelflow.labelmodels.base import (LabelModel, _REGISTRY, get_label_model, label_model_names, probs_to_preds,
                                        register_label_model, stratified_folds)
from labelflow.conventions import GoldArray, LabelArray, ProbArray

PREFERENCE = ("labelflow", "snorkel", "majority_vote")
"""Order of preference among equal dev scores, and the choice when there is no dev gold."""
FOLDS = 2


@register_label_model
class AutoLabelModel(LabelModel):
    """Chooses among the registered label models by dev accuracy.

    Each candidate is scored by 2-fold cross-validation on the dev rows: fit on
    ``L`` with one half of the dev gold, scored on the other half, and the other way
    round, so a semi-supervised model is judged as it will be used without being
    scored on labels it saw. The folds are stratified by class (each class with two
    or more dev rows is in both halves); a half that misses a class is fine. The
    winner (ties go to :data:`PREFERENCE` order) is then refit with all of the dev
    gold. Without dev gold it takes the first model of :data:`PREFERENCE` that fits.
    A candidate that raises is skipped, with its error kept in :attr:`skipped`.

    :attr:`chosen` (the fitted model), :attr:`scores` (``{name: cross-validated dev
    accuracy}``), :attr:`skipped` (``{name: error}``) and :attr:`reason` (one
    sentence) say what it picked and why; :meth:`choice` holds them as plain data.
    """

    name = "auto"

    def __init__(self, cardinality: int, *, seed: int = 123) -> None:
        super().__init__(cardinality, seed=seed)
        self.chosen: LabelModel | None = None
        self.scores: dict[str, float] = {}
        self.skipped: dict[str, str] = {}
        self.reason = ""

    def choice(self) -> dict[str, Any]:
        """``{"chosen": name, "reason": sentence, "scores": {name: dev accuracy}, "skipped": {name: error}}``."""
        if self.chosen is None:
            raise LabelModelError("label model 'auto' is not fitted; call fit() first")
        return {"chosen": self.chosen.name, "reason": self.reason, "scores": dict(self.scores),
                "skipped": dict(self.skipped)}

    def _fit(self, L: LabelArray, *, L_dev: LabelArray | None, y_dev: GoldArray | None,
             class_balance: np.ndarray | None, progress: bool) -> None:
        names = sorted((n for n in label_model_names() if n != self.name),
                       key=lambda n: PREFERENCE.index(n) if n in PREFERENCE else len(PREFERENCE))
        self.scores, self.skipped = {}, {}
        if L_dev is None or y_dev is None or len(y_dev) == 0:
            self.chosen = self._first_that_fits(names, L, class_balance, progress)
            self.reason = f"no dev gold to compare on; took {self.chosen.name!r}, the first of {names} that fits" + (
                f" (failed: {self._skipped_text()})" if self.skipped else "")
            return
        folds = stratified_folds(y_dev, FOLDS, seed=self.seed)
        for name in names:
            try:
                self.scores[name] = self._cross_validate(name, L, L_dev, y_dev, folds, class_balance, progress)
            except Exception as exc:  # noqa: BLE001 — any candidate may fail; auto reports it and goes on
                self.skipped[name] = _error_text(exc)
        if not self.scores:
            raise LabelModelError(f"no registered label model could be fit: {self._skipped_text()}")
        ranked = sorted(self.scores, key=lambda n: (-self.scores[n], names.index(n)))
        for best in ranked:  # the refit with all dev gold can still fail; then the runner-up
            try:
                self.chosen = get_label_model(best, self.cardinality, seed=self.seed).fit(
                    L, L_dev=L_dev, y_dev=y_dev, class_balance=class_balance, progress=progress)
                break
            except Exception as exc:  # noqa: BLE001
                self.skipped[best] = f"refit with all dev gold failed: {_error_text(exc)}"
        else:
            raise LabelModelError(f"no registered label model could be fit: {self._skipped_text()}")
        best = self.chosen.name
        listed = ", ".join(f"{n} {self.scores[n]:.3f}" for n in ranked)
        tied = [n for n in ranked if self.scores[n] == self.scores[best] and n != best]
        self.reason = (f"{best!r} has the best {FOLDS}-fold dev accuracy over {len(y_dev)} gold rows "
                       f"(cross-validated, folds stratified by class: {listed})"
                       + (f"; tied with {tied}, ahead by preference order {list(PREFERENCE)}" if tied else "")
                       + (f"; skipped {self._skipped_text()}" if self.skipped else ""))

    def _cross_validate(self, name: str, L: LabelArray, L_dev: LabelArray, y_dev: GoldArray, folds: np.ndarray,
                        class_balance: np.ndarray | None, progress: bool) -> float:
        """Dev accuracy of ``name`` fit with the gold of all folds but one, scored on that one, for each fold."""
        hits = 0
        for f in range(FOLDS):
            held_out = folds == f
            if not held_out.any():
                continue
            train = ~held_out
            dev_args = {"L_dev": L_dev[train], "y_dev": y_dev[train]} if train.any() else {}
            model = get_label_model(name, self.cardinality, seed=self.seed)
            model.fit(L, class_balance=class_balance, progress=progress, **dev_args)
            # ties break by the dev row's position, the same in every fold
            preds = probs_to_preds(model.predict_proba(L_dev), tie_policy="random")
            hits += int(np.sum(preds[held_out] == y_dev[held_out]))
        return hits / len(y_dev)

    def _first_that_fits(self, names: list[str], L: LabelArray, class_balance: np.ndarray | None,
                         progress: bool) -> LabelModel:
        for name in names:
            try:
                return get_label_model(name, self.cardinality, seed=self.seed).fit(
                    L, class_balance=class_balance, progress=progress)
            except Exception as exc:  # noqa: BLE001
                self.skipped[name] = _error_text(exc)
        raise LabelModelError(f"none of {names} could be fit on this matrix: {self._skipped_text()}")

    def _skipped_text(self) -> str:
        return "; ".join(f"{n} ({e})" for n, e in self.skipped.items())

    def _predict_proba(self, L: LabelArray) -> ProbArray:
        return self.chosen._predict_proba(L)  # type: ignore[union-attr]  (L was checked by predict_proba)

    def _state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        config, arrays = self.chosen._state()  # type: ignore[union-attr]
        return {"chosen": self.chosen.name, "chosen_config": config, "scores": self.scores,  # type: ignore[union-attr]
                "skipped": self.skipped, "reason": self.reason}, arrays

    @classmethod
    def _from_state(cls, cardinality: int, seed: int, config: dict[str, Any],
                    arrays: dict[str, np.ndarray]) -> "AutoLabelModel":
        model = cls(cardinality, seed=seed)
        if config["chosen"] not in _REGISTRY:
            raise LabelModelError(f"'auto' chose {config['chosen']!r}, which is not registered here; known models "
                                  f"are {label_model_names()}")
        chosen = _REGISTRY[config["chosen"]]._from_state(cardinality, seed, config["chosen_config"], arrays)
        model.chosen, model.scores, model.reason = chosen, config["scores"], config["reason"]
        model.skipped = config.get("skipped", {})
        return model


def _error_text(exc: BaseException) -> str:
    """One line: the exception's type and message."""
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
