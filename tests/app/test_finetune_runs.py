"""The Fine-tune page shows each run's real state (issue 16, point 4): live progress in the runs table, the run's
status following the process (in AppTest and, for the page's own refresh timer, in Chromium), Stop then Resume continuing from the step it stopped at, no Resume where there is no
checkpoint (and why), curves only with two evaluations, on an integer step axis."""

from __future__ import annotations

import json
import time

import pytest

pytest.importorskip("peft")

TIMEOUT = 240  # seconds a background run of the tiny model may take on a busy machine
NEVER = 10 ** 6


def errors(at) -> list[str]:
    assert not at.exception, [e.value for e in at.exception]
    return [e.value for e in at.error]


def tiny_config(tiny_model, **overrides):
    from labelflow.finetune import FinetuneConfig

    return FinetuneConfig(**{"base_model": str(tiny_model), "method": "full", "epochs": 2, "max_length": 32,
                             "device": "cpu", "cpu_threads": 1, "progress": False, **overrides})


def long_config(tiny_model):
    """Batch 1 for 500 epochs, evaluated (and checkpointed) only at its very end: a Stop lands between checkpoints."""
    return tiny_config(tiny_model, epochs=500, batch_size=1, eval_every=NEVER, log_every=NEVER, patience=None)


@pytest.fixture
def running(app_project, tiny_model, stop_runs_after):
    """Start ``long`` in the background and wait until it has done a few steps; stopped at teardown."""
    from labelflow.finetune.runs import start_run

    stop_runs_after(app_project)
    start_run(app_project, "long", long_config(tiny_model))
    return wait_for(app_project, "long", lambda i: (i.progress or {}).get("step", 0) >= 3)


def wait_for(project, name, test, timeout: float = TIMEOUT):
    from labelflow.finetune.runs import run_info

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        info = run_info(project, name)
        if test(info):
            return info
        time.sleep(0.05)
    raise AssertionError(f"run {name!r} did not get there in {timeout} s: {run_info(project, name)}")


def test_the_runs_table_shows_live_progress_and_the_selector_follows_the_process(app_project, open_page, running):
    from labelflow.finetune.runs import run_info, stop_run

    at = open_page("finetune")
    table = at.dataframe[0].value
    assert table["status"].tolist() == ["training"] and table["step"].iloc[0] >= 3 and table["progress"].iloc[0] > 0
    assert at.selectbox(key="ft_run").options == ["long"] and not errors(at)
    assert "Status of **long**: **training**" in [m.value for m in at.markdown]
    assert at.progress[0].proto.text.startswith("long: step ")

    stop_run(app_project, "long")  # stopped elsewhere (another tab, the Python API)
    at.run()
    assert "Status of **long**: **stopped**" in [m.value for m in at.markdown]
    assert at.dataframe[0].value["status"].tolist() == ["stopped"]
    step = run_info(app_project, "long").checkpoint["step"]
    assert at.warning[0].value == f"long is not running; Resume continues it from step {step}, its last checkpoint."


def test_stop_then_resume_continues_from_the_step_it_stopped_at(app_project, open_page, running):
    from labelflow.finetune.runs import run_info

    at = open_page("finetune")
    at.button(key="ft_stop").click().run()
    stopped = run_info(app_project, "long")
    step = stopped.checkpoint["step"]
    assert stopped.status == "stopped" and step == stopped.progress["step"] >= 3
    assert at.info[0].value == f"Stopped long at step {step}; Resume continues from there." and not errors(at)
    assert "Status of **long**: **stopped**" in [m.value for m in at.markdown]
    assert at.warning[0].value == f"long is not running; Resume continues it from step {step}, its last checkpoint."

    at.button(key="ft_resume").click().run()
    assert at.success[0].value == f"Resumed long from step {step}." and not errors(at)
    resumed = wait_for(app_project, "long", lambda i: i.status == "training" and i.progress.get("step", 0) > step)
    log = (resumed.path / "train.log").read_text()
    assert f"from step {step} (epoch" in log  # "resumed RUN from step N (epoch E, batch B)": not from step 0


