"""The app in a real browser: ``labelflow ui`` in a subprocess, driven by headless Chromium (Playwright).

Screenshots go to ``$LABELFLOW_ARTIFACTS`` (default ``test-artifacts/app/`` in the repository).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from playwright.sync_api import expect, sync_playwright

from labelflow.guided import analyze, suggest_lfs

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("LABELFLOW_ARTIFACTS", REPO / "test-artifacts")) / "app"
CHROMIUM = shutil.which("chromium")
TIMEOUT_MS = 90_000  # one page run on a loaded 2-core machine (the first loads the suite, TextBlob included)

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (`make test` installs it)")]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class App:
    """``labelflow ui`` running in its own process group, and the project it serves."""

    def __init__(self, project, log: Path) -> None:
        self.project = project
        self.url = f"http://127.0.0.1:{free_port()}"
        self.log = log
        script = Path(sys.executable).with_name("labelflow")
        with open(log, "wb") as out:
            self.process = subprocess.Popen([str(script), "ui", "-p", str(project.root), "--port",
                                             self.url.rsplit(":", 1)[1]], stdout=out, stderr=subprocess.STDOUT,
                                            start_new_session=True)
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{self.url}/_stcore/health", timeout=2) as response:
                    if response.read() == b"ok":
                        return
            except OSError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"`labelflow ui` did not come up on {self.url}:\n{log.read_text()}")
            time.sleep(0.25)

    def kill(self) -> None:
        """SIGKILL the server's whole process group: nothing gets to clean up."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture
def app(app_project, tmp_path):
    server = App(app_project, tmp_path / "server.log")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def browser():
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=[
            "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
        yield chromium
        chromium.close()


@pytest.fixture
def new_page(browser):
    """Pages in their own browser contexts (separate app sessions), closed after the test."""
    contexts = []

    def new():
        context = browser.new_context(viewport={"width": 1400, "height": 1600})
        context.set_default_timeout(TIMEOUT_MS)
        contexts.append(context)
        return context.new_page()

    yield new
    for context in contexts:
        context.close()


def visit(page, app: App, path: str, title: str) -> None:
    page.goto(f"{app.url}/{path}")
    page.get_by_role("heading", name=title, level=1).wait_for()


def shot(page, name: str) -> None:
    page.screenshot(path=ARTIFACTS / f"{name}.png", full_page=True)


def expect_text(page, text: str | re.Pattern) -> None:
    expect(page.get_by_text(text).first).to_be_visible(timeout=TIMEOUT_MS)


def start_annotating(page, app: App, annotator: str, split: str = "dev") -> None:
    visit(page, app, "annotate", "Annotate")
    page.get_by_label("Annotator").fill(annotator)
    page.get_by_label("Annotator").press("Enter")
    if split != "dev":
        page.get_by_text(split, exact=True).click()
    expect_text(page, re.compile(rf"^0 of \d+ {split} rows labeled by {annotator}$"))


def label(page, class_name: str, annotator: str, split: str, done: int) -> None:
    """Press a class button and wait until the page shows the label counted."""
    page.get_by_role("button", name=re.compile(rf"^{class_name}\b")).click()
    expect_text(page, re.compile(rf"^{done} of \d+ {split} rows labeled by {annotator}$"))


def press_shortcut(page, key: str, button) -> None:
    """Press ``key``, the keyboard shortcut of ``button``, once the page can take it; press it again only when no
    shortcut handler took the press.

    Streamlit binds a button's shortcut on ``document`` only while the button is rendered enabled, and ignores it
    while focus is in a text field; its handler calls ``preventDefault`` on the key it takes. So: wait until the
    button is enabled (a page still rerunning may show the previous run's disabled button) and focus is out of every
    text field, press, and read from a ``keydown`` listener on ``window`` (it runs after ``document``'s) whether the
    press was taken. A press that was taken is never repeated, so a slow rerun cannot get a row labelled twice.
    """
    page.evaluate("""() => {
        if (window.__shortcutPresses) return;
        window.__shortcutPresses = [];
        window.addEventListener("keydown", e => window.__shortcutPresses.push({key: e.key, taken: e.defaultPrevented}));
    }""")
    deadline = time.monotonic() + TIMEOUT_MS / 1000
    while True:
        expect(button).to_be_enabled(timeout=TIMEOUT_MS)
        page.wait_for_function("""() => !["INPUT", "TEXTAREA", "SELECT"].includes(document.activeElement?.tagName)
                                        && !document.activeElement?.isContentEditable""", timeout=TIMEOUT_MS)
        seen = page.evaluate("window.__shortcutPresses.length")
        page.keyboard.press(key)
        presses = page.evaluate("window.__shortcutPresses")[seen:]
        assert [p["key"] for p in presses] == [key], presses
        if presses[0]["taken"]:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"no shortcut handler took the key {key!r} in {TIMEOUT_MS / 1000:.0f} s")
        # not bound yet: the enabled button's effect that binds it runs after the next frame is painted
        page.evaluate("() => new Promise(done => requestAnimationFrame(() => requestAnimationFrame(done)))")


