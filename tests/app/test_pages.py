"""Every page of the app through Streamlit's AppTest, against a real project: what it shows matches the
library, and what its buttons do lands in the project's files."""

from __future__ import annotations

import json
import sqlite3

import numpy as np
import polars as pl
import pytest

from labelflow.conventions import ABSTAIN
from labelflow.error_analysis import analyze
from labelflow.project import Project
from labelflow.project_config import CONFIG_FILE
from labelflow.suggest import suggest_lfs
from labelflow.suite_edit import try_lf

PAGES = {"data": "Data", "lfs": "Labeling functions", "label_model": "Label model",
         "error_analysis": "Error analysis", "annotate": "Annotate", "finetune": "Fine-tune"}


def errors(at) -> list[str]:
    """The page's st.error messages; an exception the page raised fails the test."""
    assert not at.exception, [e.value for e in at.exception]
    return [e.value for e in at.error]


@pytest.mark.parametrize("page", PAGES)
def test_every_page_opens(app_project, open_page, page):
    at = open_page(page)
    assert [t.value for t in at.title] == [PAGES[page]]
    assert errors(at) == []
    assert at.sidebar.selectbox(key="model").value == "labelflow"


@pytest.mark.parametrize("config, reason", [(None, "is not a labelflow project: labelflow.json is missing"),
                                            ({"format": 99}, "has format 99; this labelflow reads format 1")])
def test_a_folder_that_is_no_project_shows_why(tmp_path, monkeypatch, open_page, config, reason):
    if config is not None:
        (tmp_path / CONFIG_FILE).write_text(json.dumps(config))
    monkeypatch.setenv("LABELFLOW_PROJECT", str(tmp_path))
    at = open_page("data")
    assert len(errors(at)) == 1 and reason in errors(at)[0] and str(tmp_path) in errors(at)[0]
    assert not at.dataframe


def test_a_project_not_applied_yet_opens_on_every_page_and_says_what_to_do(app_project, open_page):
    app_project.store.matrix.unlink()
    shown = {page: open_page(page) for page in PAGES}
    assert all(not errors(at) for at in shown.values())
    assert shown["data"].dataframe[0].value["votes"].map(len).sum() == 0
    assert "No predictions: labelflow is not fit on the current LFs" in shown["data"].info[0].value
    assert "The suite has not been applied yet" in shown["lfs"].info[0].value
    assert "has no label matrix yet" in shown["label_model"].info[0].value
    assert "labelflow is not fit on the current LFs" in shown["error_analysis"].info[0].value


# --- Data -------------------------------------------------------------------------------------------


def shown_rows(at):
    return at.dataframe[0].value


def test_data_page_filters_rows_and_shows_votes_and_labels(app_project, open_page):
    frame, matrix = app_project.dataset().frame, app_project.matrix()
    at = open_page("data")
    table = shown_rows(at)
    assert len(table) == frame.height == 719
    first = table.iloc[0]
    assert first["id"] == frame["id"][0] and first["split"] == "dev" and first["label"] == "SPAM"
    voted = matrix.values[0] != ABSTAIN
    names = ["HAM", "SPAM"]
    assert list(first["votes"]) == [f"{lf}: {names[v]}" for lf, v in
                                    zip(np.array(matrix.lf_names)[voted], matrix.values[0][voted])]
    assert first["pred"] == "SPAM"
    # every row has the prediction `fit` scores and `export` writes, ties broken by the row's position
    predictions = app_project.predictions()
    assert list(table["pred"]) == [names[p] for p in predictions.pred]
    assert list(table["tied"]) == predictions.tied.tolist()  # (the label model gives uncovered rows its class prior)

    at.text_input(key="search").input("SUBSCRIBE").run()
    expected = frame["text"].str.to_lowercase().str.contains("subscribe", literal=True).sum()
    assert len(shown_rows(at)) == expected > 0
    assert shown_rows(at)["text"].str.lower().str.contains("subscribe").all()

    at.text_input(key="search").input("").run()
    at.multiselect(key="voters").select("keyword_my").run()
    column = list(matrix.lf_names).index("keyword_my")
    assert len(shown_rows(at)) == (matrix.values[:, column] != ABSTAIN).sum()

    at.multiselect(key="voters").unselect("keyword_my").run()
    at.multiselect(key="splits").select("train").run()
    at.selectbox(key="label").select("unknown").run()
    assert len(shown_rows(at)) == (frame["split"] == "train").sum() == 290
    at.selectbox(key="label").select("SPAM").run()
    assert len(shown_rows(at)) == 0  # train labels are hidden
    assert not at.exception


