"""``labelflow init``: a project folder from data files, a column mapping and a class list."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from labelflow.commands.common import (Command, arg_error, count, existing_file, label_model_name, non_empty,
                                       pair, say_notes)


def add_parsers(command: Command) -> None:
    """Add the parsers of ``init`` (``command``: :data:`.common.Command`)."""
    p = command("init", "Create a project folder from data files, a column mapping and a class list.",
                project=False, json_out=False)
    p.add_argument("folder", help="project folder to create (re-initialises an existing one, keeping its caches)")
    p.add_argument("--data", action="append", required=True, metavar="[SPLIT=]PATH", type=_data_item,
                   help="data file (CSV, TSV, Parquet, JSON Lines; .json: an array of row objects or JSON Lines); "
                        "prefix SPLIT= (train, dev, valid, validation, val or test, in any case) to set its split; "
                        "repeatable")
    p.add_argument("--classes", required=True, type=_class_names, help="comma-separated class names, in index order")
    p.add_argument("--describe", action="append", default=[], metavar="CLASS=TEXT", type=pair("CLASS=TEXT"),
                   help="a one-sentence description of CLASS (zero-shot and prompt LFs read them); repeatable")
    p.add_argument("--text", action="append", default=None, metavar="[FIELD=]COLUMN", type=_text_item,
                   help="text column (default 'text'); FIELD=COLUMN for more text fields; repeatable")
    p.add_argument("--id", type=non_empty, help="id column (default: <file>:<row>)")
    p.add_argument("--label", type=non_empty, help="gold label column (class index or name)")
    p.add_argument("--split-column", type=non_empty, help="column holding each row's split")
    p.add_argument("--dev-sample", type=count, default=0, metavar="N", help="move N seeded-random train rows to dev")
    p.add_argument("--seed", type=count, default=0, help="seed of the dev sample")
    p.add_argument("--hide-labels", action="append", default=[], metavar="SPLIT", type=non_empty,
                   help="drop the gold labels of this split (for example train); repeatable")
    p.add_argument("--drop-identical", action="store_true", help="drop rows that exactly repeat an earlier row")
    p.add_argument("--lfs", type=existing_file, help="the project's LF suite (a Python file)")
    p.add_argument("--label-model", default="labelflow", type=label_model_name, help="default label model")
    p.add_argument("--name", type=non_empty, help="task name (default: the folder name)")


def _check(args: argparse.Namespace) -> str | None:
    """What is wrong with ``init``'s data prefixes, class descriptions and hidden splits together."""
    from labelflow.dataset import STANDARD_SPLITS, canonical_split

    prefixed = {split for split, _ in args.data}
    if "" in prefixed and len(prefixed) > 1:
        return "argument --data: give every data file a SPLIT= prefix, or none (then splits come from " \
               "--split-column, else all rows are train)"
    unknown = sorted({c for c, _, _ in (d.partition("=") for d in args.describe)} - set(args.classes))
    if unknown:
        return f"argument --describe: class(es) {unknown} are not in --classes ({', '.join(args.classes)})"
    if args.split_column is None:
        splits = sorted(((prefixed - {""}) or {"train"}) | ({"dev"} if args.dev_sample else set()))
        bad = [s for s in args.hide_labels if canonical_split(s) not in splits]
        if bad:
            return (f"argument --hide-labels: unknown split {bad[0]!r}; the data's splits are {', '.join(splits)}"
                    + ("" if set(splits) >= set(STANDARD_SPLITS) else
                       " (set splits with --data SPLIT=PATH or --split-column)"))
    return None


def _data_item(value: str) -> tuple[str, str]:
    """``[SPLIT=]PATH`` → ``(split or "", path)``; SPLIT is a standard split name or alias, in any case."""
    from labelflow.dataset import STANDARD_SPLITS, canonical_split

    prefix, sep, path = value.partition("=")
    if not sep or "/" in prefix or "\\" in prefix:  # no SPLIT= prefix, or an "=" inside the path
        return "", non_empty(value)
    split = canonical_split(prefix)
    if split in STANDARD_SPLITS:
        if not path.strip():
            raise arg_error(f"expected SPLIT=PATH with a path after '='; got {value!r}")
        return split, path
    if Path(value).exists():  # a file whose name holds "="
        return "", value
    raise arg_error(f"unknown split {prefix!r} in {value!r}; SPLIT is one of train, dev (or valid, validation, val), "
                    "test, in any case, or give the path alone")


def _class_names(value: str) -> list[str]:
    from labelflow.conventions import MAX_CLASSES

    names = [c.strip() for c in value.split(",")]
    if any(not n for n in names):
        raise arg_error(f"expected comma-separated, non-empty class names; got {value!r}")
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise arg_error(f"class names must be unique; {dupes} appear more than once in {value!r}")
    if not 2 <= len(names) <= MAX_CLASSES:
        raise arg_error(f"expected 2 to {MAX_CLASSES} class names; got {len(names)} in {value!r}")
    return names


def _text_item(value: str) -> str:
    key, sep, column = value.partition("=")
    if not value.strip() or (sep and (not key.strip() or not column.strip())):
        raise arg_error(f"expected COLUMN or FIELD=COLUMN; got {value!r}")
    return value


def _pairs(items: list[str], first_key: str) -> str | dict[str, str]:
    """``["CONTENT"]`` → ``"CONTENT"``; ``["CONTENT", "title=TITLE"]`` → ``{"text": "CONTENT", "title": "TITLE"}``."""
    if len(items) == 1 and "=" not in items[0]:
        return items[0]
    out = {}
    for i, item in enumerate(items):
        key, _, value = item.partition("=") if "=" in item else (first_key if i == 0 else item, "", item)
        out[key] = value
    return out


def _init(args: argparse.Namespace) -> dict[str, Any]:
    from labelflow.project import Project

    sources: dict[str, list[str]] = {}
    for split, path in args.data:  # (split or "", path), checked by _data_item and _check_init
        sources.setdefault(split, []).append(path)
    text = _pairs(args.text or ["text"], "text")
    names = args.classes
    described = {cls.strip(): text_ for cls, _, text_ in (item.partition("=") for item in args.describe)}
    project = Project.init(
        args.folder, sources=sources, classes={n: described.get(n, "") for n in names} if described else names,
        text=text, id=args.id, label=args.label, split=args.split_column, dev_sample=args.dev_sample,
        seed=args.seed, hide_labels=args.hide_labels, duplicates="drop_identical" if args.drop_identical else "error",
        lfs=args.lfs, label_model=args.label_model, name=args.name,
    )
    counts = project.columns("split")["split"].value_counts(sort=True)
    print(f"created project {project.config.name!r} in {project.root}: "
          + ", ".join(f"{s} {n}" for s, n in counts.iter_rows()))
    say_notes(project, args.command)
    return {}

COMMANDS = {"init": _init}
CHECKS = {"init": _check}

