"""The LFs page's code editor and its draft.

The editor is Ace, through the ``streamlit-code-editor`` component (installed with the ``app`` extra):
a monospace font, Python highlighting, Tab indents (Escape, then Tab, leaves the editor), Ctrl+Enter
tries the code. It runs in its own frame and tells the page what it holds as events: ``change`` (typing
paused), ``blur`` (focus left it) and ``submit`` (Ctrl+Enter), each with a fresh ``id``.

What the editor holds is kept in the session (:data:`CODE`) and, per project, in the draft file
``store/drafts/lf.py`` (written atomically), so a reload or another tab finds it; saving the LF clears it.
"""

from __future__ import annotations

from typing import Any

import streamlit as st
from code_editor import code_editor

from labelflow.files import atomic_path
from labelflow.project import Project

LABEL = "LF code"
"""The editor's accessible name (the label of its text input, inside the component's frame)."""
CODE = "lf_code"
"""Session key: the code the editor holds."""
TRIED = "lf_tried"
"""Session key: the code last tried (Ctrl+Enter or Try), whose trial the page shows; ``None`` for none."""
GENERATION = "lf_editor_generation"
"""Session key: bumped to give the editor new content (it then mounts afresh with :data:`CODE`)."""
SEEN = "lf_editor_event"
"""Session key: the ``id`` of the last editor event taken."""
EDITING = "lf_editing"
"""Session key: the suite LF opened into the editor, if any."""
PLACEHOLDER = ('@labeling_function()\ndef mentions_free(x):\n    return SPAM if "free" in x.text.lower() else ABSTAIN\n\n'
               '# or: my_words = keyword_lf("my_words", ["subscribe", "channel"], label=SPAM)')


def read_draft(project: Project) -> str:
    """The draft's code, ``""`` when there is none (or it cannot be read)."""
    try:
        return project.store.lf_draft.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return ""


def write_draft(project: Project, code: str) -> None:
    """Keep ``code`` as the project's draft, atomically; empty code removes the draft."""
    path = project.store.lf_draft
    if not code.strip():
        path.unlink(missing_ok=True)
        return
    if read_draft(project) != code:
        with atomic_path(path) as tmp:
            tmp.write_text(code, encoding="utf-8")


def editor_key() -> str:
    """The editor widget's key now (it changes with :data:`GENERATION`)."""
    return f"lf_editor_{st.session_state.get(GENERATION, 0)}"


def event(code: str, kind: str = "submit", *, id: str | None = None) -> dict[str, Any]:
    """An editor event as the component sends it (``kind``: ``change``, ``blur`` or ``submit``)."""
    import uuid

    return {"id": id or uuid.uuid4().hex[:8], "type": kind, "lang": "python", "text": code, "selected": "",
            "cursor": {"row": 0, "column": 0}}


def load(project: Project, code: str, *, tried: bool = False, editing: str | None = None) -> None:
    """Put ``code`` into the editor (it mounts afresh) and the draft; ``tried``: try it at once."""
    state = st.session_state
    state[CODE] = code
    state[TRIED] = code if tried else None
    state[EDITING] = editing
    state[GENERATION] = state.get(GENERATION, 0) + 1
    write_draft(project, code)


def show(project: Project) -> str:
    """Show the editor; take its latest event (new code into the session and the draft; ``submit`` tries it).
    Returns the code it holds."""
    state = st.session_state
    if CODE not in state:
        state[CODE] = read_draft(project)
    found = code_editor(
        state[CODE], lang="python", theme="default", shortcuts="vscode", height=[10, 28], key=editor_key(),
        response_mode=["debounce", "blur"], allow_reset=False, ghost_text="",
        options={"textInputAriaLabel": LABEL,  # before enableKeyboardAccessibility, which puts the label on
                 "enableKeyboardAccessibility": True,  # Tab indents; Escape, then Tab, leaves
                 "showLineNumbers": True, "tabSize": 4, "useSoftTabs": True, "displayIndentGuides": True, "wrap": True},
        props={"placeholder": PLACEHOLDER, "enableLiveAutocompletion": False, "enableBasicAutocompletion": True,
               "debounceChangePeriod": 400})
    if isinstance(found, dict) and found.get("id") and found["id"] != state.get(SEEN):
        state[SEEN] = found["id"]
        code = str(found.get("text", ""))
        if code != state[CODE]:
            state[CODE] = code
            write_draft(project, code)
        if found.get("type") == "submit":
            state[TRIED] = code
    return state[CODE]


def clear(project: Project) -> None:
    """Empty the editor and remove the draft (after the code was saved)."""
    load(project, "")
    state = st.session_state
    state[EDITING] = None
