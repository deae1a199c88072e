"""What training optimizes and how the best checkpoint is chosen: AdamW, the learning-rate schedule, the dev score.

Examples
--------
>>> better(selection_score("accuracy", accuracy=0.9, macro_f1=0.8, loss=0.3), [0.9, -0.2])
False
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from labelflow.finetune.config import FinetuneConfig, Selection


def make_optimizer(model: Any, cfg: FinetuneConfig, total_steps: int, *, fused: bool) -> tuple[Any, Any]:
    """``(optimizer, scheduler)`` for ``model``'s trainable parameters: AdamW at ``cfg.learning_rate`` with
    ``cfg.weight_decay`` on matrices only (not biases and norms; ``fused`` on a GPU), and :func:`lr_schedule`
    over ``total_steps`` optimizer steps."""
    import torch

    decay = [p for p in model.parameters() if p.requires_grad and p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim < 2]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    optimizer = torch.optim.AdamW([g for g in groups if g["params"]], lr=cfg.learning_rate,
                                  **({"fused": True} if fused else {}))
    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, lr_schedule(cfg, total_steps))


def selection_score(select: Selection, *, accuracy: float, macro_f1: float, loss: float) -> list[float]:
    """The dev score :func:`better` compares for ``select``: ``[accuracy or macro-F1, -loss]`` or ``[-loss]``."""
    return {"accuracy": [accuracy, -loss], "macro_f1": [macro_f1, -loss], "loss": [-loss]}[select]


def better(score: list[float], best: list[float], *, min_delta: float = 1e-4) -> bool:
    """Whether dev ``score`` beats ``best``: ``[accuracy or macro-F1, -loss]`` (the loss breaks an exact tie) or
    ``[-loss]``, higher is better; a loss must improve by more than ``min_delta``.

    >>> better([0.9, -0.3], [0.8, -0.1]), better([0.9, -0.3], [0.9, -0.30001]), better([-0.2], [-0.3])
    (True, False, True)
    """
    if score[0] != best[0]:
        return score[0] > best[0] + (min_delta if len(score) == 1 else 0.0)
    return len(score) > 1 and score[1] > best[1] + min_delta


def lr_schedule(cfg: FinetuneConfig, total_steps: int) -> Callable[[int], float]:
    """The multiplier of the peak learning rate at each optimizer step: linear warm-up, then ``cfg.scheduler``.

    Examples
    --------
    >>> f = lr_schedule(FinetuneConfig(warmup_ratio=0.2, scheduler="linear"), 10)
    >>> [round(f(s), 2) for s in range(10)]
    [0.33, 0.67, 1.0, 0.88, 0.75, 0.62, 0.5, 0.38, 0.25, 0.12]
    """
    warmup = int(round(cfg.warmup_ratio * total_steps))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        progress = (step - warmup) / max(1, total_steps - warmup)
        if cfg.scheduler == "linear":
            return max(0.0, 1.0 - progress)
        if cfg.scheduler == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))
        return 1.0

    return factor
