"""The label-model interface, its registry, and save/load without pickles."""

from __future__ import annotations

import hashlib
import inspect
import json
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import numpy.typing as npt

from labelflow.conventions import ABSTAIN, GoldArray, LabelArray, PredArray, ProbArray
from labelflow.errors import LabelModelError
from labelflow.files import atomic_path
from labelflow.matrix import check_gold, check_label_matrix
from labelflow.validation import check_choice, check_int, one_of

TiePolicy = Literal["random", "abstain", "first", "true-random"]
"""How a tie between classes becomes a prediction (see :func:`probs_to_preds`)."""
TieBreakPolicy = Literal["abstain", "random", "true-random"]
"""Snorkel's ``tie_break_policy`` values: the policies of :data:`TiePolicy` Snorkel has, under the same names."""
ScoreMetric = Literal["accuracy", "coverage"]
"""The metrics :meth:`LabelModel.score` computes, with the meaning of Snorkel's ``Scorer``."""
FORMAT_VERSION = 1
_REGISTRY: dict[str, type["LabelModel"]] = {}


class LabelModel(ABC):
    """Combines the votes of ``m`` LFs into ``[n, k]`` class probabilities.

    Subclasses implement :meth:`_fit`, :meth:`_predict_proba`, and the pair
    :meth:`_state` / :meth:`_from_state` that save and restore them as JSON plus
    NumPy arrays.

    Parameters
    ----------
    cardinality
        Number of classes ``k``.
    seed
        Seed for anything random in fitting; equal seeds give equal models.
    """

    name: ClassVar[str]

    def __init__(self, cardinality: int, *, seed: int = 123) -> None:
        check_int("cardinality", cardinality, minimum=2, error=LabelModelError)
        self.cardinality = cardinality
        self.seed = seed
        self.n_lfs: int | None = None
        self.lf_names: tuple[str, ...] | None = None

    # --- public interface ---------------------------------------------------------------------------

    def fit(
        self,
        L: npt.ArrayLike,
        *,
        L_dev: LabelArray | None = None,
        y_dev: GoldArray | None = None,
        class_balance: np.ndarray | None = None,
        progress: bool = False,
    ) -> "LabelModel":
        """Fit on an ``[n, m]`` label matrix; returns ``self``.

        Parameters
        ----------
        L
            ``[n, m]`` votes in ``-1 .. k-1``: a :class:`~labelflow.matrix.LabelMatrix` or any array-like.
        L_dev, y_dev
            Optional ``[n_dev, m]`` votes and ``[n_dev]`` gold classes of a dev set.
        class_balance
            Optional ``[k]`` prior over classes, summing to 1.
        progress
            Show a progress bar where fitting iterates.
        """
        L = check_label_matrix(L, self.cardinality)
        if L_dev is not None or y_dev is not None:
            L_dev, y_dev = self._check_dev(L, L_dev, y_dev)
        if class_balance is not None:
            class_balance = np.asarray(class_balance, dtype=np.float64)
            if class_balance.shape != (self.cardinality,) or np.any(class_balance < 0) or not np.isclose(class_balance.sum(), 1):
                raise LabelModelError(f"class_balance must be {self.cardinality} non-negative numbers summing to 1; got {class_balance}")
        self._fit(L, L_dev=L_dev, y_dev=y_dev, class_balance=class_balance, progress=progress)
        self.n_lfs = L.shape[1]
        return self

    def predict_proba(self, L: npt.ArrayLike) -> ProbArray:
        """``[n, k]`` class probabilities for an ``[n, m]`` label matrix (a ``LabelMatrix`` or any array-like)."""
        if self.n_lfs is None:
            raise LabelModelError(f"label model {self.name!r} is not fitted; call fit() first")
        L = check_label_matrix(L, self.cardinality)
        if L.shape[1] != self.n_lfs:
            raise LabelModelError(
                f"label model {self.name!r} was fit on {self.n_lfs} LFs but this matrix has {L.shape[1]}; "
                "refit it after adding or removing LFs"
            )
        return self._predict_proba(L)

    def predict(self, L: npt.ArrayLike, *, return_probs: bool = False, tie_break_policy: TieBreakPolicy | None = None,
                tie_policy: TiePolicy | None = None) -> PredArray | tuple[PredArray, ProbArray]:
        """``[n]`` predicted classes: the argmax of :meth:`predict_proba`, ties broken by a policy.

        Parameters
        ----------
        L
            ``[n, m]`` votes: a ``LabelMatrix`` or any array-like.
        return_probs
            Return ``(preds, probs)``, the ``[n, k]`` probabilities too, as Snorkel's ``predict`` does.
        tie_break_policy
            Snorkel's name and values for the policy: ``"abstain"``, ``"random"``, ``"true-random"``.
        tie_policy
            labelflow's name: those, or ``"first"`` (see :func:`probs_to_preds`). Give one of the two; with
            neither, ties abstain (``ABSTAIN``), as in Snorkel's ``LabelModel`` and ``MajorityLabelVoter``.

        Examples
        --------
        >>> from labelflow.labelmodels import MajorityVote
        >>> L = [[0, 0], [0, 1]]
        >>> model = MajorityVote(2).fit(L)
        >>> model.predict(L), model.predict(L, tie_policy="first")
        (array([ 0, -1]), array([0, 0]))
        >>> preds, probs = model.predict(L, return_probs=True, tie_break_policy="random")
        >>> preds, probs[1]
        (array([0, 1]), array([0.5, 0.5]))
        """
        probs = self.predict_proba(L)
        preds = probs_to_preds(probs, tie_policy=_tie_policy(tie_break_policy, tie_policy))
        return (preds, probs) if return_probs else preds

    def score(self, L: npt.ArrayLike, Y: npt.ArrayLike, *, metrics: Sequence[ScoreMetric] = ("accuracy",),
              tie_break_policy: TieBreakPolicy = "abstain") -> dict[str, float]:
        """Snorkel's ``score``: ``{metric: value}`` of :meth:`predict` on ``[n, m]`` votes against ``[n]`` gold ``Y``.

        ``"accuracy"`` is measured on the rows that have gold and a prediction (a row whose tie
        abstains is left out, as Snorkel's ``Scorer`` does); ``"coverage"`` is the fraction of rows
        with a prediction. :func:`labelflow.analysis.classification_metrics` gives F1 and more.

        Examples
        --------
        >>> from labelflow.labelmodels import MajorityVote
        >>> MajorityVote(2).fit([[0, 0]]).score([[0, 0], [1, -1], [0, 1]], [0, 0, 1], metrics=["accuracy", "coverage"])
        {'accuracy': 0.5, 'coverage': 0.6666666666666666}
        """
        for metric in metrics:
            check_choice("metric", metric, ScoreMetric, error=LabelModelError)
        preds = self.predict(L, tie_break_policy=tie_break_policy)
        gold = check_gold(np.asarray(Y), len(preds), self.cardinality)
        scored = (gold != ABSTAIN) & (preds != ABSTAIN)
        values = {"accuracy": float(np.mean(preds[scored] == gold[scored])) if scored.any() else float("nan"),
                  "coverage": float(np.mean(preds != ABSTAIN))}
        return {metric: values[metric] for metric in metrics}

    def save(self, path: str | Path, *, lf_names: Sequence[str] | None = None) -> None:
        """Write the fitted model to one ``.npz`` file (JSON config + arrays; no pickles), atomically.

        ``lf_names``, the ``m`` LFs it was fit on, are stored so a later load can
        check them; :func:`load_label_model` sets them as :attr:`lf_names`.
        """
        if self.n_lfs is None:
            raise LabelModelError(f"label model {self.name!r} is not fitted; nothing to save")
        if lf_names is not None and len(lf_names) != self.n_lfs:
            raise LabelModelError(f"lf_names has {len(lf_names)} names; the model was fit on {self.n_lfs} LFs")
        config, arrays = self._state()
        meta = {"format": FORMAT_VERSION, "name": self.name, "cardinality": self.cardinality, "seed": self.seed,
                "n_lfs": self.n_lfs, "lf_names": None if lf_names is None else list(lf_names), "config": config}
        if "__meta__" in arrays:
            raise LabelModelError("'__meta__' is reserved in a label model's saved arrays")
        with atomic_path(path) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, __meta__=np.array(json.dumps(meta)), **arrays)

    # --- for subclasses -----------------------------------------------------------------------------

    @abstractmethod
    def _fit(self, L: LabelArray, *, L_dev: LabelArray | None, y_dev: GoldArray | None,
             class_balance: np.ndarray | None, progress: bool) -> None: ...

    @abstractmethod
    def _predict_proba(self, L: LabelArray) -> ProbArray: ...

    @abstractmethod
    def _state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """The fitted state as a JSON-ready config and named arrays."""

    @classmethod
    @abstractmethod
    def _from_state(cls, cardinality: int, seed: int, config: dict[str, Any], arrays: dict[str, np.ndarray]) -> "LabelModel":
        """Inverse of :meth:`_state` (``n_lfs`` is set by :func:`load_label_model`)."""

    def _check_dev(self, L: LabelArray, L_dev: Any, y_dev: Any) -> tuple[LabelArray, GoldArray]:
        if L_dev is None or y_dev is None:
            raise LabelModelError("give both L_dev and y_dev, or neither")
        L_dev = check_label_matrix(L_dev, self.cardinality)
        y_dev = np.asarray(y_dev)
        if L_dev.shape[1] != L.shape[1]:
            raise LabelModelError(f"L_dev has {L_dev.shape[1]} LFs but L has {L.shape[1]}")
        if y_dev.shape != (L_dev.shape[0],):
            raise LabelModelError(f"y_dev must have shape ({L_dev.shape[0]},) to match L_dev; got {y_dev.shape}")
        bad = (y_dev < 0) | (y_dev >= self.cardinality)
        if bad.any():
            i = int(np.argmax(bad))
            raise LabelModelError(
                f"dev gold label {int(y_dev[i])} at dev row {i} is outside the schema's classes 0..{self.cardinality - 1}"
            )
        return L_dev, y_dev.astype(np.int64)


