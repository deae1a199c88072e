"""Fine-tune: train a student on the label model's probabilistic labels in the background, watch it, compare it.

A view over :mod:`labelflow.finetune.runs`: the form starts a ``labelflow finetune`` process,
the runs table and the chosen run's panel read the run folders (refreshed every
few seconds while the run trains).
"""

import shlex
from datetime import datetime
from typing import get_args

import polars as pl
import streamlit as st

import loaders
import widgets
from labelflow.errors import LabelflowError
from labelflow.finetune.config import DEFAULT_BASE_MODEL, FinetuneConfig, Method, Weighting
from labelflow.finetune.run_folder import CARD_FILE
from labelflow.finetune.runs import RunInfo, list_runs, new_run_name, run_info, runs_folder, start_run, stop_run

REFRESH_S = 2
RUN = "ft_run"
NAME = "ft_name"

project = loaders.project()
model = st.session_state["model"]
root = str(project.root)
st.title("Fine-tune")
st.caption(f"Train a small classifier (the *student*) on the probabilistic labels of **{model}** (the label model "
           "chosen in the sidebar), in the background; dev gold picks its checkpoint and it is scored beside the "
           "label model on dev and test.")
widgets.show_flashes()
fitted = loaders.metrics_or_none(root, loaders.stamp(project), model)

defaults = FinetuneConfig()
with st.form("new_run"):
    st.subheader("New run")
    name_col, base_col = st.columns([1, 2])
    name = name_col.text_input("Run name", value=new_run_name(project), key=NAME,
                               help=f"A folder in `{runs_folder(project)}`: letters, digits, '-' and '_'.")
    base_model = base_col.text_input("Base model", value=DEFAULT_BASE_MODEL, key="ft_base_model",
                                     help="all-MiniLM-L6-v2 (bundled, runs offline), a local model folder, or a "
                                          "Hugging Face id already in the local cache")
    method_col, epochs_col, batch_col, lr_col = st.columns(4)
    method = method_col.selectbox("Method", get_args(Method), index=get_args(Method).index(defaults.method),
                                  key="ft_method",
                                  help="lora: train low-rank adapters and the head; full: every weight")
    epochs = epochs_col.number_input("Epochs", min_value=1, value=defaults.epochs, key="ft_epochs")
    batch_size = batch_col.number_input("Batch size", min_value=1, value=defaults.batch_size, key="ft_batch_size")
    lr = lr_col.number_input("Learning rate", value=None, min_value=0.0, format="%.1e", key="ft_lr",
                             placeholder="default", help="Blank: 1e-3 for LoRA, 5e-5 for full fine-tuning")
    length_col, weighting_col, drop_col = st.columns([1, 1, 2])
    max_length = length_col.number_input("Max length (tokens)", min_value=8, value=defaults.max_length,
                                         key="ft_max_length")
    weighting = weighting_col.selectbox("Weighting", get_args(Weighting),
                                        index=get_args(Weighting).index(defaults.weighting), key="ft_weighting",
                                        help="Weight each row's loss by its label's confidence")
    drop_uncovered = drop_col.checkbox("Drop uncovered rows", key="ft_drop_uncovered",
                                       help="Train only on rows at least one LF voted on")
    start = st.form_submit_button("Start", type="primary", key="ft_start", disabled=fitted is None)
if fitted is None:
    st.info(f"{model} is not fit on the current LFs: fit it on the Label model page first. The student learns its "
            "probabilistic labels.")
elif start:
    try:
        config = FinetuneConfig(base_model=base_model.strip(), method=method, epochs=int(epochs),
                                batch_size=int(batch_size), lr=lr, max_length=int(max_length), weighting=weighting,
                                drop_uncovered=drop_uncovered)
        started = start_run(project, name.strip(), config, label_model=model)
    except LabelflowError as exc:
        st.error(f"Not started: {exc}")
    else:
        widgets.flash("success", f"Started {started.name}: training in the background (log in "
                                 f"`{started.path / 'train.log'}`).")
        st.session_state[RUN] = started.name
        del st.session_state[NAME]  # the next free name next time
        st.rerun()

st.subheader("Runs")
runs = list_runs(project)
if not runs:
    st.info(f"No runs yet. Each run is a folder in `{runs_folder(project)}`.")
    st.stop()
statuses = {r.name: r.status for r in runs}


