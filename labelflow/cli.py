"""The ``labelflow`` command line: a thin shell over :mod:`labelflow.project`.

Every command that prints figures takes ``--json`` and then prints exactly one
JSON document on stdout; progress bars go to stderr. Errors print one line,
``labelflow: error: ...``, and exit with status 2.

Commands of other packages register themselves: each module of the entry point group
``labelflow.commands`` (the fine-tuner's ``finetune``, ``predict`` and ``demo``: see
pyproject.toml) has ``add_parsers(command)`` and ``COMMANDS``; labelflow imports none of them
by name.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sqlite3
import sys
import zipfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, NoReturn

import polars as pl

from labelflow.errors import LabelflowError, explain


def make_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="labelflow", description="Programmatic labeling: LFs → label model → labels.")
    _verbose_argument(parser, default=0)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help: str, *, project: bool = True, json_out: bool = True) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help)
        _verbose_argument(p)
        if project:
            p.add_argument("-p", "--project", default=".", help="project folder (default: current directory)")
        if json_out:
            p.add_argument("--json", action="store_true", help="print one JSON document instead of tables")
        return p

    p = command("init", "Create a project folder from data files, a column mapping and a class list.",
                project=False, json_out=False)
    p.add_argument("folder", help="project folder to create (re-initialises an existing one, keeping its caches)")
    p.add_argument("--data", action="append", required=True, metavar="[SPLIT=]PATH", type=_data_item,
                   help="data file (CSV, TSV, Parquet, JSON Lines; .json: an array of row objects or JSON Lines); "
                        "prefix SPLIT= (train, dev, valid, validation, val or test, in any case) to set its split; "
                        "repeatable")
    p.add_argument("--classes", required=True, type=_class_names, help="comma-separated class names, in index order")
    p.add_argument("--describe", action="append", default=[], metavar="CLASS=TEXT", type=_pair("CLASS=TEXT"),
                   help="a one-sentence description of CLASS (zero-shot and prompt LFs read them); repeatable")
    p.add_argument("--text", action="append", default=None, metavar="[FIELD=]COLUMN", type=_text_item,
                   help="text column (default 'text'); FIELD=COLUMN for more text fields; repeatable")
    p.add_argument("--id", type=non_empty, help="id column (default: <file>:<row>)")
    p.add_argument("--label", type=non_empty, help="gold label column (class index or name)")
    p.add_argument("--split-column", type=non_empty, help="column holding each row's split")
    p.add_argument("--dev-sample", type=_count, default=0, metavar="N", help="move N seeded-random train rows to dev")
    p.add_argument("--seed", type=_count, default=0, help="seed of the dev sample")
    p.add_argument("--hide-labels", action="append", default=[], metavar="SPLIT", type=non_empty,
                   help="drop the gold labels of this split (for example train); repeatable")
    p.add_argument("--drop-identical", action="store_true", help="drop rows that exactly repeat an earlier row")
    p.add_argument("--lfs", type=_existing_file, help="the project's LF suite (a Python file)")
    p.add_argument("--label-model", default="labelflow", type=_label_model_name, help="default label model")
    p.add_argument("--name", type=non_empty, help="task name (default: the folder name)")

    p = command("apply", "Apply the LF suite: the label matrix (cached per LF).")
    p.add_argument("--lfs", help="make this LF suite file the project's suite (recorded in labelflow.json once it "
                                 "applied), then apply it")
    p.add_argument("--on-error", choices=("raise", "abstain"), default=None,
                   help="an LF raising on a row stops the run (raise) or abstains there (abstain); default: the "
                        "project's on_error setting (raise unless changed, as the app's LFs page can)")
    p.add_argument("--jobs", type=_positive, default=None, help="worker processes for Python LFs (default: all CPUs)")
    p.add_argument("--lf-timeout", type=float, default=None, metavar="SECONDS",
                   help="time limit of one Python LF call on one row; a call past it is an LF error "
                        "(--on-error decides; default: no limit)")
    p.add_argument("--trust", action="store_true",
                   help="trust the project's LF suite and config as they are now (see `labelflow trust`), then apply")
    p.add_argument("--estimate", action="store_true",
                   help="apply nothing: measure each FM LF (prompt, zero-shot, kNN) on a seeded sample of dev gold rows "
                        "(coverage, accuracy, seconds per row, projected time of the full run)")
    p.add_argument("--estimate-rows", type=_positive, default=None, metavar="N",
                   help="dev gold rows each estimate samples (default 40)")
    p.add_argument("--estimate-seed", type=_count, default=None, metavar="SEED", help="seed of the sample (default 0)")
    p.add_argument("--estimate-lf", action="append", default=None, metavar="NAME", type=non_empty,
                   help="estimate only this FM LF; repeatable (default: every FM LF of the suite)")
    _engine_arguments(p)
    _extend_arguments(p)

    p = command("fit", "Fit a label model on the train rows and report dev/test metrics.")
    p.add_argument("--model", type=_label_model_name, help="registered label model (default: the project's)")
    p.add_argument("--seed", type=_count, default=123)
    p.add_argument("--dev-gold", action="store_true", help="also pass the dev rows' gold labels to the model")
    _extend_arguments(p)

    p = command("summary", "LF statistics (coverage, overlaps, conflicts, accuracy on gold).")
    p.add_argument("--split", default="dev", help="split to summarise (default dev)")

    p = command("export", "Write probabilistic labels with the argmax.", json_out=False)
    p.add_argument("out", type=non_empty, help="output file: .parquet, .csv or .jsonl")
    p.add_argument("--model", type=_label_model_name, help="fitted label model (default: the project's)")
    p.add_argument("--split", action="append", default=None, type=_split_name,
                   help="only this split (valid, validation, val mean dev; any case); repeatable")
    p.add_argument("--format", choices=("parquet", "csv", "jsonl"), help="format (default: from the extension)")

    for plugin in _plugins():
        plugin.add_parsers(command)

    p = command("config", "Show the project's settings, or change them in place with --set KEY=VALUE (LF suite, "
                          "default label model, columns, data files, class descriptions) without re-creating it. "
                          "The store is kept (FM outputs, votes, matrix, models, annotations); what a change leaves "
                          "stale is said until recomputed.")
    from labelflow.settings import KEYS

    p.add_argument("--set", dest="assignments", action="append", default=[], metavar="KEY=VALUE", type=_assignment,
                   help="change one setting (repeatable; an empty VALUE clears an optional one). Keys: "
                        + "; ".join(f"{k}: {v}" for k, v in KEYS.items()))

    p = command("fm", "Foundation-model outputs, cached, stored as columns LFs read (x.NAME).", project=False,
                json_out=False)
    fm = p.add_subparsers(dest="fm", required=True, metavar="OUTPUT")
    for kind, help_text, default_name in (("embed", "sentence embeddings of every row", "embedding"),
                                          ("zero-shot", "similarity of every row to each class description", "zero_shot"),
                                          ("prompt", "class probabilities from an LLM prompt", "prompt")):
        f = fm.add_parser(kind, help=help_text, description=help_text)
        _verbose_argument(f)
        f.add_argument("-p", "--project", default=".", help="project folder (default: current directory)")
        f.add_argument("--json", action="store_true", help="print one JSON document")
        f.add_argument("--name", default=default_name, type=_identifier,
                       help=f"column name of the output, a Python identifier (default {default_name})")
        f.add_argument("--dry-run", action="store_true", help="count cached rows and model calls; compute nothing")
        f.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
        _engine_arguments(f)
        if kind == "prompt":
            f.add_argument("--template", help="prompt template over the row's columns, e.g. 'Comment: {text}\\nSpam:'")
            f.add_argument("--template-file", type=_existing_file, help="read the template from this file")
            f.add_argument("--answers", action="append", required=True, metavar="CLASS=WORD[,WORD...]",
                           type=_pair("CLASS=WORD[,WORD...]"), help="answer words meaning CLASS; repeatable")
            f.add_argument("--provider", choices=("transformers", "openai"), default="transformers")
            f.add_argument("--model", type=non_empty,
                           help="model (default: gemma3-270m for transformers; required for openai)")
            f.add_argument("--base-url", type=non_empty, help="OpenAI-compatible server URL (provider openai)")
            f.add_argument("--api-key-env", default="OPENAI_API_KEY", help="environment variable holding the API key")
            f.add_argument("--budget", choices=("uncovered", "conflicts", "uncovered_or_conflicts"),
                           help="only rows the current label matrix leaves uncovered / conflicting")
            f.add_argument("--limit", type=_positive, help="only the first N rows (after --budget), N ≥ 1")
        else:
            f.add_argument("--model", default="all-MiniLM-L6-v2", type=non_empty,
                           help="sentence-transformers model (default all-MiniLM-L6-v2)")

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

    p = command("studio", "Label Studio round trip: push rows to label, pull finished labels as gold.", project=False,
                json_out=False)
    studio = p.add_subparsers(dest="studio", required=True, metavar="ACTION")
    for action, help_text in (("push", "create/update the Label Studio project and import rows with pre-annotations"),
                              ("pull", "store finished annotations as gold labels (annotator, time)"),
                              ("status", "tasks, finished tasks and conflicts")):
        s = studio.add_parser(action, help=help_text, description=help_text)
        _verbose_argument(s)
        s.add_argument("-p", "--project", default=".", help="project folder (default: current directory)")
        s.add_argument("--json", action="store_true", help="print one JSON document")
        s.add_argument("--url", help="Label Studio URL: used, confirmed for this project's later commands and saved "
                                     "in labelflow.json once the command succeeds (credentials in it are used for "
                                     "this command only, never saved or printed); without it, the project's saved "
                                     "URL, if you confirmed it on this machine")
        s.add_argument("--api-key-env", default="LABEL_STUDIO_API_KEY", metavar="VAR",
                       help="environment variable holding the API key (default LABEL_STUDIO_API_KEY; a project file "
                            "never chooses it)")
        if action == "push":
            s.add_argument("--rows", default="sample", help="'sample', 'entropy' (least certain first) or comma-separated row ids")
            s.add_argument("--splits", default="dev,test", help="splits to pick unlabeled rows from (default dev,test)")
            s.add_argument("-n", type=int, default=100, help="rows to push (default 100)")
            s.add_argument("--seed", type=int, default=0)
            s.add_argument("--model", help="label model whose predictions become pre-annotations (default: the project's)")

    p = command("ui", "Open the app (Streamlit) on a project in the browser.", json_out=False)
    p.add_argument("--host", default="127.0.0.1",
                   help="address to serve on (default 127.0.0.1: this machine only; 0.0.0.0 opens it to the network)")
    p.add_argument("--port", type=int, default=8501, help="port to serve on (default 8501)")
    p.add_argument("--allow-remote", action="store_true",
                   help="allow a --host other than this machine (127.0.0.1, ::1, localhost): anyone who reaches the "
                        "app can run Python on this machine through its LF editor")
    p.add_argument("--trust", action="store_true", help="trust the project's LF suite and config first "
                                                        "(see `labelflow trust`)")

    p = command("trust", "Trust a project: let labelflow run its LF suite (Python code) as it is now. Read the "
                         "suite first; trust is recorded outside the project, by a hash of the suite and config.",
                project=False)
    p.add_argument("folder", nargs="?", default=".", help="project folder (default: current directory)")
    p.add_argument("--check", action="store_true", help="only say whether it is trusted (exit status 2 if not)")
    p.add_argument("--revoke", action="store_true", help="forget the trust given to this project")

    p = command("bench", "Benchmarks.", project=False, json_out=False)
    bench = p.add_subparsers(dest="bench", required=True, metavar="BENCH")
    b = bench.add_parser("label-models", help="every registered label model on WRENCH folders")
    _verbose_argument(b)
    b.add_argument("folders", nargs="+", help="WRENCH dataset folders (label.json, train/valid/test.json)")
    b.add_argument("--models", help="comma-separated model names (default: all registered)")
    b.add_argument("--dev", action="store_true", help="fit each model a second time with the valid split's gold labels")
    b.add_argument("--markdown", action="store_true", help="print the results as a Markdown table (as in the README)")
    b.add_argument("--json", action="store_true", help="print one JSON document")
    return parser


def _verbose_argument(p: argparse.ArgumentParser, *, default: Any = argparse.SUPPRESS) -> None:
    """``-v``: before the command (``labelflow -v fit``) or after it (``labelflow fit -v``)."""
    p.add_argument("-v", "--verbose", action="count", default=default,
                   help="also show the libraries' own output: Snorkel's per-fit epoch bars, transformers' load "
                        "reports and progress bars, their deprecation warnings, fine-tuning's log lines (-vv: debug "
                        "logs)")


@contextmanager
def _output(level: int) -> Iterator[None]:
    """Run a command at verbosity ``level`` (:mod:`labelflow.quiet`): log records reach stderr from WARNING up
    (INFO with ``-v``, DEBUG with ``-vv``)."""
    import logging

    from labelflow import quiet

    before, root = quiet.verbosity(), logging.getLogger()
    threshold = logging.WARNING if level == 0 else logging.INFO if level == 1 else logging.DEBUG
    handler = logging.StreamHandler(sys.stderr)
    handler.setLevel(threshold)  # a library that lowers its own logger's level still stops here
    handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
    root_level = root.level
    quiet.set_verbosity(level)
    root.addHandler(handler)
    root.setLevel(min(root_level or logging.WARNING, threshold))
    try:
        yield
    finally:
        root.removeHandler(handler)
        root.setLevel(root_level)
        quiet.set_verbosity(before)


def _extend_arguments(p: argparse.ArgumentParser) -> None:
    group = p.add_mutually_exclusive_group()
    group.add_argument("--extend", nargs="?", const="", metavar="COLUMN", type=str,
                       help="add embedding-extended LFs (a NAME~ext column per LF, radius fit on dev gold; see the "
                            "README) over embedding column COLUMN (default: the configured one, else 'embedding', "
                            "which `labelflow fm embed` writes); kept in labelflow.json for later commands")
    group.add_argument("--no-extend", action="store_true", help="drop the embedding-extended LFs (kept in labelflow.json)")


def _set_extend(project, args: argparse.Namespace) -> None:
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


def _print_extension(project) -> list[dict[str, Any]]:
    """Print (and return) what each LF's extension gave."""
    report = project.extension()
    extended = [e for e in report if e["column"]]
    if report:
        print(f"extended LFs over {project.extend_config.embedding!r}: {len(extended)} of {len(report)} LFs")
        for e in extended:
            print(f"  {e['column']}: radius {e['radius']:.3f}, {e['votes']} votes; dev precision "
                  f"{e['dev_precision']:.2f} on {e['dev_votes']} (bar {e['bar']:.2f})")
        skipped = [e["lf"] for e in report if not e["column"]]
        if skipped:
            print(f"  not extended ({len(skipped)}, reasons in --json): {', '.join(skipped)}")
    return report


