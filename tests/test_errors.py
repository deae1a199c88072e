"""labelflow.errors: every public exception class is defined there; explain: each known kind of failure from below
labelflow becomes one line naming the file and what to do; anything else gets None (and keeps its traceback in the
CLI)."""

from __future__ import annotations

import ast
import errno
import json
import sqlite3
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from labelflow import errors
from labelflow.io_errors import explain, involving

ROOT = Path(__file__).resolve().parents[1]


def test_every_public_exception_class_is_defined_in_errors_py():
    own = {name for name, value in vars(errors).items() if isinstance(value, type) and issubclass(value, BaseException)}
    elsewhere = []
    for path in sorted(p for folder in ("labelflow", "finetune", "app") for p in (ROOT / folder).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef) and not node.name.startswith("_") and path.name != "errors.py":
                bases = {b.id if isinstance(b, ast.Name) else getattr(b, "attr", "") for b in node.bases}
                if any(b in own or b.endswith(("Error", "Exception")) for b in bases):
                    elsewhere.append(f"{path.relative_to(ROOT)}: {node.name}")
    assert elsewhere == []


def raised(fn):
    try:
        fn()
    except Exception as exc:  # the test inspects whatever was raised
        return exc
    raise AssertionError("nothing raised")


def one_line(message: str | None) -> str:
    assert message is not None and "\n" not in message
    return message


@pytest.mark.parametrize("number", [errno.ENOSPC, errno.EDQUOT, errno.EFBIG])
def test_a_full_disk_names_the_file_being_written(tmp_path, number):
    def write():
        with involving(tmp_path / "store" / "matrix.parquet"):
            raise OSError(number, "No space left on device", str(tmp_path / ".x.parquet.1a2b3c4d.labelflow-tmp"))

    message = one_line(explain(raised(write)))
    assert message.startswith(f"{tmp_path / 'store' / 'matrix.parquet'}: ")
    assert "disk is full" in message and "free some space" in message


def test_a_full_disk_in_polars_text_is_recognised(tmp_path):
    exc = pl.exceptions.ComputeError("parquet: File out of specification: underlying IO error: "
                                     "No space left on device (os error 28)")
    setattr(exc, "labelflow_file", str(tmp_path / "out.parquet"))
    assert "disk is full" in one_line(explain(exc))
    assert "disk is full" in one_line(explain(OSError("No space left on device (os error 28)")))


def test_a_temporary_file_name_is_reported_as_its_target(tmp_path):
    exc = OSError(errno.ENOSPC, "No space left on device", str(tmp_path / ".labels.csv.0f1e2d3c.labelflow-tmp"))
    assert one_line(explain(exc)).startswith(f"{tmp_path / 'labels.csv'}: ")


@pytest.mark.parametrize("number", [errno.EROFS, errno.EACCES, errno.EPERM])
def test_a_read_only_file_or_folder(tmp_path, number):
    message = one_line(explain(OSError(number, "Read-only file system", str(tmp_path / "a.npz"))))
    assert str(tmp_path / "a.npz") in message and "read-only" in message and "writable" in message


@pytest.mark.parametrize("number, words", [(errno.ENOENT, "no such file"), (errno.EISDIR, "a folder where a file"),
                                           (errno.ENOTDIR, "not a folder"), (errno.EEXIST, "already exists")])
def test_path_errors_name_the_path(tmp_path, number, words):
    message = one_line(explain(OSError(number, "strerror", str(tmp_path / "x"))))
    assert message.startswith(f"{tmp_path / 'x'}: strerror (") and words in message


def test_path_errors_without_a_path_are_not_explained():
    assert explain(OSError(errno.ENOENT, "No such file or directory")) is None
    assert explain(OSError(errno.ECONNREFUSED, "Connection refused")) is None


def test_sqlite_full_read_only_locked_and_damaged(tmp_path):
    path = tmp_path / "store" / "annotations.sqlite"
    for text, words in (("database or disk is full", "disk is full"), ("attempt to write a readonly database", "read-only"),
                        ("database is locked", "locked")):
        exc = sqlite3.OperationalError(text)
        setattr(exc, "labelflow_file", str(path))
        assert words in one_line(explain(exc))
    path.parent.mkdir()
    path.write_bytes(b"not a database at all" * 100)

    def read(path=path):  # noqa: ARG001 - a local named path, as the store's readers hold
        sqlite3.connect(path).execute("select * from sqlite_master").fetchall()

    message = one_line(explain(raised(lambda: read())))
    assert message.startswith(f"{path}: file is not a database (it is damaged")
    assert "gold labels" in message and "backup" in message


def test_cannot_rollback_reports_the_full_disk_beneath_it():
    def commit():
        try:
            raise sqlite3.OperationalError("database or disk is full")
        except sqlite3.OperationalError:
            raise sqlite3.OperationalError("cannot rollback - no transaction is active")  # noqa: B904

    assert "disk is full" in one_line(explain(raised(commit)))
    assert explain(sqlite3.OperationalError("cannot rollback - no transaction is active")) is None


def test_sqlite_errors_that_are_bugs_are_not_explained():
    assert explain(sqlite3.IntegrityError("UNIQUE constraint failed")) is None
    assert explain(sqlite3.ProgrammingError("Cannot operate on a closed database.")) is None
    assert explain(sqlite3.OperationalError('near "SELEC": syntax error')) is None


