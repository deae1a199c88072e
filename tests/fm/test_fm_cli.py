"""`labelflow fm embed | prompt` on real projects: dry runs, re-runs served from the cache, and FM
outputs read by Python LFs as row attributes."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from labelflow.cli import main
from labelflow.project import Project
from labelflow.store import ProjectStore

REPO = Path(__file__).resolve().parents[2]
YOUTUBE = REPO / "data" / "youtube"


def run_json(capsys, *argv):
    """Run a command with --json; stdout must be exactly one JSON document."""
    assert main([*argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def init_tiny(root, files, capsys):
    assert main(["init", str(root), "--data", f"train={files['train']}", "--data", f"dev={files['dev']}",
                 "--data", f"test={files['test']}", "--classes", "HAM, SPAM", "--id", "id", "--label", "label",
                 "--hide-labels", "train", "--lfs", str(files["suite"])]) == 0
    capsys.readouterr()
    return root


@pytest.mark.slow
def test_rerunning_fm_embed_on_youtube_makes_no_model_call_and_is_50x_faster(tmp_path, capsys):
    root = tmp_path / "yt"
    files = sorted(YOUTUBE.glob("Youtube0*.csv"))
    assert main(["init", str(root), *[a for f in files[:4] for a in ("--data", f"train={f}")],
                 "--data", f"test={files[4]}", "--classes", "HAM,SPAM", "--text", "CONTENT", "--id", "COMMENT_ID",
                 "--label", "label", "--dev-sample", "120", "--hide-labels", "train", "--drop-identical"]) == 0
    capsys.readouterr()
    texts = Project.open(root).dataset().frame["text"]
    rows, distinct = len(texts), texts.n_unique()
    assert rows == 1953 and distinct < rows  # some comments repeat with other ids
    p = ["fm", "embed", "-p", str(root)]

    dry = run_json(capsys, *p, "--dry-run")
    assert dry["dry_run"] is True and dry["rows"] == rows and dry["cached"] == 0
    assert dry["would_compute"] == distinct and dry["would_call"] == math.ceil(distinct / 64)
    assert dry["computed"] == dry["calls"] == 0 and "stored" not in dry
    assert len(ProjectStore.of(root).fm_cache()) == 0 and not ProjectStore.of(root).fm_outputs_folder.exists()

    first = run_json(capsys, *p)
    assert (first["rows"], first["cached"], first["computed"]) == (rows, 0, distinct)
    assert first["calls"] == math.ceil(distinct / 64)
    second = run_json(capsys, *p)
    assert (second["rows"], second["cached"], second["computed"], second["calls"]) == (rows, rows, 0, 0)
    print(f"\nfm embed on {rows} YouTube rows: first {first['seconds']} s, second {second['seconds']} s")
    assert second["seconds"] * 50 <= first["seconds"], (first["seconds"], second["seconds"])

    frame = Project.open(root).dataset().frame
    emb = np.array(frame["embedding"].to_list())
    assert emb.shape == (rows, 384) and np.isfinite(emb).all()
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-4)


SUITE = '''\
from labelflow import ABSTAIN, labeling_function


@labeling_function()
def emb_first(x):
    return 1 if x.embedding[0] > 0 else 0


@labeling_function()
def emb_dim(x):
    return 0 if len(x.embedding) == 384 else ABSTAIN
'''


def test_python_lfs_read_fm_outputs_as_row_attributes(tmp_path, project_files, capsys):
    root = init_tiny(tmp_path / "proj", project_files, capsys)
    report = run_json(capsys, "fm", "embed", "-p", str(root))
    assert report["computed"] == 16 and Path(report["stored"]) == ProjectStore.of(root).fm_output("embedding")

    frame = Project.open(root).dataset().frame
    assert frame.columns[-1] == "embedding" and frame.height == 16 and frame["embedding"].null_count() == 0
    first = np.array(frame["embedding"].to_list())[:, 0]

    suite = tmp_path / "emb_suite.py"
    suite.write_text(SUITE)
    applied = run_json(capsys, "apply", "-p", str(root), "--lfs", str(suite), "--jobs", "1")
    assert applied["lfs"] == ["emb_first", "emb_dim"] and applied["failures"] == []
    matrix = Project.open(root).matrix().values
    np.testing.assert_array_equal(matrix[:, 0], (first > 0).astype(int))
    assert 0 < (first > 0).sum() < 16  # both votes occur
    assert (matrix[:, 1] == 0).all()


def test_fm_prompt_dry_run_counts_and_stores_nothing(tmp_path, project_files, capsys):
    root = init_tiny(tmp_path / "proj", project_files, capsys)
    p = ["fm", "prompt", "-p", str(root), "--template", "Comment: {text}\\nSpam:", "--answers", "SPAM=yes",
         "--answers", "HAM=no, nope", "--dry-run"]
    report = run_json(capsys, *p)
    assert report["kind"] == "prompt" and report["dry_run"] is True
    assert (report["rows"], report["cached"], report["computed"], report["calls"]) == (16, 0, 0, 0)
    assert report["would_compute"] == 16 and report["would_call"] == 1  # Gemma's batch is 16 prompts
    limited = run_json(capsys, *p, "--limit", "5")
    assert (limited["rows"], limited["would_compute"], limited["would_call"]) == (5, 5, 1)
    assert len(ProjectStore.of(root).fm_cache()) == 0 and not ProjectStore.of(root).fm_outputs_folder.exists()
    assert "prompt" not in Project.open(root).dataset().frame.columns

    assert main(p[:-1] + ["--dry-run"]) == 0  # the table output
    out = capsys.readouterr().out
    assert out.startswith("fm prompt 'prompt': 16 rows, 0 cached, would compute 16 rows in 1 model calls")


@pytest.mark.parametrize(("answers", "message"), [
    (["SPAM"], "argument --answers: expected CLASS=WORD[,WORD...]; got 'SPAM'"),
    (["SPAM=  "], "argument --answers: expected CLASS=WORD[,WORD...]; got 'SPAM=  '"),
    (["SPAM=yes", "EGGS=no"], "the answer mapping names class(es) ['EGGS'] outside the schema's classes ['HAM', 'SPAM']"),
])
def test_fm_prompt_malformed_answers_exit_2(tmp_path, project_files, capsys, answers, message):
    """Malformed answers are refused in one line with exit status 2 (at parse time when the flag alone shows it)."""
    root = init_tiny(tmp_path / "proj", project_files, capsys)
    argv = ["fm", "prompt", "-p", str(root), "--template", "{text}", "--json"]
    for a in answers:
        argv += ["--answers", a]
    try:
        status = main(argv)
    except SystemExit as exit_:
        status = exit_.code
    assert status == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1
    assert captured.err.startswith("labelflow: error: ") and message in captured.err


def test_fm_prompt_needs_exactly_one_template(tmp_path, project_files, capsys):
    root = init_tiny(tmp_path / "proj", project_files, capsys)
    with pytest.raises(SystemExit) as exit_:
        main(["fm", "prompt", "-p", str(root), "--answers", "SPAM=yes", "--dry-run"])
    assert exit_.value.code == 2
    assert "arguments --template, --template-file: give exactly one of them" in capsys.readouterr().err


def described_project(root, tmp_path):
    """5 rows whose classes have descriptions (which `labelflow init --classes` cannot give)."""
    data = tmp_path / "rows.csv"
    pl.DataFrame({"id": [f"r{i}" for i in range(5)],
                  "text": ["subscribe to my channel", "love this song", "free cash http://x.com", "so good", "wow"]}
                 ).write_csv(data)
    return Project.init(root, sources={"": [data]}, id="id",
                        classes={"HAM": "a comment about the music", "SPAM": "an advertisement for a channel or site"})


def test_fm_zero_shot_stores_similarities(tmp_path, capsys, minilm):
    root = described_project(tmp_path / "proj", tmp_path).root
    report = run_json(capsys, "fm", "zero-shot", "-p", str(root))
    assert report["kind"] == "zero-shot" and report["calls"] >= 1
    frame = Project.open(root).dataset().frame
    sims = np.array(frame["zero_shot"].to_list())
    expected = minilm.embed(frame["text"].to_list()) @ minilm.embed(
        ["a comment about the music", "an advertisement for a channel or site"]).T
    np.testing.assert_allclose(sims, expected, atol=1e-5)
    again = run_json(capsys, "fm", "zero-shot", "-p", str(root))
    assert again["calls"] == again["computed"] == 0


def test_fm_zero_shot_dry_run_predicts_the_real_run(tmp_path, capsys):
    root = described_project(tmp_path / "proj", tmp_path).root
    p = ["fm", "zero-shot", "-p", str(root)]
    dry = run_json(capsys, *p, "--dry-run")
    real = run_json(capsys, *p)
    assert dry["rows"] == real["rows"] == 5
    assert (dry["would_compute"], dry["would_call"]) == (real["computed"], real["calls"])


@pytest.mark.slow
def test_killed_prompt_run_resumes_without_losing_a_finished_row(tmp_path, kill_when, assert_intact):
    """`labelflow fm prompt` (Gemma) killed after its first batch: the re-run reuses every finished row."""
    import subprocess
    import sys

    comments = pl.read_csv(YOUTUBE / "Youtube05-Shakira.csv")["CONTENT"].unique(maintain_order=True)
    texts = [t for t in comments.to_list() if len(t) < 60][:24]
    data = tmp_path / "rows.csv"
    pl.DataFrame({"text": texts}).write_csv(data)
    root = tmp_path / "proj"
    Project.init(root, sources={"train": [data]}, classes=["HAM", "SPAM"])
    cmd = [sys.executable, "-m", "labelflow.cli", "fm", "prompt", "-p", str(root), "--json", "--device", "cpu",
           "--template", 'Comment: "{text}"\\nSpam?\\nAnswer:', "--answers", "SPAM=yes", "--answers", "HAM=no"]
    cache = ProjectStore.of(root).fm_cache()
    store = ProjectStore.of(root).fm_cache_file
    kill_when(cmd, lambda: store.exists() and len(cache) >= 16, cwd=REPO)  # the first batch of 16 is committed
    committed = len(cache)
    assert committed == 16 and not ProjectStore.of(root).fm_outputs_folder.exists()  # nothing half-stored
    assert_intact(store)

    rerun = json.loads(subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, check=True).stdout)
    assert (rerun["rows"], rerun["cached"], rerun["computed"], rerun["calls"]) == (24, 16, 8, 1)
    stored = pl.read_parquet(rerun["stored"])["prompt"].to_list()
    assert all(p is not None and abs(sum(p) - 1) < 1e-6 for p in stored)
