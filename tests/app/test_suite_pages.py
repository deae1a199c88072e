"""The app shows the project's one suite (issue 16, point 1): a label matrix applied from another LF list is named
on the LFs and Label model pages, and saving an LF says which LFs left with the refit."""

from __future__ import annotations

from labelflow.lf import load_lf_suite

EXTRA = ('\n\nkw_check = keyword_lf("kw_check", ["check"], label=SPAM)\n'
         'kw_love = keyword_lf("kw_love", ["love"], label=HAM)\n')


def errors(at) -> list[str]:
    assert not at.exception, [e.value for e in at.exception]
    return [e.value for e in at.error]


def _apply_another_list(project, tmp_path) -> None:
    """Apply the suite plus two LFs of another file (as the demo once applied its FM suite) and fit."""
    other = tmp_path / "elsewhere" / "bigger.py"
    other.parent.mkdir()
    other.write_text(project.suite_path.read_text() + EXTRA)
    project.apply(lfs=load_lf_suite(other), n_jobs=1)
    project.fit()


def test_the_pages_name_lfs_of_the_matrix_that_the_suite_lacks(app_project, open_page, tmp_path):
    _apply_another_list(app_project, tmp_path)
    at = open_page("lfs")
    assert len(at.warning) == 1 and at.warning[0].value.startswith(
        "The label matrix holds 2 LF(s) that are not in this suite (kw_check, kw_love)")
    assert list(at.dataframe[0].value["lf"]) == [lf.name for lf in app_project.lfs()]  # the suite's LFs
    at = open_page("label_model")
    assert at.warning[0].value.startswith("The label matrix holds 2 LF(s) that the project's suite `youtube_spam.py` "
                                          "does not define (kw_check, kw_love)") and not errors(at)


def test_saving_an_lf_says_which_lfs_left_the_matrix(app_project, open_page, tmp_path, edit_lf):
    _apply_another_list(app_project, tmp_path)
    at = open_page("lfs")
    edit_lf(at, 'mentions_free = keyword_lf("mentions_free", ["free"], label=SPAM)\n')  # typed, then Ctrl+Enter
    at.button(key="save").click().run()
    assert not errors(at)
    message = at.success[0].value
    assert message.startswith("Saved LF 'mentions_free' to youtube_spam.py; refit labelflow: dev accuracy ")
    assert message.endswith("The fit before also used kw_check, kw_love, which the suite does not define: they left "
                            "the label matrix, so the change is not this LF's alone.")
    assert app_project.stray_lfs() == [] and not at.warning  # the matrix is the suite's again
    assert list(app_project.matrix().lf_names) == [lf.name for lf in app_project.lfs()]


def test_a_project_whose_matrix_is_its_suites_shows_no_warning(app_project, open_page):
    for page in ("lfs", "label_model"):
        at = open_page(page)
        assert not at.warning and not errors(at)
