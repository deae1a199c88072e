"""labelflow's own label model: accuracy-weighted voting with accuracies fit by EM.

Each LF ``j`` has an accuracy ``a_j`` (optionally one per class it votes). A row's
class scores are the sum of its votes' log-odds weights
``w_j = log(a_j (k-1) / (1 - a_j))``, so ``P(y | votes) ∝ exp(Σ_j w_j [λ_j = y])``
(a one-coin Dawid–Skene posterior with a uniform prior). A row no LF votes on
gets the uniform distribution, like majority vote, so the tie policy decides it.

Fitting estimates the accuracies without labels by EM (one-coin Dawid–Skene):
each iteration sets ``a_j`` to the posterior probability that its votes are
right, averaged over the rows where another LF voted too, shrunk towards
``prior_accuracy`` with ``prior_strength`` pseudo-votes. The class prior stays
uniform during the fit: estimating it jointly lets EM drift to the degenerate
all-one-class solution when LFs each vote a single class, and rows that only one
LF votes on say nothing about that LF's accuracy. With dev gold, each dev vote adds
its real correctness to the counts, weighted so that the dev split as a whole
counts as much as the unlabeled rows (``dev_weight="balanced"``: ``n / n_dev``
pseudo-votes per dev vote), or a fixed number of pseudo-votes each.

Identical LF columns share one weight (split evenly), so duplicating an LF does
not double its say. Time is linear in the number of votes and memory is bounded:
both fitting and prediction walk the rows in chunks of ``CHUNK_ROWS``, and the
matrix is never expanded to ``[n, m, k]``. ``device="cuda"`` runs the same arithmetic in
torch on the GPU.
"""

from __future__ import annotations

import hashlib
from typing import Any, Literal

import numpy as np

from labelflow.errors import LabelModelError, require
from labelflow.labelmodels.base import LabelModel, register_label_model
from labelflow.typing import GoldArray, LabelArray, ProbArray

CHUNK_ROWS = 1 << 18


