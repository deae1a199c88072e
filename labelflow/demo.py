"""The demo's project: the shipped YouTube Spam Collection, its LF suites and label models.

``labelflow demo`` (registered by the fine-tuner, :mod:`labelflow.finetune.commands`) runs
:func:`run_demo` and then fine-tunes the student on its labels.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from labelflow.errors import ProjectError
from labelflow.project import Project
from labelflow.quiet import verbose

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "data" / "youtube"
SUITE = REPO / "lfs" / "youtube_spam.py"
SUITE_FM = REPO / "lfs" / "youtube_spam_fm.py"
TRAIN_FILES = ("Youtube01-Psy.csv", "Youtube02-KatyPerry.csv", "Youtube03-LMFAO.csv", "Youtube04-Eminem.csv")
TEST_FILES = ("Youtube05-Shakira.csv",)
CLASSES = {
    "HAM": "a genuine comment about the video or the song",
    "SPAM": "self-promotion, links, requests to subscribe or visit a channel, scams",
}
DEV_SIZE = 120
SEED = 0
STAGES = {"majority_vote": ("majority_vote", False), "snorkel": ("snorkel", False), "label_model": ("auto", True)}
"""Demo stage → (registered label model, whether it gets the dev gold)."""


def run_demo(workdir: str | Path, *, fm: bool = True, progress: bool = False) -> dict[str, Any]:
    """Init a project in ``workdir``, apply the YouTube LF suites, fit and score each stage.

    Split: train = files 01–04 without their labels, dev = a fixed seeded sample of
    120 train rows with gold kept, test = file 05. Stages ``majority_vote``,
    ``snorkel`` and ``label_model`` (``auto``: the registered model with the best
    cross-validated dev accuracy, refit with the dev gold) use the plain suite
    (``lfs/youtube_spam.py``); with ``fm``, the same three ``..._with_fm`` use it
    plus the FM LFs of ``lfs/youtube_spam_fm.py`` (embedding kNN and zero-shot over
    MiniLM), and the project's suite (``labelflow.json``) is then that file, whose LFs its
    label matrix holds, so the app and the CLI show that suite. The last label model's
    probabilistic labels can then train the student (``labelflow demo`` does:
    :func:`labelflow.finetune.demo.student_stage`).

    Returns
    -------
    dict
        ``project`` (folder), ``lf_summary`` (per LF of the last suite, on dev),
        ``dev`` and ``test`` (``{stage: {"accuracy", "macro_f1", "coverage", ...}}``),
        ``label_model`` (the model behind the ``label_model`` stages), ``label_model_choice``
        (per suite, what ``auto`` picked and why: :meth:`~labelflow.labelmodels.AutoLabelModel.choice`), ``fm_calls``
        (model calls the FM LFs made; 0 when all was cached), ``cached_lfs`` and ``rows``.
    """
    missing = [p for p in (DATA, SUITE) if not p.exists()]
    if missing:
        raise ProjectError(f"the demo needs the shipped data and LF suite, missing here: {[str(p) for p in missing]}; "
                           "run it from a labelflow source checkout")
    project = Project.init(
        workdir,
        sources={"train": [DATA / f for f in TRAIN_FILES], "test": [DATA / f for f in TEST_FILES]},
        classes=CLASSES, text="CONTENT", id="COMMENT_ID", label="label",
        dev_sample=DEV_SIZE, seed=SEED, hide_labels=["train"], duplicates="drop_identical",
        lfs=SUITE, label_model=STAGES["label_model"][0], name="youtube_spam",
    )
    report: dict[str, Any] = {"project": str(project.root), "dev": {}, "test": {}, "cached_lfs": 0, "fm_calls": 0}
    for suffix, suite in [("", SUITE), ("_with_fm", SUITE_FM)][: 2 if fm else 1]:
        project.set_suite(suite)  # the project's one suite is the one its matrix holds: the FM suite at the end
        lfs = project.lfs()
        matrix, cache = project.apply(lfs=lfs, progress=progress)
        report["cached_lfs"] += len(cache.hits)
        report["fm_calls"] += sum(run["calls"] for run in cache.runs.values())
        if progress:  # the fits' one line (their own bars only with labelflow -v)
            print(f"label models: fitting {', '.join(m for m, _ in STAGES.values())} on {matrix.shape[1]} LFs",
                  file=sys.stderr, flush=True)
        for stage, (model_name, use_dev) in STAGES.items():
            model = project.fit(model_name, use_dev=use_dev, progress=progress and verbose())  # Snorkel's epoch bars
            metrics = project.evaluate(model)
            if stage == "label_model":
                report.setdefault("label_model_choice", {})[suffix or "plain"] = model.choice()
            for split in ("dev", "test"):
                report[split][stage + suffix] = metrics[split]
    report["label_model"] = STAGES["label_model"][0]
    report["lf_summary"] = project.summary("dev").to_dicts()
    report["rows"] = {"total": matrix.shape[0], "lfs": matrix.shape[1]}
    return report
