"""Background runs of a project (:mod:`labelflow.finetune.runs`): real ``labelflow finetune`` processes on the tiny
project and the tiny BERT; they finish, stop, resume and fail with what the app shows."""

from __future__ import annotations

import dataclasses
import json

import pytest

pytest.importorskip("peft")

from labelflow.cli import make_parser  # noqa: E402
from labelflow.error_analysis import analyze  # noqa: E402
from labelflow.errors import ProjectError  # noqa: E402
from labelflow.finetune import FinetuneConfig, FinetuneError  # noqa: E402
from labelflow.finetune.options import config_argv, config_from_args  # noqa: E402
from labelflow.finetune.runs import (  # noqa: E402
    list_runs, new_run_name, run_info, runs_folder, split_predictions, start_run, stop_run, wait_run)

TIMEOUT = 240  # seconds a run of the tiny model may take on a busy machine


def tiny(tiny_model, **overrides) -> FinetuneConfig:
    opts = {"base_model": str(tiny_model), "method": "full", "epochs": 3, "batch_size": 4, "lr": 5e-3,
            "max_length": 32, "device": "cpu", "cpu_threads": 1, "progress": False}
    return FinetuneConfig(**{**opts, **overrides})


def test_config_argv_gives_the_config_back_through_the_cli():
    configs = [FinetuneConfig(), FinetuneConfig(method="full", patience=None, tf32=False, group_by_length=False),
               FinetuneConfig(base_model="/m", lora_r=4, lora_alpha=8.0, lora_dropout=0.2, lora_target_modules=("q", "v"),
                              epochs=2, max_steps=7, batch_size=3, grad_accum=2, lr=3e-4, weight_decay=0.0,
                              warmup_ratio=0.2, scheduler="cosine", max_length=64, weighting="margin",
                              drop_uncovered=True, min_confidence=0.6, select="loss", eval_every=5, patience=2,
                              checkpoint_every=3, device="cpu", precision="bf16", attention="eager", compile=True,
                              cpu_threads=1, eval_batch_size=16, seed=4, log_every=2, max_grad_norm=0.5),
               FinetuneConfig(max_grad_norm=None)]
    for cfg in configs:
        args = make_parser().parse_args(["finetune", "--out", "RUN", *config_argv(cfg), "--json"])
        assert config_from_args(args, progress=False) == dataclasses.replace(cfg, progress=False)
    assert config_argv(FinetuneConfig()) == []
    assert config_argv(FinetuneConfig(max_grad_norm=None)) == ["--max-grad-norm", "0"]


def test_a_run_started_in_the_background_completes(fitted, tiny_model):
    assert list_runs(fitted) == [] and new_run_name(fitted) == "student-1"
    started = start_run(fitted, "student-1", tiny(tiny_model), label_model="majority_vote")
    assert started.status in ("training", "complete") and started.path == runs_folder(fitted) / "student-1"
    assert new_run_name(fitted) == "student-2"
    done = wait_run(fitted, "student-1", timeout=TIMEOUT)
    assert done.status == "complete", (runs_folder(fitted) / "student-1.console.log").read_text()
    assert [(r.name, r.status) for r in list_runs(fitted)] == [("student-1", "complete")]
    m = done.metrics
    assert m["dev"]["rows"] == 4 and m["test"]["rows"] == 4 and m["train"]["steps"] == 6
    assert {"student", "label_model"} <= set(m["test"])
    assert done.progress == {**done.progress, "status": "complete", "step": 6, "total_steps": 6}
    assert done.config == tiny(tiny_model).to_dict() and done.error is None
    console = (runs_folder(fitted) / "student-1.console.log").read_text()  # the log, then the --json document
    assert "finetune: training" in console and json.dumps(str(done.path)) in console
    # the student's predictions on a split's gold rows go into error analysis
    preds = split_predictions(fitted, done.path, "test")
    assert preds["id"].to_list() == ["s0", "s1", "s2", "s3"]
    analysis = analyze(fitted, split="test", predictions=preds)
    assert analysis.accuracy == pytest.approx(m["test"]["student"]["accuracy"])
    with pytest.raises(FinetuneError, match="a run named 'student-1' exists already"):
        start_run(fitted, "student-1", tiny(tiny_model))


def test_a_stopped_run_resumes_to_the_end(fitted, tiny_model, wait_for_step):
    cfg = tiny(tiny_model, epochs=150, batch_size=1, checkpoint_every=10, log_every=5, patience=None)
    start_run(fitted, "long", cfg)
    run = runs_folder(fitted) / "long"
    info = wait_for_step(fitted, "long", 20)
    stopped = stop_run(fitted, "long")
    assert stopped.status == "stopped", stopped
    assert 0 < stopped.progress["step"] < stopped.progress["total_steps"] == 1200
    assert not (run / "metrics.json").exists() and not (runs_folder(fitted) / "long.exit").exists()
    with pytest.raises(FinetuneError, match="run 'long' is not training"):
        stop_run(fitted, "long")
    start_run(fitted, "long", resume=True)  # the run's own options
    done = wait_run(fitted, "long", timeout=TIMEOUT)
    assert done.status == "complete", done.error
    m = done.metrics
    assert 0 < m["train"]["resumed_from"] < 1200 and m["train"]["steps"] == 1200 and info.progress["step"] >= 20