@register_label_model
class FlowLabelModel(LabelModel):
    """Accuracy-weighted vote, accuracies fit by EM (see the module docstring).

    Parameters
    ----------
    cardinality
        Number of classes ``k``.
    seed
        Unused by the fit (it is deterministic); kept for the common interface.
    n_iter
        EM iterations (stops early when accuracies move less than ``tol``).
    prior_accuracy, prior_strength
        Shrinkage target and its weight in pseudo-votes.
    per_class
        One accuracy per (LF, class voted) instead of one per LF.
    dev_weight
        Pseudo-votes each dev gold vote counts for in semi-supervised fitting;
        ``"balanced"``: ``n / n_dev``.
    device
        ``"cpu"`` (NumPy), ``"cuda"`` or ``"auto"`` (torch on the GPU when present).

    Examples
    --------
    >>> L = np.array([[0, 0, -1], [1, 1, 1], [1, -1, 0], [-1, -1, -1]])
    >>> model = FlowLabelModel(2).fit(L)
    >>> model.predict(L, tie_policy="abstain")
    array([ 0,  1,  1, -1])
    """

    name = "labelflow"

    def __init__(self, cardinality: int, *, seed: int = 123, n_iter: int = 30, tol: float = 1e-4,
                 prior_accuracy: float = 0.7, prior_strength: float = 50.0, per_class: bool = False,
                 dev_weight: float | Literal["balanced"] = "balanced", device: str = "cpu") -> None:
        super().__init__(cardinality, seed=seed)
        if not 1 / cardinality < prior_accuracy < 1:
            raise LabelModelError(f"prior_accuracy must lie in (1/k, 1) = ({1 / cardinality:.3f}, 1); got {prior_accuracy}")
        if dev_weight != "balanced" and (isinstance(dev_weight, str) or dev_weight < 0):
            raise LabelModelError(f"dev_weight must be a number ≥ 0 or 'balanced'; got {dev_weight!r}")
        if n_iter < 1 or tol <= 0 or prior_strength <= 0:
            raise LabelModelError(f"need n_iter ≥ 1, tol > 0, prior_strength > 0; got n_iter={n_iter}, "
                                  f"tol={tol}, prior_strength={prior_strength}")
        if device not in ("cpu", "cuda", "auto"):
            raise LabelModelError(f"device must be 'cpu', 'cuda' or 'auto'; got {device!r}")
        self.n_iter, self.tol, self.prior_accuracy, self.prior_strength = n_iter, tol, prior_accuracy, prior_strength
        self.per_class, self.dev_weight, self.device = per_class, dev_weight, device
        self.accuracy: np.ndarray | None = None
        """``[m, k]`` fitted accuracy of each LF when it votes each class."""
        self.share: np.ndarray | None = None
        """``[m]`` fraction of its weight each LF keeps (1 / size of its group of identical columns)."""
        self.class_balance: np.ndarray | None = None
        """``[k]`` prior added to every covered row's scores (given to ``fit``), or ``None``."""
        self.n_iter_run = 0

    # --- fitting ------------------------------------------------------------------------------------

    def _fit(self, L: LabelArray, *, L_dev: LabelArray | None, y_dev: GoldArray | None,
             class_balance: np.ndarray | None, progress: bool) -> None:
        xp, to = _backend(self.device)
        k, m = self.cardinality, L.shape[1]
        self.share = _duplicate_share(L)
        self.class_balance = class_balance
        dev_num = dev_den = None
        if L_dev is not None and y_dev is not None and len(y_dev):
            weight = L.shape[0] / len(y_dev) if self.dev_weight == "balanced" else float(self.dev_weight)
            dr, dc, dv = _votes(L_dev)
            slot = dc * k + dv
            dev_num = to(np.bincount(slot, weights=(dv == y_dev[dr]) * weight, minlength=m * k))
            dev_den = to(np.bincount(slot, minlength=m * k) * weight)
        acc = to(np.full(m * k, self.prior_accuracy))
        share = to(self.share)
        for it in range(self.n_iter):
            log_odds = _log_odds(acc, k, xp)
            num = den = 0.0
            for start in range(0, L.shape[0], CHUNK_ROWS):  # bounded memory: votes of one chunk at a time
                block = L[start:start + CHUNK_ROWS]
                rows, cols, votes = (to(a) for a in _votes(block))
                slot = cols * k + votes
                weight = log_odds[slot] * share[cols]
                agree = _posterior_agreement(rows, votes, weight, block.shape[0], k, xp)
                others = xp.bincount(rows, minlength=block.shape[0])[rows] > 1  # judged where another LF voted
                num = num + xp.bincount(slot[others], weights=agree[others], minlength=m * k)
                den = den + xp.bincount(slot[others], minlength=m * k) * 1.0
            if not self.per_class:  # pool the counts of each LF over the classes it votes
                num, den = _pool(num, m, k), _pool(den, m, k)
            if dev_num is not None:
                num, den = num + dev_num, den + dev_den
            new = xp.clip((num + self.prior_strength * self.prior_accuracy) / (den + self.prior_strength),
                          1 / k + 1e-3, 1 - 1e-4)
            moved = float(xp.abs(new - acc).max())
            acc = new
            self.n_iter_run = it + 1
            if moved < self.tol:
                break
        self.accuracy = _numpy(acc).reshape(m, k)

    # --- prediction ---------------------------------------------------------------------------------

    def _predict_proba(self, L: LabelArray) -> ProbArray:
        xp, to = _backend(self.device)
        k = self.cardinality
        weight_table = to(_log_odds(self.accuracy.reshape(-1), k, np) * np.repeat(self.share, k))
        prior = None if self.class_balance is None else to(np.log(self.class_balance))
        out = np.empty((L.shape[0], k))
        for start in range(0, L.shape[0], CHUNK_ROWS):
            block = L[start:start + CHUNK_ROWS]
            rows, cols, votes = (to(a) for a in _votes(block))
            scores = xp.bincount(rows * k + votes, weights=weight_table[cols * k + votes],
                                 minlength=block.shape[0] * k).reshape(block.shape[0], k)
            if prior is not None:
                covered = xp.bincount(rows, minlength=block.shape[0]) > 0
                scores[covered] = scores[covered] + prior
            scores = scores - xp.amax(scores, 1)[:, None]
            probs = xp.exp(scores)
            out[start:start + len(block)] = _numpy(probs / probs.sum(1)[:, None])
        return out

    # --- persistence --------------------------------------------------------------------------------

    def _state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        config = {"n_iter": self.n_iter, "tol": self.tol, "prior_accuracy": self.prior_accuracy,
                  "prior_strength": self.prior_strength, "per_class": self.per_class,
                  "dev_weight": self.dev_weight, "device": self.device}
        arrays = {"accuracy": self.accuracy, "share": self.share}
        if self.class_balance is not None:
            arrays["class_balance"] = self.class_balance
        return config, arrays

    @classmethod
    def _from_state(cls, cardinality: int, seed: int, config: dict[str, Any],
                    arrays: dict[str, np.ndarray]) -> "FlowLabelModel":
        model = cls(cardinality, seed=seed, **config)
        model.accuracy, model.share = arrays["accuracy"], arrays["share"]
        model.class_balance = arrays.get("class_balance")
        return model


