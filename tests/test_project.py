"""Project: init, apply, fit, evaluate, summary, export, and what a failed step leaves behind."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest

from labelflow import DataError, LFError, ProjectError
from labelflow.labelmodels import MajorityVote, SnorkelLabelModel
from labelflow.project import Project
from labelflow.project_config import CONFIG_FILE, ProjectConfig
from labelflow.store import ProjectStore


def test_init_writes_config_and_dataset(project, project_files):
    config = json.loads((project.root / CONFIG_FILE).read_text())
    assert config["sources"] == {"train": ["../src/train.csv"], "dev": ["../src/dev.csv"], "test": ["../src/test.csv"]}
    assert config["lfs"] == "../src/suite.py"
    assert config["classes"] == [{"name": "HAM", "description": ""}, {"name": "SPAM", "description": ""}]
    assert (config["name"], config["format"], config["label_model"]) == ("proj", 1, "majority_vote")
    ds = Project.open(project.root).dataset()
    assert ds.frame["split"].to_list() == ["train"] * 8 + ["dev"] * 4 + ["test"] * 4
    assert ds.gold().tolist() == [-1] * 8 + [1, 0, 1, 0, 1, 0, 1, 0]  # train labels hidden
    assert ds.metadata_columns == ["author", "source"]


def test_apply_saves_the_matrix(project, expected):
    matrix, cache = project.apply(n_jobs=1)
    assert matrix.lf_names == expected.lfs
    np.testing.assert_array_equal(matrix.values, np.array(expected.matrix, dtype=np.int8))
    assert cache.misses == list(expected.lfs)
    saved = Project.open(project.root).matrix()
    np.testing.assert_array_equal(saved.values, matrix.values)
    assert saved.ids.to_list()[:2] == ["t0", "t1"]
    _, cache = Project.open(project.root).apply(n_jobs=1)
    assert (cache.misses, cache.hits) == ([], list(expected.lfs))


def test_reinit_keeps_the_vote_cache_and_drops_the_matrix(project, project_files, expected):
    project.apply(n_jobs=1)
    again = Project.init(project.root, sources={s: [project_files[s]] for s in ("train", "dev", "test")},
                         classes=["HAM", "SPAM"], id="id", label="label", hide_labels=["train"],
                         lfs=project_files["suite"], label_model="majority_vote")
    with pytest.raises(ProjectError, match="has no label matrix yet; run `labelflow apply` first"):
        again.matrix()
    _, cache = again.apply(n_jobs=1)
    assert cache.hits == list(expected.lfs)


def test_fit_and_evaluate_majority_vote(project):
    project.apply(n_jobs=1)
    model = project.fit("majority_vote")
    assert isinstance(model, MajorityVote) and project.store.model_file("majority_vote").is_file()
    metrics = project.evaluate(project.label_model())
    assert sorted(metrics) == ["dev", "test"]  # train has no gold
    assert metrics["dev"]["accuracy"] == metrics["test"]["accuracy"] == 1.0
    assert metrics["test"]["coverage"] == 1.0 and metrics["test"]["n"] == 4
    assert metrics["test"]["accuracy_covered"] == 1.0 and metrics["test"]["n_covered"] == 4
    assert metrics["test"]["tied"] == 0.0


def test_fit_snorkel_with_dev_gold(project, expected):
    project.apply(n_jobs=1)
    model = project.fit("snorkel", seed=3, use_dev=True)
    assert isinstance(model, SnorkelLabelModel)
    loaded = project.label_model("snorkel")
    values = project.matrix().values
    np.testing.assert_array_equal(loaded.predict_proba(values), model.predict_proba(values))
    assert loaded.lf_names == expected.lfs


def test_summary_on_dev(project, expected):
    project.apply(n_jobs=1)
    table = project.summary("dev")
    assert table["lf"].to_list() == list(expected.lfs)
    assert table["coverage"].to_list() == [0.25, 0.25, 0.25, 0.5, 0.0]
    assert table["emp_acc"].to_list() == [1.0, 1.0, 1.0, 1.0, None]
    assert "emp_acc" not in project.summary("train").columns  # no gold there
    assert project.summary("VALID").equals(table)  # split names are aliases (issue 14, item 4)
    with pytest.raises(ProjectError, match=r"no rows in split 'holdout'; splits are \['train', 'dev', 'test'\]"):
        project.summary("holdout")


@pytest.mark.parametrize("fmt", ["parquet", "csv", "jsonl"])
def test_export(project, tmp_path, fmt):
    project.apply(n_jobs=1)
    project.fit("majority_vote")
    out = tmp_path / "out" / f"labels.{fmt}"
    project.export(out)
    frame = {"parquet": pl.read_parquet, "csv": pl.read_csv, "jsonl": pl.read_ndjson}[fmt](out)
    assert frame.columns == ["id", "text", "split", "label", "prob_HAM", "prob_SPAM", "pred", "pred_name", "covered",
                             "tied"]
    assert frame.height == 16
    np.testing.assert_allclose(frame["prob_HAM"] + frame["prob_SPAM"], 1.0)
    row = frame.filter(pl.col("id") == "d0").row(0, named=True)  # two SPAM votes
    assert (row["prob_HAM"], row["prob_SPAM"], row["pred"], row["pred_name"], row["covered"]) == (0.0, 1.0, 1, "SPAM", True)
    assert frame.filter(pl.col("id") == "t7").row(0, named=True)["pred_name"] == "HAM"
    assert frame["label"].to_list()[:8] == [None] * 8


def test_export_uncovered_and_tied_rows_get_a_tie_broken_pred(project, tmp_path, project_files, expected):
    project_files["suite"].write_text(expected.suite + "\nLFS = [kw_sub, kw_song, kw_free, kw_link]\n")
    project.trust()  # an edited suite runs once trusted again (labelflow.trust)
    project.apply(n_jobs=1)
    project.fit("majority_vote")
    frame = project.export(tmp_path / "labels.parquet", splits=["train"])
    assert frame["split"].unique().to_list() == ["train"]
    t7 = frame.filter(pl.col("id") == "t7").row(0, named=True)  # only py_short voted, now removed
    assert (t7["prob_HAM"], t7["covered"], t7["tied"]) == (0.5, False, True)
    predictions = project.predictions("majority_vote")
    assert t7["pred"] == predictions.pred[7] in (0, 1) and t7["pred_name"] == ["HAM", "SPAM"][t7["pred"]]
    assert frame.filter(~pl.col("tied"))["covered"].all() and frame["pred"].min() >= 0


def _tie_heavy_project(root, src, n=900, seed=0):
    """A 2-class project whose keyword LFs often vote 1-1 or not at all: many ties for majority vote."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    words = []
    for label in y:
        # "good"/"nice" mean HAM, "buy"/"link" mean SPAM, each right 75 % of the time; ~1/4 of rows have none
        row = [w for w, cls in (("good", 0), ("nice", 0), ("buy", 1), ("link", 1))
               if rng.random() < (0.45 if cls == label else 0.15)]
        words.append(" ".join(row + ["filler"]))
    split = np.array(["train"] * (n // 3) + ["dev"] * (n // 3) + ["test"] * (n - 2 * (n // 3)))
    src.mkdir(parents=True, exist_ok=True)
    pl.DataFrame({"id": [f"r{i}" for i in range(n)], "text": words, "label": y, "split": split}).write_csv(
        src / "rows.csv")
    (src / "suite.py").write_text(
        "from labelflow import keyword_lf\n"
        + "".join(f"kw_{w} = keyword_lf('kw_{w}', ['{w}'], label={c})\n"
                  for w, c in (("good", 0), ("nice", 0), ("buy", 1), ("link", 1))))
    project = Project.init(root, sources={"": [src / "rows.csv"]}, classes=["HAM", "SPAM"], id="id", label="label",
                           split="split", hide_labels=["train"], lfs=src / "suite.py", label_model="majority_vote")
    project.apply(n_jobs=1)
    return project


@pytest.mark.parametrize("model", ["majority_vote", "labelflow", "snorkel"])
def test_accuracy_recomputed_from_the_export_equals_fit(tmp_path, model):
    project = _tie_heavy_project(tmp_path / "proj", tmp_path / "src")
    fitted = project.evaluate(project.fit(model, use_dev=model != "majority_vote"))
    project.export(tmp_path / "labels.csv", model=model)
    frame = pl.read_csv(tmp_path / "labels.csv", infer_schema_length=None)  # what a user reads back
    if model == "majority_vote":
        assert frame.filter(pl.col("split") != "train")["tied"].mean() > 0.3  # the hard case: many ties
    for split in ("dev", "test"):
        rows = frame.filter(pl.col("split") == split)
        correct = rows["pred"] == rows["label"]
        covered = rows["covered"]
        assert fitted[split]["n"] == rows.height
        assert fitted[split]["accuracy"] == correct.mean()
        assert fitted[split]["accuracy_covered"] == correct.filter(covered).mean()
        assert fitted[split]["coverage"] == covered.mean()
        assert fitted[split]["tied"] == rows["tied"].mean()
        assert 0.5 < fitted[split]["coverage"] < 1  # uncovered rows count in accuracy only
    # the same figures when only one split is exported: predictions do not depend on what is exported
    test_only = project.export(tmp_path / "test.parquet", model=model, splits=["test"])
    assert fitted["test"]["accuracy"] == (test_only["pred"] == test_only["label"]).mean()


def test_export_bad_format_and_split(project, tmp_path):
    project.apply(n_jobs=1)
    project.fit("majority_vote")
    with pytest.raises(ProjectError, match=r"export format must be one of \['parquet', 'csv', 'jsonl'\]; got 'xlsx'"):
        project.export(tmp_path / "labels.xlsx")
    with pytest.raises(ProjectError, match=r"unknown split\(s\) \['holdout'\]"):
        project.export(tmp_path / "labels.csv", splits=["holdout"])
    assert not (tmp_path / "labels.csv").exists()


# --- steps out of order and failures -------------------------------------------------------------------


def test_steps_out_of_order(project, project_files, tmp_path):
    with pytest.raises(ProjectError, match="no label matrix yet"):
        project.fit("majority_vote")
    project.apply(n_jobs=1)
    with pytest.raises(ProjectError, match=r"label model 'snorkel' has not been fit .* run `labelflow fit --model snorkel`"):
        project.label_model("snorkel")
    common = {"classes": ["A", "B"], "id": "id", "label": "label", "label_model": "majority_vote"}
    bare = Project.init(tmp_path / "bare", sources={"": [project_files["dev"]]}, **common)
    with pytest.raises(ProjectError, match="no LF suite configured; pass --lfs PATH"):
        bare.apply()
    dev_only = Project.init(tmp_path / "dev_only", sources={"dev": [project_files["dev"]]},
                            lfs=project_files["suite"], **common)
    dev_only.apply(n_jobs=1)
    with pytest.raises(ProjectError, match="no rows in split 'train' to fit on"):
        dev_only.fit()


def test_model_fit_on_another_lf_set(project, project_files, expected):
    project.apply(n_jobs=1)
    project.fit("majority_vote")
    project_files["suite"].write_text(expected.suite + "\nkw_cash = keyword_lf('kw_cash', ['cash'], label=1)\n")
    project.trust()  # an edited suite runs once trusted again (labelflow.trust)
    project.apply(n_jobs=1)
    with pytest.raises(ProjectError, match=r"was fit on a different LF set \(added since: \['kw_cash'\], removed: \[\]"):
        project.label_model("majority_vote")


def test_failed_apply_keeps_the_saved_matrix(project, project_files, expected):
    project.apply(n_jobs=1)
    before = project.store.matrix.read_bytes()
    project_files["suite"].write_text(expected.suite + "\n\n@labeling_function()\ndef broken(x):\n    return 1 // 0\n")
    project.trust()  # an edited suite runs once trusted again (labelflow.trust)
    with pytest.raises(LFError, match=r"LF 'broken' raised ZeroDivisionError: .* on row id 't0'"):
        project.apply(on_error="raise", n_jobs=1)
    assert project.store.matrix.read_bytes() == before
    matrix, _ = project.apply(on_error="abstain", n_jobs=1)
    assert len(matrix.failures) == 16 and project.store.matrix.read_bytes() != before


def test_init_with_a_missing_file_writes_no_config(tmp_path, project_files):
    root = tmp_path / "fresh"
    with pytest.raises(DataError, match="data file not found") as err:
        Project.init(root, sources={"train": [project_files["train"], tmp_path / "missing.csv"]}, classes=["A", "B"],
                     id="id", label="label")
    assert "missing.csv" in str(err.value)
    assert not (root / CONFIG_FILE).exists()
    assert not ProjectStore.of(root).dataset.exists()


def test_reinit_with_a_missing_file_keeps_the_project(project, tmp_path):
    config = (project.root / CONFIG_FILE).read_bytes()
    dataset = project.store.dataset.read_bytes()
    with pytest.raises(DataError, match="missing.csv"):
        Project.init(project.root, sources={"train": [tmp_path / "missing.csv"]}, classes=["A", "B"])
    assert (project.root / CONFIG_FILE).read_bytes() == config
    assert project.store.dataset.read_bytes() == dataset
    assert sorted(p.name for p in project.root.iterdir()) == [CONFIG_FILE, "store"]
    assert len(Project.open(project.root).dataset()) == 16


# --- opening -------------------------------------------------------------------------------------------


def test_open_a_folder_that_is_not_a_project(tmp_path):
    with pytest.raises(ProjectError, match="is not a labelflow project: labelflow.json is missing") as err:
        Project.open(tmp_path)
    assert str(tmp_path) in str(err.value)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"format": 2, "name": "x"}', "has format 2; this labelflow reads format 1"),
        ('{"name": "x"}', "has format None; this labelflow reads format 1"),
        ("{not json", "is not valid JSON"),
    ],
    ids=["format-2", "no-format", "bad-json"],
)
def test_open_a_config_of_another_format(tmp_path, content, message):
    (tmp_path / CONFIG_FILE).write_text(content)
    with pytest.raises(ProjectError, match=message) as err:
        Project.open(tmp_path)
    assert str(tmp_path / CONFIG_FILE) in str(err.value)


