"""apply_lfs: expression and Python LFs, Snorkel LFs, errors, worker processes and the vote cache."""

from __future__ import annotations

import os
import re
import textwrap

import numpy as np
import polars as pl
import pytest
from snorkel.labeling import PandasLFApplier
from snorkel.labeling import labeling_function as snorkel_lf
from snorkel.preprocess import preprocessor

from labelflow import (
    ABSTAIN,
    ExpressionLF,
    LFError,
    VoteCache,
    apply_lfs,
    keyword_lf,
    labeling_function,
    length_lf,
    load_lf_suite,
    regex_lf,
    threshold_lf,
)
from labelflow.apply import PARALLEL_MIN_ROWS
from labelflow.matrix import LFFailure

HAM, SPAM = 0, 1

# tiny_frame:  a "Check out my channel!" bot1 3 | b "I love this song" ann 120
#              c "FREE cash at www.win.com" bot2 null | d "mystery song" bob 45


@labeling_function()
def bot_author(x):
    return SPAM if x.author.startswith("bot") else ABSTAIN


@labeling_function(resources={"limit": 100})
def popular(x, limit):
    return HAM if x.likes is not None and x.likes > limit else ABSTAIN


def test_mixed_suite_matrix(tiny_dataset):
    suite = [keyword_lf("kw_my", ["my"], label=SPAM), bot_author, threshold_lf("likes45", "likes", label=HAM, min=45),
             popular, regex_lf("re_link", r"www\.\w+\.com", label=SPAM)]
    matrix = apply_lfs(tiny_dataset, suite, cardinality=2, n_jobs=1)
    expected = np.array(
        [
            [1, 1, -1, -1, -1],
            [-1, -1, 0, 0, -1],
            [-1, 1, -1, -1, 1],
            [-1, -1, 0, -1, -1],
        ],
        dtype=np.int8,
    )
    assert matrix.values.dtype == np.int8
    np.testing.assert_array_equal(matrix.values, expected)
    assert matrix.lf_names == ("kw_my", "bot_author", "likes45", "popular", "re_link")
    assert matrix.ids.to_list() == ["a", "b", "c", "d"]
    assert matrix.cardinality == 2 and matrix.failures == ()


def test_plain_frame_with_integer_ids():
    frame = pl.DataFrame({"id": [10, 11], "text": ["short", "a much longer text"]})
    matrix = apply_lfs(frame, [length_lf("short", label=HAM, max=5)], cardinality=2)
    assert matrix.ids.to_list() == ["10", "11"]
    np.testing.assert_array_equal(matrix.values, [[0], [-1]])


def test_label_matrix_save_load_roundtrip(tiny_dataset, tmp_path):
    @labeling_function()
    def fails_on_c(x):
        if x.id == "c":
            raise KeyError("c")
        return HAM

    matrix = apply_lfs(tiny_dataset, [bot_author, fails_on_c], cardinality=3, on_error="abstain", n_jobs=1)
    matrix.save(tmp_path / "m.parquet")
    loaded = type(matrix).load(tmp_path / "m.parquet")
    np.testing.assert_array_equal(loaded.values, matrix.values)
    assert (loaded.lf_names, loaded.ids.to_list(), loaded.cardinality) == (matrix.lf_names, ["a", "b", "c", "d"], 3)
    assert loaded.failures == matrix.failures == (LFFailure("fails_on_c", "c", "KeyError: 'c'"),)


# --- bad input --------------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [None, 5, "1", True, 1.0, -2, np.int64(2)], ids=repr)
@pytest.mark.parametrize("on_error", ["raise", "abstain"])
def test_python_lf_invalid_vote_names_lf_and_row(tiny_dataset, bad, on_error):
    @labeling_function()
    def sloppy(x):
        return bad if x.id == "c" else SPAM

    with pytest.raises(LFError, match=rf"LF 'sloppy' returned {re.escape(repr(bad))} \(\w+\) on row id 'c'"):
        apply_lfs(tiny_dataset, [bot_author, sloppy], cardinality=2, on_error=on_error, n_jobs=1)