def accuracy(run: RunInfo, split: str) -> float | None:
    """The student's accuracy on ``split``: from metrics.json when complete, else the last dev evaluation."""
    metrics = run.metrics
    if metrics is not None:
        return (metrics.get(split) or {}).get("student", {}).get("accuracy")
    return (run.progress or {}).get("dev_accuracy") if split == "dev" else None


def runs_table(runs: list[RunInfo]) -> None:
    st.dataframe(pl.DataFrame([{
        "run": r.name, "status": r.status, "started": datetime.fromtimestamp(r.started), "progress": r.done,
        "step": (r.progress or {}).get("step"), "base model": r.config["base_model"], "method": r.config["method"],
        "dev accuracy": accuracy(r, "dev"), "test accuracy": accuracy(r, "test")} for r in runs],
        schema_overrides={"step": pl.Int64, "dev accuracy": pl.Float64, "test accuracy": pl.Float64}), hide_index=True,
        column_config={"started": st.column_config.DatetimeColumn(format="YYYY-MM-DD HH:mm"),
                       "progress": st.column_config.ProgressColumn(min_value=0.0, max_value=1.0, format="percent"),
                       "dev accuracy": st.column_config.NumberColumn(format="%.3f"),
                       "test accuracy": st.column_config.NumberColumn(format="%.3f")})


@st.fragment(run_every=REFRESH_S if "training" in statuses.values() else None)
def live_runs_table() -> None:
    """The runs table, re-read from the run folders every ``REFRESH_S`` seconds while a run trains; when any run's
    status changes (one ends, one starts elsewhere) the whole page reruns, so the selector and panel follow."""
    now = list_runs(project)
    if {r.name: r.status for r in now} != statuses:
        st.rerun()
    runs_table(now)


live_runs_table()
names = [r.name for r in runs]
if st.session_state.get(RUN) not in names:
    st.session_state.pop(RUN, None)
# The run's status is not in the selector's option text: a browser keeps a widget's option labels while its
# options stay the same, so "(training)" would outlive the run. It is a line of its own, redrawn every run.
chosen = runs[names.index(st.selectbox("Run", names, key=RUN))]
st.markdown(f"Status of **{chosen.name}**: **{chosen.status}**")


def show_history(history: list[dict], *, key: str) -> None:
    """Train loss and dev accuracy by step: curves once there are two evaluations, the one value before that."""
    if len({h["step"] for h in history}) >= 2:
        st.altair_chart(widgets.history_chart(history), width="content", key=key)
    elif history:
        h = history[-1]
        loss, dev = st.columns(2)
        loss.metric(f"Train loss at step {h['step']}",
                    "–" if h.get("train_loss") is None else f"{h['train_loss']:.4f}")
        dev.metric(f"Dev accuracy at step {h['step']}",
                   "–" if h.get("dev_accuracy") is None else f"{h['dev_accuracy']:.3f}")


def show_progress(run: RunInfo) -> None:
    """Progress bar and the last log window's speed, loss and dev accuracy; the evaluations so far."""
    p = run.progress or {}
    if not p.get("total_steps"):
        st.progress(0.0, text=f"{run.name}: starting (loading the base model and the labels)…")
        return
    st.progress(run.done, text=f"{run.name}: step {p['step']} of {p['total_steps']} · epoch {p['epoch']:.2f}")
    speed, loss, dev = st.columns(3)
    speed.metric("Samples/s", "–" if p.get("samples_per_s") is None else f"{p['samples_per_s']:.1f}")
    loss.metric("Train loss", "–" if p.get("loss") is None else f"{p['loss']:.4f}")
    dev.metric("Dev accuracy", "–" if p.get("dev_accuracy") is None else f"{p['dev_accuracy']:.3f}")
    if len({h["step"] for h in p.get("history") or []}) >= 2:
        show_history(p["history"], key=f"ft_curves_{run.name}")


@st.fragment(run_every=REFRESH_S)
def live_progress(name: str) -> None:
    """:func:`show_progress`, re-read every ``REFRESH_S`` seconds; the whole page reruns once the run ends."""
    run = run_info(project, name)
    if run.status != "training":
        st.rerun()
    show_progress(run)