def test_open_a_config_with_unknown_keys(project):
    raw = json.loads((project.root / CONFIG_FILE).read_text())
    (project.root / CONFIG_FILE).write_text(json.dumps({**raw, "colour": "blue"}))
    with pytest.raises(ProjectError, match=r"unknown keys \['colour'\]"):
        Project.open(project.root)


def test_open_a_config_missing_keys(tmp_path):
    (tmp_path / CONFIG_FILE).write_text('{"format": 1, "name": "x"}')
    with pytest.raises(ProjectError, match="classes"):
        Project.open(tmp_path)


def test_open_a_config_that_is_not_an_object(tmp_path):
    (tmp_path / CONFIG_FILE).write_text("[]")
    with pytest.raises(ProjectError, match="labelflow.json"):
        Project.open(tmp_path)


def test_config_checks():
    with pytest.raises(ProjectError, match=r"unknown label model 'nope'; known models are \["):
        ProjectConfig(name="x", classes=[{"name": "a"}, {"name": "b"}], text={"text": "text"}, sources={},
                      label_model="nope")
    with pytest.raises(ProjectError, match="dev_sample must be ≥ 0; got -1"):
        ProjectConfig(name="x", classes=[{"name": "a"}, {"name": "b"}], text={"text": "text"}, sources={},
                      dev_sample=-1)


