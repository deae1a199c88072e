"""A small real project for the app, a way to open one of its pages (AppTest), and the app in a real browser.

The project: YouTube file 01 as train (labels hidden, 60 rows moved to dev with
their gold) and file 05 as test, a copy of ``lfs/youtube_spam.py`` inside the
project folder as its suite, applied and fit with the ``labelflow`` label model.
It is built once per session and copied for each test, so a test may write to it.
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
from types import SimpleNamespace

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


@pytest.fixture
def edit_lf():
    """``edit_lf(at, code, kind="submit")``: the LFs page's code editor sends ``code`` as an event (``"submit"``:
    Ctrl+Enter, which tries it; ``"change"``: typing paused) and the page reruns; returns ``at``."""
    import uuid

    def edit(at, code: str, kind: str = "submit"):
        try:
            generation = at.session_state["lf_editor_generation"]
        except KeyError:
            generation = 0
        at.session_state[f"lf_editor_{generation}"] = {"id": uuid.uuid4().hex[:8], "type": kind, "lang": "python",
                                                       "text": code, "selected": "", "cursor": {"row": 0, "column": 0}}
        return at.run()

    return edit


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


# --- the app in a real browser (test_browser*.py) -------------------------------------------------------

ARTIFACTS = Path(os.environ.get("LABELFLOW_ARTIFACTS", REPO / "test-artifacts")) / "app"
CHROMIUM = shutil.which("chromium")
TIMEOUT_MS = 90_000  # one page run on a loaded 2-core machine (the first loads the suite, TextBlob included)

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


@pytest.fixture
def serve(tmp_path):
    """``serve(project)``: ``labelflow ui`` on another project (an :class:`App`), stopped after the test."""
    servers = []

    def start(project) -> App:
        servers.append(App(project, tmp_path / f"server-{len(servers)}.log"))
        return servers[-1]

    yield start
    for server in servers:
        server.stop()


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium (skips the test where it is not installed)."""
    if CHROMIUM is None:
        pytest.skip("Chromium is not installed (`make test` installs it)")
    from playwright.sync_api import sync_playwright

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

    def new(width: int = 1400, height: int = 1600):
        context = browser.new_context(viewport={"width": width, "height": height})
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
    from playwright.sync_api import expect

    expect(page.get_by_text(text).first).to_be_visible(timeout=TIMEOUT_MS)


def start_annotating(page, app: App, annotator: str, split: str = "dev") -> None:
    visit(page, app, "annotate", "Annotate")
    page.get_by_label("Annotator").fill(annotator)
    page.get_by_label("Annotator").press("Enter")
    if split != "dev":
        idle(page)  # a rerun in progress shows the split choices twice (the previous run's copy)
        page.get_by_text(split, exact=True).click()
    expect_text(page, re.compile(rf"^0 of \d+ {split} rows labeled by {annotator}$"))


def idle(page) -> None:
    """Wait until the page's script run has ended and Streamlit has cleared the previous run's elements.

    While a run is in progress the page can show an element twice: the previous run's copy (``data-stale="true"``)
    until the new run draws or drops it, so a locator such as a class button resolves to two elements."""
    from playwright.sync_api import expect

    page.locator('[data-testid="stApp"][data-test-script-state="notRunning"]').wait_for(timeout=TIMEOUT_MS)
    expect(page.locator('[data-stale="true"]')).to_have_count(0, timeout=TIMEOUT_MS)


def class_button(page, class_name: str):
    """The annotate page's button for ``class_name``, once the page is :func:`idle`."""
    idle(page)
    return page.get_by_role("button", name=re.compile(rf"^{class_name}\b"))


def label(page, class_name: str, annotator: str, split: str, done: int) -> None:
    """Press a class button and wait until the page shows the label counted."""
    class_button(page, class_name).click()
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
    from playwright.sync_api import expect

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


LF_EDITOR = 'iframe[title="code_editor.code_editor"]'
"""The LFs page's code editor: Ace, in the frame of the streamlit-code-editor component."""


def lf_editor(page):
    """The LFs page's code editor's text input (labelled "LF code", inside the component's frame), once there (an
    editor given new code mounts afresh: the old frame lingers, empty, until the page's run ends)."""
    box = page.locator(LF_EDITOR).filter(visible=True).content_frame.get_by_label("LF code")
    box.wait_for(state="attached")
    return box


def write_lf(page, code: str, *, try_it: bool = True) -> None:
    """Replace what the LFs page's editor holds with ``code`` (as a paste: no auto-indent or closing brackets) and,
    with ``try_it``, press Ctrl+Enter in it (the page tries the code)."""
    box = lf_editor(page)
    box.focus()
    box.press("Control+a")
    if code:
        page.keyboard.insert_text(code)
    else:
        box.press("Delete")
    if try_it:
        box.press("Control+Enter")


def stored(app: App) -> list[tuple]:
    with sqlite3.connect(app.project.store.annotations) as conn:
        return conn.execute("SELECT id, annotator, label FROM annotations ORDER BY annotator, time").fetchall()


@pytest.fixture
def ui() -> SimpleNamespace:
    """The browser tests' page helpers: ``visit``, ``shot``, ``expect_text``, ``start_annotating``, ``idle``,
    ``class_button``, ``label``, ``press_shortcut``, ``lf_editor``, ``write_lf``, ``stored`` and ``TIMEOUT_MS``."""
    return SimpleNamespace(visit=visit, shot=shot, expect_text=expect_text, start_annotating=start_annotating,
                           idle=idle, class_button=class_button, label=label, press_shortcut=press_shortcut,
                           lf_editor=lf_editor, write_lf=write_lf, stored=stored, TIMEOUT_MS=TIMEOUT_MS)
