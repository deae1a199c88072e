"""``labelflow studio push|pull|status``: the Label Studio round trip."""

from __future__ import annotations

import argparse
from typing import Any, get_args

from labelflow.commands.common import Command, open_project, verbose_argument


def add_parsers(command: Command) -> None:
    """Add the parsers of ``studio`` (``command``: :data:`.common.Command`)."""
    p = command("studio", "Label Studio round trip: push rows to label, pull finished labels as gold.", project=False,
                json_out=False)
    studio = p.add_subparsers(dest="studio", required=True, metavar="ACTION")
    for action, help_text in (("push", "create/update the Label Studio project and import rows with pre-annotations"),
                              ("pull", "store finished annotations as gold labels (annotator, time)"),
                              ("status", "tasks, finished tasks and conflicts")):
        s = studio.add_parser(action, help=help_text, description=help_text)
        verbose_argument(s)
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


def _studio(args: argparse.Namespace) -> dict[str, Any]:
    from dataclasses import asdict

    from labelflow import studio

    project = open_project(args)
    server = {"url": args.url, "api_key_env": args.api_key_env}
    if args.studio == "push":
        rows = args.rows if args.rows in get_args(studio.PushRows) else [r.strip() for r in args.rows.split(",") if r.strip()]
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

COMMANDS = {"studio": _studio}

