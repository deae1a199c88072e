"""Issue 16's points in a real browser that the other browser files do not cover: what the app shows always
belongs to the project's one suite (1), models compared side by side and the labels downloaded (6), and a
project that was moved (8).

Shared fixtures (``app``, ``new_page``, ``ui``) are in ``conftest.py``; screenshots are ``points-*.png``.
"""

from __future__ import annotations

import re
import shutil

import polars as pl
import pytest
from playwright.sync_api import expect

from labelflow import keyword_lf
from labelflow.labelmodels import label_model_names
from labelflow.project import Project

pytestmark = pytest.mark.slow


def test_scores_of_another_lf_list_are_flagged_as_not_the_suites(app, new_page, ui):
    """Point 1: a label matrix applied from another LF list is named on the Label model page, not passed off."""
    project = app.project
    project.apply(lfs=[*project.lfs(), keyword_lf("extra_lf", ["zzzz"], label=1)])
    project.fit()
    page = new_page(width=1440)
    ui.visit(page, app, "label_model", "Label model")
    alert = page.get_by_role("alert").filter(has_text="holds 1 LF(s) that the project's suite")
    expect(alert).to_contain_text("youtube_spam.py does not define (extra_lf)", timeout=ui.TIMEOUT_MS)
    ui.shot(page, "points-1-stray-lfs")


def test_every_model_side_by_side_and_the_labels_downloaded(app, new_page, ui, tmp_path):
    """Point 6: every registered model on dev and test with coverage and which used dev gold; the export button."""
    page = new_page(width=1440)
    ui.visit(page, app, "label_model", "Label model")
    page.get_by_role("button", name="Fit every model").click()
    ui.expect_text(page, "Fitted every label model")
    table = page.get_by_test_id("stDataFrame").filter(has=page.get_by_text("dev gold"))
    expect(table).to_be_visible()
    assert sorted(p.stem for p in app.project.store.models.glob("*.npz")) == sorted(label_model_names())
    with page.expect_download() as download:
        page.get_by_role("button", name="Download labelflow's labels").click()
    path = tmp_path / "labels.csv"
    download.value.save_as(path)
    frame = pl.read_csv(path)
    assert frame.height == app.project.dataset().frame.height
    assert {"id", "pred_name", "covered", "tied", "prob_HAM", "prob_SPAM"} <= set(frame.columns)
    ui.shot(page, "points-6-models-side-by-side")


def test_a_moved_project_opens_and_says_what_it_changed(app_project, serve, new_page, ui, tmp_path):
    """Point 8: a project moved to another folder opens on every page; its suite and data follow it."""
    moved = tmp_path / "elsewhere" / "youtube"
    shutil.copytree(app_project.root, moved)
    shutil.rmtree(app_project.root)  # nothing of the old place is left to lean on
    app = serve(Project.open(moved))
    page = new_page(width=1440)
    ui.visit(page, app, "", "Data")
    ui.expect_text(page, re.compile(r"^719 of 719 rows"))
    ui.visit(page, app, "lfs", "Labeling functions")
    expect(page.get_by_text(re.compile("not found"))).to_have_count(0)
    ui.visit(page, app, "label_model", "Label model")
    ui.expect_text(page, "dev accuracy")
    ui.shot(page, "points-8-moved-project")
