"""Embedding-extended LFs on the YouTube demo: coverage and label-model accuracy, plain suite beside extended.

Builds the demo's project (``labelflow.demo``: train = files 01–04 without their
labels, a seeded sample of 120 of their rows as dev gold, test = file 05; the plain
18-LF suite ``lfs/youtube_spam.py``), embeds every comment with the packaged
all-MiniLM-L6-v2 (``labelflow fm embed``; cached in the project's store, so a second
run reuses it), and fits the label model (``--model``, default ``labelflow``) once
without and once with the dev gold, for each suite:

- ``plain``: the 18 LFs;
- ``extended``: the 18 LFs and their ``NAME~ext`` columns with the default settings
  (``labelflow apply --extend``: radius per LF fit on the dev gold, votes on rows no LF
  covers, extended from votes no other LF contradicts);
- ``extended_abstain``: the same with ``scope="abstain"``, every row the LF abstains on
  (as Liger does), for comparison.

Dev figures of the extended suites are optimistic: the radii were fit on the dev gold.
Test rows (a video none of the LFs or radii saw) are never used for fitting.

Run::

    python bench/extended_lfs.py                 # project in $TMPDIR/labelflow-extend-bench
    python bench/extended_lfs.py --model snorkel --workdir /tmp/yt

Human-readable lines first; the last line is one JSON object: per suite, coverage and
accuracy on dev and test without and with dev gold, the extension report (radius, dev
evidence, votes per LF), ``newly_covered_test`` (the test rows only the extension covers,
and each suite's accuracy on them) and ``done_when`` (extended test coverage ≥ 0.97 and, with and
without dev gold, test accuracy ≥ the plain suite's).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

SUITES = {"plain": None, "extended": {}, "extended_abstain": {"scope": "abstain"}}
"""Suite → the project's ``extend`` setting (``None``: off)."""


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", default=str(Path(tempfile.gettempdir()) / "labelflow-extend-bench"),
                        help="project folder to (re)create; its FM cache is kept between runs")
    parser.add_argument("--model", default="labelflow", help="registered label model (default labelflow)")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda", "auto"), help="embedding device")
    return parser


def main(cfg: argparse.Namespace) -> dict:
    from labelflow.demo import CLASSES, DATA, DEV_SIZE, SEED, SUITE, TEST_FILES, TRAIN_FILES
    from labelflow.fm.run import fm_embed
    from labelflow.project import Project

    start = time.perf_counter()
    project = Project.init(cfg.workdir, sources={"train": [DATA / f for f in TRAIN_FILES],
                                                 "test": [DATA / f for f in TEST_FILES]},
                           classes=CLASSES, text="CONTENT", id="COMMENT_ID", label="label", dev_sample=DEV_SIZE,
                           seed=SEED, hide_labels=["train"], duplicates="drop_identical", lfs=SUITE,
                           name="youtube_spam")
    project.update_config(extend=None)
    project.apply(n_jobs=1)
    embed = fm_embed(project, device=cfg.device)
    print(f"embedded {embed['rows']} rows ({embed['computed']} computed, {embed['cached']} cached) "
          f"in {embed['seconds']:.1f} s")

    results: dict[str, dict] = {}
    predictions: dict = {}
    for suite, setting in SUITES.items():
        project.update_config(extend=setting)
        t0 = time.perf_counter()
        matrix = project.matrix()  # computes the extension columns for this setting
        extend_s = time.perf_counter() - t0
        record: dict = {"lfs": len(matrix.lf_names), "extend_seconds": round(extend_s, 3)}
        for use_dev in (False, True):
            model = project.fit(cfg.model, use_dev=use_dev)
            metrics = project.evaluate(model)
            predictions[suite, use_dev] = project.predictions(model)
            for split in ("dev", "test"):
                record.setdefault(split, {})["coverage"] = round(metrics[split]["coverage"], 4)
                record[split]["accuracy_dev_gold" if use_dev else "accuracy"] = round(metrics[split]["accuracy"], 4)
                record[split]["macro_f1_dev_gold" if use_dev else "macro_f1"] = round(metrics[split]["macro_f1"], 4)
        record["extension"] = project.extension()
        results[suite] = record

    header = ("suite", "LFs", "test cov", "test acc", "test acc+dev", "dev cov", "dev acc", "dev acc+dev")
    print(f"\nlabel model {cfg.model!r}, fit without / with the 120 dev gold labels (acc / acc+dev):")
    print(" | ".join(f"{h:>16}" if i == 0 else f"{h:>12}" for i, h in enumerate(header)))
    for suite, r in results.items():
        cells = (r["lfs"], r["test"]["coverage"], r["test"]["accuracy"], r["test"]["accuracy_dev_gold"],
                 r["dev"]["coverage"], r["dev"]["accuracy"], r["dev"]["accuracy_dev_gold"])
        print(f"{suite:>16} | " + " | ".join(f"{c:>12}" if isinstance(c, int) else f"{c:>12.4f}" for c in cells))
    print("\nextended LFs (default settings):")
    for e in results["extended"]["extension"]:
        if e["column"]:
            print(f"  {e['column']:28s} radius {e['radius']:.3f}  {e['votes']:4d} votes  dev {e['dev_votes']:3d} "
                  f"votes, precision {e['dev_precision']:.2f} (bar {e['bar']:.2f})")
        else:
            print(f"  {e['lf'] + ' (not extended)':28s} {e['reason']}")

    gold, split = project.gold(), project.columns("split")["split"].to_numpy()
    new = (split == "test") & predictions["extended", False].covered & ~predictions["plain", False].covered
    newly = {"rows": int(new.sum())}
    for suite in SUITES:
        for use_dev in (False, True):
            key = f"{suite}_accuracy" + ("_dev_gold" if use_dev else "")
            newly[key] = round(float((predictions[suite, use_dev].pred[new] == gold[new]).mean()), 4) if new.any() else None
    print(f"\ntest rows the extension newly covers: {newly['rows']}; label-model accuracy on them "
          f"plain {newly['plain_accuracy']} / {newly['plain_accuracy_dev_gold']} (without / with dev gold), "
          f"extended {newly['extended_accuracy']} / {newly['extended_accuracy_dev_gold']}")
    plain, ext = results["plain"]["test"], results["extended"]["test"]
    done_when = {"test_coverage": ext["coverage"], "coverage_ok": ext["coverage"] >= 0.97,
                 "accuracy_ok": ext["accuracy"] >= plain["accuracy"],
                 "accuracy_dev_gold_ok": ext["accuracy_dev_gold"] >= plain["accuracy_dev_gold"]}
    print(f"\ndone when (extended: test coverage ≥ 0.97, test accuracy ≥ plain with and without dev gold): "
          f"{all(v for k, v in done_when.items() if k.endswith('_ok'))}")
    out = {"model": cfg.model, "project": str(project.root), "suites": results, "newly_covered_test": newly,
           "done_when": done_when,
           "seconds": round(time.perf_counter() - start, 1)}
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main(make_parser().parse_args())