# --- issue 14, item 3: the label matrix is checked against the dataset's ids --------------------------


def _rewrite_matrix(project, change):
    """Rewrite store/matrix.parquet through ``change(frame) -> frame``, keeping its metadata."""
    path = project.store.matrix
    meta = pl.read_parquet_metadata(path)
    change(pl.read_parquet(path)).write_parquet(path, metadata=meta)


def test_item3_a_shuffled_matrix_is_reordered_by_id(project, tmp_path):
    original, _ = project.apply(n_jobs=1)
    project.fit("majority_vote")
    metrics = project.evaluate("majority_vote")
    exported = project.export(tmp_path / "before.parquet")
    _rewrite_matrix(project, lambda f: f.sample(fraction=1.0, shuffle=True, seed=3))
    assert pl.read_parquet(project.store.matrix)["id"].to_list() != original.ids.to_list()
    matrix = Project.open(project.root).matrix()
    assert matrix.ids.to_list() == original.ids.to_list()
    np.testing.assert_array_equal(matrix.values, original.values)
    assert project.evaluate("majority_vote") == metrics  # the model still fits the (same) data
    assert project.export(tmp_path / "after.parquet").equals(exported)


def test_item3_a_matrix_of_other_rows_is_refused(project):
    project.apply(n_jobs=1)
    project.fit("majority_vote")
    saved = project.store.matrix.read_bytes()
    _rewrite_matrix(project, lambda f: f.with_columns(id=pl.when(pl.col("id") == "t3").then(pl.lit("x"))
                                                      .otherwise(pl.col("id"))))
    message = (r"does not hold the dataset's rows: 1 of the dataset's 16 ids are missing from it \['t3'\], "
               r"1 of its ids are not in the dataset \['x'\]; run `labelflow apply` again")
    for step in (project.matrix, lambda: project.fit("majority_vote"), lambda: project.evaluate("majority_vote"),
                 lambda: project.export(project.root / "out.csv")):
        with pytest.raises(ProjectError, match=message):
            step()
    project.store.matrix.write_bytes(saved)
    _rewrite_matrix(project, lambda f: f.head(15))
    with pytest.raises(ProjectError, match=r"1 of the dataset's 16 ids are missing from it \['s3'\], 0 of its ids"):
        project.matrix()
    assert not (project.root / "out.csv").exists()


