"""``labelflow fit``, ``summary`` and ``export``: a label model fitted, the LFs' statistics, the labels written."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from labelflow.commands.common import (Command, count, extend_arguments, label_model_name, non_empty, open_project,
                                       print_frame, print_metrics, set_extend, split_name)
from labelflow.errors import LabelflowError
from labelflow.export import EXPORT_FORMATS
from labelflow.validation import one_of


def add_parsers(command: Command) -> None:
    """Add the parsers of ``fit``, ``summary`` and ``export`` (``command``: :data:`.common.Command`)."""
    p = command("fit", "Fit a label model on the train rows and report dev/test metrics.")
    p.add_argument("--model", type=label_model_name, help="registered label model (default: the project's)")
    p.add_argument("--seed", type=count, default=123)
    p.add_argument("--dev-gold", action="store_true", help="also pass the dev rows' gold labels to the model")
    extend_arguments(p)

    p = command("summary", "LF statistics (coverage, overlaps, conflicts, accuracy on gold).")
    p.add_argument("--split", default="dev", help="split to summarise (default dev)")

    p = command("export", "Write probabilistic labels with the argmax.", json_out=False)
    p.add_argument("out", type=non_empty, help="output file: .parquet, .csv or .jsonl")
    p.add_argument("--model", type=label_model_name, help="fitted label model (default: the project's)")
    p.add_argument("--split", action="append", default=None, type=split_name,
                   help="only this split (valid, validation, val mean dev; any case); repeatable")
    p.add_argument("--format", choices=EXPORT_FORMATS, help="format (default: from the extension)")


def _check_export(args: argparse.Namespace) -> str | None:
    """An output file whose format neither ``--format`` nor its extension tells."""
    if args.format is None:
        suffix = Path(args.out).suffix.lower().lstrip(".")
        if suffix not in EXPORT_FORMATS:
            return (f"argument out: cannot tell the format of {args.out!r} from its extension; name it "
                    f"{one_of(['.' + f for f in EXPORT_FORMATS])}, or pass --format {'|'.join(EXPORT_FORMATS)}")
    return None


def _fit(args: argparse.Namespace) -> dict[str, Any]:
    from labelflow.labelmodels import AutoLabelModel

    project = open_project(args)
    set_extend(project, args)
    _note_stray_lfs(project)
    model = project.fit(args.model, seed=args.seed, use_dev=args.dev_gold, progress=args.verbose > 0 and not args.json)
    metrics = project.evaluate(model)
    choice = model.choice() if isinstance(model, AutoLabelModel) else {"chosen": model.name, "reason": None}
    fitted = model.chosen if isinstance(model, AutoLabelModel) else model
    selection = getattr(fitted, "selection", None)  # labelflow with dev gold: one-coin vs class-conditional
    if selection:
        choice["selection"] = selection
    prior = _class_prior(fitted)
    if prior:
        choice["class_prior"] = prior
    if not args.json:
        print(f"fitted label model {model.name!r}")
        if isinstance(model, AutoLabelModel):
            print(f"auto chose {choice['chosen']!r}: {choice['reason']}")
        if selection:
            kept = "class-conditional" if fitted.conditional is not None else "one-coin"
            scores = ", ".join(f"{name} {value:.3f}" for name, value in selection.items())
            print(f"{fitted.name} kept its {kept} fit (held-out dev log-likelihood per row: {scores})")
        if prior:
            print(f"{fitted.name}'s class prior: {prior['text']}")
        print_metrics({f"auto → {choice['chosen']}" if isinstance(model, AutoLabelModel) else model.name: metrics})
    return {"model": model.name, **choice, "metrics": metrics}


def _class_prior(fitted) -> dict[str, Any] | None:
    """Where labelflow's model took its class prior from (``None`` for other models): ``source``
    (see ``LabelflowModel.prior_source``), ``balance`` (``[k]`` or ``None`` for uniform) and ``text``."""
    if not hasattr(fitted, "prior_source"):
        return None
    balance = None if fitted.class_balance is None else [round(float(p), 4) for p in fitted.class_balance]
    text = {"given": "the class balance passed to fit",
            "dev": "the dev gold's class balance (with the multipolar LFs' votes, where there are some)",
            "multipolar": f"the multipolar LFs' votes (Wald test p = {fitted.prior_p_value:.2g})"
            if fitted.prior_p_value is not None else "the multipolar LFs' votes",
            "posterior": "the posterior under the unipolar LFs' firing-rate weights",
            None: "uniform (nothing told the classes' sizes apart; ties broken by the row hash)"}[fitted.prior_source]
    return {"source": fitted.prior_source, "balance": balance, "text": text}


def _note_stray_lfs(project) -> None:
    """Say on stderr when the label matrix holds LFs the project's suite does not define (it was applied from another
    LF list, or LFs were removed since); only for a trusted project, whose suite may be loaded."""
    if project.config.lfs is None or not project.trusted:
        return
    try:
        stray = project.stray_lfs()
    except LabelflowError:
        return  # no matrix, or a suite that does not load: the command itself says so
    if stray:
        print(f"note: the label matrix holds {len(stray)} LF(s) that the project's suite "
              f"{project.suite_path.resolve()} does not define ({', '.join(stray)}); run "
              f"`labelflow apply -p {project.root}` to rebuild it from the suite",
              file=sys.stderr)


def _summary(args: argparse.Namespace) -> dict[str, Any]:
    table = open_project(args).summary(args.split)
    if not args.json:
        print_frame(table)
    return {"split": args.split, "lfs": table.to_dicts()}


def _export(args: argparse.Namespace) -> dict[str, Any]:
    frame = open_project(args).export(args.out, model=args.model, splits=args.split, fmt=args.format)
    print(f"wrote {frame.height} rows to {args.out}")
    return {}


COMMANDS = {"fit": _fit, "summary": _summary, "export": _export}
CHECKS = {"export": _check_export}

