"""Scoring: the student's class probabilities over many rows, and its metrics beside the label model's."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import nullcontext
from typing import Any

import numpy as np

from labelflow.analysis import classification_metrics
from labelflow.finetune.data import collate, sorted_batches
from labelflow.finetune.rows import TrainingRows


def predict_probs(model: Any, token_ids: Sequence[np.ndarray], *, batch_size: int, pad_id: int, device: Any,
                  autocast_dtype: Any = None, pad_to_multiple_of: int = 1) -> np.ndarray:
    """``[n, k]`` float64 class probabilities of a sequence classifier for pre-tokenized rows.

    Rows are batched longest first; ``autocast_dtype`` (e.g. ``torch.bfloat16``) runs
    the forward pass under autocast on ``device``.
    """
    import torch

    if not len(token_ids):
        return np.zeros((0, model.config.num_labels))
    was_training = model.training
    model.eval()
    out: np.ndarray | None = None
    device = torch.device(device)
    ctx = (torch.autocast(device.type, dtype=autocast_dtype) if autocast_dtype is not None else nullcontext())
    try:
        with torch.inference_mode(), ctx:
            for rows in sorted_batches([len(t) for t in token_ids], batch_size):
                batch = collate(token_ids, rows, pad_id=pad_id, pad_to_multiple_of=pad_to_multiple_of)
                logits = model(input_ids=batch["input_ids"].to(device),
                               attention_mask=batch["attention_mask"].to(device)).logits
                probs = torch.softmax(logits.float(), dim=-1).cpu().numpy().astype(np.float64)
                if out is None:
                    out = np.zeros((len(token_ids), probs.shape[1]))
                out[rows] = probs
    finally:
        model.train(was_training)
    assert out is not None
    return out


def metrics(gold: np.ndarray, preds: np.ndarray, *, class_names: Sequence[str],
            covered: np.ndarray | None = None, tied: np.ndarray | None = None) -> dict[str, Any]:
    """:func:`labelflow.analysis.classification_metrics` plus ``per_class``:
    ``{class: {"precision", "recall", "f1", "support"}}``.

    Keys: ``accuracy`` (all gold rows), ``accuracy_covered`` (gold rows in ``covered``;
    without it every row counts as covered), ``macro_f1``, ``per_class_f1``, ``coverage``,
    ``tied`` (fraction of rows in ``tied``; null without it), ``n``, ``n_covered``, ``per_class``.
    """
    out = classification_metrics(gold, preds, class_names=class_names, covered=covered, tied=tied)
    keep = np.asarray(gold) >= 0
    y, p = np.asarray(gold)[keep], np.asarray(preds)[keep]
    per_class = {}
    for c, name in enumerate(class_names):
        tp = int(np.sum((p == c) & (y == c)))
        predicted, support = int(np.sum(p == c)), int(np.sum(y == c))
        per_class[name] = {"precision": tp / predicted if predicted else 0.0, "recall": tp / support if support else 0.0,
                           "f1": out["per_class_f1"][name], "support": support}
    out["per_class"] = per_class
    return out


def dev_loss(probs: np.ndarray, gold: np.ndarray) -> float:
    """Mean cross-entropy of ``[n, k]`` predicted probabilities against ``[n]`` gold classes."""
    p = probs[np.arange(len(gold)), gold]
    return float(-np.mean(np.log(np.clip(p, 1e-12, 1.0))))


def gold_scores(rows: TrainingRows, student_probs: Callable[[np.ndarray], np.ndarray]) -> dict[str, Any]:
    """The student beside the label model on the dev and test gold rows: ``metrics.json``'s ``dev`` and ``test``.

    Parameters
    ----------
    rows
        The run's rows (:func:`labelflow.finetune.rows.select_rows`).
    student_probs
        ``[len(idx), k]`` student probabilities for row indices ``idx``.

    Returns
    -------
    dict
        ``{"dev": entry or None, "test": entry or None}`` (``None``: no gold rows), each entry ``{"rows",
        "student", "label_model"}`` (:func:`metrics` of each) and, where some gold rows have no LF vote,
        ``"uncovered": {"rows", "student_accuracy", "label_model_accuracy"}``. The label model is scored as
        ``labelflow fit`` scores it: its policy's class on every gold row (ties broken, not counted wrong),
        accuracy on all rows and on the rows some LF voted on, coverage, tied; the student labels every row
        (coverage 1).
    """
    data, names, out = rows.data, rows.data.class_names, {}
    for split, mask in (("dev", rows.dev), ("test", rows.test)):
        idx = np.flatnonzero(mask)
        if not len(idx):
            out[split] = None
            continue
        pred, gold, lm_pred = student_probs(idx).argmax(axis=1), data.gold[idx], data.lm_pred[idx]
        covered = None if data.covered is None else data.covered[idx]
        entry: dict[str, Any] = {
            "rows": int(len(idx)),
            "student": metrics(gold, pred, class_names=names),
            "label_model": metrics(gold, lm_pred, class_names=names, covered=covered, tied=data.tied[idx]),
        }
        if covered is not None and (~covered).any():
            u = ~covered
            entry["uncovered"] = {"rows": int(u.sum()),
                                  "student_accuracy": float(np.mean(pred[u] == gold[u])),
                                  "label_model_accuracy": float(np.mean(lm_pred[u] == gold[u]))}
        out[split] = entry
    return out