def _engine_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--engine", choices=("local", "ray"), default="local",
                   help="local (this machine, in chunks) or ray (a Ray cluster; default: a new local one)")
    p.add_argument("--address", help="Ray cluster to connect to: auto, ray://HOST:10001 or HOST:6379 "
                                     "(default: the project's ray_address, else RAY_ADDRESS, else a new local cluster)")


# --- argument checks: every value is checked at parse time; a bad one is a one-line error naming the flag ---


class _Parser(argparse.ArgumentParser):
    """argparse with labelflow's one-line errors (``labelflow: error: argument --flag: ...``, exit status 2)
    and, after parsing, the checks that involve several arguments (:func:`_check_arguments`)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"labelflow: error: {message} (see `{self.prog} --help`)\n")

    def parse_args(self, args=None, namespace=None):  # type: ignore[override]
        parsed = super().parse_args(args, namespace)
        problem = _check_arguments(parsed)
        if problem:
            command = " ".join(x for x in (parsed.command, getattr(parsed, "fm", None)) if x)
            self.exit(2, f"labelflow: error: {problem} (see `{self.prog} {command} --help`)\n")
        return parsed


def _check_arguments(args: argparse.Namespace) -> str | None:
    """What is wrong with a combination of arguments (``None``: nothing)."""
    from labelflow.dataset import STANDARD_SPLITS, canonical_split

    if args.command == "init":
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
    elif args.command == "apply" and not args.estimate and (args.estimate_lf or args.estimate_rows is not None
                                                            or args.estimate_seed is not None):
        return "arguments --estimate-rows, --estimate-seed, --estimate-lf: only with --estimate"
    elif args.command == "export" and args.format is None:
        suffix = Path(args.out).suffix.lower().lstrip(".")
        if suffix not in ("parquet", "csv", "jsonl"):
            return (f"argument out: cannot tell the format of {args.out!r} from its extension; name it .parquet, .csv "
                    "or .jsonl, or pass --format parquet|csv|jsonl")
    elif args.command == "fm" and args.fm == "prompt":
        if (args.template is None) == (args.template_file is None):
            return "arguments --template, --template-file: give exactly one of them"
        if args.provider == "openai" and not args.model:
            return "argument --model: --provider openai needs --model (the served model's name)"
        if args.base_url and args.provider != "openai":
            return "argument --base-url: only with --provider openai"
        classes = [item.partition("=")[0].strip() for item in args.answers]
        if len(set(classes)) != len(classes):
            return f"argument --answers: a class is given more than once ({', '.join(classes)})"
    return None


def _arg_error(message: str) -> argparse.ArgumentTypeError:
    return argparse.ArgumentTypeError(message)


def non_empty(value: str) -> str:
    """An argparse ``type``: a value that is not blank."""
    if not value.strip():
        raise _arg_error("expected a non-empty value; got ''")
    return value


def _at_least(minimum: int):
    """An argparse ``type``: an integer ≥ ``minimum``."""
    def parse(value: str) -> int:
        try:
            n = int(value)
        except ValueError:
            raise _arg_error(f"expected a whole number ≥ {minimum}; got {value!r}") from None
        if n < minimum:
            raise _arg_error(f"expected a whole number ≥ {minimum}; got {n}")
        return n
    return parse


_count, _positive = _at_least(0), _at_least(1)


def _identifier(value: str) -> str:
    if not value.isidentifier():
        raise _arg_error(f"expected a Python identifier (letters, digits, _; LFs read it as x.NAME); got {value!r}")
    return value


def _existing_file(value: str) -> str:
    if not Path(value).is_file():
        raise _arg_error(f"no such file: {value!r}")
    return value


def _split_name(value: str) -> str:
    from labelflow.dataset import canonical_split

    return canonical_split(non_empty(value))


def _data_item(value: str) -> tuple[str, str]:
    """``[SPLIT=]PATH`` → ``(split or "", path)``; SPLIT is a standard split name or alias, in any case."""
    from labelflow.dataset import STANDARD_SPLITS, canonical_split

    prefix, sep, path = value.partition("=")
    if not sep or "/" in prefix or "\\" in prefix:  # no SPLIT= prefix, or an "=" inside the path
        return "", non_empty(value)
    split = canonical_split(prefix)
    if split in STANDARD_SPLITS:
        if not path.strip():
            raise _arg_error(f"expected SPLIT=PATH with a path after '='; got {value!r}")
        return split, path
    if Path(value).exists():  # a file whose name holds "="
        return "", value
    raise _arg_error(f"unknown split {prefix!r} in {value!r}; SPLIT is one of train, dev (or valid, validation, val), "
                     "test, in any case, or give the path alone")


def _class_names(value: str) -> list[str]:
    from labelflow.conventions import MAX_CLASSES

    names = [c.strip() for c in value.split(",")]
    if any(not n for n in names):
        raise _arg_error(f"expected comma-separated, non-empty class names; got {value!r}")
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise _arg_error(f"class names must be unique; {dupes} appear more than once in {value!r}")
    if not 2 <= len(names) <= MAX_CLASSES:
        raise _arg_error(f"expected 2 to {MAX_CLASSES} class names; got {len(names)} in {value!r}")
    return names


def _pair(form: str):
    """A checker of ``KEY=VALUE`` items (``form`` for the message): both sides non-empty."""

    def check(value: str) -> str:
        key, sep, rest = value.partition("=")
        if not sep or not key.strip() or not rest.strip():
            raise _arg_error(f"expected {form}; got {value!r}")
        return value

    check.__name__ = form
    return check


def _assignment(value: str) -> str:
    key, sep, _ = value.partition("=")
    if not sep or not key.strip():
        raise _arg_error(f"expected KEY=VALUE (an empty VALUE clears an optional setting); got {value!r}")
    return value


def _text_item(value: str) -> str:
    key, sep, column = value.partition("=")
    if not value.strip() or (sep and (not key.strip() or not column.strip())):
        raise _arg_error(f"expected COLUMN or FIELD=COLUMN; got {value!r}")
    return value


def _label_model_name(value: str) -> str:
    from labelflow.labelmodels import label_model_names

    if value not in label_model_names():
        raise _arg_error(f"unknown label model {value!r}; known models are {', '.join(label_model_names())}")
    return value


def _kinds(value: str) -> str:
    from labelflow.suggest import SUGGESTION_KINDS

    kinds = [k.strip() for k in value.split(",")]
    unknown = [k for k in kinds if k not in SUGGESTION_KINDS]
    if unknown:
        raise _arg_error(f"unknown kind(s) {unknown}; kinds are {', '.join(SUGGESTION_KINDS)} (comma-separated)")
    return ",".join(kinds)


def main(argv: Sequence[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    try:
        with _output(args.verbose):
            result = commands()[args.command](args)
        if getattr(args, "json", False):
            print(json.dumps(result, indent=2, default=_json_default))
        sys.stdout.flush()  # a closed pipe fails here, inside the try, not at interpreter exit
    except BrokenPipeError:  # `labelflow summary | head`: the reader has gone; say nothing more
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # nor at exit, when Python flushes
        except (OSError, ValueError):  # stdout is not a real file (a test's capture): nothing is flushed to it
            pass
        return 141  # 128 + SIGPIPE, what the shell reports for a command a closed pipe stopped
    except LabelflowError as exc:
        return _error(str(exc))
    except _OUTSIDE_ERRORS as exc:  # known failures from below labelflow: one line naming the file, else re-raised
        message = explain(exc)
        if message is None:
            raise
        return _error(message)
    return 0


_OUTSIDE_ERRORS = (OSError, sqlite3.Error, pl.exceptions.PolarsError, zipfile.BadZipFile, ValueError, EOFError,
                   KeyError)
"""The exception types :func:`labelflow.errors.explain` may know (full disk, read-only project, a damaged store
file ...); an exception of them it does not know keeps its traceback."""


def _error(message: str) -> int:
    try:
        print(f"labelflow: error: {message}", file=sys.stderr)
    except BrokenPipeError:  # stderr is a closed pipe too: nothing left to tell
        pass
    return 2


# --- commands (each returns the JSON document; prints tables unless --json) -------------------------


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
    _say_notes(project, args.command)
    return {}


def _apply(args: argparse.Namespace) -> dict[str, Any]:
    project = _open(args)
    if args.trust:
        _trust_project(project)
    if args.estimate:
        return _estimate(project, args)
    _set_extend(project, args)
    suite_before = project.config.lfs
    matrix, cache = project.apply(lfs=args.lfs, on_error=args.on_error, n_jobs=args.jobs, progress=True,
                                  engine=args.engine, address=args.address, timeout_s=args.lf_timeout)
    result = {
        "rows": matrix.shape[0], "lfs": list(matrix.lf_names),
        "applied": cache.misses, "cached": cache.hits,
        "failures": [f.__dict__ for f in matrix.failures],
    }
    if project.config.lfs != suite_before:  # apply --lfs FILE made FILE the project's suite
        result.update(suite=str(project.suite_path.resolve()), suite_was=suite_before)
        if not args.json:
            print(f"the project's LF suite is now {project.suite_path.resolve()}"
                  + (f" (was {project._resolve(suite_before).resolve()})" if suite_before else ""))
    if cache.uncached:  # LF name → what its fingerprint cannot cover (so it was re-applied)
        result["uncached"] = cache.uncached
    if project.config.extend is not None:
        result["extension"] = project.extension()
    if not args.json:
        print(f"label matrix {matrix.shape[0]} rows × {matrix.shape[1]} LFs "
              f"({len(cache.misses)} applied, {len(cache.hits)} from cache)")
        for name, why in cache.uncached.items():
            print(f"  LF {name!r} re-applied: {why}")
        for f in matrix.failures[:20]:
            print(f"  LF {f.lf!r} failed on row id {f.row_id!r}: {f.error}")
        if len(matrix.failures) > 20:
            print(f"  ... {len(matrix.failures) - 20} more failures (see --json)")
        _print_extension(project)
    return result


def _estimate(project, args: argparse.Namespace) -> dict[str, Any]:
    from labelflow.fm.estimate import estimate_suite, format_estimates

    estimates = estimate_suite(project, project.lfs(args.lfs), names=args.estimate_lf,
                               rows=args.estimate_rows or 40, seed=args.estimate_seed or 0,
                               on_error=args.on_error or project.config.on_error,
                               progress=not args.json)
    if not args.json:
        print(format_estimates(estimates))
    return {"estimates": [e.to_dict() for e in estimates]}


def _fit(args: argparse.Namespace) -> dict[str, Any]:
    from labelflow.labelmodels import AutoLabelModel

    project = _open(args)
    _set_extend(project, args)
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
    (see ``FlowLabelModel.prior_source``), ``balance`` (``[k]`` or ``None`` for uniform) and ``text``."""
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
    table = _open(args).summary(args.split)
    if not args.json:
        print_frame(table)
    return {"split": args.split, "lfs": table.to_dicts()}


