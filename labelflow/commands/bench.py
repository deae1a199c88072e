"""``labelflow bench label-models``: every registered label model on WRENCH folders."""

from __future__ import annotations

import argparse
import sys
from typing import Any

import polars as pl

from labelflow.commands.common import Command, print_frame, verbose_argument


def add_parsers(command: Command) -> None:
    """Add the parsers of ``bench`` (``command``: :data:`.common.Command`)."""
    p = command("bench", "Benchmarks.", project=False, json_out=False)
    bench = p.add_subparsers(dest="bench", required=True, metavar="BENCH")
    b = bench.add_parser("label-models", help="every registered label model on WRENCH folders")
    verbose_argument(b)
    b.add_argument("folders", nargs="+", help="WRENCH dataset folders (label.json, train/valid/test.json)")
    b.add_argument("--models", help="comma-separated model names (default: all registered)")
    b.add_argument("--dev", action="store_true", help="fit each model a second time with the valid split's gold labels")
    b.add_argument("--markdown", action="store_true", help="print the results as a Markdown table (as in the README)")
    b.add_argument("--json", action="store_true", help="print one JSON document")


def _bench(args: argparse.Namespace) -> dict[str, Any]:
    from labelflow.model_comparison import bench_label_models, markdown_table

    models = [m.strip() for m in args.models.split(",")] if args.models else None
    results = bench_label_models(args.folders, models=models, dev=args.dev)
    if args.markdown and not args.json:
        print(markdown_table(results))
    elif not args.json:
        print_frame(pl.DataFrame(results).select(
            "dataset", "model", "dev", "metric", "score", "accuracy", "accuracy_covered", "coverage", "fit_seconds",
            "chosen", "error"), str_lengths=120)
    failed = [f"{r['model']} on {r['dataset']}{' with dev gold' if r['dev'] else ''}" for r in results if r["error"]]
    if failed and not args.json:
        print(f"failed: {', '.join(failed)} (see the error column)", file=sys.stderr)
    return {"results": results}

COMMANDS = {"bench": _bench}