def register_label_model(cls: type[LabelModel]) -> type[LabelModel]:
    """Class decorator: make a label model available by its ``name``."""
    if cls.name in _REGISTRY and _REGISTRY[cls.name] is not cls:
        raise LabelModelError(f"a label model named {cls.name!r} is already registered ({_REGISTRY[cls.name].__qualname__})")
    _REGISTRY[cls.name] = cls
    return cls


def label_model_names() -> list[str]:
    """Names of the registered label models."""
    return list(_REGISTRY)


def get_label_model(name: str, cardinality: int, *, seed: int = 123, **hyperparameters: Any) -> LabelModel:
    """A new, unfitted label model by registry name, built with its keyword ``hyperparameters``.

    Examples
    --------
    >>> get_label_model("snorkel", cardinality=2, n_epochs=100, lr=0.001).n_epochs
    100
    >>> get_label_model("majority_vote", 2, n_epochs=100)
    Traceback (most recent call last):
    ...
    labelflow.errors.LabelModelError: label model 'majority_vote' takes no hyperparameter 'n_epochs'; it takes none
    """
    try:
        cls = _REGISTRY[name]
    except KeyError:
        raise LabelModelError(f"unknown label model {name!r}; known models are {label_model_names()}") from None
    known = [p.name for p in inspect.signature(cls.__init__).parameters.values()
             if p.kind == p.KEYWORD_ONLY and p.name != "seed"]
    unknown = [key for key in hyperparameters if key not in known]
    if unknown:
        raise LabelModelError(f"label model {name!r} takes no hyperparameter {one_of(unknown)}; it takes "
                              + (", ".join(known) if known else "none"))
    return cls(cardinality, seed=seed, **hyperparameters)


