"""Projects that survive a move or copy, `labelflow config`, `.json` data files, predict's id column, a failed
init's cleanup (issue 16, point 8), and a CLI whose output is its own: no third-party bars, load reports or
FutureWarnings unless `-v` (point 9)."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from labelflow import DataError
from labelflow.cli import main
from labelflow.project import Project
from labelflow.project_config import CONFIG_FILE
from labelflow.store import ProjectStore


def run(capsys, *argv) -> tuple[int, str, str]:
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def run_json(capsys, *argv) -> dict:
    rc, out, err = run(capsys, *argv, "--json")
    assert rc == 0, err
    return json.loads(out)


def config_of(root: Path) -> dict:
    return json.loads((root / CONFIG_FILE).read_text())


def files_under(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# --- a moved or copied project -------------------------------------------------------------------------


def test_init_records_the_projects_folder(project):
    assert config_of(project.root)["root"] == str(project.root.resolve())
    assert Project.open(project.root).notes == []


def test_a_moved_project_opens_applies_and_fits(project, tmp_path, capsys, expected):
    project.apply(n_jobs=1)
    project.fit("majority_vote")
    suite = project.suite_path.resolve()
    moved = tmp_path / "elsewhere" / "deeper" / "proj"  # another depth: '../src/suite.py' no longer resolves
    moved.parent.mkdir(parents=True)
    shutil.move(project.root, moved)

    rc, out, err = run(capsys, "apply", "-p", str(moved), "--jobs", "1")
    assert rc == 0, err
    assert f"the project was at {project.root.resolve()} and is now at {moved.resolve()}" in err
    assert f"lfs: ../src/suite.py is not beside the project's new folder; it now names the file it named before the " \
           f"move, {suite}" in err
    assert f"({len(expected.lfs)} applied" not in out and "0 applied" in out  # the same suite, from the vote cache
    config = config_of(moved)
    assert config["root"] == str(moved.resolve()) and config["lfs"] == "../../../src/suite.py"
    assert config["sources"]["train"] == ["../../../src/train.csv"]
    reopened = Project.open(moved)
    assert reopened.notes == [] and reopened.suite_path.resolve() == suite
    assert reopened.trusted  # the suite it was trusted with, named from the new folder
    rc, out, err = run(capsys, "fit", "-p", str(moved), "--model", "majority_vote")
    assert rc == 0 and err == "" and "majority_vote" in out  # said once: nothing the second time


def test_several_data_files_pointed_back_are_said_in_one_line(tmp_path, project_files):
    files = [project_files[s] for s in ("train", "dev", "test")]
    project = Project.init(tmp_path / "proj", sources={"": files}, classes=["HAM", "SPAM"], id="id", label="label")
    moved = tmp_path / "x" / "proj"
    moved.parent.mkdir()
    shutil.move(project.root, moved)
    notes = Project.open(moved).notes
    assert notes[1:] == [f"sources: 3 data files are not beside the project's new folder; they now name the files "
                         f"they named before the move, in {tmp_path / 'src'}"]
    assert config_of(moved)["sources"] == {"": ["../../src/train.csv", "../../src/dev.csv", "../../src/test.csv"]}


def test_a_copied_tree_uses_its_own_files_and_says_when_the_originals_differ(project, tmp_path):
    copy = tmp_path / "copy"
    copy.mkdir()
    shutil.copytree(project.root, copy / "proj")
    shutil.copytree(tmp_path / "src", copy / "src")
    (copy / "src" / "suite.py").write_text((copy / "src" / "suite.py").read_text() + "\n# edited in the copy\n")
    opened = Project.open(copy / "proj")
    assert opened.suite_path.resolve() == (copy / "src" / "suite.py").resolve()  # the copy's own suite
    assert config_of(copy / "proj")["lfs"] == "../src/suite.py"
    differ = [n for n in opened.notes if n.startswith("lfs: ")]
    assert differ == [f"lfs: using {copy / 'src' / 'suite.py'}, beside the project; the file it named before the "
                      f"move, {tmp_path / 'src' / 'suite.py'}, also exists and differs (`labelflow config --set "
                      "lfs=PATH` chooses another)"]
    assert not any(n.startswith("sources.") for n in opened.notes)  # identical data files: nothing to say
    assert not opened.trusted  # another suite's content is not trusted by the copy


def test_an_old_config_without_root_is_migrated_once(project, capsys):
    config = config_of(project.root)
    del config["root"]
    (project.root / CONFIG_FILE).write_text(json.dumps(config))
    rc, _, err = run(capsys, "config", "-p", str(project.root))
    assert rc == 0 and err.count("labelflow: note:") == 1
    assert f"now records the project's folder, {project.root.resolve()} (it was written by an older labelflow)" in err
    assert config_of(project.root)["root"] == str(project.root.resolve())
    assert run(capsys, "config", "-p", str(project.root))[2] == ""


def test_a_path_found_nowhere_is_said_and_left_for_config_to_set(project, tmp_path, capsys):
    moved = tmp_path / "a" / "b" / "proj"
    moved.parent.mkdir(parents=True)
    shutil.move(project.root, moved)
    shutil.move(tmp_path / "src", tmp_path / "gone")
    opened = Project.open(moved)
    assert (f"lfs: ../src/suite.py is not found at {tmp_path / 'a' / 'b' / 'src' / 'suite.py'} nor at "
            f"{tmp_path / 'src' / 'suite.py'}, where the project was; set it with `labelflow config --set lfs=PATH`"
            in opened.notes)
    assert config_of(moved)["lfs"] == "../src/suite.py"  # not guessed
    rc, out, err = run(capsys, "config", "-p", str(moved), "--set", f"lfs={tmp_path / 'gone' / 'suite.py'}")
    assert rc == 0, err
    assert Project.open(moved).suite_path.resolve() == (tmp_path / "gone" / "suite.py").resolve()
    assert Project.open(moved).trusted  # the user named the file
    rc, out, err = run(capsys, "apply", "-p", str(moved), "--jobs", "1")
    assert rc == 0, err


# --- labelflow config ------------------------------------------------------------------------------------


def test_config_shows_the_settings_with_resolved_paths(project, capsys):
    rc, out, err = run(capsys, "config", "-p", str(project.root))
    assert rc == 0 and err == ""
    assert f"project 'proj' in {project.root.resolve()}" in out
    assert f"lfs          ../src/suite.py → {project.suite_path.resolve()}" in out
    assert "label_model  majority_vote" in out and "hide_labels  train" in out
    info = run_json(capsys, "config", "-p", str(project.root))
    assert info["config"] == config_of(project.root) and info["trusted"] is True and info["stale"] == {}
    assert info["paths"]["lfs"] == [str(project.suite_path.resolve()), True]
    assert info["paths"]["sources.test[0]"][1] is True


def test_config_set_round_trip_keeps_the_store(project, project_files, tmp_path, capsys, expected):
    project.apply(n_jobs=1)
    project.fit("majority_vote")
    project.save_fm_output("emb", project.columns("id")["id"], np.ones((16, 3), dtype=np.float32))
    before = files_under(project.store.root)
    other = tmp_path / "other" / "suite.py"
    other.parent.mkdir()
    other.write_text(expected.suite + '\nkw_nice = keyword_lf("kw_nice", ["nice"], label=0)\n')

    report = run_json(capsys, "config", "-p", str(project.root), "--set", f"lfs={other}", "--set", "label_model=snorkel",
                      "--set", "describe.SPAM=an ad or a link", "--set", "name=spam task")
    assert report["changed"]["lfs"] == {"from": "../src/suite.py", "to": "../other/suite.py"}
    assert report["changed"]["label_model"] == {"from": "majority_vote", "to": "snorkel"}
    assert report["reimported"] is None
    assert report["stale"] == {"apply": "the LF suite is now ../other/suite.py (was ../src/suite.py)"}
    assert report["todo"] == [f"labelflow apply -p {project.root}"]
    config = config_of(project.root)
    assert (config["lfs"], config["label_model"], config["name"]) == ("../other/suite.py", "snorkel", "spam task")
    assert config["classes"][1] == {"name": "SPAM", "description": "an ad or a link"}
    after = files_under(project.store.root)
    assert {k: v for k, v in after.items() if k != project.store.stale_file.name} == before  # store/fm, votes, matrix, models kept
    assert Project.open(project.root).trusted  # the user named the suite

    rc, out, err = run(capsys, "fit", "-p", str(project.root), "--model", "majority_vote")
    assert rc == 0 and "labelflow: note: the label matrix is stale (the LF suite is now ../other/suite.py" in err
    rc, out, err = run(capsys, "apply", "-p", str(project.root), "--jobs", "1")
    assert rc == 0 and "stale" not in err and "6 LFs" in out
    assert not project.store.stale_file.exists()
    assert run(capsys, "fit", "-p", str(project.root))[2] == ""

    again = run_json(capsys, "config", "-p", str(project.root), "--set", "label_model=snorkel")
    assert again["changed"] == {} and again["stale"] == {}


def test_config_set_text_reimports_the_dataset_and_marks_what_is_stale(project, capsys):
    project.apply(n_jobs=1)
    project.save_fm_output("emb", project.columns("id")["id"], np.ones((16, 3), dtype=np.float32))
    fm_file = project.store.fm_output("emb").read_bytes()
    rc, out, err = run(capsys, "config", "-p", str(project.root), "--set", "text=author", "--set", "text.body=text",
                       "--set", "describe.HAM=a fan")
    assert rc == 0 and out.splitlines()[:3] == ["set text: text=text → text=author, body=text",
                                                "set describe.HAM: (none) → a fan",
                                                "re-imported the dataset: 16 rows (store kept: FM outputs, votes, "
                                                "matrix, models, annotations)"]
    report = run_json(capsys, "config", "-p", str(project.root))
    why = "the dataset was re-imported with other rows or texts (text changed)"
    assert report["stale"] == {"apply": why, "fm emb": why}
    assert report["todo"] == [f"labelflow apply -p {project.root}", f"labelflow fm ... --name emb -p {project.root} "
                              f"(or remove {project.store.fm_output('emb')})"]
    assert Project.open(project.root).dataset().frame["text"].to_list()[:2] == ["user0", "user1"]
    assert project.store.fm_output("emb").read_bytes() == fm_file  # kept, marked
    rc, _, err = run(capsys, "summary", "-p", str(project.root))
    assert "FM output 'emb' is stale" in err and "the label matrix is stale" in err
    assert config_of(project.root)["text"] == {"text": "author", "body": "text"}
    project = Project.open(project.root)
    project.save_fm_output("emb", project.columns("id")["id"], np.zeros((16, 3), dtype=np.float32))
    assert project.stale() == {"apply": why}
    # the label column only: same rows and texts, nothing stale
    project.apply(n_jobs=1)
    report = run_json(capsys, "config", "-p", str(project.root), "--set", "hide_labels=")
    assert report["reimported"] == 16 and report["stale"] == {}
    assert (Project.open(project.root).gold() != -1).sum() == 16


@pytest.mark.parametrize("setting, message", [
    ("classes=A,B", "--set classes: class names cannot change in place"),
    ("colour=red", "--set colour: unknown setting; settable keys are name, lfs, label_model"),
    ("label_model=best", "--set label_model=best: unknown label model; known models are"),
    ("lfs=nowhere.py", "--set lfs=nowhere.py: no such file: 'nowhere.py'"),
    ("dev_sample=-3", "--set dev_sample=-3: expected a whole number ≥ 0"),
    ("duplicates=keep", "--set duplicates=keep: expected error or drop_identical"),
    ("describe.EGGS=x", "--set describe.EGGS: no class 'EGGS'; the classes are HAM, SPAM"),
    ("sources.holdout=a.csv", "--set sources.holdout: unknown split 'holdout'"),
    ("text=", "--set text=: the primary text field needs a column"),
    ("id=NOPE", "train.csv has no column 'NOPE'"),
    ("hide_labels=holdout", "hide_labels names split(s) ['holdout'] the dataset lacks"),
    ("extend=x", "--set extend: embedding-extended LFs are turned on and off with"),
])
def test_config_set_refuses_a_bad_value_and_changes_nothing(project, capsys, setting, message):
    config, store = (project.root / CONFIG_FILE).read_bytes(), files_under(project.store.root)
    rc, out, err = run(capsys, "config", "-p", str(project.root), "--set", setting)
    assert rc == 2 and out == "" and err.count("\n") == 1 and err.startswith("labelflow: error: ")
    assert message in err, err
    assert (project.root / CONFIG_FILE).read_bytes() == config and files_under(project.store.root) == store


def test_config_set_hide_labels_reads_split_names_as_init_does(project, capsys):
    run_json(capsys, "config", "-p", str(project.root), "--set", "hide_labels=Validation")
    dataset = Project.open(project.root).dataset()
    assert dataset.split("dev").frame["label"].null_count() == 4
    assert dataset.split("train").frame["label"].null_count() == 0


def test_config_set_needs_key_equals_value(project, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["config", "-p", str(project.root), "--set", "label_model"])
    assert exit_.value.code == 2
    assert "argument --set: expected KEY=VALUE (an empty VALUE clears an optional setting); got 'label_model'" in \
        capsys.readouterr().err


# --- .json data files ----------------------------------------------------------------------------------

ROWS = [{"id": "a1", "text": "subscribe to my channel", "label": 1}, {"id": 7, "text": "love this song", "label": 0},
        {"id": "00123", "text": "free cash", "label": 1}]


@pytest.mark.parametrize("layout", ["array", "lines"])
def test_a_json_file_of_either_layout_is_read(tmp_path, capsys, layout):
    path = tmp_path / "rows.json"
    path.write_text(json.dumps(ROWS, indent=2) if layout == "array" else "\n".join(json.dumps(r) for r in ROWS) + "\n")
    rc, out, err = run(capsys, "init", str(tmp_path / "proj"), "--data", f"train={path}", "--classes", "HAM,SPAM",
                       "--id", "id", "--label", "label")
    assert rc == 0, err
    frame = Project.open(tmp_path / "proj").dataset().frame
    assert frame["id"].to_list() == ["a1", "7", "00123"] and frame["label"].to_list() == [1, 0, 1]
    assert frame["text"].to_list() == [r["text"] for r in ROWS]


@pytest.mark.parametrize("content, message", [
    ('{\n  "id": "a", "text": "x"\n}\n', "line 1 opens a JSON object that does not end on that line"),
    ('\n\n"just text"\n', "line 3 starts with '\"just text\"'; expected a JSON array of row objects"),
    ('{"id": "a", "text": "x"}\n{"id": "b", "text": \n', "line 2 is not valid JSON"),
    ('{"id": "a", "text": "x"}\n[1, 2]\n', "line 2 is [1, 2], not an object"),
    ('[{"id": "a", "text": "x"}, 5]', "element 1 of the array is 5, not an object (a row)"),
    ('[{"id": "a", "text": "x"},\n {"id": "b" "text": "y"}]', "line 2, column 13 is not valid JSON"),
    ('[{"id": "a", "text": {"nested": 1}}]', "row 0 has an object in column 'text'"),
    ("", "the file is empty"),
])
def test_a_json_file_of_neither_layout_is_refused_naming_the_line(tmp_path, content, message):
    from labelflow import load_dataset

    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(DataError, match="bad.json: ") as err:
        load_dataset(path, classes=["HAM", "SPAM"], id="id")
    assert message in str(err.value)


def test_a_jsonl_file_names_its_bad_line(tmp_path):
    from labelflow import load_dataset

    path = tmp_path / "rows.jsonl"
    path.write_text('{"text": "a"}\n\n{"text": "b"\n')
    with pytest.raises(DataError, match=r"rows\.jsonl: line 3 is not valid JSON .*; JSON Lines hold one JSON object"):
        load_dataset(path, classes=["HAM", "SPAM"])


# --- predict keeps the input's ids -----------------------------------------------------------------------


def test_predict_keeps_the_files_id_column(tmp_path, tiny_model, capsys):
    data = tmp_path / "comments.csv"
    pl.DataFrame({"COMMENT_ID": ["z9", "00017", "k3"], "CONTENT": ["free money", "love song", "subscribe"]}) \
        .write_csv(data)
    base = ["predict", "--model", str(tiny_model), str(data), "--text-column", "CONTENT", "--device", "cpu"]
    out_file = tmp_path / "preds.parquet"
    rc, out, err = run(capsys, *base, "--id-column", "COMMENT_ID", "--out", str(out_file))
    assert rc == 0, err
    assert f"ids from column 'COMMENT_ID' of {data}" in out
    assert pl.read_parquet(out_file)["id"].to_list() == ["z9", "00017", "k3"]  # as written, not re-typed
    report = run_json(capsys, *base, "--id-column", "COMMENT_ID")
    assert report["id_column"] == "COMMENT_ID" and [r["id"] for r in report["predictions"]] == ["z9", "00017", "k3"]

    rc, out, err = run(capsys, *base, "--id-column", "ID")
    assert rc == 2 and err == (f"labelflow: error: --id-column ID: {data} has no column 'ID'; its columns are "
                               "['COMMENT_ID', 'CONTENT']\n")
    rc, out, err = run(capsys, *base)
    assert rc == 0 and "has no 'id' column: the predictions' ids are its row numbers" in err
    rc, out, err = run(capsys, "predict", "--model", str(tiny_model), str(tmp_path), "--id-column", "COMMENT_ID")
    assert rc == 2 and "is a project folder, whose rows keep the project's ids" in err


# --- a failed init removes only what it made -------------------------------------------------------------


def init_argv(root, project_files, *extra):
    return ["init", str(root), "--data", f"train={project_files['train']}", "--data", f"test={project_files['test']}",
            "--classes", "HAM,SPAM", "--id", "id", "--label", "label", *extra]


def test_a_failed_init_removes_the_folders_it_made(tmp_path, project_files, capsys):
    root = tmp_path / "new" / "nested" / "proj"
    rc, _, err = run(capsys, *init_argv(root, project_files, "--text", "nope"))
    assert rc == 2 and "has no column 'nope'" in err
    assert not (tmp_path / "new").exists()


def test_a_failed_init_in_an_existing_folder_keeps_its_content(tmp_path, project_files, capsys):
    root = tmp_path / "mine"
    root.mkdir()
    (root / "notes.txt").write_text("keep me")
    folder = ProjectStore.of(root).root
    folder.mkdir()
    (folder / "keep.bin").write_bytes(b"\0")
    rc, _, err = run(capsys, *init_argv(root, project_files, "--id", "nope"))
    assert rc == 2
    assert files_under(root) == {"notes.txt": b"keep me", "store/keep.bin": b"\0"}

    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError):
        Project.init(empty, sources={"train": [project_files["train"]]}, classes=["HAM", "SPAM"], id="id",
                     label="label", hide_labels=["dev"])
    assert empty.is_dir() and list(empty.iterdir()) == []


def test_a_reinit_keeps_fm_outputs_of_the_same_rows_and_says_which_it_removes(project, project_files):
    project.save_fm_output("emb", project.columns("id")["id"], np.ones((16, 3), dtype=np.float32))
    common = dict(classes=["HAM", "SPAM"], id="id", label="label", lfs=project_files["suite"])
    same = Project.init(project.root, sources={s: [project_files[s]] for s in ("train", "dev", "test")}, **common)
    assert project.store.fm_output("emb").is_file() and same.notes == []  # labels shown now: same rows
    fewer = Project.init(project.root, sources={"train": [project_files["train"]]}, **common)
    assert not project.store.fm_output("emb").exists()
    assert fewer.notes == ["removed FM output(s) ['emb']: they were computed for the previous rows (the FM cache "
                           "keeps their values: `labelflow fm ...` again recomputes only new texts)"]


# --- the CLI's output: one line per stage, third-party noise only with -v --------------------------------


def test_fit_shows_no_snorkel_epoch_bars_unless_verbose(project, capsys):
    project.apply(n_jobs=1)
    rc, out, err = run(capsys, "fit", "-p", str(project.root), "--model", "snorkel")
    assert rc == 0 and err == "" and "snorkel" in out
    rc, out, err = run(capsys, "-v", "fit", "-p", str(project.root), "--model", "snorkel")
    assert rc == 0 and "epoch" in err  # Snorkel's own bar, asked for
    rc, out, err = run(capsys, "fit", "-p", str(project.root), "--model", "snorkel", "-v")  # after the command too
    assert rc == 0 and "epoch" in err


def test_fm_embed_shows_its_bar_but_no_loading_weights_unless_verbose(project, capsys, monkeypatch):
    from labelflow.fm import base

    copy = project.root.with_name("copy")
    shutil.copytree(project.root, copy)  # a second project: its FM cache is empty too
    monkeypatch.setattr(base, "_LOADED", {})  # and the model is loaded again (providers live per process)
    rc, out, err = run(capsys, "fm", "embed", "-p", str(project.root))
    assert rc == 0, err
    assert "embeddings" in err and "Loading weights" not in err and "Warning" not in err
    monkeypatch.setattr(base, "_LOADED", {})
    rc, out, err = run(capsys, "fm", "embed", "-v", "-p", str(copy))
    assert rc == 0 and "Loading weights" in err


def test_finetune_shows_its_bar_but_no_future_warnings_or_log_lines_unless_verbose(tmp_path, export, tiny_model,
                                                                                   capsys):
    labels = tmp_path / "labels.parquet"
    export().write_parquet(labels)
    argv = ["finetune", "--labels", str(labels), "--base-model", str(tiny_model), "--epochs", "1", "--batch-size",
            "16", "--max-length", "16", "--device", "cpu"]
    for verbose, out_dir in ((False, "quiet"), (True, "loud")):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            rc, out, err = run(capsys, *argv, "--out", str(tmp_path / out_dir), *(["-v"] if verbose else []))
        assert rc == 0, err
        future = [w for w in caught if issubclass(w.category, (FutureWarning, DeprecationWarning))]
        logged = "finetune: training" in err
        if verbose:
            assert logged and future, "peft's is_gradient_checkpointing FutureWarning was expected with -v"
        else:
            assert future == [] and not logged, [str(w.message) for w in future]


def test_the_verbosity_comes_back_after_a_command(project, capsys):
    import logging

    from labelflow import quiet

    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    assert run(capsys, "-vv", "config", "-p", str(project.root))[0] == 0
    assert quiet.verbosity() == 0 and root.handlers == handlers and root.level == level
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with quiet.third_party():
            warnings.warn("a library's deprecation, inside the call", FutureWarning)
        warnings.warn("labelflow's own, outside it", FutureWarning)
    assert [str(w.message) for w in caught] == ["labelflow's own, outside it"]


@pytest.mark.slow
def test_the_demo_shows_one_line_per_stage_and_no_epoch_bars(tmp_path, capsys):
    rc, out, err = run(capsys, "demo", "--workdir", str(tmp_path / "demo"), "--no-fm", "--no-student")
    assert rc == 0, err
    assert "label models: fitting majority_vote, snorkel, auto on 18 LFs" in err
    assert "epoch" not in err and "Warning" not in err
    assert "LF summary on dev:" in out
