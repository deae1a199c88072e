"""Issue 14, item 8: opening an untrusted project in the app runs none of its code; the LFs page shows the suite's
source and a Trust button instead."""

from __future__ import annotations

PAYLOAD = "\nopen({marker!r}, 'a').write('ran\\n')\n"


def test_item8_opening_the_lfs_page_of_an_untrusted_project_runs_nothing(app_project, open_page, tmp_path,
                                                                         monkeypatch):
    marker = tmp_path / "payload-ran"
    suite = app_project.suite_path
    suite.write_text(suite.read_text() + PAYLOAD.format(marker=str(marker)))  # a project as it arrives from someone
    monkeypatch.setenv("LABELFLOW_HOME", str(tmp_path / "victim-home"))  # on a machine that trusts nothing of it
    at = open_page("lfs")
    assert not marker.exists(), "opening the LFs page ran the project's suite"
    assert [e.value for e in at.error] == []
    assert "This project is not trusted, so none of its code runs" in at.warning[0].value
    assert any(str(marker) in code.value for code in at.code)  # the source, with the payload, to read
    assert not at.dataframe and not at.text_area  # no statistics, no LF editor: they would run the suite
    # the Label model page's Apply runs nothing either; it says why
    at.switch_page("stages/label_model.py").run()
    at.button(key="fit").click().run()
    assert not marker.exists() and any("is not a trusted project" in e.value for e in at.error)
    # Trust: the suite runs from now on
    at.switch_page("stages/lfs.py").run()
    at.button(key="trust").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert marker.exists() and app_project.trusted
    assert any("Trusted youtube_spam.py" in s.value for s in at.success)
    assert len(at.dataframe[0].value) == len(app_project.lfs()) and at.button(key="lf_try")  # the editor is there


def test_item8_the_trust_button_trusts_only_the_source_shown(app_project, open_page, tmp_path, monkeypatch):
    monkeypatch.setenv("LABELFLOW_HOME", str(tmp_path / "victim-home"))
    at = open_page("lfs")
    assert at.button(key="trust")
    suite = app_project.suite_path
    suite.write_text(suite.read_text() + "\n# changed while the page was being read\n")
    at.button(key="trust").click().run()
    assert not app_project.trusted
    assert any("changed while you read them; nothing was trusted" in w.value for w in at.warning)
