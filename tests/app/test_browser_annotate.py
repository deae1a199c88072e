"""The Annotate page in a real browser (issue 16, points 2 and 3): ``labelflow ui`` in a subprocess, headless
Chromium. The name survives a reload; Enter then ``1`` labels the row; the row shows its gold, every annotator's
label, the prediction and the LF votes; the history shows text and changes an older label; two annotators who
disagree are shown and settled; train rows can be labelled; the most-uncertain-first queue.

Screenshots (``annotate-*``) go to ``$LABELFLOW_ARTIFACTS`` (default ``test-artifacts/app/``) at 1440 and 1024 px.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.slow

HAM = re.compile(r"^HAM\b")


def dev_rows(app) -> list[tuple[str, str]]:
    """``(id, text)`` of the dev rows in file order."""
    return app.project.dataset().frame.filter(split="dev").select("id", "text").rows()


def context(page):
    """The box beside the row: its gold now, data label, annotators, prediction and LF votes."""
    return page.get_by_test_id("stMarkdownContainer").filter(has_text="Gold now:")


def settled(page) -> None:
    """Wait until the page's run is over (Streamlit's running indicator gone), so a screenshot shows its end."""
    page.wait_for_timeout(300)
    expect(page.get_by_test_id("stStatusWidget")).to_be_hidden(timeout=90_000)


def radio(page, group: str, option: str):
    return page.get_by_test_id("stRadio").filter(has_text=group).get_by_text(option, exact=True)


def test_the_name_survives_a_reload_and_enter_then_1_labels_the_row(app, new_page, ui):
    first = dev_rows(app)[0][0]
    page = new_page(width=1440)
    ui.visit(page, app, "annotate", "Annotate")
    box = page.get_by_label("Annotator")
    box.fill("ann")
    box.press("Enter")
    page.wait_for_function("() => document.activeElement?.getAttribute('aria-label') !== 'Annotator'", timeout=5000)
    ui.press_shortcut(page, "1", page.get_by_role("button", name=HAM))  # not typed into the name box
    ui.expect_text(page, "1 of 60 dev rows labeled by ann")
    expect(box).to_have_value("ann")
    assert ui.stored(app) == [(first, "ann", "HAM")]
    expect(page).to_have_url(re.compile(r"/annotate\?annotator=ann$"))
    settled(page)
    ui.shot(page, "annotate-label-1440")

    page.reload()
    page.get_by_role("heading", name="Annotate", level=1).wait_for()
    ui.expect_text(page, "1 of 60 dev rows labeled by ann")  # not "0 of 60 … by you"
    expect(page.get_by_label("Annotator")).to_have_value("ann")
    ui.press_shortcut(page, "2", ui.class_button(page, "SPAM"))
    ui.expect_text(page, "2 of 60 dev rows labeled by ann")
    page.get_by_role("link", name="LFs").click()  # another page keeps the name, in the address too
    page.get_by_role("heading", name="Labeling functions", level=1).wait_for()
    expect(page).to_have_url(re.compile(r"annotator=ann"))
    expect(page.get_by_label("Annotator")).to_have_value("ann")


def test_the_row_shows_what_it_has_and_the_history_changes_an_older_label(app, new_page, ui):
    rows = dev_rows(app)
    first, second = rows[0][0], rows[1][0]
    i = app.project.dataset().frame["id"].to_list().index(second)
    names = app.project.schema.names
    app.project.annotate(second, "HAM", annotator="bob")
    matrix, predictions = app.project.matrix(), app.project.predictions()
    page = new_page(width=1024)
    ui.start_annotating(page, app, "ann")
    settled(page)
    ui.shot(page, "annotate-label-1024")
    ui.label(page, "HAM", "ann", "dev", 1)
    shown = context(page)  # now the second row: bob labelled it
    expect(shown).to_contain_text(f"Data file: {names[app.project.dataset().gold()[i]]}")
    expect(shown).to_contain_text(re.compile(r"Annotators: bob: HAM \(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\)"))
    expect(shown).to_contain_text(f"Label model labelflow: {names[predictions.pred[i]]} "
                                  f"(p = {predictions.probs[i].max():.2f}")
    voters = [lf for lf, v in zip(matrix.lf_names, matrix.values[i]) if v >= 0]
    expect(shown).to_contain_text(f"LF votes ({len(voters)}):")
    for lf in voters:
        expect(shown).to_contain_text(lf)
    ui.label(page, "SPAM", "ann", "dev", 2)
    ui.label(page, "HAM", "ann", "dev", 3)

    history = page.get_by_test_id("stDataFrame")
    for _, text in rows[:3]:
        expect(history).to_contain_text(text[:40])  # each labelled row's text
    chooser = page.get_by_role("combobox", name="Change or undo one of your labels")
    chooser.click()
    page.get_by_role("option", name=re.compile(re.escape(first))).click()
    expect(page.get_by_role("button", name="Change to HAM")).to_be_disabled()
    page.get_by_role("button", name="Change to SPAM").click()
    expect(page.get_by_role("button", name="Change to SPAM")).to_be_disabled(timeout=ui.TIMEOUT_MS)
    assert sorted(r for r in ui.stored(app) if r[1] == "ann") == sorted(
        [(first, "ann", "SPAM"), (second, "ann", "SPAM"), (rows[2][0], "ann", "HAM")])
    settled(page)
    ui.shot(page, "annotate-history-1024")
    page.get_by_role("button", name="Remove my label").click()  # the oldest label, changed, is still chosen
    ui.expect_text(page, "2 of 60 dev rows labeled by ann")
    assert first not in [r[0] for r in ui.stored(app) if r[1] == "ann"]


def test_two_annotators_who_disagree_are_shown_and_settled(app, new_page, ui):
    first = dev_rows(app)[0][0]
    app.project.annotate(first, "SPAM", annotator="bob")
    page = new_page(width=1440)
    ui.start_annotating(page, app, "ann")
    expect(context(page)).to_contain_text("bob: SPAM")
    ui.label(page, "HAM", "ann", "dev", 1)
    ui.expect_text(page, re.compile(r"you said HAM, bob said SPAM\. Until someone settles it"))
    assert sorted(ui.stored(app)) == [(first, "ann", "HAM"), (first, "bob", "SPAM")]  # both kept

    radio(page, "one row at a time", "Disagreements").click()
    ui.expect_text(page, re.compile(r"^To settle: annotators disagree"))
    table = page.get_by_test_id("stTable")
    expect(table).to_contain_text("data file")
    expect(table).to_contain_text("bob")
    settled(page)
    ui.shot(page, "annotate-disagreements-1440")
    page.get_by_role("button", name="Settle as SPAM").click()
    ui.expect_text(page, re.compile(r"settled as SPAM by ann\.$"))
    settlement = app.project.annotations.resolutions().row(0, named=True)
    assert (settlement["id"], settlement["label"], settlement["resolver"]) == (first, 1, "ann")
    ids = app.project.dataset().frame["id"].to_list()
    assert app.project.gold()[ids.index(first)] == 1

    other = new_page(width=1024)  # bob's view, in another session: the settlement with who and when
    ui.visit(other, app, "annotate?annotator=bob", "Annotate")
    radio(other, "one row at a time", "Disagreements").click()
    radio(other, "Show", "all").click()
    ui.expect_text(other, re.compile(r"^Settled as SPAM by ann, \d{4}-\d\d-\d\d \d\d:\d\d:\d\d"))
    settled(other)
    ui.shot(other, "annotate-disagreements-1024")


def test_train_rows_can_be_labelled_and_the_queue_can_put_the_most_uncertain_first(app, new_page, ui):
    project = app.project
    frame = project.dataset().frame
    train = frame.filter(split="train")["id"].to_list()
    page = new_page(width=1024)
    ui.start_annotating(page, app, "ann", "train")
    ui.expect_text(page, re.compile(r"They do not change what is trained"))
    ui.expect_text(page, re.compile(rf"^Row {re.escape(train[0])} · train"))
    ui.label(page, "SPAM", "ann", "train", 1)
    text = frame.filter(split="train")["text"][0]
    expect(page.get_by_test_id("stDataFrame")).to_contain_text(text[:30])  # the history, with the row's text
    assert ui.stored(app) == [(train[0], "ann", "SPAM")]
    assert project.gold()[frame["id"].to_list().index(train[0])] == 1
    settled(page)
    ui.shot(page, "annotate-train-1024")

    top = np.sort(project.predictions().probs, axis=1)
    margin = top[:, -1] - top[:, -2]
    dev = np.flatnonzero(frame["split"].to_numpy() == "dev")
    order = [frame["id"][int(j)] for j in dev[np.argsort(margin[dev], kind="stable")]]
    radio(page, "Split", "dev").click()
    radio(page, "Queue order", "Most uncertain first").click()
    ui.expect_text(page, re.compile(rf"^Row {re.escape(order[0])} · dev · 60 to go · smallest margin"))
    ui.label(page, "HAM", "ann", "dev", 1)
    ui.expect_text(page, re.compile(rf"^Row {re.escape(order[1])} · dev · 59 to go"))
    settled(page)
    ui.shot(page, "annotate-uncertain-1024")
    page.set_viewport_size({"width": 1440, "height": 1600})
    settled(page)
    ui.shot(page, "annotate-uncertain-1440")
