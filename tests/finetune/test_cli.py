"""``labelflow finetune`` and ``labelflow predict``: on
a project, on an export file, and their predictions back into error analysis."""

from __future__ import annotations

import json

from pathlib import Path

import polars as pl
import pytest

pytest.importorskip("peft")

from labelflow.cli import main  # noqa: E402
from labelflow.finetune.cli import COMMANDS  # noqa: E402


REPO = Path(__file__).resolve().parents[2]


def run(capsys, *argv: str) -> tuple[int, dict | str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    try:
        return code, json.loads(out), err
    except json.JSONDecodeError:
        return code, out, err


def tiny_args(tiny_model) -> list[str]:
    return ["--base-model", str(tiny_model), "--method", "full", "--epochs", "3", "--batch-size", "4", "--lr", "5e-3",
            "--max-length", "32", "--device", "cpu"]


def test_finetune_a_project_then_predict_into_error_analysis(tmp_path, capsys, project, tiny_model):
    from labelflow.error_analysis import analyze

    project.apply()
    project.fit()
    out = tmp_path / "student"
    code, doc, err = run(capsys, "finetune", "-p", str(project.root), "--out", str(out), *tiny_args(tiny_model),
                         "--json")
    assert code == 0, err
    m = doc["metrics"]
    assert m["task"] == project.config.name and m["classes"] == ["HAM", "SPAM"]
    assert m["dev"]["rows"] == 4 and m["test"]["rows"] == 4 and m["train"]["train_rows"] == 8
    # the label model's scores equal the project's own evaluation (`labelflow fit`'s): the same predictions, ties
    # broken, accuracy on all rows and on covered rows, coverage, tied
    labels = pl.read_parquet(out / "labels.parquet")
    assert labels.columns == ["id", "text", "split", "label", "prob_HAM", "prob_SPAM", "pred", "covered", "tied"]
    evaluation = project.evaluate()
    for split in ("dev", "test"):
        assert {k: v for k, v in m[split]["label_model"].items() if k != "per_class"} == evaluation[split]

    preds_path = tmp_path / "preds.parquet"
    code, doc, err = run(capsys, "predict", "--model", str(out), str(project.root), "--out", str(preds_path), "--json")
    assert code == 0, err
    assert doc["rows"] == 16 and sum(doc["counts"].values()) == 16
    preds = pl.read_parquet(preds_path)
    analysis = analyze(project, predictions=preds)
    code, doc, err = run(capsys, "analyze", "-p", str(project.root), "--predictions", str(preds_path), "--json")
    assert code == 0, err
    assert doc["model"] == str(preds_path) and doc["accuracy"] == pytest.approx(analysis.accuracy)
    dev = preds.filter(pl.col("split") == "dev").join(labels.select("id", "label"), on="id")
    assert analysis.accuracy == pytest.approx((dev["pred"] == dev["label"]).mean())

    code, text, err = run(capsys, "predict", "--model", str(out), str(project.root))
    assert code == 0 and "prob_SPAM" in text and "pred_name" in text


def test_finetune_an_export_file_prints_lines_and_resumes(tmp_path, capsys, export, tiny_model):
    labels = tmp_path / "labels.csv"
    export().write_csv(labels)
    out = tmp_path / "run"
    code, text, err = run(capsys, "finetune", "--labels", str(labels), "--out", str(out), *tiny_args(tiny_model))
    assert code == 0, err
    assert f"into {out}" in text and "student accuracy" in text and "label model accuracy" in text
    assert "label model accuracy 1.000 (1.000 on the 94% covered)" in text  # dev: 15 of 16 covered; the tie broken right
    code, text, err = run(capsys, "finetune", "--out", str(out), *tiny_args(tiny_model), "--resume")
    assert code == 0 and "resumed from step 36" in text


@pytest.mark.parametrize(("argv", "message"), [
    (["finetune", "--out", "RUN", "--labels", "NOPE.parquet"], "training labels file NOPE.parquet does not exist"),
    (["finetune", "--out", "RUN", "--labels", "LABELS", "--batch-size", "0"], "batch_size must be an integer ≥ 1; got 0"),
    (["finetune", "--out", "RUN", "--labels", "LABELS", "--base-model", "/nope"], "base model '/nope' cannot be found"),
    (["finetune", "--out", "RUN", "-p", "NOPROJECT"], "is not a labelflow project"),
    (["predict", "--model", "RUN", "LABELS"], "is not a fine-tuned model folder: config.json is missing"),
    (["predict", "--model", "TINY", "LABELS", "--text-column", "body"], "has no column 'body'"),
    (["predict", "--model", "TINY", "LABELS", "--out", "x.txt"], "--out must end in one of"),
])
def test_errors_print_one_line_and_exit_2(tmp_path, capsys, export, tiny_model, argv, message, monkeypatch):
    monkeypatch.chdir(tmp_path)
    export().write_parquet(tmp_path / "LABELS")
    export().write_parquet(tmp_path / "labels.parquet")
    argv = [str(tmp_path / "labels.parquet") if a == "LABELS" else str(tiny_model) if a == "TINY" else a for a in argv]
    code, _, err = run(capsys, *argv)
    assert code == 2
    assert err.startswith("labelflow: error: ") and message in err and err.count("\n") == 1


def test_options_become_the_config():
    from labelflow.finetune.options import config_from_args
    from labelflow.cli import commands, make_parser

    args = make_parser().parse_args(["finetune", "--out", "r", "--lora-r", "4", "--target-modules", "query,value",
                                     "--patience", "0"])
    cfg = config_from_args(args)
    assert cfg.lora_r == 4 and cfg.lora_target_modules == ("query", "value") and cfg.patience is None
    assert cfg.base_model == "all-MiniLM-L6-v2" and cfg.method == "lora"
    assert set(COMMANDS) <= set(commands())  # the CLI runs them (wrapped to silence third-party output unless -v)


def test_every_config_field_is_an_option_with_its_literal_choices_and_the_readme_flags_parse():
    import dataclasses
    import re
    import typing

    from labelflow.finetune.config import FinetuneConfig, Weighting
    from labelflow.finetune.options import config_from_args, options
    from labelflow.cli import make_parser

    opts = {o.field: o for o in options()}
    assert set(opts) == {f.name for f in dataclasses.fields(FinetuneConfig)} - {"progress"}
    assert opts["weighting"].choices == typing.get_args(Weighting) and opts["weighting"].help
    assert (opts["tf32"].flag, opts["lora_target_modules"].flag, opts["max_length"].flag) == (
        "--no-tf32", "--target-modules", "--max-length")
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Fine-tuning a student")[1].split("\n## ")[0]
    flags = set(re.findall(r"`(--[a-z][a-z0-9-]+)", section)) | set(re.findall(r"labelflow finetune .*", section))
    flags = {f for line in flags for f in re.findall(r"--[a-z][a-z0-9-]+", line)} - {"--out", "--no-student"}
    parser = make_parser()
    for flag in sorted(flags):
        o = next((o for o in opts.values() if o.flag == flag), None)
        if o is not None and o.kind == "value":
            value = o.choices[-1] if o.choices else {int: "2", float: "0.5", str: "x"}[o.parse]
            args = parser.parse_args(["finetune", "--out", "r", flag, value])
        else:
            args = parser.parse_args(["finetune", "--out", "r", flag] + (["q,v"] if flag == "--target-modules" else []))
        config_from_args(args)  # a valid config


def test_demo_student_stage_and_comparison_table(tmp_path, project, tiny_config):
    from labelflow.finetune.demo import comparison_table, student_stage

    project.apply()
    project.fit()
    report = {"test": project.evaluate(project.label_model())}
    report["test"] = {"majority_vote": report["test"]["test"], "label_model": report["test"]["test"]}
    stage = student_stage(project, config=tiny_config(method="full"), out=tmp_path / "student")
    assert set(stage["test"]) == {"student"}  # no class descriptions: no zero-shot
    assert (tmp_path / "student" / "metrics.json").is_file()
    report["test"].update(stage["test"])
    rows = comparison_table(report)
    assert [r["stage"] for r in rows] == ["majority_vote", "label_model", "student"]
    assert rows[-1]["accuracy"] == stage["student_metrics"]["test"]["student"]["accuracy"]


def test_fm_zero_shot_baseline_uses_the_class_descriptions(tmp_path, project_files):
    from labelflow.finetune.demo import fm_zero_shot
    from labelflow.project import Project

    project = Project.init(tmp_path / "described", sources={s: [project_files[s]] for s in ("train", "dev", "test")},
                           classes={"HAM": "a comment about the song", "SPAM": "an ad: subscribe, free cash, a link"},
                           id="id", label="label", hide_labels=["train"], lfs=project_files["suite"])
    out = fm_zero_shot(project)
    assert set(out) == {"dev", "test"} and out["test"]["n"] == 4
    assert 0.0 <= out["test"]["accuracy"] <= 1.0
