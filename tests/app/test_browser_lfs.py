"""The LFs page's editor in a real browser (headless Chromium, Playwright): a monospace code editor where Tab
indents, a draft that survives a reload, Ctrl+Enter trying the code, an LF of the suite opened, disabled and
deleted, and an LF raising on rows offered the app's abstain switch. Screenshots ``lfs-*.png`` at 1440 and 1024 px.

Shared fixtures (``app``, ``new_page``, ``ui``) are in ``conftest.py``; ``ui.lf_editor`` / ``ui.write_lf`` reach
the editor inside its component frame.
"""

from __future__ import annotations

import re
import time

import pytest
from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import expect

from labelflow.suite_edit import lf_source
from labelflow.project import Project

pytestmark = pytest.mark.slow

FREE = 'mentions_free = keyword_lf("mentions_free", ["free", "win"], label=SPAM)'
BOOM = "@labeling_function()\ndef boom(x):\n    return SPAM if 1 // (len(x.text) % 7) else HAM\n"
EDITOR = 'iframe[title="code_editor.code_editor"]'


def frame(page):
    """The editor's frame (the one shown: an editor given new code mounts afresh in a new one)."""
    return page.locator(EDITOR).filter(visible=True).content_frame


def editor_value(page) -> str:
    """What the Ace editor holds, read from the editor itself."""
    return frame(page).locator(".ace_editor").first.evaluate("e => e.env.editor.getValue()", timeout=5000)


