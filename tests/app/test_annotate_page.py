"""The Annotate page (issue 16, points 2 and 3) through Streamlit's AppTest: what a row already has, every
annotator's label kept, disagreements shown and settled, the annotator's name from the address, the history,
train rows, and the queue orders."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from streamlit.testing.v1 import AppTest

from labelflow.conventions import ABSTAIN

APP = Path(__file__).resolve().parents[2] / "app"


@pytest.fixture
def annotate(app_project, monkeypatch):
    """``annotate(name)``: the Annotate page opened at ``/annotate?annotator=NAME`` (no name: none given)."""
    monkeypatch.syspath_prepend(str(APP))

    def open_(name: str | None = "ann") -> AppTest:
        at = AppTest.from_file(APP / "main.py", default_timeout=60)
        if name is not None:
            at.query_params["annotator"] = name
        at.run()
        at.switch_page("stages/annotate.py").run()
        assert not at.exception, [e.value for e in at.exception]
        return at

    return open_


def run(element) -> AppTest:
    """Rerun after an interaction (``element``: the widget just used, or the AppTest) and check nothing raised."""
    at = element.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def shown_row(at: AppTest) -> str:
    """The id of the row the page asks to label."""
    return at.caption[0].value.split("`")[1]


def context(at: AppTest) -> str:
    return next(m.value for m in at.markdown if m.value.startswith("**Gold now:**"))


def flashes(at: AppTest, kind: str) -> list[str]:
    return [e.value for e in getattr(at, kind)]


def stored(project) -> list[tuple]:
    return project.annotations.frame().select("id", "annotator", "label").rows()


def dev_ids(project) -> list[str]:
    return project.dataset().frame.filter(split="dev")["id"].to_list()


# --- point 3: the name survives a reload ---------------------------------------------------------------------------


def test_the_annotators_name_comes_from_the_address_and_counts_their_labels(app_project, annotate):
    at = annotate("ann")
    assert at.sidebar.text_input(key="annotator").value == "ann"
    assert at.progress[0].proto.text == "0 of 60 dev rows labeled by ann"
    run(at.button(key="class_0").click())
    again = annotate("ann")  # a reload: a new session, the name only in the address
    assert again.progress[0].proto.text == "1 of 60 dev rows labeled by ann"
    assert not again.button(key="class_0").disabled
    nobody = annotate(None)
    assert "Enter your name as **Annotator**" in nobody.warning[0].value
    assert nobody.button(key="class_0").disabled


# --- point 2: what the row already has, every annotator's label, disagreements ------------------------------------


def test_the_row_shows_its_gold_every_annotators_label_the_prediction_and_the_votes(app_project, annotate):
    first = dev_ids(app_project)[0]
    ids = app_project.dataset().frame["id"].to_list()
    i = ids.index(first)
    names = app_project.schema.names
    data_label = names[app_project.dataset().gold()[i]]
    app_project.annotate(first, "HAM", annotator="bob")
    predictions, matrix = app_project.predictions(), app_project.matrix()
    voters = [(lf, names[v]) for lf, v in zip(matrix.lf_names, matrix.values[i]) if v != ABSTAIN]
    at = annotate("ann")
    assert shown_row(at) == first  # bob's label does not take the row from ann's queue
    shown = context(at)
    assert f"**Data file:** {data_label}" in shown
    assert "**Annotators:** bob: HAM (" in shown
    gold = "HAM (given by bob" + (", in place of the data file's label)" if data_label != "HAM" else ")")
    assert f"**Gold now:** {gold}" in shown
    p = predictions.probs[i].max()
    assert f"**Label model** `labelflow`: {names[predictions.pred[i]]} (p = {p:.2f}" in shown
    assert f"**LF votes** ({len(voters)}): " in shown and voters
    assert all(f"`{lf}: {name}`" in shown for lf, name in voters)


def test_a_label_that_replaces_the_data_files_label_says_so_and_is_listed(app_project, annotate):
    first = dev_ids(app_project)[0]
    data_label = int(app_project.dataset().gold()[app_project.dataset().frame["id"].to_list().index(first)])
    other = 1 - data_label
    at = run(annotate("ann").button(key=f"class_{other}").click())
    names = app_project.schema.names
    assert flashes(at, "info") == [f"Row `{first}`: your {names[other]} is now its gold label in place of the data "
                                   f"file's {names[data_label]}; the row is listed under **Disagreements**."]
    run(at.radio(key="annotate_view").set_value("Disagreements"))
    assert "Nothing to settle" in flashes(at, "success")[0]  # one annotator: nothing to settle
    run(at.radio(key="disagreements_show").set_value("all"))
    assert [c.value for c in at.caption if c.value.startswith("Row `")] == [f"Row `{first}` · dev"]
    table = at.table[0].value
    assert list(table["who"]) == ["data file", "ann"] and list(table["label"]) == [names[data_label], names[other]]


def test_two_annotators_who_disagree_are_shown_and_settled_with_who_and_when(app_project, annotate):
    first = dev_ids(app_project)[0]
    i = app_project.dataset().frame["id"].to_list().index(first)
    data_gold = int(app_project.dataset().gold()[i])
    app_project.annotate(first, "SPAM", annotator="bob")
    at = run(annotate("ann").button(key="class_0").click())  # ann says HAM
    assert flashes(at, "warning") == [f"Row `{first}`: you said HAM, bob said SPAM. Until someone settles it under "
                                      "**Disagreements** the row has no human gold label."]
    assert sorted(stored(app_project)) == [(first, "ann", 0), (first, "bob", 1)]  # both kept
    assert app_project.gold()[i] == data_gold  # unsettled: the data's label stays
    assert app_project.annotations.resolve()[1]["id"].to_list() == [first]

    run(at.radio(key="annotate_view").set_value("Disagreements"))
    assert at.radio(key="annotate_view").proto.captions[1].startswith("1 to settle")
    assert [c.value for c in at.caption if c.value.startswith("Row `")] == [f"Row `{first}` · dev"]
    assert list(at.table[0].value["who"]) == ["data file", "bob", "ann"]
    assert any("**To settle:** annotators disagree" in m.value for m in at.markdown)
    before = time.time()
    run(at.button(key=f"settle_{first}_1").click())
    assert flashes(at, "success")[0] == f"Row `{first}` settled as SPAM by ann."
    settled = app_project.annotations.resolutions().row(0, named=True)
    assert (settled["id"], settled["label"], settled["resolver"]) == (first, 1, "ann")
    assert before - 1 <= settled["time"] <= time.time() + 1
    assert app_project.gold()[i] == 1 and app_project.annotations.resolve()[1].is_empty()
    assert "Nothing to settle" in flashes(at, "success")[1]
    run(at.radio(key="disagreements_show").set_value("all"))
    assert any(m.value.startswith("**Settled** as SPAM by ann, ") for m in at.markdown)
    run(at.button(key=f"unsettle_{first}").click())
    assert app_project.annotations.resolutions().is_empty() and app_project.gold()[i] == data_gold


def test_a_second_tab_of_the_same_annotator_cannot_overwrite_the_first(app_project, annotate):
    first = dev_ids(app_project)[0]
    tab1, tab2 = annotate("ann"), annotate("ann")
    assert shown_row(tab1) == shown_row(tab2) == first
    run(tab1.button(key="class_0").click())
    run(tab2.button(key="class_1").click())  # the page still showed the row unlabelled
    assert stored(app_project) == [(first, "ann", 0)]
    assert flashes(tab2, "warning")[0].startswith(f"Not saved: row `{first}` has your label HAM (given ")
    assert shown_row(tab2) != first  # the rerun moved on


# --- point 3: the history --------------------------------------------------------------------------------------------


def test_the_history_shows_text_and_changes_or_removes_any_of_your_labels(app_project, annotate):
    ids = dev_ids(app_project)[:3]
    texts = dict(app_project.dataset().frame.select("id", "text").rows())
    at = annotate("ann")
    for key in ("class_0", "class_1", "class_0"):
        run(at.button(key=key).click())
    table = at.dataframe[0].value
    assert list(table["id"]) == ids[::-1]  # newest first
    assert list(table["text"]) == [texts[i] for i in ids[::-1]]
    assert list(table["your label"]) == ["HAM", "SPAM", "HAM"] and table["labelled at"].str.len().eq(19).all()
    assert at.button(key="undo").label == f"Undo the last one ({ids[2]} → HAM)"

    run(at.selectbox(key="history_row").select(ids[0]))  # the oldest
    assert at.button(key="change_0").disabled and not at.button(key="change_1").disabled
    run(at.button(key="change_1").click())
    assert dict(((i, lab) for i, _, lab in stored(app_project))) == {ids[0]: 1, ids[1]: 1, ids[2]: 0}
    assert list(at.dataframe[0].value["id"]) == [ids[0], ids[2], ids[1]]  # a changed label is the newest
    run(at.selectbox(key="history_row").select(ids[1]))
    run(at.button(key="remove").click())
    assert sorted(i for i, _, _ in stored(app_project)) == sorted([ids[0], ids[2]])
    run(at.button(key="undo").click())
    assert [i for i, _, _ in stored(app_project)] == [ids[2]]
    assert shown_row(at) == ids[0]  # back in the queue, in file order


# --- point 3: train rows --------------------------------------------------------------------------------------------


def test_train_rows_can_be_labelled_and_fit_still_trains_on_votes_alone(app_project, annotate):
    train = app_project.dataset().frame.filter(split="train")["id"].to_list()
    fitted = app_project.fit(seed=7)
    probs_before = fitted.predict_proba(app_project.matrix().values)
    at = annotate("ann")
    assert at.radio(key="annotate_split").options == ["dev", "test", "train"]
    run(at.radio(key="annotate_split").set_value("train"))
    assert "They do not change what is trained" in at.info[0].value
    assert at.progress[0].proto.text == f"0 of {len(train)} train rows labeled by ann"
    assert shown_row(at) == train[0]
    assert "(the project hides this split's labels)" in context(at)
    run(at.button(key="class_1").click())
    run(at.button(key="class_0").click())
    assert at.progress[0].proto.text == f"2 of {len(train)} train rows labeled by ann"
    ids = app_project.dataset().frame["id"].to_list()
    gold = app_project.gold()
    assert (gold[ids.index(train[0])], gold[ids.index(train[1])]) == (1, 0)  # gold like any other
    refit = app_project.fit(seed=7)
    np.testing.assert_array_equal(refit.predict_proba(app_project.matrix().values), probs_before)
    scores = app_project.evaluate(refit)
    assert scores["train"]["n"] == 2  # scored as a train split
    exported = app_project.export(app_project.root / "labels.parquet")
    assert exported.filter(pl.col("id") == train[0])["label"].to_list() == [1]


# --- point 3: queue orders ------------------------------------------------------------------------------------------


def test_most_uncertain_first_follows_the_label_models_margin(app_project, annotate):
    frame = app_project.dataset().frame
    probs = app_project.predictions().probs
    top = np.sort(probs, axis=1)
    margin = pl.Series(top[:, -1] - top[:, -2])
    dev = frame.select("id", "split").with_columns(margin=margin).filter(split="dev").sort("margin",
                                                                                          maintain_order=True)
    at = run(annotate("ann").radio(key="annotate_order").set_value("uncertain"))
    assert shown_row(at) == dev["id"][0]
    assert "smallest margin between `labelflow`'s two most likely classes first" in at.caption[0].value
    run(at.button(key="class_0").click())
    assert shown_row(at) == dev["id"][1]


def test_without_a_fitted_model_the_uncertainty_order_says_so(app_project, annotate):
    at = annotate("ann")
    run(at.sidebar.selectbox(key="model").select("majority_vote"))  # never fit in this project
    run(at.radio(key="annotate_order").set_value("uncertain"))
    assert flashes(at, "warning")[0].startswith("No predictions of `majority_vote` to order by:")
    assert shown_row(at) == dev_ids(app_project)[0]  # file order


def test_a_failing_slice_queue_shows_the_slices_wrong_rows_first(app_project, annotate, keep_first_lfs):
    from labelflow.error_analysis import analyze

    keep_first_lfs(app_project)
    analysis = analyze(app_project)
    chosen = analysis.slices[0]
    wrong = set(analysis.rows.filter(~pl.col("correct"))["id"].to_list()) & set(chosen.row_ids)
    at = run(annotate("ann").radio(key="annotate_order").set_value("slice"))
    assert at.selectbox(key="annotate_slice").value == chosen.name
    assert shown_row(at) in wrong
    assert f"slice **{chosen.name}**" in at.caption[0].value
    seen = set()
    for _ in range(len(wrong)):
        seen.add(shown_row(at))
        run(at.button(key="class_0").click())
    assert seen == wrong  # the wrong rows first, then the rest of the slice
    if len(chosen.row_ids) > len(wrong):
        assert shown_row(at) in set(chosen.row_ids) - wrong