def _export(args: argparse.Namespace) -> dict[str, Any]:
    frame = _open(args).export(args.out, model=args.model, splits=args.split, fmt=args.format)
    print(f"wrote {frame.height} rows to {args.out}")
    return {}


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


def _fm(args: argparse.Namespace) -> dict[str, Any]:
    from labelflow.fm.run import fm_embed, fm_prompt, fm_zero_shot

    project = _open(args)
    common = {"name": args.name, "dry_run": args.dry_run, "progress": not args.json, "engine": args.engine,
              "address": args.address}
    if args.fm == "embed":
        report = fm_embed(project, model=args.model, device=args.device, **common)
    elif args.fm == "zero-shot":
        report = fm_zero_shot(project, model=args.model, device=args.device, **common)
    else:
        report = fm_prompt(project, template=_template(args), answers=_answers(args.answers),
                           provider=args.provider, provider_config=_provider_config(args),
                           budget=args.budget, limit=args.limit, **common)
    if not args.json:
        done = (f"would compute {report['would_compute']} rows in {report['would_call']} model calls"
                if args.dry_run else f"computed {report['computed']} rows in {report['calls']} model calls")
        print(f"fm {args.fm} {report['name']!r}: {report['rows']} rows, {report['cached']} cached, {done} "
              f"({report['seconds']:.2f} s)")
    return report


