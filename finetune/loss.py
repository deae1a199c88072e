"""Soft-label cross-entropy and confidence weights (torch).

The student learns the label model's whole distribution ``q`` rather than its
argmax: ``loss_i = -Σ_c q_ic · log softmax(z_i)_c``, which equals the KL divergence
to ``q`` plus ``q``'s own entropy, so its minimum lies at ``softmax(z_i) = q_i``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from labelflow.errors import FinetuneError
from labelflow.finetune.config import Weighting
from labelflow.validation import check_choice

if TYPE_CHECKING:
    import torch


def soft_cross_entropy(logits: "torch.Tensor", targets: "torch.Tensor",
                       weights: "torch.Tensor | None" = None) -> "torch.Tensor":
    """Mean (or weighted mean) cross-entropy of ``logits`` against soft targets.

    Parameters
    ----------
    logits
        ``[b, k]`` unnormalised scores.
    targets
        ``[b, k]`` class probabilities, rows summing to 1 (one-hot rows give the usual
        cross-entropy).
    weights
        Optional ``[b]`` non-negative row weights; the result is ``Σ w_i l_i / Σ w_i``
        (0 when every weight is 0).

    Returns
    -------
    torch.Tensor
        A scalar, computed in float32 whatever the logits' dtype.

    Examples
    --------
    >>> import torch
    >>> logits = torch.tensor([[2.0, 0.0], [0.0, 0.0]])
    >>> round(soft_cross_entropy(logits, torch.tensor([[1.0, 0.0], [0.5, 0.5]])).item(), 4)
    0.41
    >>> round(soft_cross_entropy(logits, torch.tensor([[1.0, 0.0], [0.5, 0.5]]), torch.tensor([1.0, 0.0])).item(), 4)
    0.1269
    """
    import torch

    if logits.ndim != 2 or targets.shape != logits.shape:
        raise FinetuneError(f"logits and targets must both be [b, k]; got {tuple(logits.shape)} and "
                            f"{tuple(targets.shape)}")
    per_row = -(targets.float() * torch.log_softmax(logits.float(), dim=-1)).sum(dim=-1)
    if weights is None:
        return per_row.mean()
    if weights.shape != per_row.shape:
        raise FinetuneError(f"weights must be [b] = {tuple(per_row.shape)}; got {tuple(weights.shape)}")
    weights = weights.float()
    return (per_row * weights).sum() / weights.sum().clamp_min(1e-12)


def confidence_weights(probs: np.ndarray, mode: Weighting) -> np.ndarray:
    """``[n]`` loss weights in ``[0, 1]`` from ``[n, k]`` soft labels.

    ``none``: 1; ``max_prob``: the largest probability; ``margin``: the gap between
    the two largest (0 on a tie); ``entropy``: ``1 - H(q) / log k``.

    Examples
    --------
    >>> q = np.array([[1.0, 0.0], [0.5, 0.5], [0.8, 0.2]])
    >>> confidence_weights(q, "margin").round(2).tolist(), confidence_weights(q, "entropy").round(2).tolist()
    ([1.0, 0.0, 0.6], [1.0, 0.0, 0.28])
    """
    check_choice("weighting", mode, Weighting, error=FinetuneError)
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2 or probs.shape[1] < 2:
        raise FinetuneError(f"probs must be [n, k] with k ≥ 2; got shape {probs.shape}")
    if mode == "none":
        return np.ones(len(probs))
    if mode == "max_prob":
        return probs.max(axis=1)
    if mode == "margin":
        top = np.sort(probs, axis=1)
        return top[:, -1] - top[:, -2]
    with np.errstate(divide="ignore", invalid="ignore"):  # "entropy"
        h = -np.where(probs > 0, probs * np.log(probs), 0.0).sum(axis=1)
    return np.clip(1.0 - h / np.log(probs.shape[1]), 0.0, 1.0)
