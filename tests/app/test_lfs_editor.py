"""The LFs page's editor (AppTest): drafts kept per project, Ctrl+Enter tries, saving clears the draft; an LF of the
suite opened, disabled, enabled and deleted; an LF raising on rows offered the project's abstain switch.

The editor is a component in its own frame; ``edit_lf`` (conftest) sends what it would (``submit`` on Ctrl+Enter,
``change`` when typing pauses). The browser tests (``test_browser_lfs.py``) drive the real one."""

from __future__ import annotations

import json

import pytest

from labelflow.project import Project
from labelflow.suite_edit import lf_source, try_lf

FREE = 'mentions_free = keyword_lf("mentions_free", ["free", "win"], label=SPAM)\n'
BOOM = "@labeling_function()\ndef boom(x):\n    return SPAM if 1 // (len(x.text) % 7) else HAM\n"
"""Raises ZeroDivisionError on the rows whose text length is a multiple of 7."""


def errors(at) -> list[str]:
    assert not at.exception, [e.value for e in at.exception]
    return [e.value for e in at.error]


def draft(project: Project):
    path = project.store.lf_draft
    return path.read_text() if path.exists() else None


def metrics(at) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def trial_of(at) -> str | None:
    """The LF whose trial the page shows."""
    found = [m.value for m in at.markdown if m.value.startswith("Trial of **")]
    return found[0].removeprefix("Trial of **").removesuffix("**") if found else None


def table(at):
    return at.dataframe[0].value


def pick(at, name: str):
    return at.selectbox(key="lf_pick").select(name).run()


# --- drafts, trying, saving ------------------------------------------------------------------------------


def test_typing_keeps_a_draft_that_a_new_session_finds(app_project, open_page, edit_lf):
    at = edit_lf(open_page("lfs"), FREE, "change")
    assert draft(app_project) == FREE
    assert not metrics(at) and at.button(key="save").disabled  # typing does not try
    assert not errors(at)

    again = open_page("lfs")  # a reload: a new session
    assert again.session_state["lf_code"] == FREE
    [editor] = [e.proto for e in again.main if type(e.proto).__name__ == "ComponentInstance"]
    assert editor.component_name == "code_editor.code_editor"
    args = json.loads(editor.json_args)
    assert args["code"] == FREE and args["lang"] == "python"
    assert args["options"]["textInputAriaLabel"] == "LF code"


def test_emptying_the_editor_removes_the_draft(app_project, open_page, edit_lf):
    at = edit_lf(open_page("lfs"), FREE, "change")
    edit_lf(at, "", "change")
    assert draft(app_project) is None


def test_ctrl_enter_tries_and_saving_clears_the_editor_and_the_draft(app_project, open_page, edit_lf):
    expected = try_lf(app_project, FREE)
    at = edit_lf(open_page("lfs"), FREE)
    assert trial_of(at) == "mentions_free"
    assert metrics(at) == {"Coverage (all rows)": f"{expected.coverage:.1%}",
                           "Coverage on dev": f"{expected.dev_coverage:.1%}",
                           "Accuracy on dev": f"{expected.dev_accuracy:.3f}"}
    assert not at.button(key="save").disabled
    at.button(key="save").click().run()
    assert not errors(at)
    assert at.success[0].value.startswith("Saved LF 'mentions_free' to youtube_spam.py; refit labelflow: dev accuracy")
    assert FREE in app_project.suite_path.read_text()
    assert draft(app_project) is None and at.session_state["lf_code"] == ""
    assert not metrics(at)


def test_the_try_button_tries_what_the_editor_holds(app_project, open_page, edit_lf):
    at = edit_lf(open_page("lfs"), FREE, "blur")
    assert not metrics(at)
    at.button(key="lf_try").click().run()
    assert trial_of(at) == "mentions_free"


def test_code_changed_after_its_trial_must_be_tried_again_before_saving(app_project, open_page, edit_lf):
    at = edit_lf(open_page("lfs"), FREE)
    changed = FREE.replace('"win"', '"winner"')
    edit_lf(at, changed, "change")
    assert trial_of(at) == "mentions_free"  # the last trial stays in view
    assert any("changed since this trial" in c.value for c in at.caption)
    assert at.button(key="save").disabled
    edit_lf(at, changed)
    assert not at.button(key="save").disabled


# --- an LF of the suite: open, disable, enable, delete ---------------------------------------------------


def test_open_puts_the_lf_definition_in_the_editor_and_tries_it(app_project, open_page, edit_lf):
    source = app_project.suite_path.read_text()
    at = pick(open_page("lfs"), "has_person")
    generation = at.session_state["lf_editor_generation"] if "lf_editor_generation" in at.session_state else 0
    at.button(key="lf_open").click().run()
    code = lf_source(source, "has_person")
    assert code.startswith("@labeling_function()\ndef has_person(x):")
    assert at.session_state["lf_code"] == code and draft(app_project) == code
    assert at.session_state["lf_editor_generation"] == generation + 1  # the editor mounts afresh with it
    assert trial_of(at) == "has_person"
    assert any("Opened **has_person** from the suite" in c.value for c in at.caption)

    edit_lf(at, code.replace("<= 60", "<= 80"))
    at.button(key="save").click().run()
    assert not errors(at)
    saved = app_project.suite_path.read_text()
    assert saved == source.replace("len(x.text) <= 60", "len(x.text) <= 80")