def test_data_page_shows_wrong_uncovered_and_conflicting_rows_and_a_row_whole(app_project, open_page):
    frame, matrix = app_project.dataset().frame, app_project.matrix()
    gold, pred = app_project.gold(), app_project.predictions().pred
    voted = matrix.values != ABSTAIN
    high = np.where(voted, matrix.values, -1).max(axis=1)
    low = np.where(voted, matrix.values.astype(int), 99).min(axis=1)
    at = open_page("data")
    assert set(shown_rows(at)["label"]) == {"HAM", "SPAM", "unknown"}  # never None beside "unknown"
    expected = {"wrong": ((gold != ABSTAIN) & (gold != pred)).sum(), "no LF votes": (~voted.any(axis=1)).sum(),
                "LFs conflict": (voted.any(axis=1) & (high != low)).sum()}
    for kind, count in expected.items():
        at.session_state["row_kind"] = kind
        at.run()
        assert len(shown_rows(at)) == count > 0, kind
    row = frame.filter(pl.col("text").str.contains("&#39;")).row(0, named=True)
    at.session_state["row_kind"] = "all rows"
    at.text_input(key="search").input(row["text"][:20].split("&")[0]).run()
    texts = list(shown_rows(at)["text"])
    assert not any("&#39;" in t or "<br" in t for t in texts)  # shown as a reader sees it
    assert not at.exception


# --- LFs --------------------------------------------------------------------------------------------


def test_lfs_page_shows_the_suite_with_its_statistics(app_project, open_page):
    at = open_page("lfs")
    table = at.dataframe[0].value
    summary = app_project.summary("dev")
    assert list(table["lf"]) == [lf.name for lf in app_project.lfs()] == summary["lf"].to_list()
    np.testing.assert_allclose(table["coverage"], summary["coverage"].to_numpy())
    assert list(table.loc[table["lf"] == "keyword_my", "polarity"].iloc[0]) == ["SPAM"]
    assert at.expander[0].label == "Source of youtube_spam.py"
    assert at.code[0].value == app_project.suite_path.read_text().rstrip("\n")

    at.selectbox(key="summary_split").select("train").run()  # no gold labels there: no accuracy
    table = at.dataframe[0].value
    assert "emp_acc" not in table and len(table) == 18 and not errors(at)


@pytest.mark.parametrize("code, message", [
    ("def broken(x:\n    return 1\n", "line 1 of the LF code"),
    ("@labeling_function()\ndef boom(x):\n    return 1 // 0\n", "ZeroDivisionError"),
    ("x = 3\n", "must define exactly one LF"),
])
def test_a_bad_lf_shows_its_error_and_leaves_the_suite_alone(app_project, open_page, edit_lf, code, message):
    before = app_project.suite_path.read_bytes()
    at = edit_lf(open_page("lfs"), code)
    assert len(errors(at)) == 1 and message in errors(at)[0]
    assert at.button(key="save").disabled
    assert not at.metric
    assert app_project.suite_path.read_bytes() == before
    assert len(at.dataframe) == 1  # the suite table is still there