def _votes(L: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row, LF and class of every vote (``[nnz]`` int64 each)."""
    rows, cols = np.nonzero(L >= 0)
    return rows.astype(np.int64), cols.astype(np.int64), L[rows, cols].astype(np.int64)


def _pool(counts: Any, m: int, k: int) -> Any:
    """``[m * k]`` per (LF, class) counts → each LF's total, repeated over its ``k`` slots."""
    per_lf = counts.reshape(m, k)
    return (per_lf.sum(1)[:, None] + 0 * per_lf).reshape(-1)


def _log_odds(acc: Any, k: int, xp: Any) -> Any:
    return xp.log(acc * (k - 1) / (1 - acc))


def _posterior_agreement(rows: Any, votes: Any, weight: Any, n: int, k: int, xp: Any) -> Any:
    """``[nnz]``: for each vote, the posterior probability of its class on its row (the E-step)."""
    scores = xp.bincount(rows * k + votes, weights=weight, minlength=n * k).reshape(n, k)
    top = xp.amax(scores, 1)
    total = xp.exp(scores - top[:, None]).sum(1)  # Σ_c exp(s_c - top)
    return xp.exp(scores[rows, votes] - top[rows]) / total[rows]


def _duplicate_share(L: np.ndarray) -> np.ndarray:
    """``[m]``: 1 / (number of LFs whose column is identical to this one)."""
    m = L.shape[1]
    keys = [hashlib.blake2b(np.ascontiguousarray(L[:, j]).tobytes(), digest_size=16).digest() for j in range(m)]
    counts: dict[bytes, int] = {}
    for key in keys:
        counts[key] = counts.get(key, 0) + 1
    return np.array([1.0 / counts[key] for key in keys])


def _backend(device: str) -> tuple[Any, Any]:
    """(array module, converter from NumPy) for ``device``."""
    if device == "cpu":
        return np, np.asarray
    torch = require("torch", "snorkel")
    if device == "auto" and not torch.cuda.is_available():
        return np, np.asarray
    if not torch.cuda.is_available():
        raise LabelModelError("device='cuda' was asked for but torch sees no CUDA GPU")
    return torch, lambda a: torch.as_tensor(a, device="cuda")


def _numpy(a: Any) -> np.ndarray:
    return a.detach().cpu().numpy() if hasattr(a, "detach") else np.asarray(a)