def stored(app: App) -> list[tuple]:
    with sqlite3.connect(app.project.store / "annotations.sqlite") as conn:
        return conn.execute("SELECT id, annotator, label FROM annotations ORDER BY annotator, time").fetchall()


def test_every_page_in_the_browser(app, new_page, keep_first_lfs):
    page = new_page()
    visit(page, app, "", "Data")
    expect_text(page, "719 of 719 rows")
    shot(page, "1-data")

    visit(page, app, "lfs", "Labeling functions")
    expect_text(page, "18 LFs")
    code = 'mentions_free = keyword_lf("mentions_free", ["free", "win"], label=SPAM)'
    page.get_by_label("LF code").fill(code)
    page.get_by_label("LF code").press("Control+Enter")
    expect_text(page, "Accuracy on dev")
    shot(page, "2-lfs-trial")
    page.get_by_role("button", name="Save to the suite").click()
    expect_text(page, re.compile(r"^Saved LF 'mentions_free' to youtube_spam.py; refit labelflow: dev accuracy"))
    assert code in app.project.suite_path.read_text()
    shot(page, "3-lfs-saved")

    visit(page, app, "label_model", "Label model")
    expect_text(page, "dev accuracy")
    shot(page, "4-label-model")

    keep_first_lfs(app.project)
    analysis = analyze(app.project)
    chosen, suggestions = next((s, found) for s in analysis.slices if (found := suggest_lfs(app.project, analysis, s)))
    visit(page, app, "error_analysis", "Error analysis")
    expect_text(page, "Slices with errors")
    slice_box = page.get_by_role("combobox", name="Slice")
    slice_box.click()
    page.get_by_role("option", name=re.compile("^" + re.escape(chosen.name + " — "))).click()
    expect(slice_box).to_have_value(re.compile("^" + re.escape(chosen.name + " — ")))
    page.get_by_role("button", name="Suggest LFs for this slice").click()
    page.get_by_role("button", name="Accept").first.wait_for()
    shot(page, "5-error-analysis-suggestions")
    before = app.project.suite_path.read_text()
    page.get_by_role("button", name="Accept").first.click()
    expect_text(page, re.compile(rf"^Accepted {suggestions[0].name} into youtube_spam.py; refit labelflow: "
                                 r"dev accuracy \d\.\d{3} → \d\.\d{3}\.$"))
    assert app.project.suite_path.read_text() != before
    assert suggestions[0].name in app.project.matrix().lf_names
    shot(page, "6-error-analysis-accepted")

    start_annotating(page, app, "ann")
    shot(page, "7-annotate")
    label(page, "SPAM", "ann", "dev", 1)
    assert [(a, lab) for _, a, lab in stored(app)] == [("ann", "SPAM")]  # stored by class name
    shot(page, "8-annotate-labeled")

    visit(page, app, "finetune", "Fine-tune")
    expect_text(page, re.compile("No runs yet"))
    expect(page.get_by_role("button", name="Start")).to_be_enabled(timeout=TIMEOUT_MS)
    shot(page, "9-finetune")


def test_a_label_survives_the_app_being_killed(app, new_page):
    page = new_page()
    start_annotating(page, app, "ann")
    first = app.project.dataset().frame.filter(split="dev")["id"][0]
    page.get_by_role("heading", name="Annotate").click()  # out of the annotator field
    press_shortcut(page, "1", page.get_by_role("button", name=re.compile(r"^HAM\b")))  # HAM's shortcut
    expect_text(page, "1 of 60 dev rows labeled by ann")
    app.kill()
    assert stored(app) == [(first, "ann", "HAM")]
    with sqlite3.connect(app.project.store / "annotations.sqlite") as conn:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]


def test_two_sessions_labeling_at_once_lose_nothing(app, new_page):
    ann, bob = new_page(), new_page()
    start_annotating(ann, app, "ann", "dev")
    start_annotating(bob, app, "bob", "test")
    for done in range(1, 4):  # the two clicks go out back to back; each session reruns in its own thread
        ann.get_by_role("button", name=re.compile(r"^HAM\b")).click()
        bob.get_by_role("button", name=re.compile(r"^SPAM\b")).click()
        expect_text(ann, re.compile(rf"^{done} of 60 dev rows labeled by ann$"))
        expect_text(bob, re.compile(rf"^{done} of 369 test rows labeled by bob$"))
    frame = app.project.dataset().frame
    dev, test = frame.filter(split="dev")["id"][:3].to_list(), frame.filter(split="test")["id"][:3].to_list()
    assert stored(app) == [(i, "ann", "HAM") for i in dev] + [(i, "bob", "SPAM") for i in test]