def load_label_model(path: str | Path) -> LabelModel:
    """Read a model written by :meth:`LabelModel.save`."""
    path = Path(path)
    if not path.is_file():
        raise LabelModelError(f"no saved label model at {path}")
    with np.load(path, allow_pickle=False) as npz:
        meta = json.loads(str(npz["__meta__"]))
        arrays = {k: npz[k] for k in npz.files if k != "__meta__"}
    if meta.get("format") != FORMAT_VERSION:
        raise LabelModelError(f"{path}: saved with format {meta.get('format')}; this labelflow reads format {FORMAT_VERSION}")
    if meta["name"] not in _REGISTRY:
        raise LabelModelError(f"{path}: unknown label model {meta['name']!r}; known models are {label_model_names()}")
    for key, array in arrays.items():
        if array.dtype.kind in "fc" and not np.isfinite(array).all():
            raise LabelModelError(f"{path}: its array {key!r} holds NaN or infinite values, which a fit never "
                                  "writes; fit the model again")
    model = _REGISTRY[meta["name"]]._from_state(meta["cardinality"], meta["seed"], meta["config"], arrays)
    model.n_lfs = meta["n_lfs"]
    model.lf_names = None if meta["lf_names"] is None else tuple(meta["lf_names"])
    return model


def tied_rows(probs: ProbArray, *, tol: float = 1e-5) -> np.ndarray:
    """``[n]`` booleans: rows of ``[n, k]`` probabilities whose largest value is shared by two or more
    classes (within ``tol``, as :func:`probs_to_preds` judges it), so a tie policy decides their class.

    Examples
    --------
    >>> tied_rows(np.array([[0.2, 0.8, 0.0], [0.5, 0.5, 0.0], [1 / 3, 1 / 3 + 1e-9, 1 / 3 - 1e-9]]))
    array([False,  True,  True])
    """
    return _is_max(np.asarray(probs), tol).sum(axis=1) > 1


