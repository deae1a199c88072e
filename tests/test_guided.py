"""Guided error analysis: LF code typed by a person, analysis, suggestions measured by refitting, accepting."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from labelflow import demo
from labelflow.error_analysis import analyze
from labelflow.errors import LFError
from labelflow.project import Project
from labelflow.suggest import accept_suggestion, suggest_lfs
from labelflow.suite_edit import merge_into_suite, save_lf, try_lf

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


WEAK_SUITE = '''\
from labelflow import keyword_lf, length_lf

HAM, SPAM = 0, 1

keyword_subscribe = keyword_lf("keyword_subscribe", ["subscribe"], label=SPAM)
keyword_song = keyword_lf("keyword_song", ["song"], label=HAM)
short_comment = length_lf("short_comment", label=HAM, max=20)
'''


@pytest.fixture(scope="module")
def youtube_project(tmp_path_factory):
    """The demo's data with a 3-LF suite: the loop needs errors to work on (the demo's 18 LFs leave few)."""
    work = tmp_path_factory.mktemp("guided")
    (work / "suite.py").write_text(WEAK_SUITE)
    project = Project.init(
        work / "project", sources={"train": [demo.DATA / f for f in demo.TRAIN_FILES],
                                   "test": [demo.DATA / f for f in demo.TEST_FILES]},
        classes=demo.CLASSES, text="CONTENT", id="COMMENT_ID", label="label", dev_sample=demo.DEV_SIZE,
        seed=demo.SEED, hide_labels=["train"], duplicates="drop_identical", lfs=work / "suite.py")
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


def test_suggestions_are_measured_on_rows_they_were_not_mined_from(youtube_project, monkeypatch):
    from labelflow import suggest

    project = youtube_project
    analysis = analyze(project)
    mined, measured = [], []
    real_mine, real_correct = suggest._discriminative_ngrams, suggest._correct
    monkeypatch.setattr(suggest, "_discriminative_ngrams", lambda *a, **kw: (
        mined.append(set(a[2][a[5]].tolist())), real_mine(*a, **kw))[1])  # the mining folds' dataset rows
    monkeypatch.setattr(suggest, "_correct", lambda *a, **kw: (measured.append(set(a[-1].tolist())),
                                                              real_correct(*a, **kw))[1])
    top = analysis.slices[0]
    suggestions = suggest_lfs(project, analysis, top, max_suggestions=5)
    assert suggestions, f"no suggestion for {top.name}"
    assert len(mined) == suggest.FOLDS and all(mined)
    dev = set(np.flatnonzero((project.dataset().frame["split"].to_numpy() == "dev")).tolist())
    held_out = {frozenset(rows) for rows in measured}  # the rows each refit was scored on
    assert len(held_out) == suggest.FOLDS
    for fold_mined in mined:  # each fold's candidates are scored on exactly the dev rows they were not mined from
        assert frozenset(dev - fold_mined) in held_out
    assert set().union(*held_out) == dev and all(not a & b for a in held_out for b in held_out if a != b)
    ranks = [suggest.suggestion_rank(s) for s in suggestions]
    assert ranks == sorted(ranks) and min(s.delta for s in suggestions) > 0
    best = suggestions[0]
    assert best.held_out_rows in (demo.DEV_SIZE // 2, demo.DEV_SIZE) and best.interval[0] < best.delta < best.interval[1]
    assert 0 < best.support_correct <= best.support and best.precision == best.support_correct / best.support
    assert 1 <= len(best.examples) <= 3 and all(gold in ("HAM", "SPAM") for _, gold in best.examples)
    assert 0 < best.coverage < 1 and not any(s.name.startswith(("keyword_the", "keyword_is", "keyword_and"))
                                             for s in suggestions)  # stop words are never candidates
    before = project.suite_path.read_text()
    accept_suggestion(project, best)
    after = project.suite_path.read_text()
    assert after.startswith(before.rstrip("\n")) and best.code.strip().splitlines()[-1] in after


def test_refits_keep_the_saved_models_settings(tmp_path):
    work = tmp_path
    shutil.copyfile(demo.SUITE, work / "suite.py")
    project = Project.init(
        work / "project", sources={"train": [demo.DATA / f for f in demo.TRAIN_FILES[:1]],
                                   "test": [demo.DATA / f for f in demo.TEST_FILES]},
        classes=demo.CLASSES, text="CONTENT", id="COMMENT_ID", label="label", dev_sample=60, seed=demo.SEED,
        hide_labels=["train"], duplicates="drop_identical", lfs=work / "suite.py", label_model="labelflow")
    project.apply()
    assert project.fit_settings() == {"seed": 123, "use_dev": False}  # never fit: the defaults
    project.fit(seed=7, use_dev=True)
    assert project.fit_settings() == {"seed": 7, "use_dev": True}
    project.fit()  # an accept or a saved LF refits like this: the settings stay
    assert project.fit_settings() == {"seed": 7, "use_dev": True}
    assert analyze(project).fit_settings == {"seed": 7, "use_dev": True}
    project.fit(use_dev=False)
    assert project.fit_settings() == {"seed": 7, "use_dev": False}


def test_extend_suggestion_is_measured_held_out_and_accepting_it_extends_the_lf(tmp_path):
    """An "extend" suggestion: an LF's votes reach the rows near them in embedding space. The embedding here
    is made from the rows' true labels (plus noise) so that reaching near rows must help; the mechanism is
    what is tested: radius from the mining rows, held-out effect, accepting writes the extend setting."""
    import polars as pl

    from labelflow import suggest
    from labelflow.extend import EXT_SUFFIX

    (tmp_path / "suite.py").write_text(WEAK_SUITE)
    project = Project.init(
        tmp_path / "project", sources={"train": [demo.DATA / f for f in demo.TRAIN_FILES],
                                       "test": [demo.DATA / f for f in demo.TEST_FILES]},
        classes=demo.CLASSES, text="CONTENT", id="COMMENT_ID", label="label", dev_sample=demo.DEV_SIZE,
        seed=demo.SEED, hide_labels=["train"], duplicates="drop_identical", lfs=tmp_path / "suite.py")
    truth = pl.concat([pl.read_csv(demo.DATA / f).select(pl.col("COMMENT_ID").alias("id"), "label")
                       for f in (*demo.TRAIN_FILES, *demo.TEST_FILES)]).unique("id")
    ids = project.dataset().frame["id"]
    label = pl.DataFrame({"id": ids}).join(truth, on="id", how="left")["label"].to_numpy()
    rng = np.random.default_rng(0)
    project.save_fm_output("embedding", ids, np.eye(2)[label] + rng.normal(scale=0.3, size=(len(ids), 2)))
    project.apply()
    project.fit()
    analysis = analyze(project)
    found = [s for sl in analysis.slices[:5] for s in suggest_lfs(project, analysis, sl, kinds=("extend",))]
    assert found and all(s.kind == "extend" and s.name.endswith(EXT_SUFFIX) and s.delta > 0 for s in found)
    best = min(found, key=suggest.suggestion_rank)
    assert '"extend": add ' in best.code and best.held_out_rows >= demo.DEV_SIZE // 2
    path = accept_suggestion(project, best)
    assert path.name == "labelflow.json" and project.extend_config.lfs == [best.name.removesuffix(EXT_SUFFIX)]
    project.apply()
    matrix = project.matrix()
    assert matrix.lf_names[-1] == best.name  # the extension column, its radius now fit on all the dev gold
    extended = matrix.values[:, -1] != -1
    assert extended.any() and not (matrix.values[extended, :-1] != -1).any()  # it only reaches uncovered rows
    assert best.support_correct / best.support >= 0.8  # near rows of a label-made embedding share the label


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
    assert "no suggestion raises held-out accuracy" in capsys.readouterr().err
    assert main(["analyze", "-p", root, "--suggest", "3"]) == 0
    out = capsys.readouterr().out
    assert "effect measured on dev gold rows they were not mined from" in out and "held-out accuracy" in out
    assert main(["analyze", "-p", root, "--suggest", "3", "--accept", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["slices"] and doc["suggestions"]
    best = min(doc["suggestions"], key=lambda s: (-s["delta_interval"][0], -s["delta"], s["name"]))
    assert doc["accepted"]["name"] == best["name"] and best["delta"] > 0
    low, high = best["delta_interval"]
    assert low < best["delta"] < high and best["support_correct"] <= best["support"] and best["examples"]
    assert best["code"].strip().splitlines()[-1] in youtube_project.suite_path.read_text()


@pytest.mark.slow
def test_prompt_suggestion_asks_the_llm_only_about_uncovered_rows(youtube_project):
    """The prompt candidate (Gemma 3 270M) is readable code that votes only where no other LF does."""
    project = youtube_project
    analysis = analyze(project)
    uncovered = next(s for s in analysis.slices if s.kind == "uncovered")
    found = suggest_lfs(project, analysis, uncovered, kinds=("prompt",), max_suggestions=5)
    assert all(s.kind == "prompt" and s.delta > 0 for s in found)
    from labelflow.suggest import _prompt_code
    from labelflow.suite_edit import suite_globals

    _, name, code = _prompt_code(project, 0, "HAM", set(), suite_globals(project))
    assert 'answers={HAM: ["yes"], SPAM: ["no"]}' in code and 'budget="uncovered"' in code
    trial = try_lf(project, code)
    assert trial.error is None and trial.name == name
    covered = (project.matrix().values != -1).any(axis=1)
    assert (trial.votes[covered] == -1).all() and (trial.votes[~covered] != -1).any()