@pytest.mark.parametrize(("change", "message"), [
    (lambda f: f.with_columns(f["kw_sub"].cast(pl.Int16).scatter(2, 256)),
     r"LF 'kw_sub' votes 256 on row id 't2', outside -1..1 \(cardinality 2\)"),
    (lambda f: f.with_columns(f["kw_song"].scatter(1, 2)), r"LF 'kw_song' votes 2 on row id 't1', outside -1..1"),
    (lambda f: f.with_columns(kw_link=pl.lit(None, pl.Int8)), r"LF 'kw_link' has no vote \(null\) on row id 't0'"),
    (lambda f: f.with_columns(kw_link=pl.lit(None)), r"LF 'kw_link' has no vote \(null\) on row id 't0'"),
    (lambda f: f.with_columns(pl.col("kw_free").cast(pl.Float64)), r"LF 'kw_free' has votes of type Float64"),
    ("3", r"holds votes for 3 classes; the project has 2 \(\['HAM', 'SPAM'\]\)"),
], ids=["256-in-int16", "class-2", "null-int8", "all-null", "float", "cardinality"])
def test_item3_votes_are_checked_before_the_int8_cast(project, change, message):
    project.apply(n_jobs=1)
    if change == "3":
        path = project.store.matrix
        meta = {**pl.read_parquet_metadata(path), "labelflow.cardinality": "3"}
        pl.read_parquet(path).write_parquet(path, metadata=meta)
    else:
        _rewrite_matrix(project, change)
    with pytest.raises(ProjectError, match=message):
        project.matrix()


