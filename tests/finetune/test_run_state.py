"""A run's state is what its process and files say (issue 16, point 4): progress read live, status from the real
process, Stop between two checkpoints resumes from the step it stopped at, and a run that cannot be resumed says why.

Real ``labelflow finetune`` processes train the tiny BERT on the tiny project on the CPU.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

pytest.importorskip("peft")

from labelflow.finetune import FinetuneConfig, FinetuneError  # noqa: E402
from labelflow.finetune.options import config_argv  # noqa: E402
from labelflow.finetune.run_folder import CHECKPOINT, PROGRESS_FILE, RUN_FILE  # noqa: E402
from labelflow.finetune.runs import run_info, runs_folder, start_run, stop_run, wait_run  # noqa: E402

TIMEOUT = 240  # seconds a run of the tiny model may take on a busy machine
NEVER = 10 ** 6  # an eval_every / log_every no run reaches: no checkpoint, no log window before the end


def tiny(tiny_model, **overrides) -> FinetuneConfig:
    opts = {"base_model": str(tiny_model), "method": "full", "epochs": 3, "batch_size": 4, "lr": 5e-3,
            "max_length": 32, "device": "cpu", "cpu_threads": 1, "progress": False}
    return FinetuneConfig(**{**opts, **overrides})


def long_run(tiny_model) -> FinetuneConfig:
    """8 train rows, batch 1, 400 epochs: 3200 steps, evaluated (and checkpointed) only at the last one."""
    return tiny(tiny_model, epochs=400, batch_size=1, eval_every=NEVER, log_every=NEVER, patience=None)


def wait_until(project, name: str, test, what: str, timeout: float = TIMEOUT):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            info = run_info(project, name)
        except FinetuneError:  # a process started elsewhere has not written its run folder yet
            time.sleep(0.05)
            continue
        if test(info):
            return info
        assert info.status == "training", (info, (runs_folder(project) / f"{name}.console.log").read_text())
        time.sleep(0.05)
    raise AssertionError(f"run {name!r}: {what} not within {timeout} s")


def test_stop_between_checkpoints_then_resume_continues_from_that_step(fitted, tiny_model):
    start_run(fitted, "long", long_run(tiny_model))
    # progress is read live: it moves with no log window or evaluation yet (both are far off)
    first = wait_until(fitted, "long", lambda i: (i.progress or {}).get("step", 0) >= 3, "step 3")
    later = wait_until(fitted, "long", lambda i: i.progress["step"] > first.progress["step"], "a later step")
    assert 0 < later.done < 1 and later.status == "training" and later.launched
    assert later.checkpoint is None and not later.resumable and later.not_resumable == "it is training"

    stopped = stop_run(fitted, "long")
    assert stopped.status == "stopped", stopped
    step = stopped.progress["step"]
    assert stopped.progress["status"] == "stopped" and 0 < step < 3200
    assert stopped.checkpoint == {"step": step, "epoch": step // 8, "done": False}  # written as it stopped
    assert stopped.progress["checkpoint_step"] == step and stopped.resumable and stopped.not_resumable is None
    assert json.loads((stopped.path / RUN_FILE).read_text())["status"] == "stopped"
    assert not (runs_folder(fitted) / "long.exit").exists()
    with pytest.raises(FinetuneError, match="run 'long' is not training"):
        stop_run(fitted, "long")

    start_run(fitted, "long", resume=True)
    done = wait_run(fitted, "long", timeout=TIMEOUT)
    assert done.status == "complete", done.error
    assert done.metrics["train"]["resumed_from"] == step and done.metrics["train"]["steps"] == 3200
    console = (runs_folder(fitted) / "long.console.log").read_text()
    assert json.loads(console[console.index("{\n"):])["resumed_from"] == step
    assert done.checkpoint["done"] is True and not done.resumable


def test_a_run_that_failed_before_its_first_checkpoint_is_not_offered_resume(fitted, tiny_model):
    start_run(fitted, "broken", tiny(tiny_model, base_model="/no/such/model"))
    info = wait_run(fitted, "broken", timeout=TIMEOUT)
    assert info.status == "failed" and info.checkpoint is None and not info.resumable
    assert info.not_resumable.startswith("it failed before its first checkpoint (")
    assert "base model '/no/such/model' cannot be found" in info.not_resumable
    assert info.not_resumable.endswith("so there is no step to continue from; start a new run once the cause is fixed")
    with pytest.raises(FinetuneError, match="run 'broken' cannot be resumed: it failed before its first checkpoint"):
        start_run(fitted, "broken", resume=True)


def test_a_run_started_elsewhere_is_seen_training_and_stops_on_ctrl_c_with_a_checkpoint(fitted, tiny_model):
    out = runs_folder(fitted) / "terminal"
    cmd = [sys.executable, "-m", "labelflow", "finetune", "-p", str(fitted.root), "--out", str(out),
           *config_argv(long_run(tiny_model)), "--json"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        info = wait_until(fitted, "terminal", lambda i: (i.progress or {}).get("step", 0) >= 3, "step 3")
        assert info.status == "training" and not info.launched  # the process progress.json names runs
        with pytest.raises(FinetuneError, match="was not started from here"):
            stop_run(fitted, "terminal")
        proc.send_signal(signal.SIGINT)  # Ctrl+C in the terminal
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    info = run_info(fitted, "terminal")
    step = info.progress["step"]
    assert proc.returncode == 2 and f"fine-tuning stopped at step {step} of 3200 (SIGINT)" in err
    assert info.status == "stopped" and info.checkpoint["step"] == step and info.resumable


def test_status_follows_the_process_not_the_last_record(fitted, tiny_model):
    """A run whose progress.json still says training but whose process is gone (killed, or a pid now used by another
    process) is stopped; its checkpoint decides whether it can be resumed."""
    start_run(fitted, "killed", long_run(tiny_model))
    info = wait_until(fitted, "killed", lambda i: (i.progress or {}).get("step", 0) >= 3, "step 3")
    launch = json.loads((runs_folder(fitted) / "killed.pid").read_text())
    os.killpg(launch["pid"], signal.SIGKILL)  # no chance to write anything
    info = wait_until(fitted, "killed", lambda i: i.status != "training", "the end", timeout=30)
    assert info.status == "stopped" and info.progress["status"] == "training" and info.checkpoint is None
    assert info.not_resumable.startswith("it ended before its first checkpoint, at step ")

    progress = info.path / PROGRESS_FILE  # a live process of someone else under the recorded pid
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        record = json.loads(progress.read_text())
        progress.write_text(json.dumps({**record, "pid": other.pid}))
        assert run_info(fitted, "killed").status == "stopped"
    finally:
        other.kill()
        other.wait()
    assert not (info.path / CHECKPOINT).exists()
