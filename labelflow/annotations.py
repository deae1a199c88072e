"""Human labels (gold annotations) in one SQLite file, safe against crashes and concurrent writers.

Each ``(row id, annotator)`` pair holds at most one label, with the time it was
given and where it came from (``"app"``, ``"label-studio"``, ...). Every call is
its own transaction in WAL mode with ``synchronous=FULL``: a label is on disk
when :meth:`AnnotationStore.add` returns, a killed process loses nothing that
was acknowledged, and several processes (two browser sessions of the app, the
CLI) can write at once.

Annotators who disagree are reported by :meth:`AnnotationStore.resolve`, never
silently resolved: a row with conflicting labels gets no gold label.
"""

from __future__ import annotations

import sqlite3
import time as _time
from collections.abc import Iterable
from contextlib import closing
from pathlib import Path

import polars as pl

from labelflow.errors import ProjectError

SCHEMA = """CREATE TABLE IF NOT EXISTS annotations (
    id TEXT NOT NULL, annotator TEXT NOT NULL, label INTEGER NOT NULL, time REAL NOT NULL, source TEXT NOT NULL,
    PRIMARY KEY (id, annotator)) WITHOUT ROWID"""
COLUMNS = {"id": pl.String, "annotator": pl.String, "label": pl.Int16, "time": pl.Float64, "source": pl.String}


class AnnotationStore:
    """Gold labels given by people, one per row and annotator.

    Parameters
    ----------
    path
        The SQLite file (created with its folder on the first write).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> store = AnnotationStore(pathlib.Path(tempfile.mkdtemp()) / "annotations.sqlite")
    >>> store.add("c1", 1, annotator="ann")
    >>> store.add("c1", 0, annotator="bob")
    >>> store.add("c2", 0, annotator="ann")
    >>> gold, conflicts = store.resolve()
    >>> gold
    {'c2': 0}
    >>> conflicts["id"].to_list()
    ['c1']
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, timeout=60, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute(SCHEMA)
        return conn

    def add(self, row_id: str, label: int, *, annotator: str, source: str = "app", time: float | None = None) -> None:
        """Store (or replace) ``annotator``'s label for ``row_id``; on disk when this returns.

        ``time`` is seconds since the epoch (default: now).
        """
        self.add_many([(row_id, label)], annotator=annotator, source=source, time=time)

    def add_many(self, labels: Iterable[tuple[str, int]], *, annotator: str, source: str = "app",
                 time: float | None = None) -> None:
        """Store ``(row id, label)`` pairs of one annotator in one transaction."""
        if not isinstance(annotator, str) or not annotator.strip():
            raise ProjectError(f"an annotation needs a non-empty annotator name; got {annotator!r}")
        stamp = _time.time() if time is None else float(time)
        self.put([(str(i), annotator.strip(), int(label), stamp, source) for i, label in labels])

    def put(self, rows: Iterable[tuple[str, str, int, float, str]]) -> None:
        """Store ``(id, annotator, label, time, source)`` rows, each replacing that row's and annotator's
        label, in one transaction (all or nothing)."""
        rows = list(rows)
        if not rows:
            return
        with closing(self._connect()) as conn:
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany("INSERT OR REPLACE INTO annotations VALUES (?, ?, ?, ?, ?)", rows)
            conn.execute("COMMIT")

    def remove(self, row_id: str, *, annotator: str) -> None:
        """Delete ``annotator``'s label for ``row_id`` (nothing happens when there is none)."""
        with closing(self._connect()) as conn:
            conn.execute("DELETE FROM annotations WHERE id = ? AND annotator = ?", (str(row_id), annotator.strip()))

    def frame(self) -> pl.DataFrame:
        """Every stored label: columns ``id, annotator, label, time, source``, oldest first."""
        if not self.path.is_file():
            return pl.DataFrame(schema=COLUMNS)
        with closing(self._connect()) as conn:
            rows = conn.execute(f"SELECT {', '.join(COLUMNS)} FROM annotations ORDER BY time, id, annotator").fetchall()
        return pl.DataFrame(rows, schema=COLUMNS, orient="row")

    def resolve(self) -> tuple[dict[str, int], pl.DataFrame]:
        """Gold labels where the annotators of a row agree, and the rows where they don't.

        Returns
        -------
        gold
            ``{row id: class}`` for rows whose annotators all gave the same label.
        conflicts
            One row per disagreeing row id: ``id``, ``labels`` (sorted distinct classes),
            ``annotators`` (sorted names).
        """
        per_row = self.frame().group_by("id", maintain_order=True).agg(
            pl.col("label").unique().sort().alias("labels"), pl.col("annotator").sort().alias("annotators"))
        agreed = per_row.filter(pl.col("labels").list.len() == 1)
        gold = dict(zip(agreed["id"].to_list(), agreed["labels"].list.first().to_list()))
        return gold, per_row.filter(pl.col("labels").list.len() > 1)