def test_item3_a_model_fit_on_other_data_is_refused(project, project_files, tmp_path):
    project.apply(n_jobs=1)
    project.fit("majority_vote")
    record = json.loads(project.store.fit_record("majority_vote").read_text())
    assert record["lf_names"] == list(project.matrix().lf_names) and record["rows"] == 16
    # re-init with the same data and re-apply: the model still holds
    same = Project.init(project.root, sources={s: [project_files[s]] for s in ("train", "dev", "test")},
                        classes=["HAM", "SPAM"], id="id", label="label", hide_labels=["train"],
                        lfs=project_files["suite"], label_model="majority_vote")
    same.apply(n_jobs=1)
    assert same.evaluate("majority_vote")["test"]["n"] == 4
    # re-init with other data (train rows' texts changed): the old model is refused by every step that reads it
    other = tmp_path / "train2.csv"
    pl.read_csv(project_files["train"]).with_columns(pl.lit("love this song").alias("text")).write_csv(other)
    again = Project.init(project.root, sources={"train": [other], "dev": [project_files["dev"]],
                                                "test": [project_files["test"]]},
                         classes=["HAM", "SPAM"], id="id", label="label", hide_labels=["train"],
                         lfs=project_files["suite"], label_model="majority_vote")
    again.apply(n_jobs=1)
    message = r"label model 'majority_vote' was fit on other data: the label matrix \(row ids or votes\) changed since"
    for step in (lambda: again.evaluate("majority_vote"), lambda: again.export(tmp_path / "out.csv"),
                 lambda: again.predictions("majority_vote"), again.label_model):
        with pytest.raises(ProjectError, match=message):
            step()
    assert not (tmp_path / "out.csv").exists()
    # other splits, same votes: refused too
    again.fit("majority_vote")
    moved = Project.init(project.root, sources={"train": [other], "dev": [project_files["dev"]],
                                                "test": [project_files["test"]]},
                         classes=["HAM", "SPAM"], id="id", label="label", hide_labels=["train"], dev_sample=2,
                         lfs=project_files["suite"], label_model="majority_vote")
    moved.apply(n_jobs=1)
    with pytest.raises(ProjectError, match=r"was fit on other data: the rows' splits changed since"):
        moved.export(tmp_path / "out.csv")
    # a model saved without a record (an older labelflow) is refused as well
    moved.fit("majority_vote")
    moved.store.fit_record("majority_vote").unlink()
    with pytest.raises(ProjectError, match="has no record of the data it was fit on"):
        moved.evaluate("majority_vote")


