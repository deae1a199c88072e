"""Guided error analysis: LF code typed by a person, analysis, suggestions measured by refitting, accepting."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from labelflow import demo
from labelflow.errors import LFError
from labelflow.guided import accept_suggestion, analyze, merge_into_suite, save_lf, suggest_lfs, try_lf
from labelflow.project import Project

# --- merging code into a suite file -------------------------------------------------------------------

SUITE_WITH_LIST = '''\
from labelflow import keyword_lf

HAM, SPAM = 0, 1

kw_a = keyword_lf("kw_a", ["a"], label=SPAM)


@labeling_function()
def py_b(x):
    return HAM

LFS = [
    kw_a,
    py_b,
]
'''


def test_merge_appends_before_a_multiline_lfs_list_and_hoists_imports():
    code = "from labelflow import regex_lf\n\nrx_c = regex_lf('rx_c', r'c+', label=SPAM)\n"
    merged, offset = merge_into_suite(SUITE_WITH_LIST, code)
    assert merged == SUITE_WITH_LIST.replace(
        "from labelflow import keyword_lf\n", "from labelflow import keyword_lf\nfrom labelflow import regex_lf\n").replace(
        "    return HAM\n\nLFS", "    return HAM\n\nrx_c = regex_lf('rx_c', r'c+', label=SPAM)\n\nLFS").replace(
        "    py_b,\n]", "    py_b,\n    rx_c,\n]")
    # line 3 of the code (the definition) is this line of the merged file
    assert merged.splitlines()[3 + offset - 1] == "rx_c = regex_lf('rx_c', r'c+', label=SPAM)"


def test_merge_replaces_a_decorated_definition_of_the_same_name():
    code = "@labeling_function()\ndef py_b(x):\n    return SPAM if 'b' in x.text else HAM\n"
    merged, offset = merge_into_suite(SUITE_WITH_LIST, code)
    assert merged == SUITE_WITH_LIST.replace("def py_b(x):\n    return HAM", "def py_b(x):\n    return SPAM if 'b' in x.text else HAM")
    assert merged.splitlines()[offset] == "@labeling_function()"


# --- trying and saving LFs on the tiny project ----------------------------------------------------------


def test_try_lf_measures_votes_coverage_and_dev_accuracy(project):
    trial = try_lf(project, 'kw_check = keyword_lf("kw_check", ["http"], label=1)\n')
    assert trial.error is None and trial.name == "kw_check"
    # rows (train, dev, test order): t2 t4 | d2 | s2 contain "http"
    ids = project.dataset().frame["id"].to_list()
    assert [ids[i] for i in np.flatnonzero(trial.votes == 1)] == ["t2", "t4", "d2", "s2"]
    assert trial.coverage == 4 / 16 and trial.dev_coverage == 1 / 4 and trial.dev_accuracy == 1.0
    assert trial.examples["vote"].to_list() == ["SPAM"] * 4


@pytest.mark.parametrize(("code", "message"), [
    ("kw = keyword_lf('kw', ['x'], label=1\n", "line 1 of the LF code"),
    ("x = 1\n", "must define exactly one LF"),
    ("\n\n@labeling_function()\ndef boom(x):\n    return 1 // 0\n", r"LF 'boom'.*ZeroDivisionError"),
    ("kw = keyword_lf('kw', ['x'], label=SPAMMY)\n", r"line 1 of the LF code.*NameError"),
    ("kw_sub = keyword_lf('kw_song', ['x'], label=1)\n", "duplicate LF name 'kw_song'"),
])
def test_bad_lf_code_is_reported_and_the_suite_file_is_untouched(project, code, message):
    before = project.suite_path.read_bytes()
    trial = try_lf(project, code)
    assert trial.error is not None and trial.votes.size == 0
    import re
    assert re.search(message, trial.error, re.S), trial.error
    with pytest.raises(LFError):
        save_lf(project, code)
    assert project.suite_path.read_bytes() == before
    assert len(project.lfs()) == 5


def test_save_lf_appends_then_replaces(project):
    save_lf(project, 'kw_http = keyword_lf("kw_http", ["http"], label=1)\n')
    assert [lf.name for lf in project.lfs()][-1] == "kw_http"
    assert 'kw_http = keyword_lf("kw_http", ["http"], label=1)\n' in project.suite_path.read_text()
    save_lf(project, 'kw_http = keyword_lf("kw_http", ["www"], label=1)\n')  # edit: same name, replaced in place
    text = project.suite_path.read_text()
    assert text.count("kw_http = ") == 1 and '["www"]' in text and len(project.lfs()) == 6
    matrix, _ = project.apply()
    assert matrix.lf_names[-1] == "kw_http" and (matrix.values[:, -1] == -1).all()  # no row has "www"


# --- analysis and suggestions on the YouTube demo project ---------------------------------------------


@pytest.fixture(scope="module")
def youtube_project(tmp_path_factory):
    work = tmp_path_factory.mktemp("guided")
    shutil.copyfile(demo.SUITE, work / "suite.py")
    project = Project.init(
        work / "project", sources={"train": [demo.DATA / f for f in demo.TRAIN_FILES],
                                   "test": [demo.DATA / f for f in demo.TEST_FILES]},
        classes=demo.CLASSES, text="CONTENT", id="COMMENT_ID", label="label", dev_sample=demo.DEV_SIZE,
        seed=demo.SEED, hide_labels=["train"], duplicates="drop_identical", lfs=work / "suite.py",
        label_model="majority_vote")  # the loop's mechanics need errors to work on; labelflow leaves 3 of 120
    project.apply()
    project.fit()
    return project


def test_analysis_matches_evaluate_and_ranks_slices(youtube_project):
    project = youtube_project
    analysis = analyze(project)
    assert analysis.accuracy == pytest.approx(project.evaluate(project.label_model())["dev"]["accuracy"])
    assert analysis.rows.height == demo.DEV_SIZE and analysis.confusion.sum() == demo.DEV_SIZE
    assert int(analysis.confusion.trace()) == int(analysis.rows["correct"].sum())
    errors = [s.errors for s in analysis.slices]
    assert errors == sorted(errors, reverse=True) and errors[0] >= 5
    kinds = {s.kind for s in analysis.slices}
    assert {"lf", "uncovered", "ngram", "metadata"} <= kinds
    uncovered = next(s for s in analysis.slices if s.kind == "uncovered")
    assert uncovered.coverage == 0.0 and uncovered.size == int((~analysis.rows["covered"]).sum())


def test_accepting_the_top_suggestion_gives_the_measured_dev_accuracy(youtube_project):
    project = youtube_project
    analysis = analyze(project)
    top = analysis.slices[0]
    suggestions = suggest_lfs(project, analysis, top, max_suggestions=3)
    assert suggestions, f"no suggestion for {top.name}"
    deltas = [s.delta for s in suggestions]
    assert deltas == sorted(deltas, reverse=True)
    best = suggestions[0]
    assert best.accuracy_before == pytest.approx(analysis.accuracy) and best.delta > 0
    assert best.precision >= 0.5 and 0 < best.coverage < 1
    before = project.suite_path.read_text()
    accept_suggestion(project, best)
    after = project.suite_path.read_text()
    assert after.startswith(before.rstrip("\n")) and best.code.strip().splitlines()[-1] in after
    project.apply()
    project.fit()
    assert project.evaluate(project.label_model())["dev"]["accuracy"] == pytest.approx(best.accuracy_after)


def test_analysis_of_external_predictions(youtube_project):
    """A student's predictions (id, pred) are analysed on the same dev rows; bad ones are named."""
    import polars as pl

    from labelflow.errors import LabelflowError

    project = youtube_project
    rows = analyze(project).rows
    flipped = pl.DataFrame({"id": rows["id"], "pred": 1 - rows["gold"]})  # a student wrong on every row
    student = analyze(project, predictions=flipped)
    assert student.accuracy == 0.0 and student.slices[0].errors == student.slices[0].size
    with pytest.raises(LabelflowError, match="lack 1 analysed row"):
        analyze(project, predictions=flipped.slice(1))
    with pytest.raises(LabelflowError, match="is not a class 0..1"):
        analyze(project, predictions=flipped.with_columns(pl.lit(5).alias("pred")))