def test_open_asks_before_replacing_an_unsaved_draft(app_project, open_page, edit_lf):
    at = edit_lf(open_page("lfs"), FREE, "change")
    pick(at, "keyword_please").button(key="lf_open").click().run()
    assert at.session_state["lf_code"] == FREE
    assert "Opening **keyword_please** replaces it" in at.warning[-1].value
    at.button(key="lf_open_no").click().run()
    assert at.session_state["lf_code"] == FREE and draft(app_project) == FREE
    at.button(key="lf_open").click().run()
    at.button(key="lf_open_yes").click().run()
    assert at.session_state["lf_code"].startswith("keyword_please = keyword_lf(")


def test_disable_leaves_the_lf_out_of_the_matrix_and_the_fit_and_enable_brings_it_back(app_project, open_page):
    at = pick(open_page("lfs"), "keyword_my")
    assert at.button(key="lf_toggle").label == "Disable"
    at.button(key="lf_toggle").click().run()
    assert not errors(at)
    project = Project.open(app_project.root)
    assert project.config.disabled_lfs == ["keyword_my"]
    assert "keyword_my" not in project.matrix().lf_names and len(project.matrix().lf_names) == 17
    project.label_model()  # fit on the matrix without it
    assert at.success[0].value.startswith("Disabled LF 'keyword_my': its votes left the label matrix (it stays in "
                                          "youtube_spam.py); refit labelflow: dev accuracy ")
    shown = table(at).set_index("lf")
    assert not shown.loc["keyword_my", "enabled"] and shown["enabled"].sum() == 17
    assert shown.loc["keyword_my", "coverage"] != shown.loc["keyword_my", "coverage"]  # NaN: not applied
    assert any("18 LFs (1 disabled: not applied, not fit)" in c.value for c in at.caption)
    assert not any("Not applied yet" in i.value for i in at.info)  # disabled is not "not applied yet"
    assert "keyword_my =" in app_project.suite_path.read_text()  # the code stays

    assert at.button(key="lf_toggle").label == "Enable"
    at.button(key="lf_toggle").click().run()
    assert Project.open(app_project.root).config.disabled_lfs == []
    assert "keyword_my" in Project.open(app_project.root).matrix().lf_names
    assert at.success[0].value.startswith("Enabled LF 'keyword_my'")


def test_a_disabled_lf_still_in_the_matrix_is_named(app_project, open_page):
    app_project.update_config(disabled_lfs=["keyword_link"])
    at = open_page("lfs")
    assert "still holds disabled LF(s) keyword_link" in at.warning[0].value
    assert not any("not in this suite" in w.value for w in at.warning)


def test_delete_asks_then_removes_the_definition_and_refits(app_project, open_page):
    before = app_project.suite_path.read_text()
    at = pick(open_page("lfs"), "keyword_please")
    at.button(key="lf_delete").click().run()
    assert "Delete LF **keyword_please**?" in at.warning[-1].value
    assert app_project.suite_path.read_text() == before  # nothing yet
    at.button(key="lf_delete_no").click().run()
    assert app_project.suite_path.read_text() == before and not any("Delete LF" in w.value for w in at.warning)

    at.button(key="lf_delete").click().run()
    at.button(key="lf_delete_yes").click().run()
    assert not errors(at)
    after = app_project.suite_path.read_text()
    assert "keyword_please =" not in after and "# Begging" not in after
    assert "keyword_please" not in app_project.matrix().lf_names and len(app_project.lfs()) == 17
    assert at.success[0].value.startswith("Deleted LF 'keyword_please' from youtube_spam.py; refit labelflow: ")
    assert "keyword_please" not in table(at)["lf"].tolist()


def test_delete_is_refused_while_another_lf_uses_it(app_project, open_page):
    with app_project.suite_path.open("a") as suite:
        suite.write("\nPLEASE = keyword_please\n")
    app_project.trust()
    before = app_project.suite_path.read_text()
    at = pick(open_page("lfs"), "keyword_please")
    at.button(key="lf_delete").click().run()
    at.button(key="lf_delete_yes").click().run()
    assert len(errors(at)) == 1 and errors(at)[0].startswith("Not deleted: LF 'keyword_please' was not deleted")
    assert app_project.suite_path.read_text() == before


# --- an LF that raises on some rows ----------------------------------------------------------------------


def test_an_lf_that_raises_offers_the_abstain_switch_not_a_python_option(app_project, open_page, edit_lf):
    at = edit_lf(open_page("lfs"), BOOM)
    [message] = errors(at)
    assert "ZeroDivisionError" in message and "on_error" not in message
    assert "turn on **Let LFs abstain on rows where they raise an error** below" in message
    switch = at.toggle(key="lf_on_error")
    assert switch.label == "Let LFs abstain on rows where they raise an error" and not switch.value
    assert at.button(key="save").disabled

    switch.set_value(True).run()
    assert Project.open(app_project.root).config.on_error == "abstain"
    assert not errors(at) and trial_of(at) == "boom"
    assert "boom raised an error on " in at.warning[0].value and "rows and abstains there" in at.warning[0].value
    at.button(key="save").click().run()
    assert not errors(at)
    shown = table(at).set_index("lf")
    failures = [f for f in Project.open(app_project.root).matrix().failures if f.lf == "boom"]
    assert shown.loc["boom", "errors"] == len(failures) > 0 and shown["errors"].sum() == len(failures)

    at.toggle(key="lf_on_error").set_value(False).run()  # the switch stays in view while it is on, to turn off
    assert Project.open(app_project.root).config.on_error == "raise"


@pytest.mark.parametrize("page", ["lfs"])
def test_the_page_runs_without_a_draft_or_a_trial(app_project, open_page, page):
    at = open_page(page)
    assert not errors(at) and at.session_state["lf_code"] == "" and at.button(key="save").disabled
