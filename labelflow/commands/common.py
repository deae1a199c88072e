"""What labelflow's commands share: argument types (every value is checked at parse time; a bad one is a
one-line error naming the flag), arguments several commands take, opening a project, and printing tables."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, get_args

import polars as pl

from labelflow.apply import Engine


Command = Callable[..., argparse.ArgumentParser]
"""``command(name, help, *, project=True, json_out=True)``: adds a command's subparser (with ``-v``, ``-p/--project``
and ``--json``) and returns it."""


def verbose_argument(p: argparse.ArgumentParser, *, default: Any = argparse.SUPPRESS) -> None:
    """``-v``: before the command (``labelflow -v fit``) or after it (``labelflow fit -v``)."""
    p.add_argument("-v", "--verbose", action="count", default=default,
                   help="also show the libraries' own output: Snorkel's per-fit epoch bars, transformers' load "
                        "reports and progress bars, their deprecation warnings, fine-tuning's log lines (-vv: debug "
                        "logs)")


def engine_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--engine", choices=get_args(Engine), default="local",
                   help="local (this machine, in chunks) or ray (a Ray cluster; default: a new local one)")
    p.add_argument("--address", help="Ray cluster to connect to: auto, ray://HOST:10001 or HOST:6379 "
                                     "(default: the project's ray_address, else RAY_ADDRESS, else a new local cluster)")


def extend_arguments(p: argparse.ArgumentParser) -> None:
    group = p.add_mutually_exclusive_group()
    group.add_argument("--extend", nargs="?", const="", metavar="COLUMN", type=str,
                       help="add embedding-extended LFs (a NAME~ext column per LF, radius fit on dev gold; see the "
                            "README) over embedding column COLUMN (default: the configured one, else 'embedding', "
                            "which `labelflow fm embed` writes); kept in labelflow.json for later commands")
    group.add_argument("--no-extend", action="store_true", help="drop the embedding-extended LFs (kept in labelflow.json)")


def set_extend(project, args: argparse.Namespace) -> None:
    """Turn embedding-extended LFs on (``--extend [COLUMN]``, once the column is there) or off (``--no-extend``)."""
    from labelflow.extend import ExtendConfig

    if args.no_extend and project.config.extend is not None:
        project.update_config(extend=None)
    elif args.extend is not None:
        config = (project.extend_config or ExtendConfig()).to_dict()
        config["embedding"] = args.extend or config["embedding"]
        project.embeddings(config["embedding"])  # a clear error, and no setting saved, when it is missing
        if config != project.config.extend:
            project.update_config(extend=config)


def open_project(args: argparse.Namespace):
    """The project of ``args.project``, saying its notes on stderr."""
    from labelflow.project import Project

    project = Project.open(args.project)
    say_notes(project, args.command)
    return project


def say_notes(project, command: str) -> None:
    """Say on stderr what opening the project changed on its own (a move's paths, once) and what a settings change
    left stale (until it is recomputed)."""
    for note in project.notes:
        print(f"labelflow: note: {note}", file=sys.stderr)
    if command in ("config", "fm", "init"):  # config shows the marks itself; fm recomputes outputs
        return
    for key, why in project.stale().items():
        if key == "apply" and command == "apply":
            continue
        what, fix = (("the label matrix", "`labelflow apply`") if key == "apply" else
                     (f"FM output {key[3:]!r}", f"`labelflow fm ... --name {key[3:]}`"))
        print(f"labelflow: note: {what} is stale ({why}); run {fix}", file=sys.stderr)


def trust_project(project) -> None:
    """Trust ``project`` as it is now, saying what is trusted (on stderr)."""
    fp = project.trust()
    files = ", ".join(sorted(fp.files))
    print(f"trusted {project.root.resolve()}: "
          + (f"its LF suite {fp.suite}" if fp.suite is not None else "no LF suite configured")
          + (" (OUTSIDE the project folder)" if fp.outside else "")
          + (f" with the Python files beside it ({files})" if len(fp.files) > 1 else "")
          + (f", Ray cluster {fp.config['ray_address']}" if fp.config.get("ray_address") else "")
          + f"; sha256 {fp.digest[:16]}…; any change to them must be trusted again", file=sys.stderr)


def arg_error(message: str) -> argparse.ArgumentTypeError:
    return argparse.ArgumentTypeError(message)


def non_empty(value: str) -> str:
    """An argparse ``type``: a value that is not blank."""
    if not value.strip():
        raise arg_error("expected a non-empty value; got ''")
    return value


def at_least(minimum: int):
    """An argparse ``type``: an integer ≥ ``minimum``."""
    def parse(value: str) -> int:
        try:
            n = int(value)
        except ValueError:
            raise arg_error(f"expected a whole number ≥ {minimum}; got {value!r}") from None
        if n < minimum:
            raise arg_error(f"expected a whole number ≥ {minimum}; got {n}")
        return n
    return parse


count, positive = at_least(0), at_least(1)


def identifier(value: str) -> str:
    if not value.isidentifier():
        raise arg_error(f"expected a Python identifier (letters, digits, _; LFs read it as x.NAME); got {value!r}")
    return value


def existing_file(value: str) -> str:
    if not Path(value).is_file():
        raise arg_error(f"no such file: {value!r}")
    return value


def split_name(value: str) -> str:
    from labelflow.dataset import canonical_split

    return canonical_split(non_empty(value))


def pair(form: str):
    """A checker of ``KEY=VALUE`` items (``form`` for the message): both sides non-empty."""

    def check(value: str) -> str:
        key, sep, rest = value.partition("=")
        if not sep or not key.strip() or not rest.strip():
            raise arg_error(f"expected {form}; got {value!r}")
        return value

    check.__name__ = form
    return check


def label_model_name(value: str) -> str:
    from labelflow.labelmodels import label_model_names

    if value not in label_model_names():
        raise arg_error(f"unknown label model {value!r}; known models are {', '.join(label_model_names())}")
    return value


def print_metrics(per_stage: dict[str, dict[str, dict[str, Any]]]) -> None:
    """Print ``{stage: {split: metrics}}`` as one table, a row per stage and split."""
    rows = [{"stage": stage, "split": split, "accuracy": m["accuracy"], "accuracy_covered": m.get("accuracy_covered"),
             "macro_f1": m["macro_f1"], "coverage": m["coverage"], "n": m["n"]}
            for stage, splits in per_stage.items() for split, m in splits.items()]
    print_frame(pl.DataFrame(rows))


def print_frame(frame: pl.DataFrame, *, str_lengths: int = 40) -> None:
    """Print ``frame`` whole: every row and column, strings cut at ``str_lengths`` characters."""
    with pl.Config(tbl_rows=-1, tbl_cols=-1, fmt_str_lengths=str_lengths, tbl_hide_dataframe_shape=True,
                   tbl_hide_column_data_types=True, float_precision=3, tbl_width_chars=200):
        print(frame)