def wait_until(check, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if check():
                return
        except PlaywrightError:  # a frame going away as the page reruns
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def draft(app) -> str | None:
    path = app.project.store.lf_draft
    return path.read_text() if path.exists() else None


def shot(page, ui, name: str) -> None:
    """A screenshot without a button's tooltip over the page (the mouse moved off)."""
    page.mouse.move(0, 0)
    page.wait_for_timeout(300)
    ui.shot(page, name)


def open_lfs(page, app, ui):
    ui.visit(page, app, "lfs", "Labeling functions")
    ui.expect_text(page, "18 LFs")
    return ui.lf_editor(page)


def choose_lf(page, name: str) -> None:
    box = page.get_by_role("combobox", name="LF", exact=True)
    box.click()
    page.keyboard.type(name)  # the list shows a few options at a time: filter it
    page.get_by_role("option", name=name, exact=True).click()
    expect(box).to_have_value(name)


def test_the_editor_is_monospace_tab_indents_and_the_draft_survives_a_reload(app, new_page, ui):
    page = new_page(width=1440, height=1100)
    box = open_lfs(page, app, ui)
    editor = frame(page)

    ace = editor.locator(".ace_editor").first
    family = ace.evaluate("e => getComputedStyle(e).fontFamily")
    assert "monospace" in family, family
    narrow, wide = ace.evaluate("""e => { const c = document.createElement("canvas").getContext("2d");
        c.font = getComputedStyle(e).font; return [c.measureText("iiii").width, c.measureText("WWWW").width]; }""")
    assert narrow == pytest.approx(wide), (family, narrow, wide)
    assert editor.locator(".ace_keyword").count() == 0  # empty: nothing highlighted yet

    box.focus()
    page.keyboard.type("@labeling_function()")
    page.keyboard.press("Enter")
    page.keyboard.type("def short(x):")
    page.keyboard.press("Enter")  # Ace indents the body itself
    page.keyboard.type("if len(x.text) < 10:")
    page.keyboard.press("Enter")
    page.keyboard.type("return HAM")
    page.keyboard.press("Enter")
    page.keyboard.press("Shift+Tab")  # back out one level
    page.keyboard.type("return ABSTAIN")
    page.keyboard.press("Enter")
    page.keyboard.press("Shift+Tab")
    page.keyboard.press("Tab")  # Tab indents: it does not leave the editor
    page.keyboard.type("# end")
    code = ("@labeling_function()\ndef short(x):\n    if len(x.text) < 10:\n        return HAM\n    return ABSTAIN\n"
            "    # end")
    assert editor_value(page) == code
    assert box.evaluate("e => e === document.activeElement")  # still in the editor
    assert editor.locator(".ace_keyword").filter(has_text="def").count() == 1  # Python highlighting
    wait_until(lambda: draft(app) == code, "the draft in store/drafts/lf.py")
    shot(page, ui, "lfs-editor-typing-1440")

    page.reload()
    page.get_by_role("heading", name="Labeling functions", level=1).wait_for()
    ui.lf_editor(page)
    wait_until(lambda: editor_value(page) == code, "the draft back in the editor after the reload")

    box = ui.lf_editor(page)
    box.press("Control+Enter")
    ui.expect_text(page, "Accuracy on dev")
    ui.expect_text(page, "Trial of short")
    shot(page, ui, "lfs-editor-draft-restored-1440")


def test_ctrl_enter_tries_and_saving_clears_the_draft(app, new_page, ui):
    page = new_page(width=1024, height=1100)
    open_lfs(page, app, ui)
    ui.write_lf(page, FREE)
    ui.expect_text(page, "Accuracy on dev")
    shot(page, ui, "lfs-trial-1024")
    save = page.get_by_role("button", name="Save to the suite")
    expect(save).to_be_enabled()
    save.click()
    ui.expect_text(page, re.compile(r"^Saved LF 'mentions_free' to youtube_spam.py; refit labelflow: dev accuracy"))
    assert FREE in app.project.suite_path.read_text()
    assert draft(app) is None
    ui.lf_editor(page)
    wait_until(lambda: editor_value(page) == "", "the editor emptied")
    shot(page, ui, "lfs-saved-1024")


@pytest.mark.parametrize("width", [1440, 1024])
def test_open_disable_and_delete_an_lf_of_the_suite(app, new_page, ui, width):
    page = new_page(width=width, height=1100)
    open_lfs(page, app, ui)
    source = app.project.suite_path.read_text()

    choose_lf(page, "has_person")
    page.get_by_role("button", name="Open in editor").click()
    ui.expect_text(page, "Opened has_person from the suite")
    wait_until(lambda: editor_value(page) == lf_source(source, "has_person"), "has_person's source in the editor")
    ui.expect_text(page, "Accuracy on dev")
    shot(page, ui, f"lfs-open-{width}")

    choose_lf(page, "keyword_my")
    page.get_by_role("button", name="Disable").click()
    ui.expect_text(page, re.compile(r"^Disabled LF 'keyword_my': its votes left the label matrix"))
    ui.expect_text(page, "18 LFs (1 disabled: not applied, not fit)")
    project = Project.open(app.project.root)
    assert project.config.disabled_lfs == ["keyword_my"] and "keyword_my" not in project.matrix().lf_names
    shot(page, ui, f"lfs-disabled-{width}")

    choose_lf(page, "keyword_please")
    page.get_by_role("button", name="Delete…").click()
    ui.expect_text(page, "Delete LF keyword_please?")
    assert "keyword_please = " in app.project.suite_path.read_text()
    shot(page, ui, f"lfs-delete-confirm-{width}")
    page.get_by_role("button", name="Delete keyword_please").click()
    ui.expect_text(page, re.compile(r"^Deleted LF 'keyword_please' from youtube_spam.py; refit labelflow: "))
    assert "keyword_please = " not in app.project.suite_path.read_text()
    assert "keyword_please" not in Project.open(app.project.root).matrix().lf_names
    ui.expect_text(page, "17 LFs (1 disabled")


def test_an_lf_that_raises_offers_the_abstain_switch(app, new_page, ui):
    page = new_page(width=1440, height=1100)
    open_lfs(page, app, ui)
    ui.write_lf(page, BOOM)
    alert = page.get_by_text(re.compile(r"^LF 'boom' raised ZeroDivisionError"))
    expect(alert).to_be_visible(timeout=ui.TIMEOUT_MS)
    expect(alert).to_contain_text("turn on Let LFs abstain on rows where they raise an error below")
    expect(alert).not_to_contain_text("on_error")
    shot(page, ui, "lfs-error-hint-1440")

    page.get_by_test_id("stCheckbox").filter(has_text="Let LFs abstain on rows where they raise an error").click()
    ui.expect_text(page, re.compile(r"^boom raised an error on \d+ rows and abstains there"))
    assert Project.open(app.project.root).config.on_error == "abstain"
    page.get_by_role("button", name="Save to the suite").click()
    ui.expect_text(page, re.compile(r"^Saved LF 'boom' to youtube_spam.py"))
    shot(page, ui, "lfs-error-abstained-1440")
