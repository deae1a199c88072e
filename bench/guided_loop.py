"""The guided error-analysis loop on the YouTube demo: accept the top suggestion, refit, repeat.

Builds the demo project (train = files 01–04 without labels, 120 of their rows as
dev gold, test = file 05) with a copy of ``lfs/youtube_spam.py`` in a work folder,
fits the label model, then ``--steps`` times: :func:`labelflow.guided.analyze` the
dev split, ask :func:`labelflow.guided.suggest_lfs` for the top slices' suggestions,
accept the one that raises the refit dev accuracy most
(:func:`labelflow.guided.accept_suggestion`, the same calls the app's Accept button
makes), re-apply and refit. Prints dev and test accuracy after each step.

Run::

    python bench/guided_loop.py --steps 3

Human-readable lines first; the last line is one JSON object with every step.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--model", default="labelflow", help="label model (default labelflow)")
    parser.add_argument("--slices", type=int, default=5, help="top slices asked for suggestions each step")
    parser.add_argument("--kinds", default="keyword,regex",
                        help="suggestion kinds: keyword, regex, knn (knn embeds every row once with all-MiniLM-L6-v2)")
    parser.add_argument("--workdir", help="project folder (default: a temporary one)")
    return parser


def main(cfg: argparse.Namespace) -> dict:
    from labelflow import demo
    from labelflow.guided import accept_suggestion, analyze, suggest_lfs
    from labelflow.project import Project

    work = Path(cfg.workdir or tempfile.mkdtemp(prefix="labelflow-guided-"))
    work.mkdir(parents=True, exist_ok=True)
    suite = work / "youtube_spam.py"
    shutil.copyfile(demo.SUITE, suite)
    project = Project.init(
        work / "project",
        sources={"train": [demo.DATA / f for f in demo.TRAIN_FILES], "test": [demo.DATA / f for f in demo.TEST_FILES]},
        classes=demo.CLASSES, text="CONTENT", id="COMMENT_ID", label="label", dev_sample=demo.DEV_SIZE,
        seed=demo.SEED, hide_labels=["train"], duplicates="drop_identical", lfs=suite, label_model=cfg.model,
        name="youtube_spam")
    steps = []

    def record(accepted: dict | None) -> None:
        project.apply()
        metrics = project.evaluate(project.fit())
        step = {"step": len(steps), "accepted": accepted, "lfs": project.matrix().shape[1],
                "dev_accuracy": round(metrics["dev"]["accuracy"], 4), "test_accuracy": round(metrics["test"]["accuracy"], 4)}
        steps.append(step)
        what = f"accepted {accepted['name']} ({accepted['slice']})" if accepted else "start"
        print(f"step {step['step']}: {what}: dev {step['dev_accuracy']:.3f}, test {step['test_accuracy']:.3f}", flush=True)

    start = time.perf_counter()
    record(None)
    for _ in range(cfg.steps):
        analysis = analyze(project)
        best = None
        for sl in analysis.slices[:cfg.slices]:
            for suggestion in suggest_lfs(project, analysis, sl, max_suggestions=1, kinds=cfg.kinds.split(",")):
                if best is None or suggestion.delta > best[0].delta:
                    best = (suggestion, sl)
        if best is None:
            print("no suggestion left", flush=True)
            break
        suggestion, sl = best
        accept_suggestion(project, suggestion)
        record({"name": suggestion.name, "kind": suggestion.kind, "slice": sl.name, "code": suggestion.code.strip(),
                "dev_precision": round(suggestion.precision, 4), "predicted_dev_accuracy": round(suggestion.accuracy_after, 4)})
    result = {"steps": steps, "seconds": round(time.perf_counter() - start, 2), "project": str(project.root),
              "dev_gain": round(steps[-1]["dev_accuracy"] - steps[0]["dev_accuracy"], 4),
              "test_gain": round(steps[-1]["test_accuracy"] - steps[0]["test_accuracy"], 4)}
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main(make_parser().parse_args())
