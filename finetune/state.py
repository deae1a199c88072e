"""Where a training run is: :class:`TrainState`, the part of a checkpoint that is the trainer's own.

The checkpoint (:mod:`labelflow.finetune.checkpoint`, written through :mod:`labelflow.finetune.run_folder`)
holds the trainable weights, the optimizer, the schedule, the RNG states and, under
``"state"``, :meth:`TrainState.to_dict`; :meth:`TrainState.from_dict` reads it back. Those
two methods are the only place that knows the stored keys.

Examples
--------
>>> st = TrainState(step=12, epoch=1, batch_in_epoch=4)
>>> TrainState.from_dict(st.to_dict(), where="x") == st
True
>>> TrainState.from_dict({"step": 1}, where="ckpt")
Traceback (most recent call last):
...
labelflow.errors.FinetuneError: ckpt: the trainer state misses ['bad_evals', 'batch_in_epoch', 'best', 'done', \
'epoch', 'history', 'loss_steps', 'loss_sum', 'samples', 'tokens', 'train_seconds']
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from labelflow.errors import FinetuneError


@dataclass
class Best:
    """The best dev evaluation so far and the trainable weights it scored with.

    Attributes
    ----------
    step
        Optimizer step of the evaluation.
    epoch
        Epochs done at that step (fractional, 3 decimals; a whole number without dev rows).
    score
        What :func:`labelflow.finetune.optim.better` compares, higher is better: ``[accuracy or macro-F1, -dev loss]``
        or ``[-dev loss]``; ``None`` without dev rows (the last weights are kept).
    weights
        The trainable parameters by name (:func:`labelflow.finetune.model.trainable_state`): tensors on the CPU.
    """

    step: int
    epoch: float
    score: list[float] | None
    weights: dict[str, Any]


@dataclass
class TrainState:
    """The trainer's position, counters and evaluations: what a resumed run continues from.

    Attributes
    ----------
    step
        Optimizer steps done.
    epoch
        Whole epochs done.
    batch_in_epoch
        Micro-batches of the current epoch done (of this process's share).
    best
        The best dev evaluation and its weights; ``None`` before the first evaluation.
    bad_evals
        Evaluations in a row without a better dev score (early stopping counts them).
    history
        One entry per evaluation: ``{"step", "train_loss"}`` and, with dev rows, ``"epoch"``,
        ``"dev_accuracy"``, ``"dev_macro_f1"``, ``"dev_loss"``.
    train_seconds
        Wall-clock seconds spent in optimizer steps (evaluation and checkpoints excluded).
    samples, tokens
        Training rows and non-padding tokens seen, all processes together.
    loss_sum, loss_steps
        Sum of the optimizer steps' train losses since the last evaluation, and how many.
    done
        Training has ended (the last step, or early stopping); a resume only writes the run.
    """

    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    best: Best | None = None
    bad_evals: int = 0
    history: list[dict[str, float]] = field(default_factory=list)
    train_seconds: float = 0.0
    samples: int = 0
    tokens: int = 0
    loss_sum: float = 0.0
    loss_steps: int = 0
    done: bool = False

    @property
    def dev_accuracy(self) -> float | None:
        """Dev accuracy of the last evaluation that had dev rows, or ``None``."""
        return next((h["dev_accuracy"] for h in reversed(self.history) if "dev_accuracy" in h), None)

    def take_train_loss(self) -> float:
        """The mean train loss since the last call (0 when no step ran), resetting the sum."""
        loss = self.loss_sum / max(self.loss_steps, 1)
        self.loss_sum, self.loss_steps = 0.0, 0
        return loss

    def to_dict(self) -> dict[str, Any]:
        """The checkpoint's ``"state"`` entry: JSON values, and the best weights as tensors under ``best.state``."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["history"] = [dict(h) for h in self.history]
        if self.best is not None:
            b = self.best
            out["best"] = {"step": b.step, "epoch": b.epoch, "score": b.score, "state": b.weights}
        return out

    @classmethod
    def from_dict(cls, raw: Any, *, where: str) -> TrainState:
        """Inverse of :meth:`to_dict`; :class:`FinetuneError` naming ``where`` (the checkpoint) when keys are missing."""
        names = {f.name for f in fields(cls)}
        if not isinstance(raw, dict):
            raise FinetuneError(f"{where}: the trainer state is a {type(raw).__name__}, not a mapping")
        missing = sorted(names - set(raw))
        if missing:
            raise FinetuneError(f"{where}: the trainer state misses {missing}")
        values = {k: raw[k] for k in names}
        best = raw["best"]
        if best is not None:
            values["best"] = Best(step=best["step"], epoch=best["epoch"], score=best["score"], weights=best["state"])
        values["history"] = list(raw["history"])
        return cls(**values)
