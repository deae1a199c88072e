"""Crash-safe file writes: write a temporary file beside the target, then rename."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import polars as pl


@contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; on success rename it onto ``target``.

    If the body raises, the temporary file is removed and ``target`` is untouched.

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
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
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
            if parts is None:
                target.parent.mkdir(parents=True, exist_ok=True)
                parts = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".parts", dir=target.parent))
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