def test_a_good_lf_is_measured_then_saved_into_the_suite_and_applied(app_project, open_page, edit_lf):
    code = 'mentions_free = keyword_lf("mentions_free", ["free", "win"], label=SPAM)\n'
    expected = try_lf(app_project, code)
    at = edit_lf(open_page("lfs"), code)
    metrics = {m.label: m.value for m in at.metric}
    assert "Trial of **mentions_free**" in [m.value for m in at.markdown]
    assert metrics == {"Coverage (all rows)": f"{expected.coverage:.1%}",
                       "Coverage on dev": f"{expected.dev_coverage:.1%}",
                       "Accuracy on dev": f"{expected.dev_accuracy:.3f}"}
    assert list(at.dataframe[1].value["id"]) == expected.examples["id"].to_list()

    at.button(key="save").click().run()
    assert not at.exception and errors(at) == []
    assert code in app_project.suite_path.read_text()
    assert [lf.name for lf in app_project.lfs()][-1] == "mentions_free"
    assert app_project.matrix().lf_names[-1] == "mentions_free"  # applied and refit
    app_project.label_model()  # fit on the new LF set
    assert at.success[0].value.startswith("Saved LF 'mentions_free' to youtube_spam.py; refit labelflow: dev accuracy ")
    assert at.dataframe[0].value["lf"].iloc[-1] == "mentions_free"


# --- Label model ------------------------------------------------------------------------------------


def test_label_model_page_shows_metrics_and_fits_another_model(app_project, open_page):
    at = open_page("label_model")
    metrics = app_project.evaluate(app_project.label_model())
    assert {m.label: m.value for m in at.metric} == {f"{s} accuracy": f"{m['accuracy']:.3f}"
                                                     for s, m in metrics.items()}
    assert len(at.get("vega_lite_chart")) == 2  # the confusion matrix, the LF conflicts

    at.sidebar.selectbox(key="model").select("majority_vote").run()
    assert "label model 'majority_vote' has not been fit" in at.info[0].value
    at.button(key="fit").click().run()
    assert app_project.store.model_file("majority_vote").is_file()
    metrics = app_project.evaluate(app_project.label_model("majority_vote"))
    assert {m.label: m.value for m in at.metric} == {f"{s} accuracy": f"{m['accuracy']:.3f}"
                                                     for s, m in metrics.items()}
    assert [(s.label, s.state) for s in at.status] == [("Applied 18 LFs and fitted majority_vote", "complete")]
    captions = [c.value for c in at.caption]
    for split, m in metrics.items():  # accuracy on all rows above, on covered rows and coverage beneath
        assert any(c.startswith(f"on covered rows {m['accuracy_covered']:.3f} · coverage {m['coverage']:.1%}")
                   for c in captions)
    table = at.dataframe[0].value
    assert list(table["accuracy (covered rows)"]) == [m["accuracy_covered"] for m in metrics.values()]


def test_label_model_page_says_what_auto_chose_and_why(app_project, open_page):
    at = open_page("label_model")
    at.sidebar.selectbox(key="model").select("auto").run()
    at.checkbox(key="use_dev").check().run()
    at.button(key="fit").click().run()
    assert errors(at) == []
    choice = app_project.label_model("auto").choice()
    assert at.info[0].value == f"**auto** chose **{choice['chosen']}**: {choice['reason']}."
    assert "2-fold dev accuracy over 60 gold rows" in choice["reason"]
    scores = at.dataframe[0].value  # above the metrics table
    assert set(scores["model"]) == {"labelflow", "snorkel", "majority_vote"}
    assert list(scores.loc[scores["chosen"], "model"]) == [choice["chosen"]]


def test_label_model_page_compares_every_model_exports_and_maps_lf_conflicts(app_project, open_page):
    from labelflow.labelmodels import label_model_names

    app_project.fit("majority_vote", use_dev=False)
    app_project.fit("labelflow", use_dev=True)
    at = open_page("label_model")
    comparison = lambda: next(d.value for d in at.dataframe if "dev gold" in d.value.columns)  # noqa: E731
    table = comparison().set_index("model")
    assert list(table.index) == label_model_names()
    assert bool(table.loc["labelflow", "dev gold"]) and not bool(table.loc["majority_vote", "dev gold"])
    assert not table.loc["snorkel", "fit"] and np.isnan(table.loc["snorkel", "test accuracy"])
    expected = app_project.evaluate(app_project.label_model("majority_vote"))
    assert table.loc["majority_vote", "test accuracy"] == pytest.approx(expected["test"]["accuracy"])
    assert table.loc["majority_vote", "test coverage"] == pytest.approx(expected["test"]["coverage"])
    download = at.get("download_button")[0]
    assert download.proto.label == "Download labelflow's labels"
    at.button(key="fit_all").click().run()
    assert comparison()["fit"].all() and not at.exception