def _template(args: argparse.Namespace) -> str:
    if (args.template is None) == (args.template_file is None):
        raise LabelflowError("give exactly one of --template and --template-file")
    if args.template_file:
        return Path(args.template_file).read_text(encoding="utf-8")
    return args.template.replace("\\n", "\n")


def _answers(items: list[str]) -> dict[str, list[str]]:
    out = {}
    for item in items:
        cls, sep, words = item.partition("=")
        if not sep or not words.strip():
            raise LabelflowError(f"--answers takes CLASS=WORD[,WORD...]; got {item!r}")
        out[cls.strip()] = [w.strip() for w in words.split(",") if w.strip()]
    return out


def _provider_config(args: argparse.Namespace) -> dict[str, Any]:
    if args.provider == "openai":
        if not args.model:
            raise LabelflowError("--provider openai needs --model (the served model's name)")
        return {"model": args.model, "base_url": args.base_url, "api_key_env": args.api_key_env}
    return {"model": args.model or "gemma3-270m", "device": args.device}


def _analyze(args: argparse.Namespace) -> dict[str, Any]:
    from labelflow.error_analysis import analyze
    from labelflow.suggest import suggest_lfs, suggestion_rank

    project = _open(args)
    predictions = None
    if args.predictions:
        from labelflow.dataset import read_table

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


