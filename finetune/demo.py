"""The demo's last stage: a fine-tuned student, and the comparison table on test.

``labelflow demo`` runs LFs and label models on a project; :func:`student_stage`
then exports the project's probabilistic labels, fine-tunes the student on them and
scores the FM zero-shot baseline (each text's nearest class description, by the
bundled MiniLM's embeddings) on the same rows; :func:`comparison_table` lines up
FM zero-shot, majority vote, the label model and the student on one split.
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from labelflow.finetune.config import FinetuneConfig

if TYPE_CHECKING:
    from labelflow.project import Project

DEMO_CONFIG = FinetuneConfig()
"""The student of the demo and of ``bench/end_to_end.py``: the defaults (bundled MiniLM, LoRA rank 16 on every
attention and feed-forward projection, batch 32, learning rate 1e-3, 5 epochs, dev accuracy picks the epoch)."""
COMPARED = ("fm_zero_shot", "majority_vote", "label_model", "student")


def student_stage(project: "Project", *, out: str | Path | None = None, config: FinetuneConfig | None = None,
                  label_model: str | None = None, zero_shot: bool = True, progress: bool = False) -> dict[str, Any]:
    """Fine-tune a student on ``project``'s exported labels and score it and FM zero-shot.

    Parameters
    ----------
    project
        A project with a fitted label model.
    out
        The student's run folder (default ``<project>/store/runs/student``; an earlier
        run there is replaced).
    config
        Fine-tuning options (default :data:`DEMO_CONFIG`, with ``progress``).
    label_model
        The fitted label model whose labels to export (default: the project's).
    zero_shot
        Also score FM zero-shot (needs class descriptions in the project).

    Returns
    -------
    dict
        ``dev`` and ``test``: ``{"student": metrics, "fm_zero_shot": metrics}`` (zero-shot
        only when scored); ``student_run`` (the run folder), ``student_seconds``,
        ``student_metrics`` (its ``metrics.json``).
    """
    import shutil

    from labelflow.finetune.train import finetune

    start = time.perf_counter()
    cfg = config or dataclasses.replace(DEMO_CONFIG, progress=progress)
    run_dir = Path(out) if out is not None else project.store.runs / "student"
    if run_dir.exists():
        shutil.rmtree(run_dir)
    with tempfile.TemporaryDirectory() as tmp:
        labels = project.export(Path(tmp) / "labels.parquet", model=label_model)
    result = finetune(labels, out=run_dir, config=cfg, classes=list(project.schema.names), task=project.config.name)
    m = result.metrics
    report: dict[str, Any] = {"dev": {}, "test": {}, "student_run": str(run_dir),
                              "student_seconds": round(time.perf_counter() - start, 2), "student_metrics": m}
    for split in ("dev", "test"):
        if m.get(split):
            report[split]["student"] = m[split]["student"]
    if zero_shot and all(d.strip() for d in project.schema.descriptions or ("",)):
        report_zs = fm_zero_shot(project, progress=progress)
        for split, metrics in report_zs.items():
            report[split]["fm_zero_shot"] = metrics
    return report


def fm_zero_shot(project: "Project", *, progress: bool = False) -> dict[str, dict[str, Any]]:
    """``{split: metrics}`` of FM zero-shot on the gold rows of dev and test: the class whose description's
    embedding is closest to the text's (bundled MiniLM, through the project's FM cache)."""
    from labelflow.analysis import classification_metrics
    from labelflow.fm import get_provider
    from labelflow.fm.ops import zero_shot_similarity

    frame, gold = project.dataset().frame, project.gold()
    split = frame["split"].to_numpy()
    out = {}
    for name in ("dev", "test"):
        rows = np.flatnonzero((split == name) & (gold >= 0))
        if not len(rows):
            continue
        sims, _ = zero_shot_similarity(frame["text"].gather(rows).to_list(), descriptions=project.schema.descriptions,
                                       provider=get_provider("sentence-transformers"), cache=project.fm_cache,
                                       progress=progress)
        out[name] = classification_metrics(gold[rows], sims.argmax(axis=1), class_names=project.schema.names)
    return out


def comparison_table(report: dict[str, Any], *, split: str = "test") -> list[dict[str, Any]]:
    """Rows ``{"stage", "accuracy", "macro_f1", "coverage"}`` for FM zero-shot, majority vote, the label model
    and the student on ``split``, from a demo report (``report[split][stage]``) merged with
    :func:`student_stage`'s. The label model row is the best label-model stage present
    (``label_model_with_fm`` before ``label_model``); stages missing from the report are left out.
    """
    stages = report.get(split, {})
    picks = {"fm_zero_shot": ["fm_zero_shot"], "majority_vote": ["majority_vote_with_fm", "majority_vote"],
             "label_model": ["label_model_with_fm", "label_model"], "student": ["student"]}
    rows = []
    for stage in COMPARED:
        found = next((s for s in picks[stage] if s in stages), None)
        if found is not None:
            m = stages[found]
            rows.append({"stage": stage, "source": found, "accuracy": m["accuracy"], "macro_f1": m["macro_f1"],
                         "coverage": m.get("coverage", 1.0)})
    return rows
