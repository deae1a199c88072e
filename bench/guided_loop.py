"""The guided error-analysis loop as a user runs it: accept the top suggestion, refit, repeat; test scored apart.

With a WRENCH folder (``label.json``, ``train.json``, ``valid.json``, ``test.json``), the
project is built from its texts: train rows without labels, ``valid`` as the dev gold,
``test`` as test. The starting suite is ``--start-lfs`` of WRENCH's own LFs (their
votes, as ``threshold_lf`` s on columns ``wrench_<j>``; LFs 0, 1, 2, … by default, or
the ones ``--lfs`` lists). Without a folder it is the YouTube demo's data (train =
files 01–04 without labels, 120 of their rows as dev gold, test = file 05) with the
same kind of start: the first ``--start-lfs`` LFs of ``lfs/youtube_spam.py``.

Each step: :func:`labelflow.error_analysis.analyze` the dev split, ask
:func:`labelflow.suggest.suggest_lfs` for suggestions on the top ``--slices`` slices
(each mined on one half of the dev gold and measured on the other), take the best
by :func:`labelflow.suggest.suggestion_rank` and :meth:`labelflow.project.Project.accept` it (the step
the app's Accept button and ``labelflow analyze --accept`` take: accept, re-apply, refit with the saved
model's settings). Test rows are never used for mining or ranking; their accuracy is printed
after each step only.

Run::

    python bench/guided_loop.py ../shared/datasets/youtube/wrench --start-lfs 3 --steps 5
    python bench/guided_loop.py --start-lfs 3 --steps 5          # the demo's data

Human-readable lines first; the last line is one JSON object with every step,
``test_accuracy`` per step, ``test_gain`` (last − start) and ``worst_step`` (the
largest drop of test accuracy in one step, ≤ 0 when none).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from labelflow.project import Refit


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", nargs="?", help="WRENCH dataset folder (default: the YouTube demo's data)")
    parser.add_argument("--start-lfs", type=int, default=3, help="LFs the loop starts from (default 3)")
    parser.add_argument("--lfs", help="comma-separated WRENCH LF indices to start from (instead of the first N)")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--model", default="labelflow", help="label model (default labelflow)")
    parser.add_argument("--dev-gold", action="store_true", help="fit the label model with the dev gold too")
    parser.add_argument("--slices", type=int, default=5, help="top slices asked for suggestions each step")
    parser.add_argument("--kinds", default="keyword,regex",
                        help="suggestion kinds: keyword, regex, knn (knn embeds every row once with all-MiniLM-L6-v2)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the dev folds")
    parser.add_argument("--workdir", help="project folder (default: a temporary one)")
    return parser


def wrench_project(folder: Path, work: Path, lfs: list[int], model: str):
    """A project of the WRENCH folder's texts, starting from the WRENCH LFs ``lfs`` (their votes as columns)."""
    from labelflow.dataset import read_wrench
    from labelflow.project import Project

    dataset, matrix = read_wrench(folder)
    frame = dataset.frame
    names = list(dataset.schema.names)
    if any(j < 0 or j >= matrix.shape[1] for j in lfs):
        raise SystemExit(f"--lfs: {folder} has LFs 0..{matrix.shape[1] - 1}; got {lfs}")
    sources = {}
    for split in ("train", "dev", "test"):
        rows = (frame["split"] == split).to_numpy()
        path = work / f"{split}.jsonl"
        with path.open("w", encoding="utf-8") as out:
            for i in np.flatnonzero(rows):
                label = int(frame["label"][int(i)])
                row = {"id": frame["id"][int(i)], "text": frame["text"][int(i)],
                       "label": names[label] if label >= 0 else None}
                row.update({f"wrench_{j}": int(matrix.values[i, j]) for j in lfs})
                out.write(json.dumps(row) + "\n")
        sources[split] = [path]
    suite = work / "suite.py"
    lines = ["from labelflow import threshold_lf", ""]
    train = (frame["split"] == "train").to_numpy()
    for j in lfs:
        for c in sorted(set(matrix.values[train, j].tolist()) - {-1}):
            lines.append(f'wrench_{j}_{names[c].lower()} = threshold_lf("wrench_{j}_{names[c].lower()}", "wrench_{j}", '
                         f"label={c}, min={c}, max={c})")
    suite.write_text("\n".join(lines) + "\n")
    return Project.init(work / "project", sources=sources, classes=names, text="text", id="id", label="label",
                        hide_labels=["train"], lfs=suite, label_model=model, name=folder.parent.name or folder.name)