def test_a_run_that_fails_shows_its_error(fitted, tiny_model):
    start_run(fitted, "broken", tiny(tiny_model, base_model="/no/such/model"))
    info = wait_run(fitted, "broken", timeout=TIMEOUT)
    assert info.status == "failed" and "base model '/no/such/model' cannot be found" in info.error
    assert (runs_folder(fitted) / "broken.exit").read_text().strip() == "2"
    assert [r.name for r in list_runs(fitted)] == ["broken"] and info.progress is None


@pytest.mark.parametrize("name", ["", "../up", "a/b", "a b", "run.v2", ".hidden", "-x", "x" * 65, None])
def test_bad_run_names_are_clear_errors(fitted, name):
    with pytest.raises(FinetuneError, match="must be a plain folder name"):
        start_run(fitted, name)
    assert not runs_folder(fitted).exists()


def test_what_cannot_start(fitted, project_files, tmp_path):
    with pytest.raises(FinetuneError, match="no run 'nope' to resume"):
        start_run(fitted, "nope", resume=True)
    with pytest.raises(FinetuneError, match="no fine-tuning run 'nope'"):
        run_info(fitted, "nope")
    with pytest.raises(FinetuneError, match="no fine-tuning run 'nope'"):
        stop_run(fitted, "nope")
    with pytest.raises(ProjectError, match="label model 'labelflow' has not been fit"):
        start_run(fitted, "other-model", label_model="labelflow")
    busy = runs_folder(fitted) / "busy"
    busy.mkdir(parents=True)
    (busy / "notes.txt").write_text("mine")
    with pytest.raises(FinetuneError, match="a run named 'busy' exists already"):
        start_run(fitted, "busy")
    assert list_runs(fitted) == []


# --- issue 14, item 9: the Stop button signals only this run's own process -------------------------------------


def _pretender(argv_tail: list[str]):
    """A process in a process group of its own whose command line ends with ``argv_tail`` (it only sleeps)."""
    import subprocess
    import sys

    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)", *argv_tail],
                            start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _launch_record(project, name: str, pid: int, **extra) -> None:
    import time

    from labelflow.files import write_json

    write_json(runs_folder(project) / f"{name}.pid", {
        "pid": pid, "started": time.time(), "argv": ["labelflow", "--out", ""], "config": FinetuneConfig().to_dict(),
        "label_model": None, **extra})


def test_item9_a_crafted_pid_file_does_not_make_stop_signal_another_process(project):
    import time

    runs_folder(project).mkdir(parents=True)
    victim = _pretender([])  # any process of the user, e.g. their editor's process group
    try:
        _launch_record(project, "crafted", victim.pid)
        with pytest.raises(FinetuneError, match="not training|refusing to stop"):
            stop_run(project, "crafted")
        time.sleep(0.3)
        assert victim.poll() is None, "stop_run signalled a process that is not the run's"
        assert run_info(project, "crafted").status == "stopped"
        # a labelflow finetune of another run folder: not this run's either
        other = runs_folder(project) / "other"
        elsewhere = _pretender(["-m", "labelflow", "finetune", "--out", str(other)])
        try:
            _launch_record(project, "crafted", elsewhere.pid)
            with pytest.raises(FinetuneError):
                stop_run(project, "crafted")
            time.sleep(0.3)
            assert elsewhere.poll() is None
        finally:
            elsewhere.kill()
            elsewhere.wait()
    finally:
        victim.kill()
        victim.wait()


def test_item9_stop_checks_the_command_line_and_the_start_time_recorded_at_launch(project):
    import time

    from labelflow.finetune.run_folder import proc_start as _proc_start

    runs_folder(project).mkdir(parents=True)
    run = runs_folder(project) / "mine"
    proc = _pretender(["-m", "labelflow", "finetune", "-p", str(project.root), "--out", str(run)])
    try:
        time.sleep(0.2)
        # the command line fits, but the process did not start when the record says (a recycled pid)
        _launch_record(project, "mine", proc.pid, proc_start=_proc_start(proc.pid) + 100)
        with pytest.raises(FinetuneError, match="not training|refusing to stop"):
            stop_run(project, "mine")
        assert proc.poll() is None
        # the genuine record: stopped
        _launch_record(project, "mine", proc.pid, proc_start=_proc_start(proc.pid))
        assert run_info(project, "mine").status == "training"
        stop_run(project, "mine", wait=5)
        assert proc.wait(timeout=5) == -15
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    # never the caller's own process or group, nor pid 0 / 1 / -1 (os.killpg(0, ...) would signal the caller's group)
    import os

    from labelflow.finetune.runs import _alive, _not_this_run

    for pid in (0, 1, -1, os.getpid(), os.getpgrp(), True, "12"):
        record = {"pid": pid, "started": time.time(), "argv": ["--out", str(run)]}
        assert _not_this_run(record, run, strict=True) is not None and not _alive(record, run)
