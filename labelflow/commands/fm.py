"""``labelflow fm embed|zero-shot|prompt``: foundation-model outputs, cached, stored as columns LFs read."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, get_args

from labelflow.commands.common import (Command, engine_arguments, existing_file, identifier, non_empty, open_project,
                                       pair, positive, verbose_argument)
from labelflow.conventions import Device
from labelflow.errors import LabelflowError
from labelflow.fm import provider_kinds
from labelflow.fm.lfs import Budget


def add_parsers(command: Command) -> None:
    """Add the parsers of ``fm`` (``command``: :data:`.common.Command`)."""
    p = command("fm", "Foundation-model outputs, cached, stored as columns LFs read (x.NAME).", project=False,
                json_out=False)
    fm = p.add_subparsers(dest="fm", required=True, metavar="OUTPUT")
    for kind, help_text, default_name in (("embed", "sentence embeddings of every row", "embedding"),
                                          ("zero-shot", "similarity of every row to each class description", "zero_shot"),
                                          ("prompt", "class probabilities from an LLM prompt", "prompt")):
        f = fm.add_parser(kind, help=help_text, description=help_text)
        verbose_argument(f)
        f.add_argument("-p", "--project", default=".", help="project folder (default: current directory)")
        f.add_argument("--json", action="store_true", help="print one JSON document")
        f.add_argument("--name", default=default_name, type=identifier,
                       help=f"column name of the output, a Python identifier (default {default_name})")
        f.add_argument("--dry-run", action="store_true", help="count cached rows and model calls; compute nothing")
        f.add_argument("--device", choices=get_args(Device), default="auto")
        engine_arguments(f)
        if kind == "prompt":
            f.add_argument("--template", help="prompt template over the row's columns, e.g. 'Comment: {text}\\nSpam:'")
            f.add_argument("--template-file", type=existing_file, help="read the template from this file")
            f.add_argument("--answers", action="append", required=True, metavar="CLASS=WORD[,WORD...]",
                           type=pair("CLASS=WORD[,WORD...]"), help="answer words meaning CLASS; repeatable")
            f.add_argument("--provider", choices=provider_kinds(), default="transformers")
            f.add_argument("--model", type=non_empty,
                           help="model (default: gemma3-270m for transformers; required for openai)")
            f.add_argument("--base-url", type=non_empty, help="OpenAI-compatible server URL (provider openai)")
            f.add_argument("--api-key-env", default="OPENAI_API_KEY", help="environment variable holding the API key")
            f.add_argument("--budget", choices=get_args(Budget),
                           help="only rows the current label matrix leaves uncovered / conflicting")
            f.add_argument("--limit", type=positive, help="only the first N rows (after --budget), N ≥ 1")
        else:
            f.add_argument("--model", default="all-MiniLM-L6-v2", type=non_empty,
                           help="sentence-transformers model (default all-MiniLM-L6-v2)")


def _check(args: argparse.Namespace) -> str | None:
    """What is wrong with ``fm prompt``'s template, provider and answers together."""
    if args.fm != "prompt":
        return None
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


def _fm(args: argparse.Namespace) -> dict[str, Any]:
    from labelflow.fm.run import fm_embed, fm_prompt, fm_zero_shot

    project = open_project(args)
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

COMMANDS = {"fm": _fm}
CHECKS = {"fm": _check}

