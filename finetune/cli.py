"""``labelflow finetune`` and ``labelflow predict``: thin shells over :func:`labelflow.finetune.finetune` and
:func:`labelflow.finetune.predict`.

:func:`add_parsers` adds both commands to the ``labelflow`` parser; :data:`COMMANDS`
maps their names to handlers that return the JSON document (and print lines unless
``--json``).
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, get_args

from labelflow.errors import LabelflowError

Command = Callable[..., argparse.ArgumentParser]


def add_parsers(command: Command) -> None:
    """Add ``finetune`` and ``predict`` through ``labelflow.cli``'s ``command(name, help, *, project=True,
    json_out=True)`` helper (it adds the subparser with ``-p/--project`` and ``--json``)."""
    from labelflow.conventions import Device
    from labelflow.finetune.options import add_config_options

    p = command("finetune", "Fine-tune a small classifier (LoRA) on the label model's probabilistic labels.")
    p.add_argument("--out", required=True, metavar="RUN_DIR", help="run folder (new or empty; with --resume, a run "
                   "of the same task)")
    p.add_argument("--labels", metavar="FILE", help="exported labels (labelflow export) to train on, instead of "
                   "the project's labels exported now (or, with --resume, the labels the run started with)")
    p.add_argument("--label-model", help="with a project: the fitted label model to export (default: the project's)")
    p.add_argument("--text-column", default="text", help="text column of --labels (default text)")
    p.add_argument("--resume", action="store_true", help="continue the run in RUN_DIR from its last checkpoint")
    add_config_options(p)

    p = command("predict", "Predict with a fine-tuned model: one row per input row (id, pred, prob_<class>).",
                project=False)
    p.add_argument("--model", required=True, metavar="RUN_DIR", help="a finished `labelflow finetune` run folder")
    p.add_argument("data", help="data file (.csv, .parquet, .jsonl) or a labelflow project folder")
    p.add_argument("--out", help="write the predictions here (.parquet, .csv or .jsonl)")
    p.add_argument("--text-column", default="text", help="text column of the data file (default text)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--device", choices=get_args(Device), default="auto")


def finetune_command(args: argparse.Namespace) -> dict[str, Any]:
    """``labelflow finetune``: train on ``--labels`` or on the project's labels exported now."""
    from labelflow.finetune.options import config_from_args
    from labelflow.finetune.run_folder import LABELS_FILE
    from labelflow.finetune.train import finetune

    cfg = config_from_args(args, progress=not args.json)
    out = Path(args.out)
    classes, task = None, None
    if _is_project(args.project):
        project = _project(args.project)
        classes, task = list(project.schema.names), project.config.name
    with tempfile.TemporaryDirectory() as tmp:
        if args.labels:
            labels: Any = args.labels
        elif args.resume and (out / LABELS_FILE).is_file():
            labels = None  # the labels the run started with
        else:
            if args.text_column != "text":
                raise LabelflowError("--text-column applies to --labels files; a project's export has column 'text'")
            labels = _project(args.project).export(Path(tmp) / "labels.parquet", model=args.label_model)
        result = finetune(labels, out=out, config=cfg, classes=classes, text=args.text_column, resume=args.resume,
                          task=task)
    m = result.metrics
    if not args.json:
        print(f"fine-tuned {m['base_model']} ({m['method']}) into {result.run_dir}: {m['train']['steps']} steps, "
              f"{m['train']['seconds']:.0f} s, {m['train']['samples_per_s']} samples/s"
              + (f" (resumed from step {result.resumed_from})" if result.resumed_from is not None else ""))
        for split in ("dev", "test"):
            if m.get(split):
                s, lm = m[split]["student"], m[split]["label_model"]
                covered = ("" if lm.get("accuracy_covered") is None else
                           f" ({lm['accuracy_covered']:.3f} on the {lm['coverage']:.0%} covered)")
                print(f"  {split:4s} ({m[split]['rows']} rows)  student accuracy {s['accuracy']:.3f} macro-F1 "
                      f"{s['macro_f1']:.3f}  |  label model accuracy {lm['accuracy']:.3f}{covered} macro-F1 "
                      f"{lm['macro_f1']:.3f}")
        print(f"metrics: {result.run_dir / 'metrics.json'}; predict with `labelflow predict --model {result.run_dir} "
              "DATA`")
    return {"run_dir": str(result.run_dir), "resumed_from": result.resumed_from, "metrics": m}


def predict_command(args: argparse.Namespace) -> dict[str, Any]:
    """``labelflow predict``: the student's predictions for a data file or a project's rows."""
    from labelflow.finetune.predict import predict

    writers = {".parquet": "write_parquet", ".csv": "write_csv", ".jsonl": "write_ndjson"}
    out = Path(args.out) if args.out else None
    if out is not None and out.suffix.lower() not in writers:
        raise LabelflowError(f"--out must end in one of {sorted(writers)}; got {out.name!r}")
    frame = predict(args.model, args.data, text=args.text_column, batch_size=args.batch_size, device=args.device)
    result: dict[str, Any] = {"rows": frame.height}
    if out is not None:
        from labelflow.files import atomic_path

        with atomic_path(out) as tmp:
            getattr(frame, writers[out.suffix.lower()])(tmp)
        result["out"] = str(out)
        result["counts"] = dict(frame["pred_name"].value_counts(sort=True).iter_rows())
        if not args.json:
            counts = ", ".join(f"{k} {v}" for k, v in result["counts"].items())
            print(f"wrote {frame.height} predictions to {out} ({counts})")
    elif args.json:
        result["predictions"] = frame.to_dicts()
    else:
        import polars as pl

        with pl.Config(tbl_rows=50, tbl_hide_dataframe_shape=False, float_precision=3, fmt_str_lengths=40):
            print(frame)
    return result


COMMANDS: dict[str, Callable[[argparse.Namespace], dict[str, Any]]] = {
    "finetune": finetune_command, "predict": predict_command}
"""Command name → handler, run (wrapped) by :mod:`labelflow.finetune.commands`, which registers them with
``labelflow``."""


# --- helpers ---------------------------------------------------------------------------------------


def _is_project(folder: str) -> bool:
    return (Path(folder) / "labelflow.json").is_file()


def _project(folder: str):
    from labelflow.project import Project

    return Project.open(folder)