def show_metrics(run: RunInfo) -> None:
    """A finished run: student vs label model on dev and test, per-class F1, the training curves, how to use it."""
    m = run.metrics
    scored = [split for split in ("dev", "test") if m.get(split)]
    shown = [(split, key, label) for split in scored for key, label in (("accuracy", "accuracy"),
                                                                         ("macro_f1", "macro-F1"))]
    for column, (split, key, label) in zip(st.columns(len(shown)), shown):
        student, lm = m[split]["student"][key], m[split]["label_model"][key]
        column.metric(f"{split} {label} · student", f"{student:.3f}", f"{student - lm:+.3f}",
                      help=f"The label model scores {lm:.3f} on the same {m[split]['rows']} gold rows (rows where "
                           "no LF voted count as wrong for it); the change is the student's gain.")
    classes = m["classes"]
    st.dataframe(pl.DataFrame([
        {"split": split, "model": who.replace("_", " "), "accuracy": m[split][who]["accuracy"],
         "macro_f1": m[split][who]["macro_f1"],
         **{f"F1 {c}": m[split][who]["per_class_f1"][c] for c in classes}, "rows": m[split]["rows"]}
        for split in scored for who in ("student", "label_model")]), hide_index=True,
        column_config={c: st.column_config.NumberColumn(format="%.3f")
                       for c in ["accuracy", "macro_f1", *(f"F1 {c}" for c in classes)]})
    show_history(m.get("history") or [], key="ft_curves")
    t = m["train"]
    st.caption(f"{t['steps']} steps ({t['epochs']} epochs) in {t['seconds']:.0f} s on {t['device']}, "
               f"{t['samples_per_s']} samples/s; best dev checkpoint at step "
               f"{m['best']['step'] if m.get('best') else t['steps']}; trained on {t['train_kept']} of "
               f"{t['train_rows']} train rows"
               + (f"; resumed from step {t['resumed_from']}" if t.get("resumed_from") is not None else "") + ".")
    card = run.path / CARD_FILE
    st.markdown(f"Model card: `{card}` · the folder is a Hugging Face model (`{run.path}`). Predict with it:")
    st.code(shlex.join(["labelflow", "predict", "--model", str(run.path), root, "--out", "predictions.parquet"]),
            language="bash")
    with st.expander("Model card"):
        st.markdown(card.read_text(encoding="utf-8").split("---\n", 2)[-1])
    if st.button("Analyse its errors", key="ft_analyse", help="The Error analysis page, on this student's predictions"):
        st.session_state[loaders.PREDICTIONS_OF] = run.name
        st.switch_page("stages/error_analysis.py")


def stop(name: str) -> None:
    """The Stop button: the run writes its checkpoint at the end of its current step, then ends."""
    try:
        info = stop_run(project, name)
    except LabelflowError as exc:
        st.error(f"Not stopped: {exc}")
        return
    if info.status == "training":
        widgets.flash("info", f"Stopping {name}: it writes its checkpoint at the end of its current step.")
    else:
        at = (info.checkpoint or {}).get("step")
        widgets.flash("info", f"Stopped {name}" + (f" at step {at}; Resume continues from there." if at is not None
                                                    else " before its first checkpoint."))
    st.rerun()


if chosen.status == "training":
    live_progress(chosen.name)
    if chosen.launched:
        if st.button("Stop", key="ft_stop", help="Stop the run after its current step, writing its checkpoint; "
                                                 "Resume continues from that step."):
            stop(chosen.name)
    else:
        st.caption(f"{chosen.name} was started outside the app (`labelflow finetune`); stop it where it runs "
                   "(Ctrl+C writes its checkpoint).")
elif chosen.status == "complete":
    show_metrics(chosen)
else:
    if chosen.status == "failed":
        st.error(f"{chosen.name} failed:")
        st.code(chosen.error, language="text")
    else:
        show_progress(chosen)
    if chosen.resumable:
        step = chosen.checkpoint.get("step")
        st.warning(f"{chosen.name} is not running; Resume continues it from "
                   + (f"step {step}, its last checkpoint." if step is not None else "its last checkpoint."))
        if st.button("Resume", key="ft_resume", type="primary"):
            try:
                start_run(project, chosen.name, resume=True)
            except LabelflowError as exc:
                st.error(f"Not resumed: {exc}")
            else:
                widgets.flash("success", f"Resumed {chosen.name}"
                                         + ("" if step is None else f" from step {step}") + ".")
                st.rerun()
    else:
        st.warning(f"{chosen.name} cannot be resumed: {chosen.not_resumable}.")
