"""Editing a project's suite from the LF editor: an LF's source, deleting it, disabling it, and what an LF that
raises on a row does (the project's ``on_error`` setting)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from labelflow import cli
from labelflow.errors import LFError, ProjectError
from labelflow.project import Project
from labelflow.project_config import CONFIG_FILE
from labelflow.suite_edit import delete_lf, lf_source, remove_from_suite, save_lf, try_lf

SUITE = '''\
"""A suite."""

from labelflow import ABSTAIN, keyword_lf, labeling_function

HAM, SPAM = 0, 1

# Asking for subscribers.
kw_sub = keyword_lf(
    "kw_sub", ["subscribe"], label=SPAM
)

# Links, named apart from their variable.
links = keyword_lf("kw_link", ["http"], label=SPAM)


@labeling_function()
def py_short(x):
    """Short comments are ham."""
    return HAM if len(x.text) <= 4 else ABSTAIN


LFS = [
    kw_sub,
    links,
    py_short,
]
'''

# --- lf_source ----------------------------------------------------------------------------------------


def test_lf_source_is_the_top_level_definition_with_its_decorator():
    assert lf_source(SUITE, "kw_sub") == 'kw_sub = keyword_lf(\n    "kw_sub", ["subscribe"], label=SPAM\n)\n'
    assert lf_source(SUITE, "py_short") == ('@labeling_function()\ndef py_short(x):\n    """Short comments are ham."""\n'
                                            "    return HAM if len(x.text) <= 4 else ABSTAIN\n")


def test_lf_source_finds_an_lf_named_apart_from_its_variable():
    assert lf_source(SUITE, "kw_link") == 'links = keyword_lf("kw_link", ["http"], label=SPAM)\n'


def test_lf_source_is_none_where_no_one_statement_defines_the_lf():
    looped = "from labelflow import keyword_lf\n\nfor w in ['a', 'b']:\n    globals()[w] = keyword_lf(w, [w], label=1)\n"
    assert lf_source(looped, "a") is None
    assert lf_source(SUITE, "nowhere") is None
    assert lf_source(SUITE, "LFS") is None


def test_lf_source_saved_back_unchanged_leaves_the_suite_as_it_was(project):
    source = project.suite_path.read_text()
    save_lf(project, lf_source(source, "py_short"))
    assert project.suite_path.read_text() == source


# --- remove_from_suite --------------------------------------------------------------------------------


def test_remove_takes_the_definition_its_comments_and_its_lfs_entry():
    out = remove_from_suite(SUITE, "kw_sub")
    assert "kw_sub" not in out and "Asking for subscribers" not in out
    assert out == SUITE.replace('# Asking for subscribers.\nkw_sub = keyword_lf(\n    "kw_sub", ["subscribe"], '
                                'label=SPAM\n)\n\n', "").replace("    kw_sub,\n", "")


def test_remove_a_decorated_function_keeps_two_blank_lines_between_the_others():
    out = remove_from_suite(SUITE, "py_short")
    assert "py_short" not in out and "@labeling_function()" not in out
    assert 'label=SPAM)\n\n\nLFS = [\n    kw_sub,\n    links,\n]\n' in out


def test_remove_an_lf_named_apart_from_its_variable_and_from_a_one_line_list():
    suite = SUITE.replace("LFS = [\n    kw_sub,\n    links,\n    py_short,\n]", "LFS = [kw_sub, links, py_short]")
    out = remove_from_suite(suite, "kw_link")
    assert "links" not in out and "LFS = [kw_sub, py_short]" in out


def test_remove_without_an_lfs_list():
    suite = "from labelflow import keyword_lf\n\na = keyword_lf('a', ['x'], label=1)\nb = keyword_lf('b', ['y'], label=0)\n"
    assert remove_from_suite(suite, "a") == "from labelflow import keyword_lf\n\nb = keyword_lf('b', ['y'], label=0)\n"


def test_remove_refuses_what_it_cannot_find():
    with pytest.raises(LFError, match="no top-level definition of LF 'nowhere'"):
        remove_from_suite(SUITE, "nowhere")


# --- delete_lf on the tiny project ----------------------------------------------------------------------


def test_delete_lf_writes_the_suite_without_it_and_keeps_it_trusted(project, expected):
    path = delete_lf(project, "kw_free")
    assert path == project.suite_path
    assert "kw_free" not in path.read_text()
    assert [lf.name for lf in project.lfs()] == [n for n in expected.lfs if n != "kw_free"]
    assert project.trusted


def test_delete_lf_leaves_the_file_alone_when_the_suite_would_not_load(project):
    with project.suite_path.open("a") as f:
        f.write("\nALSO = [kw_free]\n")
    project.trust()
    before = project.suite_path.read_bytes()
    with pytest.raises(LFError, match="LF 'kw_free' was not deleted: without it the suite does not load"):
        delete_lf(project, "kw_free")
    assert project.suite_path.read_bytes() == before
    assert not list(project.suite_path.parent.glob(".*trial*"))


def test_delete_lf_refuses_the_last_lf(tmp_path, project_files):
    project_files["suite"].write_text("from labelflow import keyword_lf\n\nonly = keyword_lf('only', ['x'], label=1)\n")
    project = Project.init(tmp_path / "one", sources={s: [project_files[s]] for s in ("train", "dev", "test")},
                           classes=["HAM", "SPAM"], id="id", label="label", lfs=project_files["suite"])
    with pytest.raises(LFError, match="not deleted"):
        delete_lf(project, "only")


# --- disabled LFs ---------------------------------------------------------------------------------------


def test_disabled_lfs_are_not_applied_nor_fit_and_come_back_when_enabled(project, expected):
    project.apply(n_jobs=1)
    project.update_config(disabled_lfs=["kw_link"])
    assert project.stray_lfs() == ["kw_link"]  # the matrix still holds it: fit and the app say so
    assert [lf.name for lf in project.lfs()] == [n for n in expected.lfs if n != "kw_link"]
    assert [lf.name for lf in project.lfs(include_disabled=True)] == list(expected.lfs)
    matrix, _ = project.apply(n_jobs=1)
    kept = [j for j, n in enumerate(expected.lfs) if n != "kw_link"]
    assert matrix.lf_names == tuple(expected.lfs[j] for j in kept)
    np.testing.assert_array_equal(matrix.values, np.array(expected.matrix)[:, kept])
    project.fit()
    assert project.stray_lfs() == [] and project.label_model() is not None
    assert json.loads((project.root / CONFIG_FILE).read_text())["disabled_lfs"] == ["kw_link"]

    project.update_config(disabled_lfs=[])
    assert project.apply(n_jobs=1)[0].lf_names == tuple(expected.lfs)


def test_config_checks_its_new_keys(project):
    with pytest.raises(ProjectError, match="'on_error' must be \"raise\" or \"abstain\""):
        project.update_config(on_error="ignore")
    with pytest.raises(ProjectError, match="'disabled_lfs' must be a list of LF names"):
        project.update_config(disabled_lfs="kw_link")


# --- an LF raising on a row: the project's on_error ------------------------------------------------------

BOOM = "@labeling_function()\ndef boom(x):\n    return 1 if 1 // (len(x.text) % 4) else 0\n"
"""Raises ZeroDivisionError on the rows whose text length is a multiple of 4."""


def test_a_raising_lf_is_an_error_then_abstains_when_the_project_says_so(project):
    raises = [len(t) % 4 == 0 for t in project.dataset().frame["text"]]
    trial = try_lf(project, BOOM)
    assert "ZeroDivisionError" in trial.error and "on_error='abstain'" in trial.error  # what the app rewrites
    project.update_config(on_error="abstain")
    trial = try_lf(project, BOOM)
    assert trial.error is None and len(trial.failures) == sum(raises)
    assert all(f.lf == "boom" and "ZeroDivisionError" in f.error for f in trial.failures)
    np.testing.assert_array_equal(trial.votes == -1, raises)

    save_lf(project, BOOM)
    matrix, _ = project.apply(n_jobs=1)  # the config's setting
    assert len([f for f in matrix.failures if f.lf == "boom"]) == sum(raises)
    with pytest.raises(LFError, match="boom"):
        project.apply(n_jobs=1, on_error="raise")  # an explicit choice still wins


def test_cli_apply_follows_the_project_setting_unless_told(project, capsys):
    project.update_config(on_error="abstain")
    save_lf(project, BOOM)
    assert cli.main(["apply", "-p", str(project.root), "--jobs", "1"]) == 0
    project.update_config(on_error="raise")
    assert cli.main(["apply", "-p", str(project.root), "--jobs", "1"]) != 0
    assert "ZeroDivisionError" in capsys.readouterr().err
    project.update_config(on_error="abstain")
    assert cli.main(["apply", "-p", str(project.root), "--jobs", "1", "--on-error", "raise"]) != 0