def _studio(args: argparse.Namespace) -> dict[str, Any]:
    from dataclasses import asdict

    from labelflow import studio

    project = _open(args)
    server = {"url": args.url, "api_key_env": args.api_key_env}
    if args.studio == "push":
        rows = args.rows if args.rows in ("sample", "entropy") else [r.strip() for r in args.rows.split(",") if r.strip()]
        result = asdict(studio.push(project, rows=rows, splits=tuple(args.splits.split(",")), n=args.n, seed=args.seed,
                                    model=args.model, **server))
        text = (f"Label Studio project {result['project_id']} at {result['url']}: {result['created']} tasks created, "
                f"{result['updated']} updated, {result['unchanged']} unchanged; {result['predictions_added']} "
                f"pre-annotations (model_version {result['model_version']})")
    elif args.studio == "pull":
        result = asdict(studio.pull(project, **server))
        text = (f"pulled from Label Studio project {result['project_id']}: {result['added']} labels added, "
                f"{result['changed']} changed, {result['unchanged']} unchanged, {result['skipped']} skipped")
        text += "".join(f"\n  disagreement on row {c['id']}: {c['annotators']} gave {c['labels']} (no gold label)"
                        for c in result["conflicts"])
    else:
        result = studio.status(project, **server)
        text = (f"Label Studio project {result['project_id']} at {result['url']}: {result['tasks']} tasks, "
                f"{result['annotated']} annotated, {result['pending']} pending; {result['conflicts']} conflicts in the store")
    if args.url:  # only now that the command succeeded: confirm the URL and save it (without credentials)
        studio.remember_url(project, args.url)
    if not args.json:
        print(text)
    return result


