"""Crash-safe file writes: write a temporary file beside the target, then rename.

Files get the mode a plain ``open(path, "w")`` would give them (``0o666`` less the
umask), or keep the mode of the file they replace. Temporary files are named
``.<target name>.<random>.labelflow-tmp`` (a file, or a folder of parts); one that
a killed run left behind is removed by the next write into the same folder once it
is :data:`STALE_SECONDS` old.
"""

from __future__ import annotations

import errno
import json
import os
import re
import secrets
import shutil
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import polars as pl

from labelflow.io_errors import involving

TEMP_SUFFIX = ".labelflow-tmp"
"""Suffix of every temporary file and folder labelflow writes beside a target."""
STALE_SECONDS = 300
"""A temporary file older than this (by its modification time) was left by a killed run."""
_LEGACY_TEMP = re.compile(r"^\..+\.[a-z0-9_]{8}\.(tmp|parts)$")  # tempfile.mkstemp/mkdtemp names of older versions


def temp_name(target: str | Path) -> Path:
    """A fresh temporary path beside ``target``: ``.<name>.<random>.labelflow-tmp``."""
    target = Path(target)
    return target.with_name(f".{target.name}.{secrets.token_hex(4)}{TEMP_SUFFIX}")


def target_of(temp: str | Path) -> Path | None:
    """The target a temporary path of :func:`temp_name` stands for (``None`` for any other path)."""
    temp = Path(temp)
    if not (temp.name.startswith(".") and temp.name.endswith(TEMP_SUFFIX)):
        return None
    return temp.with_name(temp.name[1:-len(TEMP_SUFFIX)].rpartition(".")[0])


def sweep_stale(folder: str | Path, *, older_than: float = STALE_SECONDS) -> list[Path]:
    """Remove the temporary files and folders a killed run left in ``folder`` (not its subfolders);
    returns what was removed.

    Only labelflow's own temporary names count (:data:`TEMP_SUFFIX`, and the ``tempfile`` names of
    older versions), and only once they are ``older_than`` seconds old, so a write still running in
    another process keeps its file.

    Examples
    --------
    >>> import tempfile, pathlib, os
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> (d / ".a.parquet.1f2e3d4c.labelflow-tmp").write_text("half")
    4
    >>> os.utime(d / ".a.parquet.1f2e3d4c.labelflow-tmp", (0, 0))
    >>> [p.name for p in sweep_stale(d)]
    ['.a.parquet.1f2e3d4c.labelflow-tmp']
    """
    removed = []
    deadline = time.time() - older_than
    try:
        entries = list(os.scandir(folder))
    except OSError:  # missing or unreadable: nothing to sweep here
        return removed
    for entry in entries:
        name = entry.name
        if not name.startswith(".") or not (name.endswith(TEMP_SUFFIX) or _LEGACY_TEMP.match(name)):
            continue
        try:
            if entry.stat(follow_symlinks=False).st_mtime > deadline:
                continue
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path)
            else:
                os.unlink(entry.path)
            removed.append(Path(entry.path))
        except OSError:  # gone already, or not ours to remove: leave it
            continue
    return removed


@contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; on success rename it onto ``target``.

    If the body raises, the temporary file is removed and ``target`` is untouched. The file
    ends with ``target``'s mode when it replaces one, else with the mode the umask gives a new
    file. Stale temporary files in the folder are swept first (:func:`sweep_stale`). An
    :class:`OSError` in the body (a full disk, a read-only folder) carries ``target`` as the
    file involved (see :func:`labelflow.io_errors.involving`).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> out = pathlib.Path(tempfile.mkdtemp()) / "a.txt"
    >>> with atomic_path(out) as tmp:
    ...     _ = tmp.write_text("done")
    >>> out.read_text()
    'done'
    """
    target = Path(target)
    with involving(target, writing=True):
        if target.is_dir():
            raise IsADirectoryError(errno.EISDIR, "is a folder; give a file path", str(target))
        target.parent.mkdir(parents=True, exist_ok=True)
        sweep_stale(target.parent)
        tmp = temp_name(target)
        os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))  # 0o666 less the umask, as open() gives
        try:
            new_mode = os.stat(tmp).st_mode & 0o7777
            yield tmp
            try:
                mode = os.stat(target).st_mode & 0o7777
            except FileNotFoundError:
                mode = new_mode
            os.chmod(tmp, mode)  # the body may have replaced tmp with a file of another mode
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)


def write_json(target: str | Path, obj: Any) -> None:
    """Write ``obj`` as indented JSON to ``target`` atomically."""
    with atomic_path(target) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def write_parquet_parts(target: str | Path, frames: Iterable[pl.DataFrame]) -> int:
    """Write consecutive frames as one Parquet file, holding one frame in memory at a time; returns the rows.

    Each frame goes to a part file in a hidden folder beside ``target``; the parts
    are then streamed into ``target`` (one row group per part or more) and removed.
    If writing fails, or ``frames`` raises, ``target`` is untouched.

    Examples
    --------
    >>> import tempfile, pathlib, polars as pl
    >>> out = pathlib.Path(tempfile.mkdtemp()) / "ab.parquet"
    >>> write_parquet_parts(out, (pl.DataFrame({"x": [i, i + 1]}) for i in (0, 2)))
    4
    >>> pl.read_parquet(out)["x"].to_list()
    [0, 1, 2, 3]
    """
    target = Path(target)
    parts = None  # made when the first frame is ready: a run killed before that leaves no trace beside target
    try:
        paths, rows = [], 0
        for i, frame in enumerate(frames):
            with involving(target, writing=True):  # not around `frames`: what it reads is another file
                if parts is None:
                    target.parent.mkdir(parents=True, exist_ok=True)
                    parts = temp_name(target)
                    parts.mkdir(mode=0o700)
                paths.append(parts / f"part-{i:05d}.parquet")
                frame.write_parquet(paths[-1])
            rows += frame.height
        if not paths:
            raise ValueError(f"no rows to write to {target}")
        with atomic_path(target) as tmp:
            if len(paths) == 1:
                os.replace(paths[0], tmp)
            else:
                pl.concat([pl.scan_parquet(p) for p in paths]).sink_parquet(tmp)
        return rows
    finally:
        if parts is not None:
            shutil.rmtree(parts, ignore_errors=True)


@contextmanager
def write_transaction(conn: Any) -> Iterator[Any]:
    """``BEGIN IMMEDIATE`` … ``COMMIT`` on a SQLite connection opened with ``isolation_level=None``, and
    ``ROLLBACK`` on any exception (a failed commit included): the writes inside land together or not at
    all, and a second writer waits for the write lock at ``BEGIN`` instead of failing at ``COMMIT``."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