def test_python_lf_numpy_votes_are_accepted(tiny_dataset):
    @labeling_function()
    def numpy_vote(x):
        return np.int8(1) if x.id == "a" else np.int64(-1)

    matrix = apply_lfs(tiny_dataset, [numpy_vote], cardinality=2, n_jobs=1)
    np.testing.assert_array_equal(matrix.values[:, 0], [1, -1, -1, -1])


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        (pl.when(pl.col("id") == "c").then(7), r"LF 'bad_expr' returned 7 on row id 'c'; expected a class index 0\.\.1"),
        (pl.when(pl.col("id") == "b").then(-3), r"LF 'bad_expr' returned -3 on row id 'b'"),
        (pl.col("likes") > 10, r"LF 'bad_expr': its expression gives Boolean values"),
        (pl.when(pl.col("nope") > 1).then(1), r"LF 'bad_expr' reads a column the data lacks"),
    ],
    ids=["too-big", "negative", "boolean", "missing-column"],
)
def test_expression_lf_invalid_votes(tiny_dataset, expr, message):
    suite = [keyword_lf("fine", ["song"], label=HAM), ExpressionLF("bad_expr", expr)]
    with pytest.raises(LFError, match=message):
        apply_lfs(tiny_dataset, suite, cardinality=2)


def test_duplicate_names_in_apply(tiny_dataset):
    with pytest.raises(LFError, match="duplicate LF name 'bot_author'"):
        apply_lfs(tiny_dataset, [bot_author, bot_author], cardinality=2)


def test_data_without_id_column():
    with pytest.raises(LFError, match="needs an 'id' column; it has \\['text'\\]"):
        apply_lfs(pl.DataFrame({"text": ["x"]}), [keyword_lf("k", ["x"], label=1)], cardinality=2)


def test_unknown_on_error(tiny_dataset):
    with pytest.raises(LFError, match="on_error must be 'raise' or 'abstain'; got 'ignore'"):
        apply_lfs(tiny_dataset, [bot_author], cardinality=2, on_error="ignore")


# --- on_error -----------------------------------------------------------------------------------------


@labeling_function()
def likes_ratio(x):
    return HAM if 1000 / x.likes < 10 else SPAM  # TypeError on row c (likes is null)


def test_on_error_raise_names_lf_row_and_exception(tiny_dataset):
    with pytest.raises(LFError, match=r"LF 'likes_ratio' raised TypeError: .*NoneType.* on row id 'c'") as err:
        apply_lfs(tiny_dataset, [bot_author, likes_ratio], cardinality=2, on_error="raise", n_jobs=1)
    assert isinstance(err.value.__cause__, TypeError)


def test_on_error_abstain_records_failures(tiny_dataset):
    matrix = apply_lfs(tiny_dataset, [bot_author, likes_ratio], cardinality=2, on_error="abstain", n_jobs=1)
    np.testing.assert_array_equal(matrix.values, [[1, SPAM], [-1, HAM], [1, ABSTAIN], [-1, SPAM]])
    assert len(matrix.failures) == 1
    failure = matrix.failures[0]
    assert (failure.lf, failure.row_id) == ("likes_ratio", "c")
    assert failure.error.startswith("TypeError: ")


# --- Snorkel LFs, unchanged ---------------------------------------------------------------------------


@preprocessor(memoize=False)
def lowercase(x):
    x.text = x.text.lower()
    return x


@snorkel_lf(pre=[lowercase])
def sn_subscribe(x):
    return SPAM if "subscribe" in x.text else ABSTAIN


@snorkel_lf(resources={"words": ("love", "best")})
def sn_love(x, words):
    return HAM if any(w in x.text.lower() for w in words) else ABSTAIN


@snorkel_lf()
def sn_author(x):
    return SPAM if x.AUTHOR.isupper() else ABSTAIN