def _config(args: argparse.Namespace) -> dict[str, Any]:
    from labelflow.settings import change_settings, describe, format_changes, format_settings, parse_settings

    project = _open(args)
    if args.assignments:
        report = change_settings(project, parse_settings(args.assignments, project))
        if not args.json:
            print(format_changes(report))
        return report
    info = describe(project)
    if not args.json:
        print(format_settings(info))
    return info


def _trust(args: argparse.Namespace) -> dict[str, Any]:
    from labelflow.project import Project
    from labelflow.trust import revoke_trust, trust_file

    project = Project.open(args.folder)
    _say_notes(project, args.command)
    fp = project.fingerprint()
    result = {"project": str(project.root.resolve()), "suite": fp.suite, "outside_project": fp.outside,
              "fingerprint": fp.digest, "files": fp.files, "config": fp.config, "trust_file": str(trust_file())}
    if args.revoke:
        result.update(revoked=revoke_trust(project.root, fp), trusted=project.trusted)
        if not args.json:
            print(f"{result['project']}: trust revoked ({result['revoked']} record(s) forgotten)")
    elif args.check:
        project.require_trusted()  # UntrustedProjectError: exit status 2, saying how to trust it
        result["trusted"] = True
        if not args.json:
            print(f"{result['project']}: trusted (suite {fp.suite})")
    else:
        _trust_project(project)
        result["trusted"] = True
    return result