# --- Error analysis ---------------------------------------------------------------------------------


def test_error_analysis_shows_slices_and_accepting_a_suggestion_changes_the_suite(app_project, open_page,
                                                                                  keep_first_lfs):
    keep_first_lfs(app_project)
    analysis = analyze(app_project, split="dev")
    chosen, suggestions = next((s, found) for s in analysis.slices
                               if (found := suggest_lfs(app_project, analysis, s)))
    at = open_page("error_analysis")
    assert at.metric[0].value == f"{analysis.accuracy:.3f}"
    assert list(at.dataframe[0].value["slice"]) == [s.name for s in analysis.slices]

    at.selectbox(key="slice").select(chosen.name).run()
    assert sorted(at.dataframe[1].value["id"]) == sorted(chosen.row_ids)
    at.button(key="suggest").click().run()
    assert [c.value for c in at.code] == [s.code.rstrip("\n") for s in suggestions]

    before = app_project.suite_path.read_text()
    at.button(key=f"accept_{suggestions[0].name}").click().run()
    assert not at.exception and errors(at) == []
    after = app_project.suite_path.read_text()
    assert after != before and suggestions[0].code.split("\n\n")[-1] in after
    assert suggestions[0].name in app_project.matrix().lf_names
    accuracy = app_project.evaluate(app_project.label_model())["dev"]["accuracy"]
    assert at.success[0].value == (f"Accepted {suggestions[0].name} into youtube_spam.py; refit labelflow: "
                                   f"dev accuracy {analysis.accuracy:.3f} → {accuracy:.3f}.")
    assert not at.code  # the accepted suggestions are gone until asked for again


def test_error_analysis_maps_the_rows_by_their_embedding_when_the_project_has_one(app_project, open_page):
    ids = app_project.dataset().frame["id"]
    app_project.save_fm_output("embedding", ids, np.random.default_rng(0).normal(size=(len(ids), 8)))
    analysis = analyze(app_project, split="dev")
    at = open_page("error_analysis")
    assert not any("No embedding column" in c.value for c in at.caption)
    charts = at.get("vega_lite_chart")
    assert len(charts) == 2  # the confusion matrix and the map
    spec = json.loads(charts[1].proto.spec)
    assert spec["title"] == "dev rows by embedding (PCA); the slice's rows are large"
    assert spec["encoding"]["color"]["field"] == "prediction"
    assert analysis.embedding_2d.shape == (60, 2)


# --- Annotate ---------------------------------------------------------------------------------------


def stored(project: Project) -> list[tuple]:
    with sqlite3.connect(project.store.annotations) as conn:
        return conn.execute("SELECT id, annotator, label, source FROM annotations ORDER BY time").fetchall()