def test_snorkel_lfs_match_snorkels_own_applier(youtube):
    lfs = [sn_subscribe, sn_love, sn_author]
    expected = PandasLFApplier(lfs).apply(youtube.frame.to_pandas(), progress_bar=False)
    matrix = apply_lfs(youtube, lfs, cardinality=2, n_jobs=1)
    assert matrix.lf_names == ("sn_subscribe", "sn_love", "sn_author")
    np.testing.assert_array_equal(matrix.values, expected)
    assert ((matrix.values != ABSTAIN).sum(axis=0) > 0).all()  # every LF votes somewhere


def test_snorkel_and_labelflow_lfs_mix(tiny_dataset):
    matrix = apply_lfs(tiny_dataset, [sn_love, bot_author], cardinality=2, n_jobs=1)
    np.testing.assert_array_equal(matrix.values, [[-1, 1], [0, -1], [-1, 1], [-1, -1]])


# --- the vectorized path equals Python LFs on the real data --------------------------------------------


def _py(name, pattern, label, flags=re.IGNORECASE, field="text"):
    rx = re.compile(pattern, flags)

    def f(x):
        return label if rx.search(getattr(x, field)) else ABSTAIN

    return labeling_function(name=name)(f)


def test_expression_path_equals_python_lfs_on_youtube(youtube):
    data = youtube.replace(youtube.frame.with_columns(
        year=pl.col("DATE").str.slice(0, 4).cast(pl.Int32, strict=False)))
    assert data.frame["year"].null_count() > 0  # the threshold LF meets nulls

    expressions = [
        keyword_lf("kw_sub", ["subscribe", "sub4sub", "my channel"], label=SPAM),
        keyword_lf("kw_cs", ["$", "FREE", "http://"], label=SPAM, case_sensitive=True),
        keyword_lf("kw_my_loose", ["my"], label=SPAM, word_boundary=False),
        keyword_lf("kw_author", ["john", "lee"], label=HAM, field="AUTHOR"),
        regex_lf("re_check", r"check\s+(it\s+)?out", label=SPAM),
        length_lf("short", label=HAM, max=20),
        length_lf("few_words", label=HAM, unit="words", min=2, max=4),
        threshold_lf("recent", "year", label=SPAM, min=2015),
    ]

    @labeling_function(name="few_words")
    def few_words(x):
        return HAM if 2 <= len(re.findall(r"\S+", x.text)) <= 4 else ABSTAIN

    pythons = [
        _py("kw_sub", r"\b(subscribe|sub4sub|my channel)\b", SPAM),
        labeling_function(name="kw_cs")(
            lambda x: SPAM if "$" in x.text or "http://" in x.text or re.search(r"\bFREE\b", x.text) else ABSTAIN),
        labeling_function(name="kw_my_loose")(lambda x: SPAM if "my" in x.text.lower() else ABSTAIN),
        _py("kw_author", r"\b(john|lee)\b", HAM, field="AUTHOR"),
        _py("re_check", r"check\s+(it\s+)?out", SPAM),
        labeling_function(name="short")(lambda x: HAM if len(x.text) <= 20 else ABSTAIN),
        few_words,
        labeling_function(name="recent")(lambda x: SPAM if x.year is not None and x.year >= 2015 else ABSTAIN),
    ]
    vectorized = apply_lfs(data, expressions, cardinality=2)
    python = apply_lfs(data, pythons, cardinality=2, n_jobs=1)
    assert vectorized.lf_names == python.lf_names
    coverage = (vectorized.values != ABSTAIN).sum(axis=0)
    assert (coverage > 0).all() and (coverage < len(data)).all(), coverage
    for j, name in enumerate(vectorized.lf_names):
        mismatch = np.flatnonzero(vectorized.values[:, j] != python.values[:, j])
        assert mismatch.size == 0, (name, data.frame["text"].gather(mismatch[:3]).to_list())


