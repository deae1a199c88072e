"""``labelflow finetune`` and ``labelflow predict``: thin shells over :func:`finetune.finetune` and
:func:`finetune.predict`.

:func:`add_parsers` adds both commands to the ``labelflow`` parser; :data:`COMMANDS`
maps their names to handlers that return the JSON document (and print lines unless
``--json``).
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from labelflow.errors import LabelflowError

Command = Callable[..., argparse.ArgumentParser]


def add_parsers(command: Command) -> None:
    """Add ``finetune`` and ``predict`` through ``labelflow.cli``'s ``command(name, help, *, project=True,
    json_out=True)`` helper (it adds the subparser with ``-p/--project`` and ``--json``)."""
    from finetune.config import FinetuneConfig

    d = FinetuneConfig()
    p = command("finetune", "Fine-tune a small classifier (LoRA) on the label model's probabilistic labels.")
    p.add_argument("--out", required=True, metavar="RUN_DIR", help="run folder (new or empty; with --resume, a run "
                   "of the same task)")
    p.add_argument("--labels", metavar="FILE", help="exported labels (labelflow export) to train on, instead of "
                   "the project's labels exported now (or, with --resume, the labels the run started with)")
    p.add_argument("--label-model", help="with a project: the fitted label model to export (default: the project's)")
    p.add_argument("--text-column", default="text", help="text column of --labels (default text)")
    p.add_argument("--resume", action="store_true", help="continue the run in RUN_DIR from its last checkpoint")
    g = p.add_argument_group("model")
    g.add_argument("--base-model", default=d.base_model,
                   help=f"local folder, cached Hugging Face id, or {d.base_model} (bundled; the default)")
    g.add_argument("--method", choices=("lora", "full"), default=d.method)
    g.add_argument("--lora-r", type=int, help="LoRA rank (default: per architecture, 16)")
    g.add_argument("--lora-alpha", type=float, help="LoRA alpha (default: per architecture, 32)")
    g.add_argument("--lora-dropout", type=float, help="LoRA dropout (default: per architecture)")
    g.add_argument("--target-modules", help="comma-separated LoRA target modules (default: per architecture)")
    g.add_argument("--max-length", type=int, default=d.max_length, help=f"tokens per text (default {d.max_length})")
    g = p.add_argument_group("training")
    g.add_argument("--epochs", type=int, default=d.epochs, help=f"default {d.epochs}")
    g.add_argument("--max-steps", type=int, help="stop after this many optimizer steps")
    g.add_argument("--batch-size", type=int, default=d.batch_size, help=f"rows per micro-batch (default {d.batch_size})")
    g.add_argument("--grad-accum", type=int, default=d.grad_accum, help="micro-batches per optimizer step")
    g.add_argument("--lr", type=float, help="peak learning rate (default 1e-3 for LoRA, 5e-5 for full)")
    g.add_argument("--weight-decay", type=float, default=d.weight_decay)
    g.add_argument("--warmup-ratio", type=float, default=d.warmup_ratio)
    g.add_argument("--scheduler", choices=("linear", "cosine", "constant"), default=d.scheduler)
    g.add_argument("--weighting", choices=("none", "max_prob", "margin", "entropy"), default=d.weighting,
                   help="weight each row's loss by its label's confidence")
    g.add_argument("--drop-uncovered", action="store_true", help="drop training rows no LF voted on")
    g.add_argument("--min-confidence", type=float, default=d.min_confidence,
                   help="drop training rows whose top class probability is below this")
    g.add_argument("--select", choices=("accuracy", "macro_f1", "loss"), default=d.select,
                   help="dev metric that picks the checkpoint and stops early")
    g.add_argument("--eval-every", type=int, help="evaluate every N steps (default: each epoch)")
    g.add_argument("--patience", type=int, default=d.patience, help="stop after N evaluations without improvement "
                   "(0: never)")
    g.add_argument("--checkpoint-every", type=int, help="checkpoint every N steps (default: at each evaluation)")
    g.add_argument("--seed", type=int, default=d.seed)
    g = p.add_argument_group("speed")
    g.add_argument("--device", choices=("auto", "cpu", "cuda"), default=d.device)
    g.add_argument("--precision", choices=("auto", "fp32", "bf16", "fp16"), default=d.precision)
    g.add_argument("--attention", choices=("auto", "sdpa", "eager", "flash_attention_2"), default=d.attention)
    g.add_argument("--no-tf32", action="store_true", help="keep full fp32 matmuls on a GPU")
    g.add_argument("--compile", action="store_true", help="torch.compile the model")
    g.add_argument("--cpu-threads", type=int, help="torch threads on a CPU (default: the cores other processes "
                   "leave idle)")
    g.add_argument("--no-group-by-length", action="store_true", help="plain shuffled batches")
    g.add_argument("--eval-batch-size", type=int, default=d.eval_batch_size)
    g.add_argument("--log-every", type=int, default=d.log_every, help="log every N steps")

    p = command("predict", "Predict with a fine-tuned model: one row per input row (id, pred, prob_<class>).",
                project=False)
    p.add_argument("--model", required=True, metavar="RUN_DIR", help="a finished `labelflow finetune` run folder")
    p.add_argument("data", help="data file (.csv, .parquet, .jsonl) or a labelflow project folder")
    p.add_argument("--out", help="write the predictions here (.parquet, .csv or .jsonl)")
    p.add_argument("--text-column", default="text", help="text column of the data file (default text)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")


def config_from_args(args: argparse.Namespace) -> Any:
    """The :class:`FinetuneConfig` the ``finetune`` arguments describe."""
    from finetune.config import FinetuneConfig

    targets = None
    if args.target_modules:
        targets = tuple(t.strip() for t in args.target_modules.split(",") if t.strip())
    return FinetuneConfig(
        base_model=args.base_model, method=args.method, lora_r=args.lora_r, lora_alpha=args.lora_alpha,
        lora_dropout=args.lora_dropout, lora_target_modules=targets, epochs=args.epochs, max_steps=args.max_steps,
        batch_size=args.batch_size, grad_accum=args.grad_accum, lr=args.lr, weight_decay=args.weight_decay,
        warmup_ratio=args.warmup_ratio, scheduler=args.scheduler, max_length=args.max_length,
        weighting=args.weighting, drop_uncovered=args.drop_uncovered, min_confidence=args.min_confidence,
        select=args.select, eval_every=args.eval_every, patience=args.patience or None,
        checkpoint_every=args.checkpoint_every, device=args.device, precision=args.precision,
        tf32=not args.no_tf32, attention=args.attention, compile=args.compile, cpu_threads=args.cpu_threads,
        group_by_length=not args.no_group_by_length, eval_batch_size=args.eval_batch_size,
        log_every=args.log_every, seed=args.seed, progress=not args.json,
    )


def finetune_command(args: argparse.Namespace) -> dict[str, Any]:
    """``labelflow finetune``: train on ``--labels`` or on the project's labels exported now."""
    from finetune.train import LABELS_FILE, finetune

    cfg = config_from_args(args)
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
    from finetune.predict import predict

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
"""Command name → handler, for ``labelflow.cli.COMMANDS``."""


# --- helpers ---------------------------------------------------------------------------------------


def _is_project(folder: str) -> bool:
    return (Path(folder) / "labelflow.json").is_file()


def _project(folder: str):
    from labelflow.project import Project

    return Project.open(folder)
