"""apply_lfs: expression and Python LFs, Snorkel LFs, errors, worker processes and the vote cache."""

from __future__ import annotations

import json
import os
import re
import signal
import sys
import textwrap
import time

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
from labelflow.chunk_applier import PARALLEL_MIN_ROWS, ChunkApplier
from labelflow.lf import as_lf
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


def test_data_without_id_column_gets_row_positions_and_cardinality_comes_from_a_dataset(tiny_dataset):
    pandas = pytest.importorskip("pandas")
    lf = keyword_lf("k", ["x"], label=1)
    for frame in (pl.DataFrame({"text": ["x", "y"]}), pandas.DataFrame({"text": ["x", "y"]}, index=[7, 3])):
        matrix = apply_lfs(frame, [lf], cardinality=2)
        assert matrix.ids.to_list() == ["0", "1"] and matrix.values[:, 0].tolist() == [1, -1]
    assert apply_lfs(tiny_dataset, [bot_author]).cardinality == tiny_dataset.schema.k
    with pytest.raises(LFError, match="give cardinality=, the number of classes, to label a DataFrame"):
        apply_lfs(pl.DataFrame({"text": ["x"]}), [lf])
    with pytest.raises(LFError, match=r"takes the data first, then the LFs: apply_lfs\(data, lfs\)"):
        apply_lfs([lf], pl.DataFrame({"text": ["x"]}), cardinality=2)


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


def test_cache_metadata_change_keeps_lfs_that_do_not_read_it(tiny_dataset, suite_file, tmp_path):
    _apply_cached(tiny_dataset, suite_file, tmp_path / "votes")
    edited = tiny_dataset.replace(tiny_dataset.frame.with_columns(author=pl.lit("someone else")))
    matrix, cache = _apply_cached(edited, suite_file, tmp_path / "votes")
    assert cache.hits == ["link", "short", "kw_song"]  # read only `text` (Python LFs: as x.text)
    assert cache.misses == ["money"]  # reads x inside a generator expression: any column, as far as is known
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


# --- issue 14, item 1: the vote cache never hands back votes of code or data that has changed ------------------


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    """Write ``name.py`` beside the suite (importable by it); ``forget()`` drops the imported modules, as a new
    ``labelflow apply`` process starts without them."""
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr("sys.dont_write_bytecode", True)  # an edit within the second must still be seen
    import importlib
    import sys

    written: list[str] = []

    def write(name: str, text: str) -> None:
        (tmp_path / f"{name}.py").write_text(textwrap.dedent(text))
        written.append(name)
        forget()

    def forget() -> None:
        for name in written:
            sys.modules.pop(name, None)
        importlib.invalidate_caches()

    write.forget = forget  # type: ignore[attr-defined]
    yield write
    forget()


def _suite(tmp_path, text):
    path = tmp_path / "suite.py"
    path.write_text(textwrap.dedent(text))
    return path


def _applied(tiny_dataset, suite_path, tmp_path, **kwargs):
    cache = VoteCache(tmp_path / "votes")
    matrix = apply_lfs(tiny_dataset, load_lf_suite(suite_path), cardinality=2, cache=cache, n_jobs=1, **kwargs)
    return matrix, cache


HELPERS = '''\
    WORDS = ("cash",)


    def is_spam(text):
        return any(w in text.lower() for w in WORDS)


    class Detector:
        def __init__(self, words):
            self.words = words

        def hit(self, text):
            return any(w in text.lower() for w in self.words)
'''


