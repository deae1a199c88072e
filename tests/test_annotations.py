"""Human annotations: the SQLite store, conflicts, project gold, killed and concurrent writers."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from contextlib import closing

import numpy as np
import pytest

from labelflow.annotations import AnnotationStore
from labelflow.errors import ProjectError


def test_store_replaces_per_annotator_and_reports_conflicts(tmp_path):
    store = AnnotationStore(tmp_path / "a.sqlite", ["HAM", "SPAM"])
    assert store.frame().is_empty() and store.resolve()[0] == {}
    store.add("r1", 1, annotator="ann", time=1.0)
    store.add("r1", 0, annotator="ann", time=2.0)  # ann changes her mind: one row, the new label
    store.add("r2", 1, annotator="ann", time=3.0)
    store.add("r2", 1, annotator="bob", time=4.0, source="label-studio")
    store.add("r3", 0, annotator="ann", time=5.0)
    store.add("r3", 1, annotator="bob", time=6.0)
    assert store.frame().rows() == [("r1", "ann", 0, 2.0, "app"), ("r2", "ann", 1, 3.0, "app"),
                                    ("r2", "bob", 1, 4.0, "label-studio"), ("r3", "ann", 0, 5.0, "app"),
                                    ("r3", "bob", 1, 6.0, "app")]
    gold, conflicts = store.resolve()
    assert gold == {"r1": 0, "r2": 1}
    assert conflicts.rows() == [("r3", [0, 1], ["ann", "bob"])]
    store.remove("r3", annotator="bob")
    assert store.resolve()[0] == {"r1": 0, "r2": 1, "r3": 0}
    with pytest.raises(ProjectError, match="non-empty annotator"):
        store.add("r1", 1, annotator=" ")


def test_project_gold_uses_annotations(project):
    dataset = project.dataset()
    ids = dataset.frame["id"].to_list()
    assert (project.gold() == dataset.gold()).all()
    assert project.gold()[ids.index("t1")] == -1  # train labels are hidden
    project.annotate("t1", "HAM", annotator="ann")
    project.annotate("d0", 0, annotator="ann")  # overrides the data's label (1)
    gold = project.gold()
    assert gold[ids.index("t1")] == 0 and gold[ids.index("d0")] == 0
    project.apply()
    project.fit()
    summary = {r["lf"]: r for r in project.summary("dev").to_dicts()}
    assert (summary["kw_sub"]["correct"], summary["kw_sub"]["incorrect"]) == (0, 1)  # d0 is HAM now
    assert project.evaluate(project.label_model())["dev"]["accuracy"] == 0.75
    project.annotate("d0", None, annotator="ann")
    assert project.gold()[ids.index("d0")] == 1
    assert {r["lf"]: r for r in project.summary("dev").to_dicts()}["kw_sub"]["correct"] == 1
    exported = project.export(project.root / "out.parquet")
    assert exported.filter(exported["id"] == "t1")["label"].to_list() == [0]


@pytest.mark.parametrize(("row_id", "label", "message"), [
    ("gone", 1, "no row with id 'gone'"),
    ("d0", "EGGS", r"label for row 'd0' must be one of \['HAM', 'SPAM'\]"),
    ("d0", 2, "0..1; got 2"),
])
def test_project_annotate_rejects_bad_input(project, row_id, label, message):
    with pytest.raises(ProjectError, match=message):
        project.annotate(row_id, label, annotator="ann")
    assert project.annotations.frame().is_empty()


WRITER = textwrap.dedent("""
    import sys
    from labelflow.annotations import AnnotationStore
    store = AnnotationStore(sys.argv[1], ["HAM", "SPAM"])
    for i in range(int(sys.argv[3])):
        store.add(f"row{i}", i % 2, annotator=sys.argv[2])
        print(i, flush=True)
