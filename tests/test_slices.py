"""Slice discovery on hand-made rows with hand-counted errors."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from labelflow.slices import _metadata_groups, find_slices, ngram_matrix

TEXTS = ["check out my channel", "check out this video", "check out my page", "love the song", "nice song",
         "great song", "check out link", "so good", "song of the year", "check out now"]
Y = np.array([1, 1, 1, 0, 0, 0, 1, 0, 0, 1])
PRED = np.array([0, 0, 0, 0, 0, 0, 0, 1, 0, 1])  # 4 "check out" spam rows called ham; "so good" called spam
L = np.array([[-1, 0]] * 3 + [[-1, 0], [-1, 0], [-1, 0]] + [[-1, -1], [1, -1], [-1, 0], [1, 0]])


def slices(**kw):
    return find_slices([f"r{i}" for i in range(10)], TEXTS, Y, PRED, L=L, lf_names=["kw_good", "kw_song"],
                       class_names=["HAM", "SPAM"], min_size=2, **kw)


def test_ranked_by_errors_with_counts_and_confusion():
    ranked = slices()
    # hand count: "check" rows r0 r1 r2 r6 r9, four SPAM called HAM; 4-word texts r0 r1 r2 r8, 3 wrong (accuracy
    # 0.25, so before kw_song: 8 rows, 3 wrong); "my" r0 r2 both wrong; kw_good on r7 r9, r7 wrong; 2-word texts
    # r4 r5 r7 and 3-word r3 r6 r9, one wrong each. "check out" has the same rows as "check": listed once.
    # "my" is a stop word: no slice. LFs conflict on r9 only (one row, below min_size): no conflict slice.
    assert [(s.kind, s.name, s.size, s.errors) for s in ranked] == [
        ("ngram", 'text contains "check"', 5, 4), ("metadata", "text length (words) = 4", 4, 3),
        ("lf", "kw_song votes", 8, 3), ("lf", "kw_good votes", 2, 1),
        ("metadata", "text length (words) = 2", 3, 1), ("metadata", "text length (words) = 3", 3, 1)]
    check = ranked[0]
    assert check.accuracy == pytest.approx(0.2) and check.coverage == 0.8 and check.top_confusion == "SPAM→HAM ×4"
    assert check.examples[:4] == [TEXTS[i] for i in (0, 1, 2, 6)]  # wrong rows first
    assert check.row_ids == ["r0", "r1", "r2", "r6", "r9"]
    assert ranked[3].top_confusion == "HAM→SPAM ×1"


def test_metadata_and_length_slices():
    meta = pl.DataFrame({"author": ["bot"] * 3 + ["ann"] * 7, "likes": list(range(10))})
    names = {s.name: s for s in slices(metadata=meta)}
    assert (names["author = 'bot'"].errors, names["author = 'bot'"].accuracy) == (3, 0.0)
    assert (names["author = 'ann'"].size, names["author = 'ann'"].errors) == (7, 2)
    assert names["likes in [6.75, 9]"].row_ids == ["r7", "r8", "r9"]  # the top quartile, closed on the right
    assert "likes in [0, 2.25)" not in names  # the same rows as author = 'bot': listed once
    lengths = _metadata_groups(pl.DataFrame({"text length (words)": [len(t.split()) for t in TEXTS]}))
    assert [(name, int(mask.sum())) for _, name, mask in lengths] == [
        ("text length (words) = 2", 3), ("text length (words) = 3", 3), ("text length (words) = 4", 4)]


def test_cluster_slices_from_embeddings():
    X = np.array([[1.0, 0.0] if i in (0, 1, 6) else [0.0, 1.0] for i in range(10)])  # a clean 3-row cluster
    clusters = [s for s in slices(embeddings=X, n_clusters=2) if s.kind == "cluster"]
    assert [(s.row_ids, s.errors) for s in clusters if s.size == 3] == [(["r0", "r1", "r6"], 3)]


def test_conflict_slice_holds_only_rows_where_lfs_vote_different_classes():
    # int8 votes, as a project's matrix stores them: abstains beside a vote are no conflict
    L8 = np.array([[0, -1, -1], [0, 1, -1], [1, 1, -1], [-1, 0, 1], [-1, -1, -1], [1, -1, 1]] * 2, dtype=np.int8)
    y, pred = np.zeros(12, dtype=np.int64), np.ones(12, dtype=np.int64)
    found = {s.name: s for s in find_slices([f"r{i}" for i in range(12)], ["x"] * 12, y, pred, L=L8,
                                            lf_names=["a", "b", "c"], class_names=["A", "B"], min_size=2)}
    assert found["LFs conflict"].row_ids == ["r1", "r3", "r7", "r9"]


def test_cluster_slices_are_seeded_and_ngrams_skip_stop_words():
    X = np.random.default_rng(0).normal(size=(60, 3)) + np.repeat(np.eye(3) * 6, 20, axis=0)
    y, pred = np.zeros(60, dtype=np.int64), np.ones(60, dtype=np.int64)
    run = lambda: [(s.name, s.row_ids) for s in find_slices(  # noqa: E731
        [f"r{i}" for i in range(60)], ["x"] * 60, y, pred, L=np.full((60, 1), -1), lf_names=["a"], class_names=["A", "B"],
        embeddings=X, n_clusters=3, seed=1) if s.kind == "cluster"]
    clusters = run()
    assert clusters == run() and sorted(len(ids) for _, ids in clusters) == [20, 20, 20]
    M, grams = ngram_matrix(["Check out, CHECK!", "the 2 of us", "out of it"], stop_words=True)
    assert grams == ["check", "check out", "out check"]  # "the", "of", "us", "2", "it", "out" alone: none
    assert M.toarray().tolist() == [[1, 1, 1], [0, 0, 0], [0, 0, 0]]