def _trust_project(project) -> None:
    """Trust ``project`` as it is now, saying what is trusted (on stderr)."""
    fp = project.trust()
    files = ", ".join(sorted(fp.files))
    print(f"trusted {project.root.resolve()}: "
          + (f"its LF suite {fp.suite}" if fp.suite is not None else "no LF suite configured")
          + (" (OUTSIDE the project folder)" if fp.outside else "")
          + (f" with the Python files beside it ({files})" if len(fp.files) > 1 else "")
          + (f", Ray cluster {fp.config['ray_address']}" if fp.config.get("ray_address") else "")
          + f"; sha256 {fp.digest[:16]}…; any change to them must be trusted again", file=sys.stderr)


def _ui(args: argparse.Namespace) -> NoReturn:
    """Replace this process with ``streamlit run app/main.py`` (signals go straight to the server)."""
    import labelflow
    from labelflow.errors import require

    project = _open(args)
    app = Path(labelflow.__file__).resolve().parents[1] / "app" / "main.py"
    if not app.is_file():
        raise LabelflowError(f"the app is missing: {app} does not exist (the app ships in the labelflow source "
                             "tree; install labelflow from a clone with `pip install -e '.[app]'`)")
    if not 0 < args.port < 65536:
        raise LabelflowError(f"--port must be in 1..65535; got {args.port}")
    remote = not _loopback(args.host)
    if remote and not args.allow_remote:
        raise LabelflowError(f"--host {args.host} would open the app to other machines, and its LF editor runs the "
                             "Python code typed into it on this one; serve it on 127.0.0.1 (the default) and reach it "
                             "through an SSH tunnel, or pass --allow-remote if everyone who can reach "
                             f"{args.host}:{args.port} may run code here")
    try:  # here, not in the server this process becomes, where a bad name is a traceback
        import socket

        socket.getaddrinfo(args.host, args.port)
    except (OSError, UnicodeError) as exc:
        raise LabelflowError(f"--host {args.host!r} is neither an IP address nor a name this machine resolves "
                             f"({exc}); give an address such as 127.0.0.1 or 0.0.0.0") from None
    if args.trust:
        _trust_project(project)
    require("streamlit", "app")
    command = [sys.executable, "-m", "streamlit", "run", str(app), "--server.address", args.host,
               "--server.port", str(args.port), "--server.headless", "true", "--browser.gatherUsageStats", "false",
               "--client.toolbarMode", "viewer"]  # no "Deploy" button: this is a local tool
    if remote:
        bar = "!" * 100
        print(f"{bar}\nWARNING: serving the labelflow app on {args.host}:{args.port}, beyond this machine, WITHOUT "
              "authentication.\nAnyone who can reach it can run arbitrary Python code here as this user (the LF "
              f"editor runs typed code)\nand read the project's data.\n{bar}", file=sys.stderr, flush=True)
    if project.config.lfs is not None and not project.trusted:
        print(f"note: {project.root.resolve()} is not a trusted project: the app shows its LF suite's source with a "
              "Trust button and runs none of it until you trust it", file=sys.stderr, flush=True)
    print(f"labelflow app for {project.root.resolve()} on http://{args.host}:{args.port} (Ctrl+C stops it)",
          file=sys.stderr, flush=True)
    os.execve(sys.executable, command, {**os.environ, "LABELFLOW_PROJECT": str(project.root.resolve())})


