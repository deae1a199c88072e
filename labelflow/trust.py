"""Trust: which code from project files labelflow runs, recorded outside every project.

A project's LF suite is Python code, and its config names where that code runs
(``ray_address``). labelflow runs a project's configured suite only when the
project is **trusted**: when its :func:`fingerprint` — a SHA-256 over the suite
file, the other Python files in the suite's folder (code the suite may load), and
the config entries that decide what runs where (``lfs``, ``ray_address``) — is
recorded in the user's trust file, :func:`trust_file` (``$LABELFLOW_HOME/trusted.json``,
else ``$XDG_CONFIG_HOME/labelflow/trusted.json``, else ``~/.config/labelflow/trusted.json``),
never in the project. Trust is by content: a copy of a trusted project is
trusted; an edit of its suite, by hand or by a ``git pull``, must be trusted again.

Ways in: ``labelflow init --lfs PATH`` (the user named the file), ``labelflow trust
PATH``, ``labelflow apply --trust``, the Trust button of the app's LFs page, and
labelflow's own writes into a trusted suite (the app's Save, ``analyze --accept``).
A suite file given explicitly (``apply --lfs FILE``, ``Project.lfs(path)``) is the
caller's choice and is run without a check.

The same file holds the Label Studio URLs the user confirmed (``studio_urls``): a URL
read from a project file gets the API key only when it is there.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from labelflow.errors import ProjectError
from labelflow.files import write_json

HOME_ENV = "LABELFLOW_HOME"
TRUST_FILE = "trusted.json"
FORMAT = 1
MAX_RECORDS = 2000
"""Trusted fingerprints kept (the oldest go first)."""


@dataclass(frozen=True)
class Fingerprint:
    """What a project would run, and the SHA-256 that trusting it records.

    Attributes
    ----------
    digest
        SHA-256 (hex) of ``config`` and ``files``.
    suite
        The resolved suite file (``None``: no suite configured).
    files
        ``{file name: SHA-256}`` of the suite and of the other ``*.py`` files in its folder
        (a missing suite: ``None``).
    config
        The config entries hashed: ``lfs`` (as written) and ``ray_address``.
    outside
        The suite file lies outside the project folder.
    """

    digest: str
    suite: Path | None
    files: dict[str, str | None] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    outside: bool = False


def fingerprint(root: str | Path, *, lfs: str | None, ray_address: str | None) -> Fingerprint:
    """The :class:`Fingerprint` of the project in ``root`` whose config holds ``lfs`` and ``ray_address``."""
    root = Path(root).resolve()
    suite, files, outside = None, {}, False
    if lfs is not None:
        suite = (Path(lfs) if Path(lfs).is_absolute() else root / lfs).resolve()
        outside = not suite.is_relative_to(root)
        files[suite.name] = _sha256(suite)
        if suite.parent.is_dir():
            for other in sorted(suite.parent.glob("*.py")):
                if other.name != suite.name and not other.name.startswith(".") and other.is_file():
                    files[other.name] = _sha256(other)
    config = {"lfs": lfs, "ray_address": ray_address}
    digest = hashlib.sha256(json.dumps({"config": config, "files": files}, sort_keys=True).encode()).hexdigest()
    return Fingerprint(digest, suite, files, config, outside)


def home() -> Path:
    """The user's labelflow folder: ``$LABELFLOW_HOME``, else ``$XDG_CONFIG_HOME/labelflow``, else ``~/.config/labelflow``."""
    if os.environ.get(HOME_ENV):
        return Path(os.environ[HOME_ENV]).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(base).expanduser() / "labelflow"


def trust_file() -> Path:
    """Where trust is recorded: ``home() / "trusted.json"``."""
    return home() / TRUST_FILE


def is_trusted(fp: Fingerprint) -> bool:
    """Whether ``fp`` is recorded as trusted."""
    return any(r.get("fingerprint") == fp.digest for r in _read().get("projects", []))


def trusted_before(root: str | Path) -> bool:
    """Whether some version of the project in ``root`` was trusted (so an untrusted one was changed since)."""
    where = str(Path(root).resolve())
    return any(r.get("root") == where for r in _read().get("projects", []))


def record_trust(fp: Fingerprint, root: str | Path) -> None:
    """Record ``fp`` (of the project in ``root``) as trusted."""
    entry = {"fingerprint": fp.digest, "root": str(Path(root).resolve()),
             "suite": None if fp.suite is None else str(fp.suite), "files": fp.files, "config": fp.config,
             "time": round(time.time(), 3)}
    with _locked() as data:
        kept = [r for r in data.get("projects", []) if r.get("fingerprint") != fp.digest]
        data["projects"] = [*kept, entry][-MAX_RECORDS:]


def revoke_trust(root: str | Path, fp: Fingerprint | None = None) -> int:
    """Forget ``fp`` and every fingerprint recorded for the project in ``root``; returns how many were forgotten."""
    where = str(Path(root).resolve())
    with _locked() as data:
        before = data.get("projects", [])
        data["projects"] = [r for r in before if r.get("root") != where
                            and (fp is None or r.get("fingerprint") != fp.digest)]
        return len(before) - len(data["projects"])


def studio_url_confirmed(url: str) -> bool:
    """Whether the user confirmed the Label Studio ``url`` (without credentials) on this machine."""
    return url in _read().get("studio_urls", [])


def confirm_studio_url(url: str) -> None:
    """Record ``url`` (pass it without credentials) as a Label Studio server the user chose."""
    with _locked() as data:
        urls = [u for u in data.get("studio_urls", []) if u != url]
        data["studio_urls"] = [*urls, url][-MAX_RECORDS:]


def untrusted_message(fp: Fingerprint, root: str | Path, *, what: str = "its LF suite") -> str:
    """Why the project in ``root`` is not run, and how to trust it."""
    where = Path(root).resolve()
    changed = trusted_before(where)
    suite = f"{fp.suite}" + (" (outside the project folder)" if fp.outside else "")
    return (f"{where} is not a trusted project, so labelflow does not run {what} (Python code: {suite}"
            + (f", Ray cluster {fp.config['ray_address']}" if fp.config.get("ray_address") else "") + "); "
            + ("its suite or config changed since it was trusted. " if changed else "it has not been trusted on "
               "this machine. ")
            + f"Read the suite, then trust it with `labelflow trust {where}` (or pass --trust to `labelflow apply`, or "
              "press Trust on the app's LFs page); trust is recorded in " + str(trust_file()))


# --- the file ------------------------------------------------------------------------------------------


def _sha256(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return None


def _read() -> dict[str, Any]:
    path = trust_file()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, json.JSONDecodeError) as exc:
        raise ProjectError(f"the trust file {path} cannot be read ({exc}); fix or delete it") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ProjectError(f"the trust file {path} has format {data.get('format') if isinstance(data, dict) else None!r}; "
                           f"this labelflow reads format {FORMAT}")
    return data


@contextmanager
def _locked() -> Iterator[dict[str, Any]]:
    """The trust file's contents to change in the body, written back atomically under an exclusive lock."""
    path = trust_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock between processes
        fcntl = None
    with open(path.with_name(f".{path.name}.lock"), "a") as lock:
        if fcntl is not None:
            fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            data = _read() or {"format": FORMAT}
            yield data
            write_json(path, data)
        finally:
            if fcntl is not None:
                fcntl.flock(lock, fcntl.LOCK_UN)