def test_annotating_needs_a_name_and_saves_every_label_at_once(app_project, open_page):
    dev_ids = app_project.dataset().frame.filter(split="dev")["id"].to_list()
    at = open_page("annotate")
    assert "Enter your name as **Annotator**" in at.warning[0].value
    assert at.button(key="class_0").disabled and at.button(key="class_1").disabled

    at.sidebar.text_input(key="annotator").input("ann").run()
    assert at.progress[0].proto.text == "0 of 60 dev rows labeled by ann"
    assert f"Row `{dev_ids[0]}`" in at.caption[0].value
    assert [at.button(key=f"class_{i}").label for i in range(2)] == ["HAM", "SPAM"]
    at.button(key="class_0").click().run()
    assert stored(app_project) == [(dev_ids[0], "ann", "HAM", "app")]  # stored by class name
    assert at.progress[0].proto.text == "1 of 60 dev rows labeled by ann"
    assert f"Row `{dev_ids[1]}`" in at.caption[0].value
    assert app_project.gold()[0] == 0  # the human label overrides the data's SPAM

    at.button(key="skip").click().run()
    assert f"Row `{dev_ids[2]}`" in at.caption[0].value
    at.button(key="class_1").click().run()
    assert stored(app_project) == [(dev_ids[0], "ann", "HAM", "app"), (dev_ids[2], "ann", "SPAM", "app")]

    at.button(key="undo").click().run()
    assert stored(app_project) == [(dev_ids[0], "ann", "HAM", "app")]
    at.radio(key="annotate_split").set_value("test").run()
    assert at.progress[0].proto.text == "0 of 369 test rows labeled by ann"


def test_labeling_a_row_that_is_gone_says_so_and_saves_nothing(app_project, open_page):
    at = open_page("annotate")
    at.sidebar.text_input(key="annotator").input("ann").run()
    shown = app_project.dataset().frame.filter(split="dev")["id"][0]
    config = app_project.config  # re-import the data without file 01, where the shown row comes from
    Project.init(app_project.root, sources={"test": [app_project.root / config.sources["test"][0]]},
                 classes=["HAM", "SPAM"], text="CONTENT", id="COMMENT_ID", label="label", duplicates="drop_identical",
                 lfs=app_project.suite_path)
    at.button(key="class_1").click().run()
    assert errors(at) == [f"Not saved: {app_project.root}: no row with id {shown!r} in the dataset (it may have been "
                          "removed when the data was re-imported); the annotation was not saved"]
    assert app_project.annotations.frame().is_empty()


def test_label_studio_buttons_save_the_url_and_report_an_unreachable_server(app_project, open_page, monkeypatch):
    """The Label Studio round trip itself runs against a real server in tests/test_studio.py."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}"  # nothing listens there once the socket closes
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", "not-used")
    at = open_page("annotate")
    at.text_input(key="studio_url").input(url).run()
    at.button(key="studio_push").click().run()
    assert errors(at) and errors(at)[0].startswith(f"Label Studio push failed: cannot reach Label Studio at {url}")
    assert Project.open(app_project.root).config.studio_url is None  # saved only once a call succeeds (issue 14)
    at.button(key="studio_pull").click().run()
    assert errors(at)[0].startswith("Label Studio pull failed:") and "has not pushed" in errors(at)[0]
    assert app_project.annotations.frame().is_empty()


# --- Fine-tune --------------------------------------------------------------------------------------


TIMEOUT = 240  # seconds a background run of the tiny model may take on a busy machine


def tiny_config(tiny_model, **overrides):
    from labelflow.finetune import FinetuneConfig

    return FinetuneConfig(**{"base_model": str(tiny_model), "method": "full", "epochs": 2, "max_length": 32,
                             "device": "cpu", "cpu_threads": 1, "progress": False, **overrides})


@pytest.fixture
def finished_run(app_project, tiny_model, tmp_path):
    """``student-1``: a run of the tiny BERT on the project's labels, trained in this process."""
    pytest.importorskip("peft")
    from labelflow.finetune import finetune
    from labelflow.finetune.runs import run_info, runs_folder

    labels = app_project.export(tmp_path / "labels.parquet")
    finetune(labels, out=runs_folder(app_project) / "student-1", config=tiny_config(tiny_model),
             classes=list(app_project.schema.names), task=app_project.config.name)
    return run_info(app_project, "student-1")


@pytest.fixture
def runs_of(app_project, stop_runs_after):
    """The project's runs; any still training at teardown is stopped."""
    from labelflow.finetune.runs import list_runs

    stop_runs_after(app_project)
    return lambda: list_runs(app_project)