# --- worker processes -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def big_frame(youtube):
    """The YouTube texts repeated to more than PARALLEL_MIN_ROWS rows, with unique ids."""
    reps = PARALLEL_MIN_ROWS // len(youtube) + 1
    base = youtube.frame.select("id", "text", "AUTHOR")
    frame = pl.concat([base.with_columns(id=pl.format("{}#{}", pl.col("id"), pl.lit(r))) for r in range(reps)])
    assert frame.height > PARALLEL_MIN_ROWS and frame["id"].is_unique().all()
    return frame


@labeling_function()
def has_link(x):
    return SPAM if "http" in x.text or ".com" in x.text else ABSTAIN


@labeling_function()
def exclaims(x):
    n = x.text.count("!")
    return SPAM if n >= 3 else HAM if n == 1 else ABSTAIN


def test_worker_processes_give_the_same_matrix(big_frame):
    suite = [has_link, exclaims, sn_subscribe, keyword_lf("kw_song", ["song"], label=HAM)]
    one = apply_lfs(big_frame, suite, cardinality=2, n_jobs=1)
    two = apply_lfs(big_frame, suite, cardinality=2, n_jobs=2)
    np.testing.assert_array_equal(one.values, two.values)
    assert one.ids.to_list() == two.ids.to_list() == big_frame["id"].to_list()
    assert len(np.unique(one.values[:, 1])) == 3  # all of SPAM, HAM and ABSTAIN occur


def test_n_jobs_2_really_uses_other_processes(big_frame):
    parent = os.getpid()

    @labeling_function()
    def in_worker(x):
        return SPAM if os.getpid() != parent else HAM

    assert (apply_lfs(big_frame, [in_worker], cardinality=2, n_jobs=1).values == HAM).all()
    assert (apply_lfs(big_frame, [in_worker], cardinality=2, n_jobs=2).values == SPAM).all()


def test_worker_errors_name_lf_and_row(big_frame):
    target = big_frame["id"][15_000]

    @labeling_function()
    def boom(x):
        if x.id == target:
            raise ZeroDivisionError("kaboom")
        return HAM

    with pytest.raises(LFError, match=rf"LF 'boom' raised ZeroDivisionError: kaboom on row id '{re.escape(target)}'"):
        apply_lfs(big_frame, [has_link, boom], cardinality=2, n_jobs=2)
    matrix = apply_lfs(big_frame, [has_link, boom], cardinality=2, n_jobs=2, on_error="abstain")
    assert matrix.failures == (LFFailure("boom", target, "ZeroDivisionError: kaboom"),)
    assert matrix.values[15_000, 1] == ABSTAIN and (np.delete(matrix.values[:, 1], 15_000) == HAM).all()


# --- the vote cache -------------------------------------------------------------------------------------

SUITE = '''\
from labelflow import ABSTAIN, keyword_lf, labeling_function

HAM, SPAM = 0, 1
MONEY_WORDS = ("cash", "prize")
SHORT = 13


def _has_link(text):
    return "www." in text


@labeling_function()
def link(x):
    return SPAM if _has_link(x.text) else ABSTAIN


@labeling_function()
def money(x):
    return SPAM if any(w in x.text.lower() for w in MONEY_WORDS) else ABSTAIN


@labeling_function()
def short(x):
    return HAM if len(x.text) < SHORT else ABSTAIN


kw_song = keyword_lf("kw_song", ["song"], label=HAM)
'''
NAMES = ["link", "money", "short", "kw_song"]
SUITE_MATRIX = np.array([[-1, -1, -1, -1], [-1, -1, -1, 0], [1, 1, -1, -1], [-1, -1, 0, 0]], dtype=np.int8)


def _apply_cached(data, suite_path, cache_dir):
    cache = VoteCache(cache_dir)
    matrix = apply_lfs(data, load_lf_suite(suite_path), cardinality=2, cache=cache, n_jobs=1)
    return matrix, cache


