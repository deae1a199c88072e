"""Labeling functions: the expression builders, Python LFs, Snorkel LFs, suites and fingerprints."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from snorkel.labeling import labeling_function as snorkel_lf

from labelflow import (
    ABSTAIN,
    ExpressionLF,
    LFError,
    PythonLF,
    keyword_lf,
    labeling_function,
    length_lf,
    load_lf_suite,
    regex_lf,
    threshold_lf,
)
from labelflow.lf import Row, as_lf, check_suite

HAM, SPAM = 0, 1


def votes(frame: pl.DataFrame, lf: ExpressionLF) -> list[int]:
    return frame.select(lf.expr).to_series().to_list()


# --- expression LFs against hand-written votes (tiny_frame: a, b, c, d) -----------------------------
# a "Check out my channel!"   b "I love this song"   c "FREE cash at www.win.com"   d "mystery song"


@pytest.mark.parametrize(
    ("lf", "expected"),
    [
        (keyword_lf("kw_my", ["my"], label=SPAM), [1, -1, -1, -1]),  # "mystery" is not the word "my"
        (keyword_lf("kw_my_sub", ["my"], label=SPAM, word_boundary=False), [1, -1, -1, 1]),
        (keyword_lf("kw_free", ["free"], label=SPAM), [-1, -1, 1, -1]),  # case-insensitive by default
        (keyword_lf("kw_free_cs", ["free"], label=SPAM, case_sensitive=True), [-1, -1, -1, -1]),
        (keyword_lf("kw_FREE_cs", ["FREE"], label=SPAM, case_sensitive=True), [-1, -1, 1, -1]),
        (keyword_lf("kw_phrase", ["love this", "check out"], label=SPAM), [1, 1, -1, -1]),
        (keyword_lf("kw_www", ["www."], label=SPAM), [-1, -1, 1, -1]),  # boundary only on the word side
        (keyword_lf("kw_bang", ["channel!"], label=SPAM), [1, -1, -1, -1]),
        (keyword_lf("kw_regex_chars", ["c.sh"], label=SPAM), [-1, -1, -1, -1]),  # "." is literal
        (keyword_lf("kw_author", ["bot1", "bob"], label=HAM, field="author"), [0, -1, -1, 0]),
        (regex_lf("re_link", r"www\.\w+\.com", label=SPAM), [-1, -1, 1, -1]),
        (regex_lf("re_song_end", r"song$", label=HAM), [-1, 0, -1, 0]),
        (regex_lf("re_cs", r"^check", label=SPAM, case_sensitive=True), [-1, -1, -1, -1]),
        (length_lf("chars_max12", label=HAM, max=12), [-1, -1, -1, 0]),
        (length_lf("chars_16_21", label=HAM, min=16, max=21), [0, 0, -1, -1]),  # inclusive: 21, 16
        (length_lf("words_4", label=SPAM, unit="words", min=4, max=4), [1, 1, 1, -1]),  # "www.win.com" is one
        (length_lf("words_max2", label=HAM, unit="words", max=2), [-1, -1, -1, 0]),
        (threshold_lf("likes_min45", "likes", label=HAM, min=45), [-1, 0, -1, 0]),  # c is null: abstain
        (threshold_lf("likes_max45", "likes", label=SPAM, max=45), [1, -1, -1, 1]),
        (threshold_lf("likes_3_3", "likes", label=SPAM, min=3, max=3), [1, -1, -1, -1]),
    ],
    ids=lambda v: v.name if isinstance(v, ExpressionLF) else None,
)
def test_expression_lf_votes(tiny_frame, lf, expected):
    assert votes(tiny_frame, lf) == expected


def test_expression_lf_columns():
    assert keyword_lf("k", ["x"], label=1, field="author").columns() == ("author",)
    assert threshold_lf("t", "likes", label=1, min=0).columns() == ("likes",)
    assert ExpressionLF("e", pl.when(pl.col("a") > pl.col("b")).then(1)).columns() == ("a", "b")


def test_length_of_blank_text_and_whitespace_runs():
    frame = pl.DataFrame({"text": ["", "   ", "x", " two \t\n words "]})
    assert votes(frame, length_lf("empty", label=0, unit="words", max=0)) == [0, 0, -1, -1]
    assert votes(frame, length_lf("two", label=0, unit="words", min=2, max=2)) == [-1, -1, -1, 0]
    assert votes(frame, length_lf("empty_c", label=0, max=0)) == [0, -1, -1, -1]


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: keyword_lf("k", "free", label=1), "keywords must be a non-empty list"),
        (lambda: keyword_lf("k", [], label=1), "keywords must be a non-empty list"),
        (lambda: keyword_lf("k", ["ok", ""], label=1), "keywords must be a non-empty list"),
        (lambda: keyword_lf("k", ["x"], label=-1), "label must be an integer ≥ 0"),
        (lambda: keyword_lf("k", ["x"], label=True), "label must be an integer ≥ 0"),
        (lambda: regex_lf("r", "(unclosed", label=1), "invalid regular expression '\\(unclosed'"),
        (lambda: regex_lf("r", r"(?<=a)b", label=1), "invalid regular expression"),  # no look-behind in Rust
        (lambda: length_lf("l", label=1), "give min, max or both"),
        (lambda: length_lf("l", label=1, unit="lines", max=3), "unit must be 'chars' or 'words'"),
        (lambda: threshold_lf("t", "x", label=1, min=5, max=1), r"min \(5\) is greater than max \(1\)"),
        (lambda: ExpressionLF("e", "text"), "expected a polars expression"),
        (lambda: PythonLF("p", 3), "expected a callable"),
        (lambda: PythonLF("has space", lambda x: 0), "LF name must start"),
        (lambda: PythonLF("9lives", lambda x: 0), "LF name must start"),
    ],
)
def test_bad_lf_definitions(build, message):
    with pytest.raises(LFError, match=message):
        build()


# --- Python LFs -------------------------------------------------------------------------------------


def test_python_lf_row_attributes_and_resources():
    @labeling_function(resources={"words": ("cash", "prize")})
    def money(x, words):
        return SPAM if any(w in x.text.lower() for w in words) else ABSTAIN

    @labeling_function(name="renamed")
    def by_author(x):
        return SPAM if x.author.startswith("bot") and x.likes is None else ABSTAIN

    assert isinstance(money, PythonLF) and money.name == "money" and by_author.name == "renamed"
    assert money(Row(text="FREE CASH")) == SPAM
    assert money(Row(text="hello")) == ABSTAIN
    assert by_author(Row(author="bot2", likes=None)) == SPAM
    assert by_author(Row(author="bot2", likes=3)) == ABSTAIN
    assert money.columns() is None  # a Python LF may read any column


def test_row_columns_are_attributes_and_items():
    @labeling_function()
    def by_item(x):
        return SPAM if "$" in x["text"] and x.author != "bot" else ABSTAIN

    assert by_item.row_fields() == ("text", "author")
    assert by_item(Row(text="win $5", author="ann")) == SPAM
    with pytest.raises(KeyError, match="no column 'txt' in the row; its columns are \\['text'\\]"):
        Row(text="a")["txt"]


def test_as_lf_rejects_other_objects():
    with pytest.raises(LFError, match="expected a labelflow or Snorkel labeling function; got function"):
        as_lf(lambda x: 0)


def test_duplicate_lf_names_are_named():
    a = keyword_lf("spam_words", ["x"], label=1)
    b = regex_lf("spam_words", "y", label=1)
    with pytest.raises(LFError, match=r"duplicate LF name 'spam_words' \(LFs #0 and #2"):
        check_suite([a, keyword_lf("other", ["z"], label=0), b])


def test_empty_suite():
    with pytest.raises(LFError, match="the LF suite is empty"):
        check_suite([])


# --- Snorkel LFs ------------------------------------------------------------------------------------


def test_snorkel_lf_is_wrapped_unchanged():
    @snorkel_lf(resources={"needle": "cash"})
    def snork(x, needle):
        return SPAM if needle in x.text.lower() else ABSTAIN

    lf = as_lf(snork)
    assert isinstance(lf, PythonLF) and lf.name == "snork"
    assert lf.func is snork
    assert lf(Row(text="Cash now")) == SPAM and lf(Row(text="hi")) == ABSTAIN


# --- suites from files ------------------------------------------------------------------------------

SUITE = '''
from labelflow import ABSTAIN, keyword_lf, labeling_function
from snorkel.labeling import labeling_function as snorkel_lf

kw = keyword_lf("kw", ["free"], label=1)

@labeling_function()
def py(x):
    return 0 if len(x.text) < 5 else ABSTAIN

@snorkel_lf()
def snork(x):
    return ABSTAIN

alias = kw  # the same object twice is collected once
'''


def test_load_lf_suite_collects_module_lfs_in_order(tmp_path):
    path = tmp_path / "suite.py"
    path.write_text(SUITE)
    suite = load_lf_suite(path)
    assert [lf.name for lf in suite] == ["kw", "py", "snork"]
    assert [lf.kind for lf in suite] == ["expression", "python", "python"]


def test_load_lf_suite_prefers_lfs_list(tmp_path):
    path = tmp_path / "suite.py"
    path.write_text(SUITE + "\nLFS = [py, kw]\n")
    assert [lf.name for lf in load_lf_suite(path)] == ["py", "kw"]


def test_load_lf_suite_duplicate_names_name_the_file_and_lf(tmp_path):
    path = tmp_path / "dupes.py"
    path.write_text(SUITE + "\nkw2 = keyword_lf('kw', ['other'], label=0)\n")
    with pytest.raises(LFError, match="duplicate LF name 'kw'") as err:
        load_lf_suite(path)
    assert str(path) in str(err.value)


def test_load_lf_suite_missing_file(tmp_path):
    with pytest.raises(LFError, match="LF suite file not found") as err:
        load_lf_suite(tmp_path / "nope.py")
    assert "nope.py" in str(err.value)


@pytest.mark.parametrize(
    ("source", "line", "kind"),
    [("x = 1\ndef f(:\n", 2, "SyntaxError"), ("import os\n\nraise RuntimeError('boom')\n", 3, "RuntimeError")],
)
def test_load_lf_suite_import_errors_name_file_and_line(tmp_path, source, line, kind):
    path = tmp_path / "broken.py"
    path.write_text(source)
    with pytest.raises(LFError, match=f"line {line}: the LF suite failed to import: {kind}") as err:
        load_lf_suite(path)
    assert str(path) in str(err.value)


def test_load_lf_suite_without_lfs(tmp_path):
    path = tmp_path / "empty_suite.py"
    path.write_text("X = 1\n")
    with pytest.raises(LFError, match="the LF suite is empty"):
        load_lf_suite(path)


# --- fingerprints -----------------------------------------------------------------------------------


def test_fingerprint_is_stable_across_reloads(tmp_path):
    path = tmp_path / "suite.py"
    path.write_text(SUITE)
    first = {lf.name: lf.fingerprint() for lf in load_lf_suite(path)}
    second = {lf.name: lf.fingerprint() for lf in load_lf_suite(path)}
    assert first == second
    assert len(set(first.values())) == 3


def test_fingerprint_of_an_lf_whose_file_is_not_its_source(tmp_path):
    """Code compiled from a string under another file's name (exec in a notebook or a doc test): inspect finds
    unrelated text there; the LF is fingerprinted from its bytecode instead, still stably and per body."""
    other = tmp_path / "notes.md"
    other.write_text("(\n" * 5)  # an open bracket where the LF's source would be
    make = 'from labelflow import labeling_function\n@labeling_function()\ndef lf(x):\n    return {}\n'
    fingerprints = []
    for body in ("1", "1", "0"):
        scope: dict = {}
        exec(compile(make.format(body), str(other), "exec"), scope)
        fingerprints.append(scope["lf"].fingerprint())
    assert fingerprints[0] == fingerprints[1] != fingerprints[2]


def test_fingerprint_follows_expression_name_resources_and_closure():
    assert keyword_lf("k", ["a"], label=1).fingerprint() == keyword_lf("k", ["a"], label=1).fingerprint()
    assert keyword_lf("k", ["a"], label=1).fingerprint() != keyword_lf("k", ["b"], label=1).fingerprint()
    assert keyword_lf("k", ["a"], label=1).fingerprint() != keyword_lf("k2", ["a"], label=1).fingerprint()

    def f(x, limit):
        return 1 if len(x.text) > limit else -1

    assert PythonLF("p", f, resources={"limit": 3}).fingerprint() != PythonLF("p", f, resources={"limit": 4}).fingerprint()

    def make(threshold):
        def g(x):
            return 1 if len(x.text) > threshold else -1
        return g

    assert PythonLF("p", make(3)).fingerprint() == PythonLF("p", make(3)).fingerprint()
    assert PythonLF("p", make(3)).fingerprint() != PythonLF("p", make(4)).fingerprint()


def test_numpy_class_index_is_a_valid_vote():
    lf = PythonLF("np_vote", lambda x: np.int64(1))
    assert lf(Row(text="x")) == 1


# --- issue 14, item 1: a fingerprint covers what the LF reaches, or says what it cannot cover ------------


def _closure_lf(value):
    def lf(x):
        return 1 if value is not None else ABSTAIN
    return PythonLF("closure", lf)


def test_item1_fingerprint_follows_numpy_arrays_by_value():
    weights = np.arange(6, dtype=np.float64)
    edited = weights.copy()
    edited[3] = 99.0
    assert _closure_lf(weights).fingerprint() == _closure_lf(weights.copy()).fingerprint()
    assert _closure_lf(weights).fingerprint() != _closure_lf(edited).fingerprint()
    assert _closure_lf(weights).fingerprint() != _closure_lf(weights.astype(np.float32)).fingerprint()
    assert _closure_lf(weights).uncovered() == ()


def test_item1_fingerprint_follows_the_methods_and_state_of_user_classes():
    def make(body):
        scope: dict = {}
        exec(f"class Detector:\n    def __init__(self, words):\n        self.words = words\n"
             f"    def hit(self, text):\n        return {body}\n", scope)
        return scope["Detector"]

    first, same, edited = make("'a' in text"), make("'a' in text"), make("'b' in text")
    assert _closure_lf(first(["x"])).fingerprint() == _closure_lf(same(["x"])).fingerprint()
    assert _closure_lf(first(["x"])).fingerprint() != _closure_lf(edited(["x"])).fingerprint()  # a method
    assert _closure_lf(first(["x"])).fingerprint() != _closure_lf(first(["y"])).fingerprint()  # the state
    assert _closure_lf(first(["x"])).uncovered() == ()


def test_item1_fingerprint_follows_containers_of_data_by_value():
    assert _closure_lf({"a": [1, 2], "b": {3}}).fingerprint() == _closure_lf({"b": {3}, "a": [1, 2]}).fingerprint()
    assert _closure_lf({"a": [1, 2]}).fingerprint() != _closure_lf({"a": [1, 3]}).fingerprint()
    frames = [pl.DataFrame({"w": [w]}) for w in ("a", "a", "b")]
    assert _closure_lf(frames[0]).fingerprint() == _closure_lf(frames[1]).fingerprint()
    assert _closure_lf(frames[0]).fingerprint() != _closure_lf(frames[2]).fingerprint()


def test_item1_fingerprint_terminates_on_cycles():
    ring: list = [1]
    ring.append(ring)

    def even(n):
        return n == 0 or odd(n - 1)

    def odd(n):
        return n != 0 and even(n - 1)

    class Node:
        def __init__(self):
            self.me = self

    for value in (ring, even, Node()):
        assert _closure_lf(value).fingerprint() == _closure_lf(value).fingerprint()
        assert _closure_lf(value).uncovered() == ()


def test_item1_uncovered_names_objects_it_cannot_hash_and_files_read_at_run_time(tmp_path):
    import array
    import threading

    (gap,) = _closure_lf(array.array("b", [1])).uncovered()
    assert gap.startswith("variable 'value' captured by _closure_lf.<locals>.lf() in ")
    assert gap.endswith("(a array.array object, which labelflow cannot hash)")
    assert "threading.Event object" in _closure_lf(threading.Event()).uncovered()[0]
    path = tmp_path / "words.txt"

    @labeling_function()
    def reads_a_file(x):
        return 1 if x.text in open(path).read() else ABSTAIN  # noqa: SIM115

    assert any("calls open()" in gap for gap in reads_a_file.uncovered())
    assert keyword_lf("k", ["a"], label=1).uncovered() == ()


FIXED_SET = '''
from labelflow import ABSTAIN, labeling_function

WORDS = {"cash", "prize", "win", "free", "money"}

@labeling_function()
def lf(x):
    return 1 if x.text in {"a", "b", "c", "d", "e"} or x.text in WORDS else ABSTAIN
'''


def test_item1_fingerprint_does_not_depend_on_the_hash_seed(tmp_path):
    """Sets (literals compiled to frozensets, and data) iterate in a per-process order; fingerprints must not."""
    import subprocess
    import sys

    path = tmp_path / "suite.py"
    path.write_text(FIXED_SET)
    code = f"from labelflow import load_lf_suite; print(load_lf_suite({str(path)!r})[0].fingerprint())"
    seen = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                           env={**__import__("os").environ, "PYTHONHASHSEED": seed}).stdout for seed in ("1", "2", "3")}
    assert len(seen) == 1
