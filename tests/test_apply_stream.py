"""The streaming local engine: chunked and lazy (Parquet) input give the one-pass matrix, cache keys and failures;
Python LFs memoized on the distinct values of the fields they read; row-wise checks; chunked Parquet writes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from labelflow import ABSTAIN, ExpressionLF, VoteCache, apply_lfs, keyword_lf, labeling_function, load_lf_suite
from labelflow.lf_workers import MAX_FAILURES_KEPT
from labelflow.errors import ProjectError
from labelflow.files import write_parquet_parts

REPO = Path(__file__).resolve().parents[1]
HAM, SPAM = 0, 1


@pytest.fixture(scope="module")
def youtube_suite():
    return load_lf_suite(REPO / "lfs" / "youtube_spam.py")


@pytest.fixture(scope="module")
def repeated(youtube):
    """The YouTube comments three times over (5,859 rows) with unique ids: texts repeat across chunks."""
    base = youtube.frame
    return pl.concat([base.with_columns(id=pl.format("{}#{}", pl.col("id"), pl.lit(r))) for r in range(3)])


def test_chunks_and_parquet_give_the_one_pass_matrix(youtube_suite, repeated, tmp_path):
    whole = apply_lfs(repeated, youtube_suite, cardinality=2, n_jobs=1, chunk_rows=1 << 20)
    chunked = apply_lfs(repeated, youtube_suite, cardinality=2, n_jobs=1, chunk_rows=777)
    repeated.write_parquet(tmp_path / "rows.parquet", row_group_size=1000)
    lazy = apply_lfs(pl.scan_parquet(tmp_path / "rows.parquet"), youtube_suite, cardinality=2, n_jobs=2, chunk_rows=2000)
    for other in (chunked, lazy):
        np.testing.assert_array_equal(other.values, whole.values)
        assert other.ids.to_list() == whole.ids.to_list() and other.lf_names == whole.lf_names
    assert ((whole.values != ABSTAIN).sum(axis=0) > 0).all()  # every LF votes somewhere


def test_cache_keys_do_not_depend_on_chunks_or_input_kind(youtube_suite, repeated, tmp_path):
    cache = VoteCache(tmp_path / "votes")
    apply_lfs(repeated, youtube_suite, cardinality=2, cache=cache, n_jobs=1)
    assert cache.hits == []
    repeated.write_parquet(tmp_path / "rows.parquet")
    again = VoteCache(tmp_path / "votes")
    apply_lfs(pl.scan_parquet(tmp_path / "rows.parquet"), youtube_suite, cardinality=2, cache=again, chunk_rows=500)
    assert again.misses == [] and len(again.hits) == len(youtube_suite)


def test_python_lfs_run_once_per_distinct_value(repeated):
    calls = []

    @labeling_function()
    def counted(x):
        calls.append(1)
        return SPAM if "subscribe" in x.text.lower() else ABSTAIN

    @labeling_function()
    def row_passed_on(x):  # reads the row through vars(): not memoized
        return SPAM if "subscribe" in vars(x)["text"].lower() else ABSTAIN

    assert counted.row_fields() == ("text",) and row_passed_on.row_fields() is None
    matrix = apply_lfs(repeated, [counted, row_passed_on], cardinality=2, n_jobs=1, chunk_rows=2000)
    np.testing.assert_array_equal(matrix.values[:, 0], matrix.values[:, 1])
    distinct_per_chunk = sum(repeated["text"][a:a + 2000].n_unique() for a in range(0, repeated.height, 2000))
    assert len(calls) == distinct_per_chunk < repeated.height
    assert (matrix.values[:, 0] == SPAM).sum() > 100


def test_memoized_failures_name_every_row_in_order(repeated):
    @labeling_function()
    def fails_on_love(x):
        if "love" in x.text.lower():
            raise ValueError("no love")
        return HAM

    @labeling_function()
    def fails_on_love_rowwise(x):
        return fails_on_love.func(vars(x)["text"] and x)

    assert fails_on_love_rowwise.row_fields() is None
    matrix = apply_lfs(repeated, [fails_on_love, fails_on_love_rowwise], cardinality=2, n_jobs=1, chunk_rows=1500,
                       on_error="abstain")
    np.testing.assert_array_equal(matrix.values[:, 0], matrix.values[:, 1])
    memo = [f for f in matrix.failures if f.lf == "fails_on_love"]
    rowwise = [f for f in matrix.failures if f.lf == "fails_on_love_rowwise"]
    assert len(memo) == MAX_FAILURES_KEPT and [f.row_id for f in memo] == [f.row_id for f in rowwise]
    assert {f.error for f in memo} == {"ValueError: no love"}
    loves = repeated.filter(pl.col("text").str.to_lowercase().str.contains("love", literal=True))["id"]
    assert [f.row_id for f in memo] == loves[:MAX_FAILURES_KEPT].to_list()


def test_memoized_lf_error_names_the_first_row(repeated):
    target = repeated["text"][2500]

    @labeling_function()
    def boom(x):
        if x.text == target:
            raise ZeroDivisionError("kaboom")
        return HAM

    first = repeated["id"][repeated["text"].to_list().index(target)]
    with pytest.raises(Exception, match=rf"LF 'boom' raised ZeroDivisionError: kaboom on row id '{first}'"):
        apply_lfs(repeated, [boom], cardinality=2, n_jobs=1, chunk_rows=1000)


def test_expression_reading_other_rows_is_evaluated_over_all_rows(repeated):
    longer_than_mean = ExpressionLF(
        "longer_than_mean", pl.when(pl.col("text").str.len_chars() > pl.col("text").str.len_chars().mean()).then(SPAM))
    previous_short = ExpressionLF("previous_short", pl.when(pl.col("text").shift(1).str.len_chars() < 20).then(HAM))
    suite = [keyword_lf("kw_song", ["song"], label=HAM), longer_than_mean, previous_short]
    whole = apply_lfs(repeated, suite, cardinality=2, chunk_rows=1 << 20)
    chunked = apply_lfs(repeated.lazy(), suite, cardinality=2, chunk_rows=100)
    np.testing.assert_array_equal(chunked.values, whole.values)
    mean = repeated["text"].str.len_chars().mean()
    np.testing.assert_array_equal(whole.values[:, 1] == SPAM, (repeated["text"].str.len_chars() > mean).to_numpy())


@pytest.mark.parametrize("chunk_rows", [0, -5, 2.5, True])
def test_bad_chunk_rows(tiny_dataset, chunk_rows):
    with pytest.raises(Exception, match=rf"chunk_rows must be an integer ≥ 1; got {chunk_rows!r}"):
        apply_lfs(tiny_dataset, [keyword_lf("k", ["song"], label=HAM)], cardinality=2, chunk_rows=chunk_rows)


def test_unknown_engine(tiny_dataset):
    with pytest.raises(Exception, match="engine must be 'local', 'ray' or an engine such as a RayEngine; got 'spark'"):
        apply_lfs(tiny_dataset, [keyword_lf("k", ["song"], label=HAM)], cardinality=2, engine="spark")


# --- the project streams its Parquet files ------------------------------------------------------------


def test_project_rows_are_the_dataset_with_its_fm_outputs(project):
    ids = project.dataset().ids
    project.save_fm_output("score", ids, np.arange(2 * len(ids), dtype=np.float32).reshape(-1, 2))
    assert project.rows().collect().equals(project.dataset().frame)


def test_misaligned_fm_output_is_named(project):
    ids = project.dataset().ids
    project.save_fm_output("score", ids.reverse(), np.zeros((len(ids), 2), dtype=np.float32))
    with pytest.raises(ProjectError, match=r"score.parquet does not hold the dataset's rows in its order"):
        project.apply()


def test_fm_output_written_in_chunks(project):
    ids = project.dataset().ids
    values = np.arange(3 * len(ids), dtype=np.float32).reshape(-1, 3)
    values[2] = np.nan
    path = project.save_fm_output_chunks("vec", ((ids[a:a + 5], values[a:a + 5]) for a in range(0, len(ids), 5)))
    frame = pl.read_parquet(path)
    assert frame["id"].to_list() == ids.to_list() and frame["vec"][2] is None
    np.testing.assert_array_equal(np.array(frame["vec"][3].to_list()), values[3])


def test_parts_writer_leaves_nothing_when_the_frames_fail(tmp_path):
    target = tmp_path / "out.parquet"
    target.write_bytes(b"old")

    def frames():
        yield pl.DataFrame({"x": [1]})
        raise RuntimeError("model crashed")

    with pytest.raises(RuntimeError, match="model crashed"):
        write_parquet_parts(target, frames())
    assert target.read_bytes() == b"old" and sorted(p.name for p in tmp_path.iterdir()) == ["out.parquet"]