def test_finetune_page_without_runs_offers_a_new_run(app_project, open_page):
    at = open_page("finetune")
    assert at.text_input(key="ft_name").value == "student-1"
    assert at.text_input(key="ft_base_model").value == "all-MiniLM-L6-v2"
    assert at.selectbox(key="ft_method").value == "lora" and at.number_input(key="ft_lr").value is None
    assert not at.button(key="ft_start").disabled
    assert at.info[0].value.startswith("No runs yet.") and not at.metric and not at.dataframe and not errors(at)


def test_finetune_needs_a_fitted_label_model(app_project, open_page):
    at = open_page("finetune")
    at.sidebar.selectbox(key="model").select("majority_vote").run()
    assert at.button(key="ft_start").disabled
    assert at.info[0].value.startswith("majority_vote is not fit on the current LFs: fit it on the Label model page")


def test_finetune_page_compares_a_finished_run_with_the_label_model(app_project, finished_run, open_page):
    m = finished_run.metrics
    at = open_page("finetune")
    assert at.dataframe[0].value[["run", "status"]].values.tolist() == [["student-1", "complete"]]
    assert at.text_input(key="ft_name").value == "student-2"
    shown = {x.label: (x.value, x.proto.delta) for x in at.metric}
    for split in ("dev", "test"):
        for key, label in (("accuracy", "accuracy"), ("macro_f1", "macro-F1")):
            student, lm = m[split]["student"][key], m[split]["label_model"][key]
            assert shown[f"{split} {label} · student"] == (f"{student:.3f}", f"{student - lm:+.3f}")
    table = at.dataframe[1].value
    assert table[["split", "model"]].values.tolist() == [["dev", "student"], ["dev", "label model"],
                                                         ["test", "student"], ["test", "label model"]]
    assert table["F1 SPAM"].iloc[2] == pytest.approx(m["test"]["student"]["per_class_f1"]["SPAM"])
    spec = json.loads(at.get("vega_lite_chart")[0].proto.spec)
    assert spec["facet"]["column"]["field"] == "metric"  # train loss and dev accuracy by step
    assert at.code[0].value == f"labelflow predict --model {finished_run.path} {app_project.root} --out predictions.parquet"
    assert [b.key for b in at.button] == ["ft_start", "ft_analyse"] and not errors(at)


def test_the_start_button_launches_a_run_that_completes(app_project, open_page, tiny_model, runs_of):
    from labelflow.finetune.runs import wait_run

    at = open_page("finetune")
    at.text_input(key="ft_name").input("tiny")
    at.text_input(key="ft_base_model").input(str(tiny_model))
    at.selectbox(key="ft_method").select("full")
    at.number_input(key="ft_epochs").set_value(1)
    at.number_input(key="ft_max_length").set_value(32)
    at.button(key="ft_start").click().run()
    assert not errors(at) and at.success[0].value.startswith("Started tiny: training in the background")
    assert [r.name for r in runs_of()] == ["tiny"] and at.selectbox(key="ft_run").value == "tiny"
    assert at.text_input(key="ft_name").value == "student-1"
    run = wait_run(app_project, "tiny", timeout=TIMEOUT)
    assert run.status == "complete", run.error
    assert run.config == tiny_config(tiny_model, epochs=1, cpu_threads=None, device="auto").to_dict()
    at.run()
    assert at.metric[0].label == "dev accuracy · student" and not errors(at)


def test_a_training_run_shows_its_progress_and_stops(app_project, open_page, tiny_model, runs_of, wait_for_step):
    from labelflow.finetune.runs import run_info, start_run

    # patience=None: no early stopping. With the default patience 3 the tiny model's flat dev accuracy ends the run
    # at step 40, a second after step 10, so on a busy machine the Stop could land on a run that had completed.
    start_run(app_project, "long", tiny_config(tiny_model, epochs=500, checkpoint_every=10, patience=None))
    wait_for_step(app_project, "long", 10)
    at = open_page("finetune")
    assert at.progress[0].proto.text.startswith("long: step ") and " of 5000 · epoch " in at.progress[0].proto.text
    assert [m.label for m in at.metric] == ["Samples/s", "Train loss", "Dev accuracy"]
    assert at.metric[0].value != "–" and at.dataframe[0].value["status"].tolist() == ["training"]
    at.button(key="ft_stop").click().run()
    stopped = run_info(app_project, "long")
    assert stopped.status == "stopped" and stopped.checkpoint["step"] >= 10
    assert at.info[0].value == f"Stopped long at step {stopped.checkpoint['step']}; Resume continues from there."
    assert at.warning[0].value.startswith("long is not running") and not errors(at)
    assert [b.key for b in at.button] == ["ft_start", "ft_resume"]


