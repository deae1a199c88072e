"""Tiny shared fixtures: a 4-row frame, a 2-class schema, the shipped YouTube data."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from labelflow import load_dataset

REPO = Path(__file__).resolve().parents[1]
YOUTUBE = REPO / "data" / "youtube"
HAM, SPAM = 0, 1


@pytest.fixture
def tiny_frame() -> pl.DataFrame:
    """Four comments with an author and a nullable numeric column."""
    return pl.DataFrame(
        {
            "id": ["a", "b", "c", "d"],
            "text": ["Check out my channel!", "I love this song", "FREE cash at www.win.com", "mystery song"],
            "author": ["bot1", "ann", "bot2", "bob"],
            "likes": [3, 120, None, 45],
        }
    )


@pytest.fixture
def tiny_dataset(tiny_frame):
    return load_dataset(tiny_frame, classes=["HAM", "SPAM"], id="id")


@pytest.fixture(scope="session")
def youtube():
    """All five YouTube files: 1,956 rows, 1,953 once the three exact duplicates are dropped."""
    files = sorted(YOUTUBE.glob("Youtube0*.csv"))
    return load_dataset(files, classes=["HAM", "SPAM"], text="CONTENT", id="COMMENT_ID", label="label",
                        duplicates="drop_identical")


@pytest.fixture
def write_csv(tmp_path):
    """Write text to ``tmp_path/name`` and return its path."""

    def write(name: str, text: str | bytes) -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(text, bytes):
            path.write_bytes(text)
        else:
            path.write_text(text, encoding="utf-8")
        return path

    return write


# --- a tiny project: 8 train, 4 dev, 4 test rows and a 5-LF suite -------------------------------------

PROJECT_DATA = {
    "train": [("t0", "subscribe to my channel", 1), ("t1", "love this song", 0), ("t2", "free cash http://x.com", 1),
              ("t3", "great song", 0), ("t4", "check out http://spam.com", 1), ("t5", "song of the year", 0),
              ("t6", "subscribe please", 1), ("t7", "nice", 0)],
    "dev": [("d0", "free subscribe", 1), ("d1", "love it song", 0), ("d2", "http://a.com", 1),
            ("d3", "best song ever", 0)],
    "test": [("s0", "subscribe now free", 1), ("s1", "this song rocks", 0), ("s2", "visit http://b.com", 1),
             ("s3", "ok", 0)],
}
PROJECT_SUITE = '''\
from labelflow import ABSTAIN, keyword_lf, labeling_function, regex_lf

kw_sub = keyword_lf("kw_sub", ["subscribe"], label=1)
kw_link = regex_lf("kw_link", r"https?://", label=1)
kw_free = keyword_lf("kw_free", ["free"], label=1)
kw_song = keyword_lf("kw_song", ["song"], label=0)


@labeling_function()
def py_short(x):
    return 0 if len(x.text) <= 4 else ABSTAIN
'''
PROJECT_LFS = ("kw_sub", "kw_link", "kw_free", "kw_song", "py_short")
# rows in file order (train, dev, test); columns in PROJECT_LFS order
PROJECT_MATRIX = [
    [1, -1, -1, -1, -1], [-1, -1, -1, 0, -1], [-1, 1, 1, -1, -1], [-1, -1, -1, 0, -1],
    [-1, 1, -1, -1, -1], [-1, -1, -1, 0, -1], [1, -1, -1, -1, -1], [-1, -1, -1, -1, 0],
    [1, -1, 1, -1, -1], [-1, -1, -1, 0, -1], [-1, 1, -1, -1, -1], [-1, -1, -1, 0, -1],
    [1, -1, 1, -1, -1], [-1, -1, -1, 0, -1], [-1, 1, -1, -1, -1], [-1, -1, -1, -1, 0],
]


@pytest.fixture
def project_files(tmp_path) -> dict[str, Path]:
    """``train.csv``, ``dev.csv``, ``test.csv`` (id, text, label, author) and ``suite.py`` in ``tmp_path/src``."""
    src = tmp_path / "src"
    src.mkdir()
    files = {}
    for split, rows in PROJECT_DATA.items():
        frame = pl.DataFrame({"id": [r[0] for r in rows], "text": [r[1] for r in rows],
                              "label": [r[2] for r in rows], "author": [f"user{i}" for i in range(len(rows))]})
        files[split] = src / f"{split}.csv"
        frame.write_csv(files[split])
    files["suite"] = src / "suite.py"
    files["suite"].write_text(PROJECT_SUITE)
    return files


@pytest.fixture
def project(tmp_path, project_files):
    """An initialised project (train labels hidden, majority vote by default) in ``tmp_path/proj``."""
    from labelflow.project import Project

    return Project.init(tmp_path / "proj", sources={s: [project_files[s]] for s in ("train", "dev", "test")},
                        classes=["HAM", "SPAM"], id="id", label="label", hide_labels=["train"],
                        lfs=project_files["suite"], label_model="majority_vote")


@pytest.fixture
def expected():
    """The tiny project's suite source, LF names and hand-written ``[16, 5]`` label matrix."""
    import types

    return types.SimpleNamespace(suite=PROJECT_SUITE, lfs=PROJECT_LFS, matrix=PROJECT_MATRIX)
