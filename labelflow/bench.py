"""``labelflow bench label-models``: every registered label model on WRENCH label matrices."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from labelflow.analysis import classification_metrics
from labelflow.dataset import read_wrench
from labelflow.errors import DataError
from labelflow.labelmodels import get_label_model, label_model_names

POSITIVE_CLASS_F1 = {"sms": "f1_spam"}
"""WRENCH scores these datasets by the F1 of class 1; all others by accuracy."""


def bench_label_models(folders: Sequence[str | Path], *, models: Sequence[str] | None = None,
                       seed: int = 123, dev: bool = False) -> list[dict[str, Any]]:
    """Fit each model on a WRENCH folder's train matrix (labels unused) and score it on test.

    With ``dev``, each model is fit twice: on train alone, then with the valid
    split's votes and gold labels as dev.

    Returns
    -------
    list of dict
        One ``{"dataset", "model", "dev", "metric", "score", "fit_seconds", ...}`` per folder,
        model and mode (``dev`` False, then True when asked for).
        ``metric`` is ``"f1_spam"`` (F1 of class 1) for ``sms`` and ``"accuracy"`` otherwise;
        ties break as Snorkel's ``tie_break_policy="random"`` does.
    """
    names = list(models or label_model_names())
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
        metric = POSITIVE_CLASS_F1.get(dataset_name, "accuracy")
        for with_dev, name in ((d, n) for d in ((False, True) if dev else (False,)) for n in names):
            model = get_label_model(name, data.schema.k, seed=seed)
            start = time.perf_counter()
            model.fit(L_train, **(dev_args if with_dev else {}))
            fit_seconds = time.perf_counter() - start
            preds = model.predict(L_test, tie_policy="random")
            scores = classification_metrics(y_test, preds, class_names=data.schema.names)
            score = scores["per_class_f1"][data.schema.names[1]] if metric == "f1_spam" else scores["accuracy"]
            results.append({"dataset": dataset_name, "model": name, "dev": with_dev, "metric": metric,
                            "score": round(float(score), 4), "fit_seconds": round(fit_seconds, 3),
                            "n_train": int(L_train.shape[0]), "n_lfs": int(L_train.shape[1]),
                            "classes": data.schema.k})
    return results



def markdown_table(results: Sequence[dict[str, Any]]) -> str:
    """The results of :func:`bench_label_models` as a Markdown table: a row per dataset and
    mode, a column per model with ``score (fit seconds)``, the best score of each row in bold."""
    models = list(dict.fromkeys(r["model"] for r in results))
    lines = ["| dataset | metric | dev gold | " + " | ".join(models) + " |", "|---" * (3 + len(models)) + "|"]
    for key in dict.fromkeys((r["dataset"], r["dev"]) for r in results):
        row = {r["model"]: r for r in results if (r["dataset"], r["dev"]) == key}
        best = max(r["score"] for r in row.values())
        cells = [(f"**{r['score']:.3f}**" if r["score"] == best else f"{r['score']:.3f}") + f" ({r['fit_seconds']:.3g} s)"
                 if (r := row.get(name)) else "" for name in models]
        first = next(iter(row.values()))
        lines.append(f"| {key[0]} | {first['metric']} | {'yes' if key[1] else 'no'} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
