"""Human labels (gold annotations) in one SQLite file, safe against crashes and concurrent writers.

Each ``(row id, annotator)`` pair holds at most one label, with the time it was
given and where it came from (``"app"``, ``"label-studio"``, ...). Every call is
its own transaction in WAL mode with ``synchronous=FULL``: a label is on disk
when :meth:`AnnotationStore.add` returns, a killed process loses nothing that
was acknowledged, and several processes (two browser sessions of the app, the
CLI) can write at once.

Labels are stored as **class names**, never indices, so re-creating a project
with its classes in another order changes no human label. Reading checks every
stored name against the project's classes: a label the schema lacks is an
error naming the row, the annotator and the label, never a silent gold label.

Stores written before names were stored (format 1, a ``label INTEGER`` column)
are migrated when first opened, mapping each index with the classes recorded in
the store (``meta`` key ``classes``); a store that recorded none is refused
until it is migrated with the classes in the order they had when the labels were
given (:func:`migrate_store`, or ``python -m labelflow.annotations STORE --classes A,B``).

Annotators who disagree are reported by :meth:`AnnotationStore.resolve`, never
silently resolved: a row with conflicting labels gets no gold label until a
person settles it (:meth:`AnnotationStore.settle`). A settlement is recorded
apart from the annotators' labels, with who settled it and when (table
``resolutions``), and decides the row's gold label while it stands, whatever
the annotators gave; :meth:`AnnotationStore.disagreements` lists every row
whose labels differ, settled or not.

A label given from a page that showed the row in some state can be written
only if the row is still in that state (``expect=``): two browser tabs of one
annotator on one row are not last-write-wins, the second is refused with
:class:`AnnotationConflict`, which says what is stored.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
import time as _time
from collections.abc import Iterable, Sequence
from contextlib import closing
from pathlib import Path

import polars as pl

from labelflow.errors import AnnotationConflict, LabelflowError, ProjectError
from labelflow.files import write_transaction
from labelflow.validation import is_int
from labelflow.schema import ClassSchema

FORMAT = 2
"""Store format: 2 holds class names (1, before it, held class indices)."""
SCHEMA = """CREATE TABLE IF NOT EXISTS annotations (
    id TEXT NOT NULL, annotator TEXT NOT NULL, label TEXT NOT NULL, time REAL NOT NULL, source TEXT NOT NULL,
    PRIMARY KEY (id, annotator)) WITHOUT ROWID"""
RESOLUTIONS = """CREATE TABLE IF NOT EXISTS resolutions (
    id TEXT NOT NULL PRIMARY KEY, label TEXT NOT NULL, resolver TEXT NOT NULL, time REAL NOT NULL) WITHOUT ROWID"""
META = "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)"
COLUMNS = {"id": pl.String, "annotator": pl.String, "label": pl.Int16, "time": pl.Float64, "source": pl.String}
RESOLUTION_COLUMNS = {"id": pl.String, "label": pl.Int16, "resolver": pl.String, "time": pl.Float64}


class _Any:
    def __repr__(self) -> str:
        return "ANY"


ANY = _Any()
"""``expect=ANY`` (the default): write whatever is stored for the row and annotator."""


class AnnotationStore:
    """Gold labels given by people, one per row and annotator, stored by class name.

    Parameters
    ----------
    path
        The SQLite file (created with its folder on the first write).
    classes
        The task's classes (a :class:`~labelflow.schema.ClassSchema` or names in index
        order): labels are given and returned as indices into them, stored as names.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> store = AnnotationStore(pathlib.Path(tempfile.mkdtemp()) / "annotations.sqlite", ["HAM", "SPAM"])
    >>> store.add("c1", 1, annotator="ann")
    >>> store.add("c1", "HAM", annotator="bob")
    >>> store.add("c2", 0, annotator="ann")
    >>> gold, conflicts = store.resolve()
    >>> gold
    {'c2': 0}
    >>> conflicts["id"].to_list()
    ['c1']
    >>> AnnotationStore(store.path, ["SPAM", "HAM"]).resolve()[0]  # the same label under reordered classes
    {'c2': 1}
    """

    def __init__(self, path: str | Path, classes: ClassSchema | Sequence[str]) -> None:
        self.path = Path(path)
        self.schema = classes if isinstance(classes, ClassSchema) else ClassSchema(tuple(classes))
        self._ready = False

    def _connect(self) -> sqlite3.Connection:
        if self.path.exists() and not self.path.is_file():
            raise ProjectError(f"{self.path} is not a file; the human gold labels live there (SQLite); move what "
                               "is there away or restore the file")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, timeout=60, isolation_level=None)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            if not self._ready:
                _prepare(conn, self.path, None)
                self._ready = True
        except BaseException:
            conn.close()
            raise
        return conn

    def _name(self, row_id: str, label: int | str) -> str:
        names = self.schema.names
        if isinstance(label, str) and label in names:
            return label
        if is_int(label, minimum=0, maximum=len(names) - 1):
            return names[int(label)]
        raise ProjectError(f"label for row {row_id!r} must be one of {list(names)} or 0..{len(names) - 1}; "
                           f"got {label!r}")

    def add(self, row_id: str, label: int | str, *, annotator: str, source: str = "app",
            time: float | None = None, expect: int | str | None | _Any = ANY) -> None:
        """Store (or replace) ``annotator``'s label for ``row_id``; on disk when this returns.

        ``label`` is a class name or index; ``time`` is seconds since the epoch (default: now).
        ``expect``: the label the caller believes is stored (a class, or ``None`` for none); when
        another is, :class:`AnnotationConflict` is raised and nothing is written. The check and
        the write are one transaction.
        """
        if expect is ANY:
            self.add_many([(row_id, label)], annotator=annotator, source=source, time=time)
            return
        _annotator(annotator)
        stamp = _time.time() if time is None else float(time)
        self._write([(str(row_id), annotator.strip(), self._name(row_id, label), stamp, source)],
                    expect=self._expected(row_id, expect))

    def add_many(self, labels: Iterable[tuple[str, int | str]], *, annotator: str, source: str = "app",
                 time: float | None = None) -> None:
        """Store ``(row id, label)`` pairs of one annotator in one transaction."""
        _annotator(annotator)
        stamp = _time.time() if time is None else float(time)
        self.put([(str(i), annotator.strip(), label, stamp, source) for i, label in labels])

    def put(self, rows: Iterable[tuple[str, str, int | str, float, str]]) -> None:
        """Store ``(id, annotator, label, time, source)`` rows, each replacing that row's and annotator's
        label, in one transaction (all or nothing). ``label`` is a class name or index; one that is
        neither refuses the whole call, naming the row."""
        rows = [(str(i), a, self._name(i, label), float(t), s) for i, a, label, t, s in rows]
        if rows:
            self._write(rows)

    def _expected(self, row_id: str, expect: int | str | None) -> str | None:
        return None if expect is None else self._name(row_id, expect)

    def _write(self, rows: list[tuple[str, str, str, float, str]], *, expect: str | None | _Any = ANY,
               remove: tuple[str, str] | None = None) -> None:
        """Insert ``rows`` (or delete ``remove``'s label) in one transaction; with ``expect``, only when the one
        row's and annotator's stored label is ``expect``."""
        with closing(self._connect()) as conn, write_transaction(conn):
            if expect is not ANY:
                row_id, annotator = remove or rows[0][:2]
                found = conn.execute("SELECT label, time FROM annotations WHERE id = ? AND annotator = ?",
                                     (row_id, annotator)).fetchone()
                current, when = found if found else (None, None)
                if current != expect:
                    raise AnnotationConflict(row_id, annotator, current, when)
            if remove is not None:
                conn.execute("DELETE FROM annotations WHERE id = ? AND annotator = ?", remove)
            else:
                conn.executemany("INSERT OR REPLACE INTO annotations VALUES (?, ?, ?, ?, ?)", rows)

    def remove(self, row_id: str, *, annotator: str, expect: int | str | None | _Any = ANY) -> None:
        """Delete ``annotator``'s label for ``row_id`` (nothing happens when there is none). ``expect``: as for
        :meth:`add` (the label the caller believes it removes)."""
        expected = ANY if expect is ANY else self._expected(row_id, expect)
        self._write([], expect=expected, remove=(str(row_id), annotator.strip()))

    def settle(self, row_id: str, label: int | str | None, *, resolver: str, time: float | None = None) -> None:
        """Record that ``resolver`` settled ``row_id``'s gold label as ``label`` (a class name or index), replacing an
        earlier settlement; ``None`` removes the settlement. While it stands it is the row's human gold label,
        whatever the annotators gave (:meth:`resolve`)."""
        row_id = str(row_id)
        with closing(self._connect()) as conn:
            if label is None:
                conn.execute("DELETE FROM resolutions WHERE id = ?", (row_id,))
                return
            _annotator(resolver, what="a settlement needs a non-empty resolver name")
            conn.execute("INSERT OR REPLACE INTO resolutions VALUES (?, ?, ?, ?)",
                         (row_id, self._name(row_id, label), resolver.strip(),
                          _time.time() if time is None else float(time)))

    def resolutions(self) -> pl.DataFrame:
        """Every settlement: columns ``id, label`` (class index), ``resolver, time``, oldest first.

        Raises :class:`ProjectError` naming the row and resolver of a settlement to a class the schema lacks.
        """
        stored = pl.DataFrame(schema={**RESOLUTION_COLUMNS, "label": pl.String})
        if self.path.exists():
            with closing(self._connect()) as conn:
                rows = conn.execute("SELECT id, label, resolver, time FROM resolutions ORDER BY time, id").fetchall()
            stored = pl.DataFrame(rows, schema=stored.schema, orient="row")
        index = {name: i for i, name in enumerate(self.schema.names)}
        bad = stored.filter(~pl.col("label").is_in(list(index)))
        if bad.height:
            row = bad.row(0, named=True)
            raise ProjectError(f"{self.path}: the settlement of row id {row['id']!r} by {row['resolver']!r} is "
                               f"{row['label']!r}, which is not one of the classes {list(self.schema.names)}; add the "
                               "class back, or remove the settlement (AnnotationStore.settle(ID, None, ...))")
        return stored.with_columns(pl.col("label").replace_strict(index, return_dtype=pl.Int16))

    def stored(self) -> pl.DataFrame:
        """Every stored label as stored: columns ``id, annotator, label`` (class name), ``time, source``,
        oldest first; not checked against the schema (to find and remove labels it lacks)."""
        schema = {**COLUMNS, "label": pl.String}
        if not self.path.exists():
            return pl.DataFrame(schema=schema)
        with closing(self._connect()) as conn:
            rows = conn.execute(f"SELECT {', '.join(COLUMNS)} FROM annotations ORDER BY time, id, annotator").fetchall()
        return pl.DataFrame(rows, schema=schema, orient="row")

    def frame(self) -> pl.DataFrame:
        """Every stored label: columns ``id, annotator, label`` (class index), ``time, source``, oldest first.

        Raises :class:`ProjectError` naming the row id, annotator and label of a stored
        label that is not one of the schema's classes.
        """
        stored = self.stored()
        index = {name: i for i, name in enumerate(self.schema.names)}
        bad = stored.filter(~pl.col("label").is_in(list(index)))
        if bad.height:
            row = bad.row(0, named=True)
            raise ProjectError(
                f"{self.path}: the annotation of row id {row['id']!r} by {row['annotator']!r} is {row['label']!r}, "
                f"which is not one of the classes {list(self.schema.names)} ({bad.height} such annotation(s)); "
                "add the class back, or remove those annotations (AnnotationStore.remove; AnnotationStore.stored lists them)")
        return stored.with_columns(pl.col("label").replace_strict(index, return_dtype=pl.Int16))

    def resolve(self) -> tuple[dict[str, int], pl.DataFrame]:
        """Gold labels where the annotators of a row agree or a person settled it, and the rows where they disagree
        and nobody settled it.

        Returns
        -------
        gold
            ``{row id: class}``: the settled class of a settled row, else the class all of its annotators gave.
        conflicts
            One row per disagreeing, unsettled row id: ``id``, ``labels`` (sorted distinct classes),
            ``annotators`` (sorted names).
        """
        per_row = self.frame().group_by("id", maintain_order=True).agg(
            pl.col("label").unique().sort().alias("labels"), pl.col("annotator").sort().alias("annotators"))
        settled = self.resolutions()
        agreed = per_row.filter(pl.col("labels").list.len() == 1)
        gold = dict(zip(agreed["id"].to_list(), agreed["labels"].list.first().to_list()))
        gold.update(zip(settled["id"].to_list(), settled["label"].to_list()))
        return gold, per_row.filter((pl.col("labels").list.len() > 1) & ~pl.col("id").is_in(settled["id"].implode()))

    def disagreements(self, data_labels: dict[str, int] | None = None) -> pl.DataFrame:
        """Every row whose labels differ: annotators who gave different classes, or (with ``data_labels``,
        ``{row id: class}`` from the data file) annotators whose class differs from the data's label.

        Returns one row per such row id, oldest first: ``id``; ``labels``, a list of
        ``{annotator, label, time}`` (class index, newest label last); ``annotators_disagree``;
        ``data_label`` (class or null); ``settled`` (class or null), ``resolver`` and ``resolved_at``
        (null when unsettled).
        """
        data = pl.DataFrame({"id": list(data_labels or {}), "data_label": list((data_labels or {}).values())},
                            schema={"id": pl.String, "data_label": pl.Int16})
        per_row = self.frame().sort("time").join(data, on="id", how="left", maintain_order="left").group_by(
            "id", maintain_order=True).agg(
            pl.struct("annotator", "label", "time").alias("labels"),
            (pl.col("label").n_unique() > 1).alias("annotators_disagree"),
            (pl.col("label") != pl.col("data_label")).any().fill_null(False).alias("differs_from_data"),
            pl.col("data_label").first(), pl.col("time").min().alias("first"))
        settled = self.resolutions().select("id", pl.col("label").alias("settled"), "resolver",
                                            pl.col("time").alias("resolved_at"))
        return per_row.filter(pl.col("annotators_disagree") | pl.col("differs_from_data")).join(
            settled, on="id", how="left", maintain_order="left").sort("first", maintain_order=True).select(
            "id", "labels", "annotators_disagree", "data_label", "settled", "resolver", "resolved_at")


def _annotator(name: object, *, what: str = "an annotation needs a non-empty annotator name") -> None:
    if not isinstance(name, str) or not name.strip():
        raise ProjectError(f"{what}; got {name!r}")


def migrate_store(path: str | Path, classes: ClassSchema | Sequence[str]) -> int:
    """Rewrite a format-1 store (class indices) to class names, index ``i`` meaning ``classes[i]``.

    ``classes`` must be the classes in the order they had when the labels were given.
    Returns the number of labels migrated (0 when the store already holds names). The
    whole migration is one transaction: on any error the store is unchanged.
    """
    schema = classes if isinstance(classes, ClassSchema) else ClassSchema(tuple(classes))
    path = Path(path)
    if not path.is_file():
        raise ProjectError(f"no annotation store at {path}")
    with closing(sqlite3.connect(path, timeout=60, isolation_level=None)) as conn:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        return _prepare(conn, path, schema.names)


def _label_type(conn: sqlite3.Connection) -> str | None:
    cols = {row[1]: (row[2] or "").upper() for row in conn.execute("PRAGMA table_info(annotations)")}
    return cols.get("label") if cols else None


def _prepare(conn: sqlite3.Connection, path: Path, classes: Sequence[str] | None) -> int:
    """Create the tables of a new store, or migrate a format-1 one (see the module docstring)."""
    if _label_type(conn) == "TEXT":
        if not conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'resolutions'").fetchone():
            conn.execute(RESOLUTIONS)  # a store written before settlements were recorded
        return 0
    with write_transaction(conn):
        kind = _label_type(conn)  # again, now that no other writer can change it
        if kind is None:
            conn.execute(SCHEMA)
            conn.execute(RESOLUTIONS)
            conn.execute(META)
            conn.execute("INSERT OR REPLACE INTO meta VALUES ('format', ?)", (str(FORMAT),))
            return 0
        if kind == "TEXT":
            conn.execute(RESOLUTIONS)
            return 0
        if classes is None:
            recorded = None
            if conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'").fetchone():
                found = conn.execute("SELECT value FROM meta WHERE key = 'classes'").fetchone()
                recorded = None if found is None else json.loads(found[0])
            if recorded is None:
                raise ProjectError(
                    f"{path} holds human labels as class indices (written by an older labelflow) and does not "
                    "record the classes they index; migrate it with the classes in the order they had when the "
                    f"labels were given: python -m labelflow.annotations {path} --classes NAME,NAME,...")
            classes = [str(c) for c in recorded]
        rows = conn.execute("SELECT id, annotator, label, time, source FROM annotations").fetchall()
        out = []
        for row_id, annotator, label, when, source in rows:
            if not isinstance(label, int) or not 0 <= label < len(classes):
                raise ProjectError(f"{path}: the annotation of row id {row_id!r} by {annotator!r} is {label!r}, "
                                   f"not an index into the classes {list(classes)}; the store was not migrated")
            out.append((row_id, annotator, classes[label], when, source))
        conn.execute("ALTER TABLE annotations RENAME TO annotations_v1")
        conn.execute(SCHEMA)
        conn.executemany("INSERT INTO annotations VALUES (?, ?, ?, ?, ?)", out)
        conn.execute("DROP TABLE annotations_v1")
        conn.execute(RESOLUTIONS)
        conn.execute(META)
        conn.execute("INSERT OR REPLACE INTO meta VALUES ('format', ?)", (str(FORMAT),))
        conn.execute("INSERT OR REPLACE INTO meta VALUES ('migrated_from_classes', ?)", (json.dumps(list(classes)),))
        return len(out)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m labelflow.annotations STORE --classes A,B``: migrate a store of class indices to names."""
    parser = argparse.ArgumentParser(prog="python -m labelflow.annotations", description=main.__doc__)
    parser.add_argument("store", help="the annotations.sqlite file (in a project: store/annotations.sqlite)")
    parser.add_argument("--classes", required=True, help="comma-separated class names in the order they had "
                                                         "when the labels were given (index 0 first)")
    args = parser.parse_args(argv)
    try:
        n = migrate_store(args.store, [c.strip() for c in args.classes.split(",")])
    except LabelflowError as exc:
        print(f"labelflow: error: {exc}", file=sys.stderr)
        return 2
    print(f"{args.store}: {n} label(s) migrated to class names" if n else f"{args.store} already holds class names")
    return 0


if __name__ == "__main__":
    sys.exit(main())
