"""Fixtures of the FM-layer tests: the real packaged models (loaded once per session) and small
real frames cut from the shipped YouTube data."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import polars as pl
import pytest

REPO = Path(__file__).resolve().parents[2]
YOUTUBE = REPO / "data" / "youtube"
PSY = YOUTUBE / "Youtube01-Psy.csv"
HAM, SPAM = 0, 1


def distinct_comments(n: int | None = None, path: Path = PSY, max_chars: int | None = None) -> pl.DataFrame:
    """The first ``n`` comments of one YouTube file (``path``; all five when ``None``) with distinct texts
    (of at most ``max_chars`` characters): id, text, label."""
    paths = sorted(YOUTUBE.glob("Youtube0*.csv")) if path is None else [path]
    frame = pl.concat([pl.read_csv(p).select(id="COMMENT_ID", text="CONTENT", label="label") for p in paths])
    frame = frame.unique(subset="text", keep="first", maintain_order=True)
    if max_chars is not None:
        frame = frame.filter(pl.col("text").str.len_chars() <= max_chars)
    return frame if n is None else frame.head(n)


@pytest.fixture(scope="session")
def comments():
    """:func:`distinct_comments`, for tests to call."""
    return distinct_comments


@pytest.fixture(scope="session")
def minilm():
    """The packaged all-MiniLM-L6-v2 (default settings: the provider FM LFs use)."""
    from labelflow.fm import get_provider

    return get_provider("sentence-transformers", model="all-MiniLM-L6-v2")


@pytest.fixture(scope="session")
def gemma():
    """The packaged Gemma 3 270M through transformers (default settings: the provider prompt LFs use)."""
    from labelflow.fm import get_provider

    return get_provider("transformers")


@pytest.fixture(scope="session")
def yt40() -> pl.DataFrame:
    """40 real YouTube comments: 20 in split 'dev' with gold (10 ham, 10 spam, interleaved), then 20 in
    'train' without gold."""
    frame = distinct_comments()
    ham, spam = frame.filter(pl.col("label") == HAM), frame.filter(pl.col("label") == SPAM)
    dev = pl.concat([pl.concat([ham[i:i + 1], spam[i:i + 1]]) for i in range(10)])
    train = pl.concat([ham[10:20], spam[10:20]]).with_columns(pl.lit(None, dtype=pl.Int64).alias("label"))
    return pl.concat([dev.with_columns(split=pl.lit("dev")), train.with_columns(split=pl.lit("train"))])


def _assert_intact(path: Path) -> None:
    """The SQLite file passes its integrity check."""
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)


@pytest.fixture
def assert_intact():
    """:func:`_assert_intact`: a SQLite file passes its integrity check."""
    return _assert_intact