def test_a_run_that_fails_shows_why_and_a_stopped_one_resumes(app_project, finished_run, open_page, runs_of):
    from labelflow.finetune.runs import wait_run

    meta = json.loads((finished_run.path / "finetune.json").read_text())
    (finished_run.path / "finetune.json").write_text(json.dumps({**meta, "status": "training"}))  # as if killed
    at = open_page("finetune")
    steps = finished_run.metrics["train"]["steps"]
    assert at.warning[0].value == f"student-1 is not running; Resume continues it from step {steps}, its last checkpoint."
    at.text_input(key="ft_name").input("broken")
    at.text_input(key="ft_base_model").input("/no/such/model")
    at.button(key="ft_start").click().run()
    assert wait_run(app_project, "broken", timeout=TIMEOUT).status == "failed"
    at.run()
    assert at.selectbox(key="ft_run").value == "broken"
    assert errors(at) == ["broken failed:"] and "base model '/no/such/model' cannot be found" in at.code[0].value

    at.selectbox(key="ft_run").select("student-1").run()
    at.button(key="ft_resume").click().run()
    assert at.success[0].value == f"Resumed student-1 from step {steps}."
    resumed = wait_run(app_project, "student-1", timeout=TIMEOUT)
    assert resumed.status == "complete" and resumed.metrics["train"]["resumed_from"] == resumed.metrics["train"]["steps"]


@pytest.mark.parametrize("field, value, message", [
    ("ft_lr", 2.0, "Not started: lr must be a number in (0, 1); got 2.0"),
    ("ft_name", "../up", "Not started: run name '../up' must be a plain folder name"),
    ("ft_name", "student-1", "Not started: a run named 'student-1' exists already"),
])
def test_a_bad_option_shows_an_error_and_starts_nothing(app_project, finished_run, open_page, field, value, message):
    from labelflow.finetune.runs import list_runs

    at = open_page("finetune")
    widget = at.number_input(key=field) if field == "ft_lr" else at.text_input(key=field)
    widget.set_value(value)
    at.button(key="ft_start").click().run()
    assert len(errors(at)) == 1 and errors(at)[0].startswith(message) and not at.success
    assert [r.name for r in list_runs(app_project)] == ["student-1"]


def test_error_analysis_of_a_student(app_project, finished_run, open_page):
    from labelflow.finetune.runs import split_predictions

    expected = analyze(app_project, split="dev", predictions=split_predictions(app_project, finished_run.path, "dev"))
    label_model = analyze(app_project, split="dev").accuracy
    at = open_page("error_analysis")
    assert at.selectbox(key="predictions_of").options == ["the label model (labelflow)", "student student-1"]
    assert at.metric[0].value == f"{label_model:.3f}"
    at.selectbox(key="predictions_of").select("student-1").run()
    assert not errors(at)
    assert (at.metric[0].value, at.metric[0].proto.delta) == (f"{expected.accuracy:.3f}",
                                                               f"{expected.accuracy - label_model:+.3f} vs the label model")
    assert list(at.dataframe[0].value["slice"]) == [s.name for s in expected.slices]
    assert "Where student **student-1** errs on dev" in at.caption[0].value


def test_a_finished_run_opens_its_error_analysis(finished_run, open_page):
    at = open_page("finetune")
    at.button(key="ft_analyse").click().run()
    assert [t.value for t in at.title] == ["Error analysis"]
    assert at.selectbox(key="predictions_of").value == "student-1" and not errors(at)