""")


def test_concurrent_writers_lose_nothing(tmp_path):
    """Two processes labeling at the same time: every label of both is stored."""
    path = tmp_path / "a.sqlite"
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(path), name, "150"], stdout=subprocess.DEVNULL)
             for name in ("ann", "bob")]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    frame = AnnotationStore(path, ["HAM", "SPAM"]).frame()
    assert frame.height == 300 and sorted(set(frame["annotator"])) == ["ann", "bob"]


def test_killed_writer_keeps_every_acknowledged_label(tmp_path):
    """SIGKILL while labeling: each label whose add() returned is on disk and the file is intact."""
    path = tmp_path / "a.sqlite"
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path), "ann", "100000"], stdout=subprocess.PIPE,
                            text=True, start_new_session=True)
    acknowledged = -1
    deadline = time.monotonic() + 60
    while acknowledged < 30 and time.monotonic() < deadline:
        acknowledged = int(proc.stdout.readline())
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert acknowledged >= 30
    stored = AnnotationStore(path, ["HAM", "SPAM"]).frame()
    assert stored.height >= acknowledged + 1
    assert np.array_equal(stored.sort("time")["id"].head(acknowledged + 1).to_numpy(),
                          np.array([f"row{i}" for i in range(acknowledged + 1)]))
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)


# --- issue 14, item 2: labels are stored as class names -----------------------------------------------


def _reinit(project, project_files, classes):
    from labelflow.project import Project

    return Project.init(project.root, sources={s: [project_files[s]] for s in ("train", "dev", "test")},
                        classes=classes, id="id", label="label", hide_labels=["train"], lfs=project_files["suite"],
                        label_model="majority_vote")


def test_item2_reinit_with_the_classes_in_another_order_keeps_every_human_label(project, project_files):
    project.annotate("t1", "HAM", annotator="ann")
    project.annotate("t0", 1, annotator="ann")  # SPAM by index
    again = _reinit(project, project_files, ["SPAM", "HAM"])
    ids = again.dataset().frame["id"].to_list()
    gold = again.gold()
    assert (gold[ids.index("t1")], gold[ids.index("t0")]) == (1, 0)  # HAM and SPAM in the new order
    assert again.annotations.stored()["label"].to_list() == ["HAM", "SPAM"]
    again.apply()
    again.fit()
    exported = again.export(again.root / "out.parquet")
    assert dict(zip(exported["id"], exported["label"]))["t1"] == 1


def test_item2_an_annotation_outside_the_schema_is_refused_on_read(project, project_files):
    project.annotate("d0", "SPAM", annotator="ann")
    again = _reinit(project, project_files, ["HAM", "EGGS"])  # SPAM is gone
    again.apply()
    with pytest.raises(ProjectError, match=r"row id 'd0' by 'ann' is 'SPAM', which is not one of the classes "
                                           r"\['HAM', 'EGGS'\]"):
        again.gold()
    with pytest.raises(ProjectError, match="row id 'd0'"):
        again.fit()
    assert not (again.root / "out.parquet").exists()
    again.annotations.remove("d0", annotator="ann")  # the way out: remove it (or add the class back)
    again.fit()
    again.export(again.root / "out.parquet")


def test_item2_labels_outside_the_schema_are_refused_on_write(tmp_path):
    store = AnnotationStore(tmp_path / "a.sqlite", ["HAM", "SPAM"])
    for bad in ("EGGS", 2, -1, True, 1.0, None):
        with pytest.raises(ProjectError, match=r"must be one of \['HAM', 'SPAM'\] or 0..1"):
            store.put([("r1", "ann", bad, 1.0, "app")])
    assert store.frame().is_empty()


def _old_store(path, rows, classes=None):
    """A store as labelflow wrote it before names: label INTEGER, optionally with its classes recorded."""
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE annotations (id TEXT NOT NULL, annotator TEXT NOT NULL, label INTEGER NOT NULL, "
                     "time REAL NOT NULL, source TEXT NOT NULL, PRIMARY KEY (id, annotator)) WITHOUT ROWID")
        conn.executemany("INSERT INTO annotations VALUES (?, ?, ?, ?, ?)", rows)
        if classes is not None:
            conn.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
            conn.execute("INSERT INTO meta VALUES ('classes', ?)", (json.dumps(classes),))


OLD_ROWS = [("r1", "ann", 0, 1.0, "app"), ("r2", "ann", 1, 2.0, "label-studio")]


def test_item2_an_old_index_store_is_migrated_with_the_classes_it_recorded(tmp_path):
    path = tmp_path / "a.sqlite"
    _old_store(path, OLD_ROWS, classes=["SPAM", "HAM"])
    store = AnnotationStore(path, ["HAM", "SPAM"])
    assert store.frame().rows() == [("r1", "ann", 1, 1.0, "app"), ("r2", "ann", 0, 2.0, "label-studio")]
    assert store.stored()["label"].to_list() == ["SPAM", "HAM"]


def test_item2_an_old_index_store_without_its_classes_is_refused_until_migrated(tmp_path):
    path = tmp_path / "a.sqlite"
    _old_store(path, OLD_ROWS)
    store = AnnotationStore(path, ["HAM", "SPAM"])
    for call in (store.frame, store.resolve, lambda: store.add("r3", 0, annotator="bob")):
        with pytest.raises(ProjectError, match=r"holds human labels as class indices .* python -m "
                                               r"labelflow\.annotations .* --classes"):
            call()
    with closing(sqlite3.connect(path)) as conn:  # untouched
        assert conn.execute("SELECT * FROM annotations ORDER BY id").fetchall() == OLD_ROWS
    # an index outside the classes given: refused, store unchanged
    done = subprocess.run([sys.executable, "-m", "labelflow.annotations", str(path), "--classes", "HAM"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stderr.startswith("labelflow: error: ")
    done = subprocess.run([sys.executable, "-m", "labelflow.annotations", str(path), "--classes", "SPAM,HAM,EGGS"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "2 label(s) migrated" in done.stdout
    assert store.frame().rows() == [("r1", "ann", 1, 1.0, "app"), ("r2", "ann", 0, 2.0, "label-studio")]


# --- issue 16, point 2: every annotator's label, settlements, no silent overwrite ---------------------------------


def test_a_settlement_decides_a_disputed_row_and_is_recorded_with_who_and_when(tmp_path):
    store = AnnotationStore(tmp_path / "a.sqlite", ["HAM", "SPAM"])
    store.add("r1", "HAM", annotator="ann", time=1.0)
    store.add("r1", "SPAM", annotator="bob", time=2.0)
    store.add("r2", "SPAM", annotator="ann", time=3.0)
    assert store.resolve()[0] == {"r2": 1}
    store.settle("r1", "SPAM", resolver=" carl ", time=4.0)
    assert store.resolutions().rows() == [("r1", 1, "carl", 4.0)]
    gold, conflicts = store.resolve()
    assert gold == {"r2": 1, "r1": 1} and conflicts.is_empty()
    assert store.frame().height == 3  # the annotators' labels stay as they gave them
    store.settle("r2", 0, resolver="carl", time=5.0)  # a settlement stands over agreeing annotators too
    assert store.resolve()[0] == {"r1": 1, "r2": 0}
    store.settle("r1", None, resolver="carl")
    assert store.resolve()[0] == {"r2": 0} and store.resolve()[1]["id"].to_list() == ["r1"]
    with pytest.raises(ProjectError, match="non-empty resolver"):
        store.settle("r1", 0, resolver="")
    with pytest.raises(ProjectError, match=r"must be one of \['HAM', 'SPAM'\]"):
        store.settle("r1", "EGGS", resolver="carl")


def test_disagreements_list_annotators_who_differ_and_labels_that_replaced_the_datas(tmp_path):
    store = AnnotationStore(tmp_path / "a.sqlite", ["HAM", "SPAM"])
    store.add("r1", 0, annotator="ann", time=1.0)
    store.add("r1", 1, annotator="bob", time=2.0)
    store.add("r2", 1, annotator="ann", time=3.0)  # the data says HAM
    store.add("r3", 0, annotator="ann", time=4.0)  # agrees with the data
    store.add("r4", 1, annotator="ann", time=5.0)  # no data label
    store.settle("r1", 0, resolver="carl", time=6.0)
    found = store.disagreements({"r2": 0, "r3": 0})
    assert found.select("id", "annotators_disagree", "data_label", "settled", "resolver").rows() == [
        ("r1", True, None, 0, "carl"), ("r2", False, 0, None, None)]
    assert found["labels"][0].to_list() == [{"annotator": "ann", "label": 0, "time": 1.0},
                                            {"annotator": "bob", "label": 1, "time": 2.0}]


def test_a_label_given_against_a_stale_view_is_refused_and_nothing_is_written(tmp_path):
    from labelflow.annotations import AnnotationConflict

    store = AnnotationStore(tmp_path / "a.sqlite", ["HAM", "SPAM"])
    store.add("r1", "HAM", annotator="ann", time=1.0, expect=None)  # the first tab
    with pytest.raises(AnnotationConflict, match="row 'r1' now has the label 'HAM' from 'ann'") as caught:
        store.add("r1", "SPAM", annotator="ann", expect=None)  # the second tab still showed it unlabelled
    assert (caught.value.current, caught.value.time) == ("HAM", 1.0)
    store.add("r1", "SPAM", annotator="bob", time=1.5, expect=None)  # another annotator keeps their own label
    store.add("r1", 1, annotator="ann", expect="HAM", time=2.0)  # a change from what was shown
    with pytest.raises(AnnotationConflict):
        store.remove("r1", annotator="ann", expect=0)
    assert store.frame().select("id", "annotator", "label").rows() == [("r1", "bob", 1), ("r1", "ann", 1)]
    store.remove("r1", annotator="ann", expect="SPAM")
    with pytest.raises(AnnotationConflict, match="now has no label"):
        store.add("r1", 0, annotator="ann", expect="SPAM")
    assert store.frame().select("annotator").to_series().to_list() == ["bob"]


def test_a_store_from_before_settlements_gains_the_table_and_keeps_its_labels(tmp_path):
    path = tmp_path / "a.sqlite"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE annotations (id TEXT NOT NULL, annotator TEXT NOT NULL, label TEXT NOT NULL, "
                     "time REAL NOT NULL, source TEXT NOT NULL, PRIMARY KEY (id, annotator)) WITHOUT ROWID")
        conn.execute("INSERT INTO annotations VALUES ('r1', 'ann', 'SPAM', 1.0, 'app')")
    store = AnnotationStore(path, ["HAM", "SPAM"])
    assert store.resolutions().is_empty() and store.resolve()[0] == {"r1": 1}
    store.settle("r1", "HAM", resolver="carl")
    assert store.resolve()[0] == {"r1": 0}


def test_project_settle_checks_the_row_and_gold_follows_it(project):
    ids = project.dataset().frame["id"].to_list()
    project.annotate("d0", "HAM", annotator="ann")
    project.annotate("d0", "SPAM", annotator="bob")
    assert project.gold()[ids.index("d0")] == 1  # disputed: the data's label (SPAM)
    project.settle("d0", "HAM", resolver="carl")
    assert project.gold()[ids.index("d0")] == 0
    with pytest.raises(ProjectError, match="no row with id 'gone'.*the settlement was not saved"):
        project.settle("gone", 0, resolver="carl")
