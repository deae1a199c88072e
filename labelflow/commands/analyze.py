"""``labelflow analyze``: error analysis on dev gold, and the LFs that would fix its slices."""

from __future__ import annotations

import argparse
from typing import Any

import polars as pl

from labelflow.commands.common import Command, arg_error, open_project, print_frame
from labelflow.errors import LabelflowError


def add_parsers(command: Command) -> None:
    """Add the parsers of ``analyze`` (``command``: :data:`.common.Command`)."""
    p = command("analyze", "Error analysis on dev gold: slices where the label model fails, and LFs that would fix them.")
    p.add_argument("--split", default="dev", help="gold split to analyse (default dev)")
    p.add_argument("--model", help="fitted label model (default: the project's)")
    p.add_argument("--predictions", metavar="FILE", help="analyse these predictions (columns id, pred) instead of "
                   "the label model's, e.g. a student's from `labelflow predict`")
    p.add_argument("--slices", type=int, default=10, help="slices to list (default 10)")
    p.add_argument("--suggest", type=int, default=0, metavar="N", help="suggest LFs for the top N slices")
    p.add_argument("--kinds", default="keyword,regex", type=_kinds,
                   help="suggestion kinds: keyword, regex, knn, prompt, extend (comma-separated; default "
                        "keyword,regex; extend needs an embedding column, e.g. from `labelflow fm embed`)")
    p.add_argument("--accept", action="store_true",
                   help="write the suggestion that raises held-out accuracy most into the suite file, then apply "
                        "and refit the model with its saved settings (seed, --dev-gold)")


def _kinds(value: str) -> str:
    from labelflow.suggest import SUGGESTION_KINDS

    kinds = [k.strip() for k in value.split(",")]
    unknown = [k for k in kinds if k not in SUGGESTION_KINDS]
    if unknown:
        raise arg_error(f"unknown kind(s) {unknown}; kinds are {', '.join(SUGGESTION_KINDS)} (comma-separated)")
    return ",".join(kinds)


def _analyze(args: argparse.Namespace) -> dict[str, Any]:
    from labelflow.error_analysis import analyze
    from labelflow.suggest import suggest_lfs, suggestion_rank

    project = open_project(args)
    predictions = None
    if args.predictions:
        from labelflow.tables import read_table

        predictions = read_table(args.predictions)[1]
        missing = sorted({"id", "pred"} - set(predictions.columns))
        if missing:
            raise LabelflowError(f"--predictions {args.predictions}: no column(s) {missing}; predictions need columns "
                                 "'id' and 'pred' (as `labelflow predict --out FILE` writes them)")
    analysis = analyze(project, model=args.model, split=args.split, predictions=predictions)
    slices = [{"slice": s.name, "kind": s.kind, "size": s.size, "coverage": s.coverage, "accuracy": s.accuracy,
               "errors": s.errors, "top_confusion": s.top_confusion} for s in analysis.slices[:args.slices]]
    name = args.predictions or analysis.model_name
    result: dict[str, Any] = {"model": name, "split": args.split, "accuracy": analysis.accuracy,
                              "slices": slices, "suggestions": []}
    if not args.json:
        print(f"{name} on {args.split}: accuracy {analysis.accuracy:.3f} over {analysis.rows.height} gold rows")
        print_frame(pl.DataFrame(slices))
    found = []
    for sl in analysis.slices[:args.suggest]:
        found += [(s, sl) for s in suggest_lfs(project, analysis, sl, kinds=args.kinds.split(","))]
    result["suggestions"] = [{"slice": sl.name, "name": s.name, "kind": s.kind, "precision": s.precision,
                              "support": s.support, "support_correct": s.support_correct, "coverage": s.coverage,
                              "held_out_rows": s.held_out_rows, "accuracy_before": s.accuracy_before,
                              "accuracy_after": s.accuracy_after, "delta": s.delta, "delta_interval": list(s.interval),
                              "examples": [list(e) for e in s.examples], "code": s.code} for s, sl in found]
    if found and not args.json:
        print(f"\nsuggested LFs (effect measured on {args.split} gold rows they were not mined from):")
        for s, sl in found:
            low, high = s.interval
            print(f"  [{sl.name}] {s.code.strip().splitlines()[-1]}\n      right on {s.support_correct} of "
                  f"{s.support} {args.split} gold rows, coverage {s.coverage:.1%}; held-out accuracy "
                  f"{s.accuracy_before:.3f} → {s.accuracy_after:.3f} ({s.delta:+.3f}, 95 % {low:+.3f} … {high:+.3f}, "
                  f"{s.held_out_rows} rows)")
            for text, gold in s.examples:
                print(f"        {gold}: {' '.join(text.split())[:100]}")
    if args.accept:
        best = min(found, key=lambda pair: suggestion_rank(pair[0]), default=(None, None))[0]
        if best is None:
            raise LabelflowError("no suggestion raises held-out accuracy; nothing accepted "
                                 "(try --suggest with more slices, or other --kinds)")
        accepted = project.accept(best, model=args.model, progress=not args.json)
        metrics = accepted.refit.metrics  # the saved model's seed and dev-gold setting
        result["accepted"] = {"name": best.name, "suite": str(accepted.path), "metrics": metrics}
        if not args.json:
            print(f"\naccepted {best.name} into {accepted.path}; refit with the saved model's settings: "
                  f"{args.split} accuracy {analysis.accuracy:.3f} → {metrics[args.split]['accuracy']:.3f}")
    return result

COMMANDS = {"analyze": _analyze}