@pytest.mark.parametrize(
    "suite",
    [
        '''\
        from labelflow import ABSTAIN, labeling_function
        from {mod} import is_spam

        @labeling_function()
        def spam(x):
            return 1 if is_spam(x.text) else ABSTAIN
        ''',
        '''\
        import {mod}
        from labelflow import ABSTAIN, labeling_function

        @labeling_function()
        def spam(x):
            return 1 if {mod}.is_spam(x.text) else ABSTAIN
        ''',
        '''\
        from labelflow import ABSTAIN, labeling_function

        @labeling_function()
        def spam(x):
            from {mod} import is_spam
            return 1 if is_spam(x.text) else ABSTAIN
        ''',
    ],
    ids=["from-import", "module-attribute", "import-in-the-lf"],
)
def test_item1_editing_a_helper_in_another_module_reapplies_the_lf(tiny_dataset, tmp_path, user_module, suite):
    import importlib

    inside = suite.find("import is_spam") > suite.index("def spam")  # the LF imports its helper when it runs

    def imported() -> None:  # as after the suite has run once in a process
        if inside:
            importlib.import_module("helpers_a")

    user_module("helpers_a", HELPERS)
    path = _suite(tmp_path, suite.format(mod="helpers_a"))
    matrix, cache = _applied(tiny_dataset, path, tmp_path)
    assert matrix.values[:, 0].tolist() == [-1, -1, 1, -1]
    if inside:  # in a new process the helper is not imported before the LF runs: nothing to fingerprint yet
        assert cache.uncached == {"spam": "fingerprint cannot cover spam() in suite.py (imports module 'helpers_a' at "
                                          "run time and it is not imported yet)"}
        user_module.forget()
        imported()
        _, cache = _applied(tiny_dataset, path, tmp_path)
        assert (cache.misses, cache.uncached) == (["spam"], {})
    user_module("helpers_a", HELPERS.replace('"cash",', '"cash", "love"'))  # a constant the helper reads
    imported()
    matrix, cache = _applied(tiny_dataset, path, tmp_path)
    assert (cache.misses, cache.hits, cache.uncached) == (["spam"], [], {})
    assert matrix.values[:, 0].tolist() == [-1, 1, 1, -1]
    user_module.forget()
    imported()
    _, cache = _applied(tiny_dataset, path, tmp_path)  # unchanged: from the cache again
    assert (cache.misses, cache.hits) == ([], ["spam"])


def test_item1_editing_a_method_of_a_class_used_by_an_lf_reapplies_it(tiny_dataset, tmp_path, user_module):
    user_module("helpers_b", HELPERS)
    path = _suite(tmp_path, '''\
        from labelflow import ABSTAIN, labeling_function
        from helpers_b import Detector

        DETECTOR = Detector(["cash"])

        @labeling_function()
        def spam(x):
            return 1 if DETECTOR.hit(x.text) else ABSTAIN
        ''')
    matrix, cache = _applied(tiny_dataset, path, tmp_path)
    assert matrix.values[:, 0].tolist() == [-1, -1, 1, -1]
    user_module("helpers_b", HELPERS.replace("return any(w in text.lower() for w in self.words)",
                                             "return any(w in text.lower() for w in self.words) or 'song' in text"))
    matrix, cache = _applied(tiny_dataset, path, tmp_path)
    assert (cache.misses, cache.hits) == (["spam"], [])
    assert matrix.values[:, 0].tolist() == [-1, 1, 1, 1]
    user_module.forget()
    _, cache = _applied(tiny_dataset, path, tmp_path)
    assert (cache.misses, cache.hits) == ([], ["spam"])


@pytest.mark.parametrize("kind", ["word-list", "numpy-array"])
def test_item1_editing_a_data_file_the_suite_loads_reapplies_the_lf(tiny_dataset, tmp_path, kind):
    words = tmp_path / "words.txt"
    words.write_text("cash\n")
    load = "set(Path(__file__).with_name('words.txt').read_text().split())" if kind == "word-list" else \
        "np.loadtxt(Path(__file__).with_name('words.txt'), dtype=str, ndmin=1)"
    path = _suite(tmp_path, f'''\
        from pathlib import Path

        import numpy as np
        from labelflow import ABSTAIN, labeling_function

        WORDS = {load}

        @labeling_function()
        def spam(x):
            return 1 if any(w in x.text.lower() for w in WORDS) else ABSTAIN
        ''')
    matrix, _ = _applied(tiny_dataset, path, tmp_path)
    assert matrix.values[:, 0].tolist() == [-1, -1, 1, -1]
    words.write_text("cash\nlove\n")
    matrix, cache = _applied(tiny_dataset, path, tmp_path)
    assert (cache.misses, cache.hits) == (["spam"], [])
    assert matrix.values[:, 0].tolist() == [-1, 1, 1, -1]
    _, cache = _applied(tiny_dataset, path, tmp_path)
    assert (cache.misses, cache.hits) == ([], ["spam"])