def demo_project(work: Path, n_lfs: int, model: str):
    """The YouTube demo's data with the first ``n_lfs`` LFs of its suite."""
    from labelflow import demo
    from labelflow.lf import load_lf_suite
    from labelflow.project import Project

    keep = [lf.name for lf in load_lf_suite(demo.SUITE)][:n_lfs]
    suite = work / "youtube_spam.py"
    suite.write_text(demo.SUITE.read_text(encoding="utf-8") + f"\nLFS = [{', '.join(keep)}]\n")
    return Project.init(
        work / "project",
        sources={"train": [demo.DATA / f for f in demo.TRAIN_FILES], "test": [demo.DATA / f for f in demo.TEST_FILES]},
        classes=demo.CLASSES, text="CONTENT", id="COMMENT_ID", label="label", dev_sample=demo.DEV_SIZE,
        seed=demo.SEED, hide_labels=["train"], duplicates="drop_identical", lfs=suite, label_model=model,
        name="youtube_spam")


def main(cfg: argparse.Namespace) -> dict:
    from labelflow.error_analysis import analyze
    from labelflow.suggest import suggest_lfs, suggestion_rank

    work = Path(cfg.workdir or tempfile.mkdtemp(prefix="labelflow-guided-"))
    work.mkdir(parents=True, exist_ok=True)
    lfs = [int(j) for j in cfg.lfs.split(",")] if cfg.lfs else list(range(cfg.start_lfs))
    project = wrench_project(Path(cfg.folder), work, lfs, cfg.model) if cfg.folder else demo_project(
        work, cfg.start_lfs, cfg.model)
    kinds = cfg.kinds.split(",")
    steps = []

    def record(accepted: dict | None, refit: Refit) -> None:
        metrics = refit.metrics
        step = {"step": len(steps), "accepted": accepted, "lfs": refit.matrix.shape[1],
                **{f"{split}_{key}": round(metrics[split][key], 4) for split in ("dev", "test")
                   for key in ("accuracy", "macro_f1", "coverage")}}
        steps.append(step)
        what = f"accepted {accepted['name']} ({accepted['slice']})" if accepted else f"start: {step['lfs']} LFs"
        print(f"step {step['step']}: {what}: dev {step['dev_accuracy']:.3f}, test {step['test_accuracy']:.3f} "
              f"(coverage {step['test_coverage']:.1%})", flush=True)

    start = time.perf_counter()
    record(None, project.refit(use_dev=cfg.dev_gold))  # later refits keep the settings
    for _ in range(cfg.steps):
        analysis = analyze(project)
        found = [(s, sl) for sl in analysis.slices[:cfg.slices]
                 for s in suggest_lfs(project, analysis, sl, max_suggestions=3, kinds=kinds, seed=cfg.seed)]
        if not found:
            print("no suggestion raises held-out accuracy; stopping", flush=True)
            break
        suggestion, sl = min(found, key=lambda pair: suggestion_rank(pair[0]))
        done = project.accept(suggestion)
        low, high = suggestion.interval
        record({"name": suggestion.name, "kind": suggestion.kind, "slice": sl.name, "code": suggestion.code.strip(),
                "support": f"{suggestion.support_correct} of {suggestion.support}",
                "held_out_delta": round(suggestion.delta, 4), "held_out_interval": [round(low, 4), round(high, 4)]},
               done.refit)
    test = [s["test_accuracy"] for s in steps]
    result = {"dataset": str(cfg.folder or "youtube demo"), "start_lfs": lfs, "model": cfg.model,
              "dev_gold": cfg.dev_gold, "steps": steps, "test_accuracy": test,
              "test_gain": round(test[-1] - test[0], 4),
              "worst_step": round(min([0.0] + [b - a for a, b in zip(test, test[1:])]), 4),
              "seconds": round(time.perf_counter() - start, 2), "project": str(project.root)}
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main(make_parser().parse_args())
