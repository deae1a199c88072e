"""The ``labelflow`` command line: a thin shell over :mod:`labelflow.project`.

Every command that prints figures takes ``--json`` and then prints exactly one
JSON document on stdout; progress bars go to stderr. Errors print one line,
``labelflow: error: ...``, and exit with status 2.

Each command lives in a module with ``add_parsers(command)``, ``COMMANDS`` and, where arguments must agree with
each other, ``CHECKS``: labelflow's own in :mod:`labelflow.commands` (listed here), other packages' in the entry
point group ``labelflow.commands`` (the fine-tuner's ``finetune``, ``predict`` and ``demo``: see pyproject.toml),
which labelflow imports none of by name.
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

from labelflow.commands import analyze, apply, bench, config, fit, fm, init, studio, trust, ui
from labelflow.commands.common import verbose_argument
from labelflow.errors import LabelflowError
from labelflow.io_errors import explain

BEFORE_PLUGINS = (init, apply, fit)
AFTER_PLUGINS = (config, fm, analyze, studio, ui, trust, bench)
"""labelflow's own command modules, around the entry points' commands (``labelflow --help`` lists them in this
order)."""


def make_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="labelflow", description="Programmatic labeling: LFs → label model → labels.")
    verbose_argument(parser, default=0)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help: str, *, project: bool = True, json_out: bool = True) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help)
        verbose_argument(p)
        if project:
            p.add_argument("-p", "--project", default=".", help="project folder (default: current directory)")
        if json_out:
            p.add_argument("--json", action="store_true", help="print one JSON document instead of tables")
        return p

    for module in (*BEFORE_PLUGINS, *_plugins(), *AFTER_PLUGINS):
        module.add_parsers(command)
    return parser


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


class _Parser(argparse.ArgumentParser):
    """argparse with labelflow's one-line errors (``labelflow: error: argument --flag: ...``, exit status 2)
    and, after parsing, the checks that involve several arguments (each command module's ``CHECKS``)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"labelflow: error: {message} (see `{self.prog} --help`)\n")

    def parse_args(self, args=None, namespace=None):  # type: ignore[override]
        parsed = super().parse_args(args, namespace)
        check = checks().get(parsed.command)
        problem = check(parsed) if check else None
        if problem:
            command = " ".join(x for x in (parsed.command, getattr(parsed, "fm", None)) if x)
            self.exit(2, f"labelflow: error: {problem} (see `{self.prog} {command} --help`)\n")
        return parsed


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
"""The exception types :func:`labelflow.io_errors.explain` may know (full disk, read-only project, a damaged store
file ...); an exception of them it does not know keeps its traceback."""


def _error(message: str) -> int:
    try:
        print(f"labelflow: error: {message}", file=sys.stderr)
    except BrokenPipeError:  # stderr is a closed pipe too: nothing left to tell
        pass
    return 2


COMMANDS = {name: run for module in (*BEFORE_PLUGINS, *AFTER_PLUGINS) for name, run in module.COMMANDS.items()}
"""labelflow's own commands: name → handler returning the JSON document (see :func:`commands` for all)."""


@functools.cache
def _plugins() -> tuple[Any, ...]:
    """The modules of the ``labelflow.commands`` entry point group, by entry point name."""
    return tuple(ep.load() for ep in sorted(entry_points(group="labelflow.commands"), key=lambda ep: ep.name))


def commands() -> dict[str, Callable[[argparse.Namespace], dict[str, Any]]]:
    """Every command: labelflow's own (:data:`COMMANDS`) and those its entry points register."""
    return {**COMMANDS, **{name: run for plugin in _plugins() for name, run in plugin.COMMANDS.items()}}


def checks() -> dict[str, Callable[[argparse.Namespace], str | None]]:
    """Every command's check of its arguments together (the problem, or ``None``), where it has one."""
    return {name: check for module in (*BEFORE_PLUGINS, *_plugins(), *AFTER_PLUGINS)
            for name, check in getattr(module, "CHECKS", {}).items()}


def _json_default(obj: Any) -> Any:
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "item"):
        return obj.item()
    raise TypeError(f"not JSON serializable: {type(obj).__name__}")


if __name__ == "__main__":
    sys.exit(main())