def test_cli_analyze_suggests_and_accepts(youtube_project, capsys):
    """`labelflow analyze --suggest N --accept` writes the best suggestion into the suite, applies and refits."""
    import json

    from labelflow.cli import main

    root = str(youtube_project.root)
    assert main(["analyze", "-p", root, "--accept"]) == 2  # no --suggest: nothing to accept
    assert "no suggestion raises dev accuracy" in capsys.readouterr().err
    assert main(["analyze", "-p", root, "--suggest", "3", "--accept", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["slices"] and doc["suggestions"]
    best = max(doc["suggestions"], key=lambda s: s["delta"])
    assert doc["accepted"]["name"] == best["name"] and best["delta"] > 0
    assert doc["accepted"]["metrics"]["dev"]["accuracy"] == pytest.approx(best["dev_accuracy_after"])
    assert best["code"].strip().splitlines()[-1] in youtube_project.suite_path.read_text()


@pytest.mark.slow
def test_prompt_suggestion_asks_the_llm_only_about_uncovered_rows(youtube_project):
    """The prompt candidate (Gemma 3 270M) is readable code that votes only where no other LF does."""
    project = youtube_project
    analysis = analyze(project)
    uncovered = next(s for s in analysis.slices if s.kind == "uncovered")
    found = suggest_lfs(project, analysis, uncovered, kinds=("prompt",), max_suggestions=5)
    assert all(s.kind == "prompt" and s.accuracy_before == pytest.approx(analysis.accuracy) for s in found)
    from labelflow.guided import _prompt_code, _suite_globals

    _, name, code = _prompt_code(project, 0, "HAM", set(), _suite_globals(project))
    assert 'answers={HAM: ["yes"], SPAM: ["no"]}' in code and 'budget="uncovered"' in code
    trial = try_lf(project, code)
    assert trial.error is None and trial.name == name
    covered = (project.matrix().values != -1).any(axis=1)
    assert (trial.votes[covered] == -1).all() and (trial.votes[~covered] != -1).any()
