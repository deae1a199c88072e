"""Snorkel's ``LabelModel`` behind labelflow's interface (needs ``labelflow[snorkel]``)."""

from __future__ import annotations

from typing import Any

import numpy as np

from labelflow.conventions import GoldArray, LabelArray, ProbArray
from labelflow.errors import LabelModelError, require
from labelflow.labelmodels.base import LabelModel, register_label_model


@register_label_model
class SnorkelLabelModel(LabelModel):
    """Snorkel 0.10's matrix-completion label model, fit as Snorkel fits it.

    Defaults are Snorkel's, except ``n_epochs=500`` (Snorkel's tutorial setting).
    Saved as its learned parameters (``mu``, class balance), not as a pickle.
    Snorkel needs at least 3 LFs.

    Dev gold is used as Snorkel uses ``Y_dev``, for the class balance only: the dev
    class frequencies, exactly as Snorkel computes them, when every class occurs; with
    add-one smoothing, ``(count_c + 1) / (n_dev + k)``, when one is missing (Snorkel's
    own estimate rejects such a dev set). A ``class_balance`` given to :meth:`fit` wins
    over the dev gold.
    """

    name = "snorkel"

    def __init__(self, cardinality: int, *, seed: int = 123, n_epochs: int = 500, lr: float = 0.01,
                 l2: float = 0.0, device: str = "cpu") -> None:
        super().__init__(cardinality, seed=seed)
        if n_epochs < 1 or lr <= 0 or l2 < 0:
            raise LabelModelError(f"need n_epochs ≥ 1, lr > 0, l2 ≥ 0; got n_epochs={n_epochs}, lr={lr}, l2={l2}")
        self.n_epochs, self.lr, self.l2, self.device = n_epochs, lr, l2, device
        self._snorkel = require("snorkel.labeling.model", "snorkel")
        self._model: Any = None

    def _fit(self, L: LabelArray, *, L_dev: LabelArray | None, y_dev: GoldArray | None,
             class_balance: np.ndarray | None, progress: bool) -> None:
        if L.shape[1] < 3:
            raise LabelModelError(f"Snorkel's LabelModel needs at least 3 LFs; the matrix has {L.shape[1]}")
        if class_balance is None and y_dev is not None and len(y_dev):
            class_balance = dev_class_balance(y_dev, self.cardinality)
        self._model = self._snorkel.LabelModel(cardinality=self.cardinality, verbose=False, device=self.device)
        self._model.fit(
            L.astype(np.int64),
            class_balance=None if class_balance is None else class_balance.tolist(),
            progress_bar=progress,
            n_epochs=self.n_epochs,
            lr=self.lr,
            l2=self.l2,
            seed=self.seed,
        )

    def _predict_proba(self, L: LabelArray) -> ProbArray:
        return self._model.predict_proba(L.astype(np.int64))

    def _state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        config = {"n_epochs": self.n_epochs, "lr": self.lr, "l2": self.l2, "device": self.device}
        mu = self._model.mu.detach().cpu().numpy()
        return config, {"mu": mu, "class_balance": np.asarray(self._model.p, dtype=np.float64)}

    @classmethod
    def _from_state(cls, cardinality: int, seed: int, config: dict[str, Any], arrays: dict[str, np.ndarray]) -> "SnorkelLabelModel":
        torch = require("torch", "snorkel")
        self = cls(cardinality, seed=seed, **config)
        model = self._snorkel.LabelModel(cardinality=cardinality, verbose=False, device=self.device)
        model.m = arrays["mu"].shape[0] // cardinality
        model._create_tree()
        model.mu = torch.nn.Parameter(torch.from_numpy(arrays["mu"]))
        model.p = arrays["class_balance"]
        self._model = model
        return self


def dev_class_balance(y_dev: GoldArray, cardinality: int) -> np.ndarray:
    """``[k]`` class balance of dev gold: Snorkel's (the class frequencies) when every class occurs,
    else add-one smoothed, ``(count_c + 1) / (n_dev + k)``.

    Examples
    --------
    >>> dev_class_balance(np.array([0, 0, 1, 2]), 3)
    array([0.5 , 0.25, 0.25])
    >>> dev_class_balance(np.array([0, 0, 1]), 3)
    array([0.5       , 0.33333333, 0.16666667])
    """
    counts = np.bincount(np.asarray(y_dev, dtype=np.int64), minlength=cardinality).astype(np.float64)
    if counts.all():
        return counts / counts.sum()
    return (counts + 1) / (counts.sum() + cardinality)