@pytest.fixture
def suite_file(tmp_path):
    path = tmp_path / "suite.py"
    path.write_text(SUITE)
    return path


def test_cache_first_run_misses_then_hits(tiny_dataset, suite_file, tmp_path):
    matrix, cache = _apply_cached(tiny_dataset, suite_file, tmp_path / "votes")
    assert (cache.misses, cache.hits) == (NAMES, [])
    np.testing.assert_array_equal(matrix.values, SUITE_MATRIX)
    matrix, cache = _apply_cached(tiny_dataset, suite_file, tmp_path / "votes")
    assert (cache.misses, cache.hits) == ([], NAMES)
    np.testing.assert_array_equal(matrix.values, SUITE_MATRIX)
    assert len(list((tmp_path / "votes").glob("*.npz"))) == 4


@pytest.mark.parametrize(
    ("old", "new", "changed", "column"),
    [
        # the LF's own source (one line becomes two, shifting every function below it)
        ("    return HAM if len(x.text) < SHORT else ABSTAIN",
         "    limit = SHORT + 4\n    return HAM if len(x.text) <= limit else ABSTAIN", "short", [-1, 0, -1, 0]),
        # a module-level helper only `link` calls (above every LF: all their line numbers move)
        ('    return "www." in text', '    return "www." in text or "channel" in text', "link", [1, -1, 1, -1]),
        # a module-level constant only `money` reads
        ('MONEY_WORDS = ("cash", "prize")', 'MONEY_WORDS = ("cash", "prize", "love")', "money", [-1, 1, 1, -1]),
        # a constant only `short` reads
        ("SHORT = 13", "SHORT = 17", "short", [-1, 0, -1, 0]),
    ],
    ids=["lf-source", "helper", "constant-money", "constant-short"],
)
def test_cache_reapplies_only_the_edited_lf(tiny_dataset, suite_file, tmp_path, old, new, changed, column):
    _apply_cached(tiny_dataset, suite_file, tmp_path / "votes")
    assert old in SUITE
    suite_file.write_text(SUITE.replace(old, new))
    matrix, cache = _apply_cached(tiny_dataset, suite_file, tmp_path / "votes")
    assert cache.misses == [changed]
    assert cache.hits == [n for n in NAMES if n != changed]
    expected = SUITE_MATRIX.copy()
    expected[:, NAMES.index(changed)] = column
    np.testing.assert_array_equal(matrix.values, expected)
    # and the edited votes are now cached too
    _, cache = _apply_cached(tiny_dataset, suite_file, tmp_path / "votes")
    assert (cache.misses, cache.hits) == ([], NAMES)


def test_cache_changed_text_reapplies_everything(tiny_dataset, suite_file, tmp_path):
    _apply_cached(tiny_dataset, suite_file, tmp_path / "votes")
    edited = tiny_dataset.replace(tiny_dataset.frame.with_columns(
        text=pl.when(pl.col("id") == "a").then(pl.lit("my song, cash prize")).otherwise(pl.col("text"))))
    matrix, cache = _apply_cached(edited, suite_file, tmp_path / "votes")
    assert (cache.misses, cache.hits) == (NAMES, [])
    np.testing.assert_array_equal(matrix.values[0], [-1, 1, -1, 0])
    np.testing.assert_array_equal(matrix.values[1:], SUITE_MATRIX[1:])


def test_cache_metadata_change_keeps_expression_lfs_that_do_not_read_it(tiny_dataset, suite_file, tmp_path):
    _apply_cached(tiny_dataset, suite_file, tmp_path / "votes")
    edited = tiny_dataset.replace(tiny_dataset.frame.with_columns(author=pl.lit("someone else")))
    matrix, cache = _apply_cached(edited, suite_file, tmp_path / "votes")
    assert cache.hits == ["kw_song"]  # reads only `text`
    assert cache.misses == ["link", "money", "short"]  # Python LFs may read any column
    np.testing.assert_array_equal(matrix.values, SUITE_MATRIX)


