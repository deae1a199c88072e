"""``labelflow ui``: the app (Streamlit) on a project, in the browser."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import NoReturn

from labelflow.commands.common import Command, open_project, trust_project
from labelflow.errors import LabelflowError


def add_parsers(command: Command) -> None:
    """Add the parsers of ``ui`` (``command``: :data:`.common.Command`)."""
    p = command("ui", "Open the app (Streamlit) on a project in the browser.", json_out=False)
    p.add_argument("--host", default="127.0.0.1",
                   help="address to serve on (default 127.0.0.1: this machine only; 0.0.0.0 opens it to the network)")
    p.add_argument("--port", type=int, default=8501, help="port to serve on (default 8501)")
    p.add_argument("--allow-remote", action="store_true",
                   help="allow a --host other than this machine (127.0.0.1, ::1, localhost): anyone who reaches the "
                        "app can run Python on this machine through its LF editor")
    p.add_argument("--trust", action="store_true", help="trust the project's LF suite and config first "
                                                        "(see `labelflow trust`)")


def _ui(args: argparse.Namespace) -> NoReturn:
    """Replace this process with ``streamlit run app/main.py`` (signals go straight to the server)."""
    import labelflow
    from labelflow.errors import require

    project = open_project(args)
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
        trust_project(project)
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


def _loopback(host: str) -> bool:
    """Whether ``host`` is this machine only: ``localhost`` or a loopback address (127.0.0.0/8, ::1)."""
    import ipaddress

    if host.strip().lower().rstrip(".") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip().strip("[]")).is_loopback
    except ValueError:
        return False  # another name: it may resolve to any interface

COMMANDS = {"ui": _ui}

