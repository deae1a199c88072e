"""The CLI on bad input and damaged projects: one line ``labelflow: error: ...`` naming the file, never a traceback.

The quick subset of ``bench/robustness.py`` runs every command it covers as a subprocess over a corrupted copy of
a tiny project; the unit tests below drive :func:`labelflow.cli.main` with each kind of failure it maps.
"""

from __future__ import annotations

import errno
import importlib.util
import sqlite3
import sys
import zipfile
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from labelflow import cli

REPO = Path(__file__).resolve().parents[1]


def load_bench():
    spec = importlib.util.spec_from_file_location("bench_robustness", REPO / "bench" / "robustness.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_quick_cases_give_clear_errors_and_no_traceback_or_hang(capsys):
    bench = load_bench()
    out = bench.main(bench.make_parser().parse_args(["--fast", "--jobs", "2", "--timeout", "45"]))
    report = out["report"]
    failing = [f"{r.outcome} {r.case.name} [{r.owner}]: {r.detail}" for r in out["results"]
               if r.outcome in bench.FAILING]
    assert report["cases"] == len(bench.FAST) and not failing, "\n".join(failing)


def test_the_bench_has_a_hundred_cases_over_every_command():
    bench = load_bench()
    cases = bench.cases()
    assert len(cases) >= 100 and len({c.name for c in cases}) == len(cases)
    commands = {c.argv.split()[0] for c in cases if c.argv}
    assert {"init", "apply", "fit", "summary", "export", "analyze", "fm", "studio", "ui", "finetune", "predict",
            "bench", "trust"} <= commands
    assert bench.FAST <= {c.name for c in cases}


# --- main() maps each known kind of failure to one line ----------------------------------------------------


def run_main(monkeypatch, capsys, tmp_path, fail) -> tuple[int, str]:
    """``labelflow summary`` with a command that calls ``fail()``; returns the exit status and stderr."""
    monkeypatch.setitem(cli.COMMANDS, "summary", lambda args: fail())
    rc = cli.main(["summary", "-p", str(tmp_path)])
    err = capsys.readouterr().err
    return rc, err


def assert_one_line(rc: int, err: str, *words: str) -> None:
    assert rc == 2 and err.count("\n") == 1 and err.startswith("labelflow: error: "), err
    assert "Traceback" not in err
    for word in words:
        assert word in err, err


def test_a_full_disk(monkeypatch, capsys, tmp_path):
    from labelflow.files import atomic_path

    def fail():
        with atomic_path(tmp_path / "store" / "matrix.parquet"):
            raise OSError(errno.ENOSPC, "No space left on device")

    assert_one_line(*run_main(monkeypatch, capsys, tmp_path, fail), "matrix.parquet", "disk is full")


def test_a_full_disk_under_sqlites_cannot_rollback(monkeypatch, capsys, tmp_path):
    def fail():
        try:
            raise sqlite3.OperationalError("database or disk is full")
        except sqlite3.OperationalError:
            raise sqlite3.OperationalError("cannot rollback - no transaction is active")  # noqa: B904

    assert_one_line(*run_main(monkeypatch, capsys, tmp_path, fail), "disk is full", "free some space")


@pytest.mark.parametrize("number", [errno.EROFS, errno.EACCES])
def test_a_read_only_project(monkeypatch, capsys, tmp_path, number):
    path = tmp_path / "store" / "models" / "labelflow.npz"

    def fail():
        raise OSError(number, os_strerror(number), str(path))

    assert_one_line(*run_main(monkeypatch, capsys, tmp_path, fail), str(path), "read-only")


def os_strerror(number: int) -> str:
    import os

    return os.strerror(number)


def test_a_read_only_sqlite_store(monkeypatch, capsys, tmp_path):
    path = tmp_path / "store" / "annotations.sqlite"
    path.parent.mkdir()
    sqlite3.connect(path).close()

    def fail(path=path):
        raise sqlite3.OperationalError("attempt to write a readonly database")

    assert_one_line(*run_main(monkeypatch, capsys, tmp_path, lambda: fail()), str(path), "read-only")


def test_a_damaged_sqlite_store(monkeypatch, capsys, tmp_path):
    path = tmp_path / "store" / "annotations.sqlite"
    path.parent.mkdir()
    path.write_bytes(b"garbage" * 1000)

    def fail(path=path):
        sqlite3.connect(path).execute("select 1 from sqlite_master").fetchall()

    assert_one_line(*run_main(monkeypatch, capsys, tmp_path, lambda: fail()), str(path), "backup")


def test_a_damaged_parquet_file(monkeypatch, capsys, tmp_path):
    path = tmp_path / "store" / "dataset.parquet"
    path.parent.mkdir()
    path.write_bytes(b"PAR1 and then nothing")

    def fail(path=path):
        pl.read_parquet(path)

    assert_one_line(*run_main(monkeypatch, capsys, tmp_path, lambda: fail()), str(path), "labelflow init")


def test_a_damaged_npz_file(monkeypatch, capsys, tmp_path):
    path = tmp_path / "store" / "models" / "labelflow.npz"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"PK\x03\x04 truncated")

    def fail(path=path):
        np.load(path)["x"]

    rc, err = run_main(monkeypatch, capsys, tmp_path, lambda: fail())
    assert_one_line(rc, err, str(path), "labelflow fit")
    assert issubclass(zipfile.BadZipFile, cli._OUTSIDE_ERRORS)


def test_a_path_error_naming_its_path(monkeypatch, capsys, tmp_path):
    def fail():
        raise IsADirectoryError(errno.EISDIR, "Is a directory", str(tmp_path / "out"))

    assert_one_line(*run_main(monkeypatch, capsys, tmp_path, fail), str(tmp_path / "out"), "folder")


@pytest.mark.parametrize("exc", [KeyError("a bug"), ValueError("a bug"), OSError(errno.ENOENT, "No such file"),
                                 sqlite3.IntegrityError("UNIQUE constraint failed"), RuntimeError("a bug"),
                                 pl.exceptions.ComputeError("a bug in an expression")])
def test_an_error_of_no_known_kind_keeps_its_traceback(monkeypatch, capsys, tmp_path, exc):
    def fail():
        raise exc

    monkeypatch.setitem(cli.COMMANDS, "summary", lambda args: fail())
    with pytest.raises(type(exc)):
        cli.main(["summary", "-p", str(tmp_path)])


def test_a_closed_stdout_pipe_ends_quietly(monkeypatch, capsys, tmp_path):
    def fail():
        raise BrokenPipeError(errno.EPIPE, "Broken pipe")

    rc, err = run_main(monkeypatch, capsys, tmp_path, fail)
    assert rc == 141 and err == ""