def test_cache_key_includes_cardinality_and_on_error(tiny_dataset, suite_file, tmp_path):
    _apply_cached(tiny_dataset, suite_file, tmp_path / "votes")
    suite = load_lf_suite(suite_file)
    cache = VoteCache(tmp_path / "votes")
    apply_lfs(tiny_dataset, suite, cardinality=3, cache=cache, n_jobs=1)
    assert cache.misses == NAMES
    cache = VoteCache(tmp_path / "votes")
    apply_lfs(tiny_dataset, suite, cardinality=2, cache=cache, on_error="abstain", n_jobs=1)
    assert cache.misses == NAMES


def test_cache_keeps_failures(tiny_dataset, tmp_path):
    first = apply_lfs(tiny_dataset, [likes_ratio], cardinality=2, cache=VoteCache(tmp_path), on_error="abstain")
    cache = VoteCache(tmp_path)
    second = apply_lfs(tiny_dataset, [likes_ratio], cardinality=2, cache=cache, on_error="abstain")
    assert cache.hits == ["likes_ratio"]
    assert second.failures == first.failures and len(second.failures) == 1
    np.testing.assert_array_equal(second.values, first.values)


@pytest.mark.parametrize("content", [b"", b"PK\x03\x04 truncated"], ids=["empty", "truncated-zip"])
def test_corrupt_cache_entry_is_a_miss(tiny_dataset, tmp_path, content):
    lf = keyword_lf("kw_song", ["song"], label=HAM)
    apply_lfs(tiny_dataset, [lf], cardinality=2, cache=VoteCache(tmp_path))
    for path in tmp_path.glob("*.npz"):
        path.write_bytes(content)
    cache = VoteCache(tmp_path)
    matrix = apply_lfs(tiny_dataset, [lf], cardinality=2, cache=cache)
    assert cache.misses == ["kw_song"]
    np.testing.assert_array_equal(matrix.values[:, 0], [-1, 0, -1, 0])


SAME_SIZE = textwrap.dedent('''\
    from labelflow import labeling_function

    @labeling_function()
    def flip(x):
        return 0
''')
MTIME_NS = 1_700_000_000_000_000_000


def _write_same_mtime(path, text):
    path.write_text(text)
    os.utime(path, ns=(MTIME_NS, MTIME_NS))


def test_same_size_edit_with_same_mtime_changes_the_fingerprint(tiny_dataset, tmp_path, monkeypatch):
    monkeypatch.setattr("sys.dont_write_bytecode", True)  # isolate from the bytecode-cache bug below
    path = tmp_path / "flip.py"
    _write_same_mtime(path, SAME_SIZE)
    apply_lfs(tiny_dataset, load_lf_suite(path), cardinality=2, cache=VoteCache(tmp_path / "votes"))
    _write_same_mtime(path, SAME_SIZE.replace("return 0", "return 1"))
    cache = VoteCache(tmp_path / "votes")
    matrix = apply_lfs(tiny_dataset, load_lf_suite(path), cardinality=2, cache=cache)
    assert cache.misses == ["flip"]
    assert (matrix.values == 1).all()


def test_same_size_edit_runs_the_new_code(tiny_dataset, tmp_path, monkeypatch):
    monkeypatch.setattr("sys.dont_write_bytecode", False)  # as for most users
    path = tmp_path / "flip2.py"
    _write_same_mtime(path, SAME_SIZE)
    assert (apply_lfs(tiny_dataset, load_lf_suite(path), cardinality=2).values == 0).all()
    _write_same_mtime(path, SAME_SIZE.replace("return 0", "return 1"))
    assert (apply_lfs(tiny_dataset, load_lf_suite(path), cardinality=2).values == 1).all()


def test_lf_named_id_is_rejected(tiny_dataset):
    with pytest.raises(LFError, match="'id' is reserved"):
        apply_lfs(tiny_dataset, [keyword_lf("id", ["song"], label=HAM)], cardinality=2)