COMMANDS = {"init": _init, "apply": _apply, "fit": _fit, "summary": _summary, "export": _export,
            "bench": _bench, "fm": _fm, "analyze": _analyze, "studio": _studio, "ui": _ui, "trust": _trust,
            "config": _config}
"""labelflow's own commands: name → handler returning the JSON document (see :func:`commands` for all)."""


@functools.cache
def _plugins() -> tuple[Any, ...]:
    """The modules of the ``labelflow.commands`` entry point group, by entry point name."""
    return tuple(ep.load() for ep in sorted(entry_points(group="labelflow.commands"), key=lambda ep: ep.name))


def commands() -> dict[str, Callable[[argparse.Namespace], dict[str, Any]]]:
    """Every command: labelflow's own (:data:`COMMANDS`) and those its entry points register."""
    return {**COMMANDS, **{name: run for plugin in _plugins() for name, run in plugin.COMMANDS.items()}}


# --- helpers -----------------------------------------------------------------------------------------


def _open(args: argparse.Namespace):
    from labelflow.project import Project

    project = Project.open(args.project)
    _say_notes(project, args.command)
    return project


def _say_notes(project, command: str) -> None:
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


def _loopback(host: str) -> bool:
    """Whether ``host`` is this machine only: ``localhost`` or a loopback address (127.0.0.0/8, ::1)."""
    import ipaddress

    if host.strip().lower().rstrip(".") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip().strip("[]")).is_loopback
    except ValueError:
        return False  # another name: it may resolve to any interface


def _pairs(items: list[str], first_key: str) -> str | dict[str, str]:
    """``["CONTENT"]`` → ``"CONTENT"``; ``["CONTENT", "title=TITLE"]`` → ``{"text": "CONTENT", "title": "TITLE"}``."""
    if len(items) == 1 and "=" not in items[0]:
        return items[0]
    out = {}
    for i, item in enumerate(items):
        key, _, value = item.partition("=") if "=" in item else (first_key if i == 0 else item, "", item)
        out[key] = value
    return out


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


def _json_default(obj: Any) -> Any:
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "item"):
        return obj.item()
    raise TypeError(f"not JSON serializable: {type(obj).__name__}")


if __name__ == "__main__":
    sys.exit(main())
