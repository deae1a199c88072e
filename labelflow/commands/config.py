"""``labelflow config``: the project's settings shown, or changed in place."""

from __future__ import annotations

import argparse
from typing import Any

from labelflow.commands.common import Command, arg_error, open_project


def add_parsers(command: Command) -> None:
    """Add the parsers of ``config`` (``command``: :data:`.common.Command`)."""
    p = command("config", "Show the project's settings, or change them in place with --set KEY=VALUE (LF suite, "
                          "default label model, columns, data files, class descriptions) without re-creating it. "
                          "The store is kept (FM outputs, votes, matrix, models, annotations); what a change leaves "
                          "stale is said until recomputed.")
    from labelflow.settings import KEYS

    p.add_argument("--set", dest="assignments", action="append", default=[], metavar="KEY=VALUE", type=_assignment,
                   help="change one setting (repeatable; an empty VALUE clears an optional one). Keys: "
                        + "; ".join(f"{k}: {v}" for k, v in KEYS.items()))


def _assignment(value: str) -> str:
    key, sep, _ = value.partition("=")
    if not sep or not key.strip():
        raise arg_error(f"expected KEY=VALUE (an empty VALUE clears an optional setting); got {value!r}")
    return value


def _config(args: argparse.Namespace) -> dict[str, Any]:
    from labelflow.settings import change_settings, describe, format_changes, format_settings, parse_settings

    project = open_project(args)
    if args.assignments:
        report = change_settings(project, parse_settings(args.assignments, project))
        if not args.json:
            print(format_changes(report))
        return report
    info = describe(project)
    if not args.json:
        print(format_settings(info))
    return info

COMMANDS = {"config": _config}