# --- issue 14, item 13: steps read only the columns they need ------------------------------------------


def test_item13_fit_evaluate_and_summary_read_no_text(project, monkeypatch):
    project.apply(n_jobs=1)
    reads = []
    real = pl.read_parquet

    def spy(source, *args, columns=None, **kwargs):
        if str(source).endswith("dataset.parquet"):
            reads.append(columns)
        return real(source, *args, columns=columns, **kwargs)

    monkeypatch.setattr(pl, "read_parquet", spy)
    monkeypatch.setattr(Project, "dataset", lambda self: pytest.fail("read the whole dataset"))
    model = project.fit("majority_vote", use_dev=True)
    project.evaluate(model)
    project.summary("dev")
    assert reads and all(cols is not None and "text" not in cols for cols in reads), reads
    assert {c for cols in reads for c in cols} == {"id", "split", "label"}


def test_item4_hide_labels_naming_a_split_the_data_lacks_is_refused(tmp_path, project_files):
    with pytest.raises(DataError, match=r"hide_labels names split\(s\) \['trian'\] the dataset lacks; its splits are "
                                        r"\['train', 'dev', 'test'\]"):
        Project.init(tmp_path / "proj", sources={s: [project_files[s]] for s in ("train", "dev", "test")},
                     classes=["HAM", "SPAM"], id="id", label="label", hide_labels=["trian"])
    assert not (tmp_path / "proj" / CONFIG_FILE).exists()
    project = Project.init(tmp_path / "proj", sources={s: [project_files[s]] for s in ("train", "dev", "test")},
                           classes=["HAM", "SPAM"], id="id", label="label", hide_labels=["Validation"])
    assert project.dataset().split("VALID").frame["label"].null_count() == 4
