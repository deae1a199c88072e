"""The fine-tuner's ``labelflow`` commands: ``finetune``, ``predict`` and ``demo`` (the whole pipeline, ending with
the student).

``labelflow.cli`` finds this module through the ``labelflow.commands`` entry point group
(pyproject.toml) and calls :func:`add_parsers` and :data:`COMMANDS`; labelflow never imports
finetune. The handlers of :mod:`labelflow.finetune.cli` run here with third-party output silenced
(``labelflow -v`` lets it through); ``predict`` reads a data file's ids first.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl

from labelflow.commands.common import non_empty, print_frame, print_metrics
from labelflow.errors import LabelflowError
from labelflow.finetune import cli
from labelflow.quiet import third_party


def add_parsers(command: cli.Command) -> None:
    """Add ``finetune``, ``predict`` and ``demo`` through ``labelflow.cli``'s ``command(name, help, *, project=True,
    json_out=True)`` helper."""
    made: dict[str, argparse.ArgumentParser] = {}

    def keep(name: str, help: str, **options: Any) -> argparse.ArgumentParser:
        made[name] = command(name, help, **options)
        return made[name]

    cli.add_parsers(keep)
    made["predict"].add_argument(
        "--id-column", type=non_empty, metavar="COLUMN",
        help="id column of the data file, kept as the predictions' id (default: its column 'id' if it has one, "
             "else row numbers)")

    p = command("demo", "The whole pipeline on the shipped YouTube spam data.", project=False)
    p.add_argument("--workdir", default="labelflow-demo", help="project folder the demo creates (default ./labelflow-demo)")
    p.add_argument("--no-fm", action="store_true", help="skip the foundation-model LFs")
    p.add_argument("--no-student", action="store_true", help="skip fine-tuning the student (and FM zero-shot)")


def finetune_command(args: argparse.Namespace) -> dict[str, Any]:
    """``labelflow finetune`` (:func:`labelflow.finetune.cli.finetune_command`)."""
    with third_party(transformers=True):  # peft's and transformers' FutureWarnings and load reports (see -v)
        return cli.COMMANDS["finetune"](args)


def predict_command(args: argparse.Namespace) -> dict[str, Any]:
    """``labelflow predict``: a data file's rows keep their ids (``--id-column``, else its ``id`` column, else row
    numbers, which it says); a project folder's rows keep the project's."""
    from labelflow.tables import read_table

    source, id_column = Path(args.data), args.id_column
    if source.is_dir():
        if id_column is not None:
            raise LabelflowError(f"--id-column {id_column}: {source} is a project folder, whose rows keep the "
                                 "project's ids; --id-column is for a data file")
    elif source.is_file():
        where, frame = read_table(source, strings=[c for c in (args.text_column, id_column) if c])
        if id_column is not None and id_column not in frame.columns:
            raise LabelflowError(f"--id-column {id_column}: {where} has no column {id_column!r}; its columns are "
                                 f"{frame.columns}")
        if args.text_column not in frame.columns:
            raise LabelflowError(f"--text-column {args.text_column}: {where} has no column {args.text_column!r}; its "
                                 f"columns are {frame.columns}")
        id_column = id_column or ("id" if "id" in frame.columns else None)
        if id_column is not None:
            ids = frame[id_column].cast(pl.String)
            if ids.null_count():
                raise LabelflowError(f"--id-column {id_column}: row {int(ids.is_null().arg_max())} of {where} has no "
                                     "id (empty); every row needs one")
            frame = frame.select(ids.alias("id"), pl.col(args.text_column))
        elif not args.json:
            print(f"labelflow: note: {where} has no 'id' column: the predictions' ids are its row numbers (0, 1, ...); "
                  "pass --id-column COLUMN to keep its own ids", file=sys.stderr)
        args = argparse.Namespace(**{**vars(args), "data": frame})
    with third_party(transformers=True):
        result = cli.COMMANDS["predict"](args)
    result["id_column"] = id_column if not source.is_dir() else "id"
    if id_column is not None and not source.is_dir() and not args.json:
        print(f"ids from column {id_column!r} of {source}")
    return result


def demo_command(args: argparse.Namespace) -> dict[str, Any]:
    """``labelflow demo``: :func:`labelflow.demo.run_demo`, then (unless ``--no-student``) the student stage
    (:func:`labelflow.finetune.demo.student_stage`) and the comparison table on test."""
    from labelflow.finetune.demo import comparison_table, student_stage
    from labelflow.demo import run_demo

    start = time.perf_counter()
    report = run_demo(args.workdir, fm=not args.no_fm, progress=not args.json)
    if not args.no_student:
        from labelflow.project import Project

        with third_party(transformers=True):  # peft's and transformers' load reports and FutureWarnings
            stage = student_stage(Project.open(report["project"]), progress=not args.json)
        for split in ("dev", "test"):
            report[split].update(stage.pop(split))
        report.update(student_run=stage["student_run"], student_seconds=stage["student_seconds"])
        report["comparison"] = comparison_table(report)
    report["seconds"] = round(time.perf_counter() - start, 2)
    if not args.json:
        print(f"labelflow demo: YouTube spam, {report['rows']['total']} rows × {report['rows']['lfs']} LFs "
              f"(project in {report['project']}, {report['cached_lfs']} LFs from cache)\n")
        print("LF summary on dev:")
        print_frame(pl.DataFrame(report["lf_summary"]))
        print()
        print_metrics({stage: {s: report[s][stage] for s in ("dev", "test")} for stage in report["test"]})
        for suite, choice in report["label_model_choice"].items():
            print(f"label_model ({suite} suite): auto chose {choice['chosen']!r}: {choice['reason']}")
        if "comparison" in report:
            print(f"\non test, from a foundation model alone to the fine-tuned student (run folder "
                  f"{report['student_run']}, trained in {report['student_seconds']:.0f} s):")
            print_frame(pl.DataFrame(report["comparison"]))
        print(f"finished in {report['seconds']:.1f} s")
    return report


COMMANDS: dict[str, Callable[[argparse.Namespace], dict[str, Any]]] = {
    "finetune": finetune_command, "predict": predict_command, "demo": demo_command}
"""Command name → handler, run by ``labelflow.cli.main``."""
