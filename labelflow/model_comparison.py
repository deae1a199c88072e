"""``labelflow bench label-models``: every registered label model on WRENCH label matrices."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from labelflow.analysis import classification_metrics
from labelflow.conventions import ABSTAIN
from labelflow.dataset import read_wrench
from labelflow.errors import DataError, LabelModelError
from labelflow.labelmodels import AutoLabelModel, get_label_model, label_model_names, probs_to_preds
from labelflow.labelmodels.base import tied_rows

POSITIVE_CLASS_F1 = {"sms": "f1_spam"}
"""WRENCH scores these datasets by the F1 of class 1; all others by accuracy."""


def bench_label_models(folders: Sequence[str | Path], *, models: Sequence[str] | None = None,
                       seed: int = 123, dev: bool = False) -> list[dict[str, Any]]:
    """Fit each model on a WRENCH folder's train matrix (labels unused) and score it on test.

    With ``dev``, each model is fit twice: on train alone, then with the valid
    split's votes and gold labels as dev. A model that raises (in ``fit`` or in
    predicting) gets a row with ``score`` null and the exception in ``error``; the
    other models still run.

    Predictions follow labelflow's policy (argmax, exact ties broken by Snorkel's
    hash, see :meth:`labelflow.project.Project.predictions`) with one difference kept on
    purpose: the hash is keyed by the row's position in the *test split* (what
    ``model.predict(L_test, tie_policy="random")`` does), as WRENCH's and Snorkel's published figures are
    made, so the scores stay comparable with theirs.

    Returns
    -------
    list of dict
        One ``{"dataset", "model", "dev", "metric", "score", "accuracy", "accuracy_covered",
        "coverage", "tied", "fit_seconds", "chosen", "error", "n_train", "n_test", "n_lfs", "classes"}``
        per folder, model and mode (``dev`` False, then True when asked for). ``metric`` is
        ``"f1_spam"`` (F1 of class 1) for ``sms`` and ``"accuracy"`` otherwise, and ``score``
        its value on test; ``accuracy`` is on all test rows, ``accuracy_covered`` on the test
        rows some LF votes on, ``coverage`` their fraction and ``tied`` the fraction decided
        by a tie-break; ``chosen`` is the model ``auto`` picked (null for the others).
    """
    names = list(models or label_model_names())
    unknown = [n for n in names if n not in label_model_names()]
    if unknown:
        raise LabelModelError(f"models (--models): unknown label model(s) {unknown}; known models are {label_model_names()}")
    results = []
    for folder in folders:
        folder = Path(folder)
        dataset_name = folder.parent.name if folder.name == "wrench" else folder.name
        data, matrix = read_wrench(folder)
        split = data.frame["split"].to_numpy()
        if not (split == "train").any() or not (split == "test").any():
            raise DataError(f"{folder}: a benchmark needs train.json and test.json")
        L_train, L_test = matrix.values[split == "train"], matrix.values[split == "test"]
        dev_args = {"L_dev": matrix.values[split == "dev"], "y_dev": data.gold()[split == "dev"]}
        if dev and not len(dev_args["y_dev"]):
            raise DataError(f"{folder}: --dev needs valid.json")
        y_test = data.gold()[split == "test"]
        covered = (L_test != ABSTAIN).any(axis=1)
        metric = POSITIVE_CLASS_F1.get(dataset_name, "accuracy")
        for with_dev, name in ((d, n) for d in ((False, True) if dev else (False,)) for n in names):
            row: dict[str, Any] = {"dataset": dataset_name, "model": name, "dev": with_dev, "metric": metric,
                                   "score": None, "accuracy": None, "accuracy_covered": None,
                                   "coverage": round(float(covered.mean()), 4), "tied": None, "fit_seconds": None,
                                   "chosen": None, "error": None}
            start = time.perf_counter()
            try:
                model = get_label_model(name, data.schema.k, seed=seed)
                model.fit(L_train, **(dev_args if with_dev else {}))
                row["fit_seconds"] = round(time.perf_counter() - start, 3)
                if isinstance(model, AutoLabelModel):
                    row["chosen"] = model.choice()["chosen"]
                probs = model.predict_proba(L_test)
            except Exception as exc:  # noqa: BLE001 — one failing model is reported in its row; the others run
                row["error"] = " ".join(f"{type(exc).__name__}: {exc}".split())
            else:
                preds = probs_to_preds(probs, tie_policy="random")  # keyed by the row's position in test
                scores = classification_metrics(y_test, preds, class_names=data.schema.names, covered=covered,
                                                 tied=tied_rows(probs))
                score = scores["per_class_f1"][data.schema.names[1]] if metric == "f1_spam" else scores["accuracy"]
                row.update(score=round(float(score), 4), accuracy=round(scores["accuracy"], 4),
                           accuracy_covered=_round(scores["accuracy_covered"]), tied=_round(scores["tied"]))
            results.append(row | {"n_train": int(L_train.shape[0]), "n_test": int(L_test.shape[0]),
                                  "n_lfs": int(L_train.shape[1]), "classes": data.schema.k})
    return results


def _round(value: float | None) -> float | None:
    return None if value is None else round(float(value), 4)


def markdown_table(results: Sequence[dict[str, Any]]) -> str:
    """The results of :func:`bench_label_models` as a Markdown table: a row per dataset and
    mode, a column per model with ``score (fit seconds)``, the best score of each row in bold;
    a model that failed shows ``failed: <error>``."""
    models = list(dict.fromkeys(r["model"] for r in results))
    lines = ["| dataset | metric | dev gold | " + " | ".join(models) + " |", "|---" * (3 + len(models)) + "|"]
    for key in dict.fromkeys((r["dataset"], r["dev"]) for r in results):
        row = {r["model"]: r for r in results if (r["dataset"], r["dev"]) == key}
        best = max((r["score"] for r in row.values() if r["score"] is not None), default=None)
        cells = [_cell(r, best) if (r := row.get(name)) else "" for name in models]
        first = next(iter(row.values()))
        lines.append(f"| {key[0]} | {first['metric']} | {'yes' if key[1] else 'no'} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _cell(r: dict[str, Any], best: float | None) -> str:
    if r["score"] is None:
        return "failed: " + (r["error"] or "unknown error").replace("|", "\\|")
    score = f"**{r['score']:.3f}**" if r["score"] == best else f"{r['score']:.3f}"
    return f"{score} ({r['fit_seconds']:.3g} s)"
