"""``labelflow trust``: a project's LF suite and config trusted as they are now, checked or forgotten."""

from __future__ import annotations

import argparse
from typing import Any

from labelflow.commands.common import Command, say_notes, trust_project


def add_parsers(command: Command) -> None:
    """Add the parsers of ``trust`` (``command``: :data:`.common.Command`)."""
    p = command("trust", "Trust a project: let labelflow run its LF suite (Python code) as it is now. Read the "
                         "suite first; trust is recorded outside the project, by a hash of the suite and config.",
                project=False)
    p.add_argument("folder", nargs="?", default=".", help="project folder (default: current directory)")
    p.add_argument("--check", action="store_true", help="only say whether it is trusted (exit status 2 if not)")
    p.add_argument("--revoke", action="store_true", help="forget the trust given to this project")


def _trust(args: argparse.Namespace) -> dict[str, Any]:
    from labelflow.project import Project
    from labelflow.trust import revoke_trust, trust_file

    project = Project.open(args.folder)
    say_notes(project, args.command)
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
        trust_project(project)
        result["trusted"] = True
    return result

COMMANDS = {"trust": _trust}