def probs_to_preds(probs: ProbArray, *, tie_policy: TiePolicy = "random", tol: float = 1e-5) -> PredArray:
    """``[n]`` argmax classes of ``[n, k]`` probabilities, with a policy for ties.

    ``"random"`` picks among tied classes by a deterministic hash of the row index,
    exactly as Snorkel's ``probs_to_preds`` does; ``"true-random"`` picks with NumPy's global
    random state, as Snorkel's does (not reproducible unless it is seeded); ``"abstain"``
    returns ``ABSTAIN``; ``"first"`` takes the lowest tied class. The row index is the row's position in
    ``probs``: predicting a slice of rows keys the hash by positions within the slice.
    (A project predicts every row of its dataset at once and slices afterwards; see
    :meth:`labelflow.project.Project.predictions`.)

    Examples
    --------
    >>> probs_to_preds(np.array([[0.2, 0.8], [0.5, 0.5]]), tie_policy="abstain")
    array([ 1, -1])
    """
    check_choice("tie_policy", tie_policy, TiePolicy, error=LabelModelError)
    is_max = _is_max(np.asarray(probs), tol)
    preds = is_max.argmax(axis=1).astype(np.int64)
    tied = np.flatnonzero(is_max.sum(axis=1) > 1)
    if tie_policy == "abstain":
        preds[tied] = ABSTAIN
    elif tie_policy == "random":
        for i in tied:
            options = np.flatnonzero(is_max[i])
            preds[i] = options[int(hashlib.sha1(str(i).encode()).hexdigest(), 16) % len(options)]
    elif tie_policy == "true-random":
        for i in tied:
            preds[i] = np.random.choice(np.flatnonzero(is_max[i]))
    return preds


def _tie_policy(tie_break_policy: TieBreakPolicy | None, tie_policy: TiePolicy | None) -> TiePolicy:
    """The :data:`TiePolicy` that Snorkel's ``tie_break_policy`` or labelflow's ``tie_policy`` names (at most one
    of them given); ``"abstain"``, Snorkel's default, when neither is."""
    if tie_break_policy is not None and tie_policy is not None:
        raise LabelModelError(f"give tie_break_policy (Snorkel's name) or tie_policy, not both; got "
                              f"tie_break_policy={tie_break_policy!r} and tie_policy={tie_policy!r}")
    if tie_break_policy is not None:
        return check_choice("tie_break_policy", tie_break_policy, TieBreakPolicy, error=LabelModelError)
    return "abstain" if tie_policy is None else tie_policy


def _is_max(probs: np.ndarray, tol: float) -> np.ndarray:
    """``[n, k]`` booleans: the classes within ``tol`` of their row's largest probability (Snorkel's test)."""
    return np.abs(probs - probs.max(axis=1, keepdims=True)) < tol


def stratified_folds(y: GoldArray, n_folds: int, *, seed: int) -> np.ndarray:
    """``[n]`` fold index of each row: seeded-random, stratified by class (each class's rows are dealt to the
    folds in turn, so a class with at least ``n_folds`` rows is in every fold) and fold sizes differ by one at most.

    Examples
    --------
    >>> folds = stratified_folds(np.array([0, 0, 0, 0, 1, 1, 2]), 2, seed=0)
    >>> [sorted(set(folds[[0, 1, 2, 3]].tolist())), sorted(set(folds[[4, 5]].tolist()))], np.bincount(folds).tolist()
    ([[0, 1], [0, 1]], [4, 3])
    """
    y = np.asarray(y)
    order = np.random.default_rng(seed).permutation(len(y))
    order = order[np.argsort(y[order], kind="stable")]  # grouped by class, random within a class
    folds = np.empty(len(y), dtype=np.int64)
    folds[order] = np.arange(len(y)) % n_folds
    return folds