def test_item1_an_lf_whose_fingerprint_has_gaps_is_reapplied_every_time_and_says_why(tiny_dataset, tmp_path):
    (tmp_path / "words.txt").write_text("cash")
    path = _suite(tmp_path, '''\
        import array
        from pathlib import Path

        from labelflow import ABSTAIN, keyword_lf, labeling_function

        CODES = array.array("b", [1])
        WORDS = Path(__file__).with_name("words.txt")

        @labeling_function()
        def coded(x):
            return 1 if CODES[0] == 1 and "cash" in x.text.lower() else ABSTAIN

        @labeling_function()
        def reads_file(x):
            return 1 if open(WORDS).read() in x.text.lower() else ABSTAIN

        kw = keyword_lf("kw", ["song"], label=0)
        ''')
    for words, column in (("cash", [-1, -1, 1, -1]), ("love", [-1, 1, -1, -1])):
        (tmp_path / "words.txt").write_text(words)
        matrix, cache = _applied(tiny_dataset, path, tmp_path)
        assert cache.misses[:2] == ["coded", "reads_file"]
        assert cache.uncached == {
            "coded": "fingerprint cannot cover global 'CODES' of suite.py (a array.array object, which labelflow "
                     "cannot hash)",
            "reads_file": "fingerprint cannot cover reads_file() in suite.py (calls open(): what it reads at run time "
                          "is not covered)",
        }
        assert matrix.values[:, 1].tolist() == column
    assert cache.hits == ["kw"]
    assert len(list((tmp_path / "votes").glob("*.npz"))) == 1  # only kw's votes were stored


@preprocessor()
def lowered(x):
    x.lowered = x.text.lower()
    return x


@snorkel_lf(pre=[lowered])
def sn_cash_lowered(x):
    return SPAM if "cash" in x.lowered else ABSTAIN


@snorkel_lf()
def sn_song(x):
    return HAM if "song" in x.text else ABSTAIN


def _author_is_bot() -> object:
    from snorkel.preprocess import Preprocessor

    class AuthorIsBot(Preprocessor):
        def __init__(self):
            super().__init__("author_is_bot", field_names={"author": "author"}, mapped_field_names={"bot": "bot"})

        def run(self, author):
            return {"bot": author.startswith("bot")}

    return AuthorIsBot()


def test_item1_a_new_fm_column_keeps_snorkel_lfs_cached_and_their_own_columns_still_count(tiny_dataset, tmp_path):
    @snorkel_lf(pre=[_author_is_bot()])
    def sn_bot(x):
        return SPAM if x.bot else ABSTAIN

    suite = [sn_cash_lowered, sn_song, sn_bot]
    assert [as_lf(lf).columns() for lf in suite] == [("lowered", "text"), ("text",), ("bot", "author")]
    names = [lf.name for lf in suite]

    def run(data):
        cache = VoteCache(tmp_path / "votes")
        return apply_lfs(data, suite, cardinality=2, cache=cache, n_jobs=1), cache

    first, _ = run(tiny_dataset)
    assert first.values.tolist() == [[-1, -1, 1], [-1, 0, -1], [1, -1, 1], [-1, 0, -1]]
    with_fm = tiny_dataset.replace(tiny_dataset.frame.with_columns(zero_shot_spam=pl.lit(0.5)))
    matrix, cache = run(with_fm)
    assert (cache.misses, cache.hits) == ([], names)
    np.testing.assert_array_equal(matrix.values, first.values)
    new_author = with_fm.replace(with_fm.frame.with_columns(author=pl.lit("bot9")))
    matrix, cache = run(new_author)
    assert (cache.misses, cache.hits) == (["sn_bot"], ["sn_cash_lowered", "sn_song"])
    assert matrix.values[:, 2].tolist() == [1, 1, 1, 1]