def test_a_damaged_parquet_file_names_it_and_the_step_that_rebuilds_it(tmp_path):
    path = tmp_path / "store" / "matrix.parquet"
    path.parent.mkdir()
    pl.DataFrame({"id": ["a"], "lf": [1]}).write_parquet(path)
    path.write_bytes(path.read_bytes()[:30])

    def load(path=path):
        return pl.read_parquet(path)

    message = one_line(explain(raised(lambda: load())))
    assert message.startswith(f"{path}: ") and "damaged" in message and "labelflow apply" in message


def test_a_damaged_npz_names_it(tmp_path):
    path = tmp_path / "store" / "models" / "labelflow.npz"
    path.parent.mkdir(parents=True)
    with open(path, "wb") as fh:
        np.savez(fh, x=np.arange(1000))
    path.write_bytes(path.read_bytes()[:200])

    def load(path=path):
        with np.load(path) as npz:
            return npz["x"]

    message = one_line(explain(raised(lambda: load())))
    assert message.startswith(f"{path}: ") and "labelflow fit" in message


def test_damaged_json_and_text_name_the_file(tmp_path):
    path = tmp_path / "labelflow.json"
    path.write_bytes(b"{\xff")

    def read_json(path=path):
        return json.loads(path.read_text(encoding="latin-1"))

    def read_text(path=path):
        return path.read_text(encoding="utf-8")

    assert one_line(explain(raised(lambda: read_json()))).startswith(f"{path}: ")
    assert "labelflow init" in explain(raised(lambda: read_json()))
    assert one_line(explain(raised(lambda: read_text()))).startswith(f"{path}: ")


def test_errors_of_no_known_kind_are_not_explained(tmp_path):
    path = tmp_path / "x.parquet"
    path.write_text("x")

    def bug(path=path):
        return {}["missing key"]

    assert explain(raised(lambda: bug())) is None  # a KeyError outside a file reader: a bug
    assert explain(ValueError("bad value")) is None
    assert explain(pl.exceptions.ComputeError("cannot compare string with numeric type")) is None
    assert explain(RuntimeError("boom")) is None


def test_involving_keeps_the_innermost_file(tmp_path):
    def nested():
        with involving(tmp_path / "outer"), involving(tmp_path / "inner"):
            raise OSError(errno.ENOSPC, "No space left on device")

    assert one_line(explain(raised(nested))).startswith(f"{tmp_path / 'inner'}: ")


def test_a_failed_write_on_a_nearly_full_disk_is_a_full_disk(tmp_path, monkeypatch):
    import shutil

    def write():
        with involving(tmp_path / "matrix.parquet", writing=True):
            raise pl.exceptions.ComputeError("parquet: File out of specification: Invalid thrift: transport error")

    assert explain(raised(write)) is None  # space is free: a write failing for no reason seen is not explained
    monkeypatch.setattr(shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(10**9, 10**9 - 100, 100))
    message = one_line(explain(raised(write)))
    assert message.startswith(f"{tmp_path / 'matrix.parquet'}: ") and "disk is full" in message


def test_sqlite_unable_to_open_in_a_read_only_folder(tmp_path, monkeypatch):
    import os

    path = tmp_path / "store" / "annotations.sqlite"
    path.parent.mkdir()
    sqlite3.connect(path).close()
    exc = sqlite3.OperationalError("unable to open database file")
    setattr(exc, "labelflow_file", str(path))
    assert "SQLite cannot open it" in one_line(explain(exc))
    monkeypatch.setattr(os, "access", lambda path, mode: False)
    assert "read-only" in one_line(explain(exc))


def test_a_frame_holding_several_files_names_none_of_them(tmp_path):
    first, second = tmp_path / "dataset.parquet", tmp_path / "emb.parquet"
    for path in (first, second):
        path.write_bytes(b"PAR1 not parquet")

    def read_two(path=first, output=second):
        pl.read_parquet(output)

    def read_one(label_file=second):
        pl.read_parquet(label_file)

    assert explain(raised(lambda: read_two())) is None  # rather than blame dataset.parquet for emb.parquet
    assert one_line(explain(raised(lambda: read_one()))).startswith(f"{second}: ")


def test_a_write_error_that_reads_like_a_damaged_file_is_not_called_one(tmp_path, monkeypatch):
    import os
    import shutil

    # a stand-in for polars' writer: a function named write_* in a file of the polars package
    code = compile("def write_parquet(path):\n    raise ComputeError('parquet: File out of specification: "
                   "Invalid thrift: transport error')\n", os.path.join(os.path.dirname(pl.__file__), "_w.py"), "exec")
    library = {"ComputeError": pl.exceptions.ComputeError}
    exec(code, library)
    out = tmp_path / "out.parquet"
    out.write_bytes(b"an old file")

    def write(path=out):
        library["write_parquet"](path)

    assert explain(raised(lambda: write())) is None  # not "damaged": it was a write, failing for no reason seen
    monkeypatch.setattr(shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(10**9, 10**9, 0))
    assert "disk is full" in one_line(explain(raised(lambda: write())))
