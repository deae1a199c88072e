"""The app in a real browser: ``labelflow ui`` in a subprocess, driven by headless Chromium (Playwright).

Screenshots go to ``$LABELFLOW_ARTIFACTS`` (default ``test-artifacts/app/`` in the repository). The server,
the browser and the page helpers (``ui.visit``, ``ui.shot``, …) are fixtures of ``conftest.py``, shared by
every browser test file.
"""

from __future__ import annotations

import re
import sqlite3

import pytest
from playwright.sync_api import expect

from labelflow.error_analysis import analyze
from labelflow.suggest import suggest_lfs

pytestmark = pytest.mark.slow


def test_every_page_in_the_browser(app, new_page, ui, keep_first_lfs):
    page = new_page()
    ui.visit(page, app, "", "Data")
    ui.expect_text(page, "719 of 719 rows")
    ui.shot(page, "1-data")

    ui.visit(page, app, "lfs", "Labeling functions")
    ui.expect_text(page, "18 LFs")
    code = 'mentions_free = keyword_lf("mentions_free", ["free", "win"], label=SPAM)'
    ui.write_lf(page, code)  # the code editor (in its frame), then Ctrl+Enter tries it
    ui.expect_text(page, "Accuracy on dev")
    ui.shot(page, "2-lfs-trial")
    page.get_by_role("button", name="Save to the suite").click()
    ui.expect_text(page, re.compile(r"^Saved LF 'mentions_free' to youtube_spam.py; refit labelflow: dev accuracy"))
    assert code in app.project.suite_path.read_text()
    ui.shot(page, "3-lfs-saved")

    ui.visit(page, app, "label_model", "Label model")
    ui.expect_text(page, "dev accuracy")
    ui.shot(page, "4-label-model")

    keep_first_lfs(app.project)
    analysis = analyze(app.project)
    chosen, suggestions = next((s, found) for s in analysis.slices if (found := suggest_lfs(app.project, analysis, s)))
    ui.visit(page, app, "error_analysis", "Error analysis")
    ui.expect_text(page, "Slices with errors")
    slice_box = page.get_by_role("combobox", name="Slice")
    slice_box.click()
    page.get_by_role("option", name=re.compile("^" + re.escape(chosen.name + " — "))).click()
    expect(slice_box).to_have_value(re.compile("^" + re.escape(chosen.name + " — ")))
    page.get_by_role("button", name="Suggest LFs for this slice").click()
    page.get_by_role("button", name="Accept").first.wait_for()
    ui.shot(page, "5-error-analysis-suggestions")
    before = app.project.suite_path.read_text()
    page.get_by_role("button", name="Accept").first.click()
    ui.expect_text(page, re.compile(rf"^Accepted {suggestions[0].name} into youtube_spam.py; refit labelflow: "
                                 r"dev accuracy \d\.\d{3} → \d\.\d{3}\.$"))
    assert app.project.suite_path.read_text() != before
    assert suggestions[0].name in app.project.matrix().lf_names
    ui.shot(page, "6-error-analysis-accepted")

    ui.start_annotating(page, app, "ann")
    ui.shot(page, "7-annotate")
    ui.label(page, "SPAM", "ann", "dev", 1)
    assert [(a, lab) for _, a, lab in ui.stored(app)] == [("ann", "SPAM")]  # stored by class name
    ui.shot(page, "8-annotate-labeled")

    ui.visit(page, app, "finetune", "Fine-tune")
    ui.expect_text(page, re.compile("No runs yet"))
    expect(page.get_by_role("button", name="Start")).to_be_enabled(timeout=ui.TIMEOUT_MS)
    ui.shot(page, "9-finetune")


def test_a_label_survives_the_app_being_killed(app, new_page, ui):
    page = new_page()
    ui.start_annotating(page, app, "ann")
    first = app.project.dataset().frame.filter(split="dev")["id"][0]
    page.get_by_role("heading", name="Annotate").click()  # out of the annotator field
    ui.press_shortcut(page, "1", ui.class_button(page, "HAM"))  # HAM's shortcut
    ui.expect_text(page, "1 of 60 dev rows labeled by ann")
    app.kill()
    assert ui.stored(app) == [(first, "ann", "HAM")]
    with sqlite3.connect(app.project.store.annotations) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]


def test_two_sessions_labeling_at_once_lose_nothing(app, new_page, ui):
    ann, bob = new_page(), new_page()
    ui.start_annotating(ann, app, "ann", "dev")
    ui.start_annotating(bob, app, "bob", "test")
    for done in range(1, 4):  # the two clicks go out back to back; each session reruns in its own thread
        ham, spam = ui.class_button(ann, "HAM"), ui.class_button(bob, "SPAM")  # each page idle first
        ham.click()
        spam.click()
        ui.expect_text(ann, re.compile(rf"^{done} of 60 dev rows labeled by ann$"))
        ui.expect_text(bob, re.compile(rf"^{done} of 369 test rows labeled by bob$"))
    frame = app.project.dataset().frame
    dev, test = frame.filter(split="dev")["id"][:3].to_list(), frame.filter(split="test")["id"][:3].to_list()
    assert ui.stored(app) == [(i, "ann", "HAM") for i in dev] + [(i, "bob", "SPAM") for i in test]
