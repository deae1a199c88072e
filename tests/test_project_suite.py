"""A project has one LF suite, and its label matrix holds that suite's LFs (issue 16, point 1).

The demo once applied the FM suite's 21 LFs while its config named the plain 18-LF suite, so saving a
harmless LF in the app dropped the three FM LFs and showed a misleading accuracy drop. Now a suite file
given to ``apply`` becomes the project's suite, the demo points its project at the suite its matrix
holds, and where a matrix holds LFs the suite does not define, the CLI and the app say so.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from labelflow.cli import main
from labelflow.lf import load_lf_suite
from labelflow.project import Project
from labelflow.project_config import CONFIG_FILE

REPO = Path(__file__).resolve().parents[1]
EXTRA = '\n\nkw_check = keyword_lf("kw_check", ["check"], label=1)\n'


def _bigger_suite(project_files, tmp_path) -> Path:
    """The tiny suite plus one LF, in another file (as the demo's FM suite extends the plain one)."""
    path = tmp_path / "other" / "bigger.py"
    path.parent.mkdir()
    path.write_text(project_files["suite"].read_text() + EXTRA)
    return path


def test_a_suite_file_given_to_apply_becomes_the_projects_suite(project, project_files, tmp_path, expected):
    bigger = _bigger_suite(project_files, tmp_path)
    matrix, _ = project.apply(lfs=bigger, n_jobs=1)
    assert matrix.lf_names == (*expected.lfs, "kw_check")
    assert project.suite_path.resolve() == bigger.resolve()
    reopened = Project.open(project.root)  # written to labelflow.json, relative to the project folder
    assert json.loads((project.root / CONFIG_FILE).read_text())["lfs"] == "../other/bigger.py"
    assert reopened.suite_path.resolve() == bigger.resolve() and reopened.trusted  # the caller named the file
    assert [lf.name for lf in reopened.lfs()] == list(matrix.lf_names) and reopened.stray_lfs() == []
    assert reopened.set_suite(bigger) is False  # the same file again: nothing changes


def test_a_failed_apply_keeps_the_suite(project, tmp_path):
    broken = tmp_path / "broken.py"
    broken.write_text("from labelflow import labeling_function\n\n"
                      "@labeling_function()\ndef boom(x):\n    return 1 // 0\n")
    before = project.config.lfs
    with pytest.raises(Exception, match="ZeroDivisionError"):
        project.apply(lfs=broken, n_jobs=1)
    assert Project.open(project.root).config.lfs == before


def test_lf_objects_that_are_not_the_suite_are_named(project, project_files, tmp_path, expected):
    objects = load_lf_suite(_bigger_suite(project_files, tmp_path))
    project.apply(lfs=objects, n_jobs=1)  # the Python API applies what it is given
    assert project.config.lfs is not None and project.suite_path.resolve() == project_files["suite"].resolve()
    assert project.stray_lfs() == ["kw_check"]
    assert project.stray_lfs(suite=[*expected.lfs, "kw_check"]) == []
    project.apply(n_jobs=1)  # the configured suite
    assert project.stray_lfs() == []


def test_cli_apply_says_the_suite_changed_and_fit_names_stray_lfs(project, project_files, tmp_path, capsys):
    bigger = _bigger_suite(project_files, tmp_path)
    p = ["-p", str(project.root)]
    assert main(["apply", *p, "--lfs", str(bigger), "--jobs", "1"]) == 0
    out = capsys.readouterr().out
    assert f"the project's LF suite is now {bigger.resolve()} (was {project_files['suite'].resolve()})" in out
    assert main(["apply", *p, "--lfs", str(project_files["suite"]), "--jobs", "1", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert (result["suite"], result["suite_was"]) == (str(project_files["suite"].resolve()), "../other/bigger.py")
    assert main(["apply", *p, "--lfs", str(project_files["suite"]), "--jobs", "1", "--json"]) == 0
    assert "suite" not in json.loads(capsys.readouterr().out)  # unchanged the second time
    assert main(["apply", *p, "--lfs", str(bigger), "--jobs", "1"]) == 0

    bigger.write_text(project_files["suite"].read_text())  # kw_check removed from the suite, not re-applied yet
    Project.open(project.root).trust()
    assert main(["fit", *p]) == 0
    err = capsys.readouterr().err
    assert "note: the label matrix holds 1 LF(s) that the project's suite" in err and "(kw_check)" in err
    assert main(["apply", *p, "--jobs", "1"]) == 0 and main(["fit", *p]) == 0
    assert "note:" not in capsys.readouterr().err


@pytest.mark.slow
def test_the_demo_project_points_at_the_suite_its_matrix_holds(tmp_path, monkeypatch):
    """The demo's two stages on the real data, with a quick stand-in for the FM suite (the plain suite plus one
    keyword LF: the FM LFs need the FM models; ``test_cli.py::test_demo`` runs them)."""
    from labelflow import demo

    fm_suite = tmp_path / "suites" / "youtube_spam_plus.py"
    fm_suite.parent.mkdir()
    fm_suite.write_text("from labelflow import keyword_lf, load_lf_suite\n\n"
                        f"BASE = load_lf_suite({str(demo.SUITE)!r})\n"
                        'kw_check = keyword_lf("kw_check", ["check"], label=1)\nLFS = [*BASE, kw_check]\n')
    monkeypatch.setattr(demo, "SUITE_FM", fm_suite)
    monkeypatch.setattr(demo, "TRAIN_FILES", demo.TRAIN_FILES[:1])  # quicker: one train file, a smaller dev sample
    monkeypatch.setattr(demo, "DEV_SIZE", 60)
    report = demo.run_demo(tmp_path / "demo")
    project = Project.open(tmp_path / "demo")
    assert project.suite_path.resolve() == fm_suite.resolve()
    names = [lf.name for lf in project.lfs()]
    assert list(project.matrix().lf_names) == names and report["rows"]["lfs"] == len(names) == 19
    assert project.stray_lfs() == []
    assert project.config.label_model == "auto"