def test_a_run_that_failed_before_any_checkpoint_offers_no_resume_and_says_why(app_project, open_page,
                                                                               stop_runs_after):
    from labelflow.finetune.runs import start_run, wait_run

    stop_runs_after(app_project)
    start_run(app_project, "broken", tiny_config("/no/such/model"))
    assert wait_run(app_project, "broken", timeout=TIMEOUT).status == "failed"
    at = open_page("finetune")
    assert errors(at) == ["broken failed:"] and "base model '/no/such/model' cannot be found" in at.code[0].value
    assert at.warning[0].value.startswith("broken cannot be resumed: it failed before its first checkpoint (")
    assert at.warning[0].value.endswith(
        "so there is no step to continue from; start a new run once the cause is fixed.")
    assert "ft_resume" not in [b.key for b in at.button]


def test_curves_need_two_evaluations_and_count_steps_in_integers(app_project, open_page, tiny_model, tmp_path):
    from labelflow.finetune import finetune
    from labelflow.finetune.runs import runs_folder

    labels = app_project.export(tmp_path / "labels.parquet")
    for name, epochs in (("one-eval", 1), ("two-evals", 2)):
        finetune(labels, out=runs_folder(app_project) / name, config=tiny_config(tiny_model, epochs=epochs),
                 classes=list(app_project.schema.names), task=app_project.config.name)
    at = open_page("finetune")
    at.selectbox(key="ft_run").select("one-eval").run()
    history = json.loads((runs_folder(app_project) / "one-eval" / "metrics.json").read_text())["history"]
    assert len(history) == 1 and not at.get("vega_lite_chart") and not errors(at)
    step = history[0]["step"]
    shown = {m.label: m.value for m in at.metric}
    assert shown[f"Train loss at step {step}"] == f"{history[0]['train_loss']:.4f}"
    assert shown[f"Dev accuracy at step {step}"] == f"{history[0]['dev_accuracy']:.3f}"

    at.selectbox(key="ft_run").select("two-evals").run()
    spec = json.loads(at.get("vega_lite_chart")[0].proto.spec)
    assert spec["spec"]["encoding"]["x"]["axis"] == {"format": "d", "tickMinStep": 1}
    assert not any(label.startswith("Train loss at step") for label in (m.label for m in at.metric))


@pytest.mark.slow
def test_in_the_browser_the_runs_table_moves_and_follows_a_stop_without_a_click(app, new_page, ui, running):
    """AppTest does not fire the page's refresh timer; Chromium does: while the run trains its step in the runs
    table climbs with nobody touching the page, and a Stop made elsewhere shows as "stopped" with Resume."""
    import re

    from playwright.sync_api import expect

    from labelflow.finetune.runs import run_info, stop_run

    page = new_page(width=1440)
    ui.visit(page, app, "finetune", "Fine-tune")
    ui.expect_text(page, "Status of long: training")
    first = run_info(app.project, "long").progress["step"]
    ui.expect_text(page, re.compile(r"^long: step \d+"))
    page.wait_for_function(  # the page's own progress line shows a later step than when it was opened
        """(first) => [...document.querySelectorAll('[data-testid="stProgress"] p, [data-testid="stText"]')]
              .some(e => { const m = e.textContent.match(/^long: step (\\d+)/); return m && +m[1] > first; })""",
        arg=first, timeout=ui.TIMEOUT_MS)
    ui.shot(page, "finetune-training-1440")
    stop_run(app.project, "long")  # another tab, or the Python API
    ui.expect_text(page, "Status of long: stopped")
    expect(page.get_by_role("button", name="Resume")).to_be_visible()
    stopped_at = run_info(app.project, "long").progress["step"]
    ui.expect_text(page, re.compile(rf"^long: step {stopped_at} of \d+"))  # where it stopped, not still moving
    ui.shot(page, "finetune-stopped-1440")
