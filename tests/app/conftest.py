"""A small real project for the app, and a way to open one of its pages.

The project: YouTube file 01 as train (labels hidden, 60 rows moved to dev with
their gold) and file 05 as test, a copy of ``lfs/youtube_spam.py`` inside the
project folder as its suite, applied and fit with the ``labelflow`` label model.
It is built once per session and copied for each test, so a test may write to it.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from labelflow.project import Project

REPO = Path(__file__).resolve().parents[2]
APP = REPO / "app"
YOUTUBE = REPO / "data" / "youtube"
SUITE = "lfs/youtube_spam.py"
PAGES = ("data", "lfs", "label_model", "error_analysis", "annotate", "finetune")


def make_youtube_project(root: Path) -> Project:
    """Create, apply and fit the app's test project in ``root``."""
    suite = root / SUITE
    suite.parent.mkdir(parents=True)
    shutil.copy(REPO / SUITE, suite)
    project = Project.init(root, sources={"train": [YOUTUBE / "Youtube01-Psy.csv"],
                                          "test": [YOUTUBE / "Youtube05-Shakira.csv"]},
                           classes=["HAM", "SPAM"], text="CONTENT", id="COMMENT_ID", label="label", dev_sample=60,
                           hide_labels=["train"], duplicates="drop_identical", lfs=suite)
    project.apply(n_jobs=1)
    project.fit()
    return project


@pytest.fixture
def keep_first_lfs():
    """``keep_first_lfs(project, n=3)``: see :func:`_keep_first_lfs`."""
    return _keep_first_lfs


def _keep_first_lfs(project: Project, n: int = 3) -> None:
    """Cut the project's suite to its first ``n`` LFs (an ``LFS`` list), re-apply and refit: the full suite
    leaves 2 of 60 dev rows wrong, too few for a suggestion to be measured to help on held-out rows."""
    names = [lf.name for lf in project.lfs()][:n]
    with project.suite_path.open("a", encoding="utf-8") as suite:
        suite.write(f"\nLFS = [{', '.join(names)}]\n")
    project.trust()
    project.apply(n_jobs=1)
    project.fit()


@pytest.fixture(scope="session")
def youtube_template(tmp_path_factory) -> Path:
    return make_youtube_project(tmp_path_factory.mktemp("app") / "youtube").root


@pytest.fixture
def app_project(youtube_template, tmp_path, monkeypatch) -> Project:
    """A fresh copy of the test project, named by ``LABELFLOW_PROJECT``."""
    root = tmp_path / "youtube"
    shutil.copytree(youtube_template, root)
    monkeypatch.setenv("LABELFLOW_PROJECT", str(root))
    return Project.open(root)


@pytest.fixture
def open_page(monkeypatch):
    """Open one page of the app as a browser does: run the entry point, then switch to the page.

    ``streamlit run`` puts the entry point's folder on ``sys.path`` (the pages import
    ``loaders`` and ``widgets`` from it); AppTest does not, so this does.
    """
    from streamlit.testing.v1 import AppTest

    monkeypatch.syspath_prepend(str(APP))

    def open_(page: str) -> AppTest:
        at = AppTest.from_file(APP / "main.py", default_timeout=60).run()
        at.switch_page(f"stages/{page}.py").run()
        assert not at.exception, [e.value for e in at.exception]
        return at

    return open_