def test_item1_cli_apply_says_which_lfs_were_reapplied_and_why(project, tmp_path, capsys):
    from labelflow.cli import main

    path = _suite(tmp_path, '''\
        import threading

        from labelflow import ABSTAIN, labeling_function

        DONE = threading.Event()

        @labeling_function()
        def evented(x):
            return 1 if not DONE.is_set() and "free" in x.text else ABSTAIN
        ''')
    p = ["-p", str(project.root), "--lfs", str(path), "--jobs", "1"]
    assert main(["apply", *p]) == 0
    assert main(["apply", *p]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[-2] == "label matrix 16 rows × 1 LFs (1 applied, 0 from cache)"
    assert out[-1] == ("  LF 'evented' re-applied: fingerprint cannot cover global 'DONE' of suite.py (a "
                       "threading.Event object, which labelflow cannot hash)")
    assert main(["apply", *p, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["uncached"] == {"evented": out[-1].split(": ", 1)[1]}


# --- issue 14, item 5: sys.exit() and print() in an LF -------------------------------------------------------


@pytest.fixture
def deadline():
    """Fail a test that takes more than 90 s (a hang) instead of waiting forever."""

    def hung(signum, frame):
        raise TimeoutError("the test hung for 90 s")

    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(90)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


def _exits_on(row_id, how="sys.exit"):
    @labeling_function(name="exits")
    def exits(x):
        if x.id == row_id:
            if how == "sys.exit":
                sys.exit(0)
            os._exit(0)
        return HAM

    return exits


@pytest.mark.parametrize("where", ["this-process", "workers"])
def test_item5_an_lf_calling_sys_exit_is_an_lf_error_naming_the_lf_and_row(tiny_dataset, big_frame, where, deadline):
    data, row_id, n_jobs = (tiny_dataset, "c", 1) if where == "this-process" else \
        (big_frame, big_frame["id"][15_000], 2)
    with pytest.raises(LFError, match=rf"^LF 'exits' raised SystemExit: the LF called sys.exit\(0\); an LF must return "
                                      rf"a vote on row id '{re.escape(row_id)}' \(use on_error='abstain'"):
        apply_lfs(data, [has_link, _exits_on(row_id)], cardinality=2, n_jobs=n_jobs)
    matrix = apply_lfs(data, [has_link, _exits_on(row_id)], cardinality=2, n_jobs=n_jobs, on_error="abstain")
    assert matrix.failures == (LFFailure("exits", row_id, "SystemExit: the LF called sys.exit(0); an LF must return "
                                                          "a vote"),)
    assert (matrix.values[:, 1] == ABSTAIN).sum() == 1


SYS_EXIT_SUITE = '''\
from labelflow import ABSTAIN, labeling_function
import sys

print("suite imported")


@labeling_function()
def chatty(x):
    print("looking at", x.id)
    return 1 if "free" in x.text else ABSTAIN


@labeling_function()
def bye(x):
    if x.id == "t3":
        sys.exit(0)
    return ABSTAIN
'''


def test_item5_cli_apply_never_exits_0_without_a_matrix(project, tmp_path, capsys):
    from labelflow.cli import main

    path = _suite(tmp_path, SYS_EXIT_SUITE)
    assert main(["apply", "-p", str(project.root), "--lfs", str(path), "--jobs", "1"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[-1] == ("labelflow: error: LF 'bye' raised SystemExit: the LF called sys.exit(0); an LF must return a "
                       "vote on row id 't3' (use on_error='abstain' to abstain on such rows)")
    assert not project.store.matrix.exists()


def test_item5_a_suite_calling_sys_exit_on_import_is_an_error(tmp_path):
    path = _suite(tmp_path, "import sys\nsys.exit(0)\n")
    with pytest.raises(LFError, match=r"suite.py, line 2: the LF suite failed to import: SystemExit: 0"):
        load_lf_suite(path)


def test_item5_lf_print_output_does_not_reach_the_json_on_stdout(project, tmp_path, capfd):
    from labelflow.cli import main

    path = _suite(tmp_path, SYS_EXIT_SUITE.replace('x.id == "t3"', "False"))
    assert main(["apply", "-p", str(project.root), "--lfs", str(path), "--jobs", "1", "--json"]) == 0
    out, err = capfd.readouterr()
    assert json.loads(out)["lfs"] == ["chatty", "bye"]  # stdout holds the JSON document alone
    assert "suite imported" in err and "looking at t0" in err


def test_item5_lf_print_output_in_worker_processes_goes_to_stderr(big_frame, capfd):
    @labeling_function()
    def chatty(x):
        if x.id.endswith("#3"):
            print("worker", os.getpid(), "row", x.id)
            os.system("echo from a subprocess")  # noqa: S605 (file descriptor 1 too)
        return ABSTAIN

    apply_lfs(big_frame, [chatty], cardinality=2, n_jobs=2)
    out, err = capfd.readouterr()
    assert out == ""
    assert "row" in err and "from a subprocess" in err
    pids = {int(line.split()[1]) for line in err.splitlines() if line.startswith("worker ")}
    assert pids and os.getpid() not in pids  # printed in worker processes


# --- issue 14, item 10: a worker that dies fails the run; a per-row time limit ----------------------------------


def test_item10_a_worker_that_dies_fails_naming_its_rows_and_the_lf(big_frame, deadline):
    row_id = big_frame["id"][15_000]
    with pytest.raises(LFError, match=rf"^a worker process died \(exit status 0\) while LF 'exits' was labeling row id "
                                      rf"'{re.escape(row_id)}' \(of rows '.+'\.\.'.+'\); nothing was written"):
        apply_lfs(big_frame, [has_link, _exits_on(row_id, how="os._exit")], cardinality=2, n_jobs=2)


def test_item10_a_worker_killed_by_a_signal_is_named(big_frame, deadline):
    row_id = big_frame["id"][300]

    @labeling_function()
    def oom(x):
        if x.id == row_id:
            os.kill(os.getpid(), signal.SIGKILL)  # as the kernel's out-of-memory killer does
        return HAM

    with pytest.raises(LFError, match=rf"died \(killed by signal SIGKILL, perhaps for lack of memory\) while LF 'oom' "
                                      rf"was labeling row id '{re.escape(row_id)}'"):
        apply_lfs(big_frame, [oom], cardinality=2, n_jobs=2, on_error="abstain")


def _slow_on(row_id, *, stubborn=False):
    @labeling_function(name="slow")
    def slow(x):
        if x.id == row_id:
            end = time.monotonic() + 60
            while time.monotonic() < end:
                try:
                    time.sleep(60)
                except BaseException:  # noqa: BLE001 (an LF that swallows the interrupt)
                    if not stubborn:
                        raise
        return SPAM if "cash" in x.text.lower() else ABSTAIN

    return slow


@pytest.mark.parametrize("stubborn", [False, True], ids=["interrupted", "ignores-the-interrupt"])
@pytest.mark.parametrize("processes", [True, False], ids=["worker", "this-process"])
def test_item10_an_lf_past_the_time_limit_is_an_lf_error(tiny_dataset, stubborn, processes, deadline):
    if stubborn and not processes:
        pytest.skip("code ignoring the interrupt is stopped only in a worker process")
    lfs = (has_link, _slow_on("b", stubborn=stubborn))
    applier = ChunkApplier(lfs, 2, "raise", 0.3)
    began = time.monotonic()
    extra = " and ignored the interrupt" if stubborn else ""
    with pytest.raises(LFError, match=rf"^LF 'slow' raised TimeoutError: took longer than the time limit of 0.3 s"
                                      rf"{extra} on row id 'b'.*raise the time limit, or use on_error='abstain'"):
        applier(tiny_dataset.frame, processes=processes)
    assert time.monotonic() - began < 10
    votes, failures = ChunkApplier(lfs, 2, "abstain", 0.3)(tiny_dataset.frame, processes=processes)
    assert votes.tolist() == [[-1, -1], [-1, -1], [1, 1], [-1, -1]]
    assert failures["slow"] == [LFFailure("slow", "b",
                                          f"TimeoutError: took longer than the time limit of 0.3 s{extra}")]
    assert time.monotonic() - began < 20


def test_item10_time_limit_in_worker_processes_over_chunks_and_the_cache(big_frame, tmp_path, deadline):
    row_id = big_frame["id"][12_345]
    suite = [has_link, _slow_on(row_id)]
    cache = VoteCache(tmp_path)
    matrix = apply_lfs(big_frame, suite, cardinality=2, n_jobs=2, on_error="abstain", timeout_s=0.5, cache=cache,
                       chunk_rows=10_000)
    assert [f.row_id for f in matrix.failures] == [row_id]
    expected = apply_lfs(big_frame, [has_link, _slow_on("none")], cardinality=2, n_jobs=1)
    np.testing.assert_array_equal(np.delete(matrix.values, 12_345, axis=0), np.delete(expected.values, 12_345, axis=0))
    assert matrix.values[12_345, 1] == ABSTAIN
    cache = VoteCache(tmp_path)  # without a limit the late call's abstain is not what the LF votes: not reused
    apply_lfs(big_frame[:100], suite, cardinality=2, on_error="abstain", cache=cache)
    assert cache.misses == ["has_link", "slow"]


@pytest.mark.parametrize("bad", [0, -1.0, float("nan"), float("inf"), "1", True])
def test_item10_bad_time_limit(tiny_dataset, bad):
    with pytest.raises(LFError, match=rf"timeout_s must be a number of seconds > 0, or None; "
                                      rf"got {re.escape(repr(bad))}"):
        apply_lfs(tiny_dataset, [has_link], cardinality=2, timeout_s=bad)


def test_item10_cli_lf_timeout(project, tmp_path, capsys, deadline):
    from labelflow.cli import main

    path = _suite(tmp_path, '''\
        import time
        from labelflow import ABSTAIN, labeling_function

        @labeling_function()
        def slow(x):
            if x.id == "t2":
                time.sleep(60)
            return ABSTAIN
        ''')
    p = ["-p", str(project.root), "--lfs", str(path), "--lf-timeout", "0.2"]
    assert main(["apply", *p]) == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        "labelflow: error: LF 'slow' raised TimeoutError: took longer than the time limit of 0.2 s on row id 't2' "
        "(raise the time limit, or use on_error='abstain' to abstain on such rows)")
    assert main(["apply", *p, "--on-error", "abstain"]) == 0
    assert "  LF 'slow' failed on row id 't2': TimeoutError: took longer than the time limit of 0.2 s" in \
        capsys.readouterr().out.splitlines()
