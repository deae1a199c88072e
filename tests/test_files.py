"""labelflow.files: atomic writes keep the umask's mode or the replaced file's, name their temporary files
recognisably, and sweep the ones a killed run left behind."""

from __future__ import annotations

import errno
import os
import time

import polars as pl
import pytest

from labelflow.io_errors import explain
from labelflow.files import (STALE_SECONDS, TEMP_SUFFIX, atomic_path, sweep_stale, target_of, temp_name, write_json,
                          write_parquet_parts)


@pytest.fixture
def umask():
    """Set the process umask for the test; restored after."""
    old = os.umask(0o022)
    os.umask(old)

    def set_(mask: int) -> None:
        os.umask(mask)

    yield set_
    os.umask(old)


def mode(path) -> int:
    return os.stat(path).st_mode & 0o777


@pytest.mark.parametrize("mask, want", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_a_new_file_gets_the_mode_the_umask_gives(tmp_path, umask, mask, want):
    umask(mask)
    write_json(tmp_path / "a.json", {"x": 1})
    with atomic_path(tmp_path / "b.parquet") as tmp:
        pl.DataFrame({"x": [1]}).write_parquet(tmp)
    write_parquet_parts(tmp_path / "c.parquet", (pl.DataFrame({"x": [i]}) for i in range(3)))
    assert [mode(tmp_path / n) for n in ("a.json", "b.parquet", "c.parquet")] == [want] * 3


def test_a_replaced_file_keeps_its_mode(tmp_path, umask):
    umask(0o077)
    path = tmp_path / "suite.py"
    path.write_text("old")
    os.chmod(path, 0o640)
    with atomic_path(path) as tmp:
        tmp.write_text("new")
    assert path.read_text() == "new" and mode(path) == 0o640


def test_the_body_may_replace_the_temporary_file(tmp_path, umask):
    umask(0o022)
    part = tmp_path / "part"
    part.write_text("x")
    os.chmod(part, 0o600)
    with atomic_path(tmp_path / "out.txt") as tmp:
        os.replace(part, tmp)
    assert mode(tmp_path / "out.txt") == 0o644


def test_temporary_names_are_recognisable_and_map_back(tmp_path):
    tmp = temp_name(tmp_path / "matrix.parquet")
    assert tmp.parent == tmp_path and tmp.name.startswith(".matrix.parquet.") and tmp.name.endswith(TEMP_SUFFIX)
    assert target_of(tmp) == tmp_path / "matrix.parquet"
    assert target_of(tmp_path / "matrix.parquet") is None
    with atomic_path(tmp_path / "x.csv") as tmp:
        assert tmp.name.endswith(TEMP_SUFFIX)
    assert not list(tmp_path.glob(f"*{TEMP_SUFFIX}"))


def test_stale_temporary_files_are_swept_on_the_next_write(tmp_path):
    old = time.time() - STALE_SECONDS - 60
    stale = [tmp_path / ".matrix.parquet.0a1b2c3d.labelflow-tmp", tmp_path / ".votes.npz.ab12cd34.tmp"]
    for path in stale:
        path.write_text("half")
        os.utime(path, (old, old))
    parts = tmp_path / ".d.parquet.99887766.labelflow-tmp"
    (parts / "sub").mkdir(parents=True)
    (parts / "sub" / "part-00000.parquet").write_text("x")
    os.utime(parts, (old, old))
    fresh = tmp_path / ".matrix.parquet.11112222.labelflow-tmp"  # a write running in another process now
    fresh.write_text("being written")
    mine = [tmp_path / ".notes.tmp", tmp_path / "keep.tmp", tmp_path / ".a.labelflow-tmp.txt"]  # not labelflow's
    for path in mine:
        path.write_text("the user's")
        os.utime(path, (old, old))
    with atomic_path(tmp_path / "matrix.parquet") as tmp:
        tmp.write_text("new")
    assert not any(p.exists() for p in [*stale, parts])
    assert fresh.exists() and all(p.exists() for p in mine)


def test_sweep_stale_of_a_missing_folder_is_a_no_op(tmp_path):
    assert sweep_stale(tmp_path / "nowhere") == []


def test_writing_onto_a_folder_says_so_naming_it(tmp_path):
    (tmp_path / "out").mkdir()
    with pytest.raises(IsADirectoryError) as info:
        with atomic_path(tmp_path / "out") as tmp:
            tmp.write_text("x")
    assert info.value.filename == str(tmp_path / "out")
    assert explain(info.value).startswith(f"{tmp_path / 'out'}: ")
    assert not list(tmp_path.glob(f".*{TEMP_SUFFIX}"))


def test_an_error_in_the_body_names_the_target_and_leaves_nothing(tmp_path):
    with pytest.raises(OSError) as info:
        with atomic_path(tmp_path / "labels.csv"):
            raise OSError(errno.ENOSPC, "No space left on device")
    assert explain(info.value).startswith(f"{tmp_path / 'labels.csv'}: No space left on device (writing it failed")
    assert list(tmp_path.iterdir()) == []
