"""Snorkel's ``LabelModel`` behind labelflow's interface (needs ``labelflow[snorkel]``)."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from labelflow.conventions import GoldArray, LabelArray, ProbArray
from labelflow.errors import LabelModelError, require
from labelflow.labelmodels.base import LabelModel, register_label_model
from labelflow.validation import check_choice, check_int, check_number

Optimizer = Literal["sgd", "adam", "adamax"]
"""Snorkel's ``LabelModel`` optimizers."""
LRScheduler = Literal["constant", "linear", "exponential", "step"]
"""Snorkel's ``LabelModel`` learning-rate schedules."""


@register_label_model
class SnorkelLabelModel(LabelModel):
    """Snorkel 0.10's matrix-completion label model, fit as Snorkel fits it.

    Defaults are Snorkel's, except ``n_epochs=500`` (Snorkel's tutorial setting).
    Saved as its learned parameters (``mu``, class balance), not as a pickle.
    Snorkel needs at least 3 LFs.

    The hyperparameters are Snorkel's, under Snorkel's names: ``verbose`` and ``device`` of its
    ``LabelModel``, and ``n_epochs``, ``lr``, ``l2``, ``optimizer``, ``lr_scheduler``, ``prec_init``
    and ``log_freq`` of its ``fit``. :meth:`fit` takes the latter too, as Snorkel's ``fit``
    does (``fit(L_train=L, n_epochs=500, log_freq=100, seed=123)``); they then replace the
    ones given here.

    Dev gold is used as Snorkel uses ``Y_dev``, for the class balance only: the dev
    class frequencies, exactly as Snorkel computes them, when every class occurs; with
    add-one smoothing, ``(count_c + 1) / (n_dev + k)``, when one is missing (Snorkel's
    own estimate rejects such a dev set). A ``class_balance`` given to :meth:`fit` wins
    over the dev gold.
    """

    name = "snorkel"

    def __init__(self, cardinality: int, *, seed: int = 123, n_epochs: int = 500, lr: float = 0.01,
                 l2: float = 0.0, optimizer: Optimizer = "sgd", lr_scheduler: LRScheduler = "constant",
                 prec_init: float = 0.7, log_freq: int = 10, verbose: bool = False, device: str = "cpu") -> None:
        super().__init__(cardinality, seed=seed)
        self._train_with(n_epochs=n_epochs, lr=lr, l2=l2, optimizer=optimizer, lr_scheduler=lr_scheduler,
                         prec_init=prec_init, log_freq=log_freq, seed=seed)
        self.verbose, self.device = bool(verbose), device
        self._snorkel = require("snorkel.labeling.model", "snorkel")
        self._model: Any = None

    def fit(self, L: npt.ArrayLike | None = None, *, L_dev: npt.ArrayLike | None = None,
            y_dev: npt.ArrayLike | None = None, class_balance: npt.ArrayLike | None = None, progress: bool = False,
            L_train: npt.ArrayLike | None = None, progress_bar: bool | None = None, n_epochs: int | None = None,
            lr: float | None = None, l2: float | None = None, optimizer: Optimizer | None = None,
            lr_scheduler: LRScheduler | None = None, prec_init: float | None = None, log_freq: int | None = None,
            seed: int | None = None) -> "SnorkelLabelModel":
        """:meth:`LabelModel.fit`, taking Snorkel's ``fit`` arguments too: the votes as ``L_train``,
        ``progress_bar`` for ``progress`` and the training hyperparameters (``None``: as set before)."""
        if (L is None) == (L_train is None):
            raise LabelModelError("give the votes as L (or L_train, Snorkel's name), once")
        self._train_with(n_epochs=n_epochs, lr=lr, l2=l2, optimizer=optimizer, lr_scheduler=lr_scheduler,
                         prec_init=prec_init, log_freq=log_freq, seed=seed)
        return super().fit(L if L_train is None else L_train, L_dev=L_dev, y_dev=y_dev, class_balance=class_balance,
                           progress=progress if progress_bar is None else progress_bar)

    def _train_with(self, **hyperparameters: Any) -> None:
        """Check and set the training hyperparameters given (not ``None``)."""
        checks = {"n_epochs": lambda v: check_int("n_epochs", v, minimum=1, error=LabelModelError),
                  "log_freq": lambda v: check_int("log_freq", v, minimum=1, error=LabelModelError),
                  "seed": lambda v: check_int("seed", v, error=LabelModelError),
                  "lr": lambda v: check_number("lr", v, above=0, error=LabelModelError),
                  "l2": lambda v: check_number("l2", v, minimum=0, error=LabelModelError),
                  "prec_init": lambda v: check_number("prec_init", v, minimum=0, maximum=1, error=LabelModelError),
                  "optimizer": lambda v: check_choice("optimizer", v, Optimizer, error=LabelModelError),
                  "lr_scheduler": lambda v: check_choice("lr_scheduler", v, LRScheduler, error=LabelModelError)}
        for name, value in hyperparameters.items():
            if value is not None:
                setattr(self, name, checks[name](value))

    def _fit(self, L: LabelArray, *, L_dev: LabelArray | None, y_dev: GoldArray | None,
             class_balance: np.ndarray | None, progress: bool) -> None:
        if L.shape[1] < 3:
            raise LabelModelError(f"Snorkel's LabelModel needs at least 3 LFs; the matrix has {L.shape[1]}")
        if class_balance is None and y_dev is not None and len(y_dev):
            class_balance = dev_class_balance(y_dev, self.cardinality)
        self._model = self._snorkel.LabelModel(cardinality=self.cardinality, verbose=self.verbose, device=self.device)
        self._model.fit(
            L.astype(np.int64),
            class_balance=None if class_balance is None else class_balance.tolist(),
            progress_bar=progress,
            n_epochs=self.n_epochs,
            lr=self.lr,
            l2=self.l2,
            optimizer=self.optimizer,
            lr_scheduler=self.lr_scheduler,
            prec_init=self.prec_init,
            log_freq=self.log_freq,
            seed=self.seed,
        )

    def _predict_proba(self, L: LabelArray) -> ProbArray:
        return self._model.predict_proba(L.astype(np.int64))

    def _state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        config = {"n_epochs": self.n_epochs, "lr": self.lr, "l2": self.l2, "optimizer": self.optimizer,
                  "lr_scheduler": self.lr_scheduler, "prec_init": self.prec_init, "log_freq": self.log_freq,
                  "device": self.device}
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
