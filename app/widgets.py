"""View pieces more than one page shows: the apply-and-fit run, messages that outlive a rerun, charts."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import altair as alt
import numpy as np
import polars as pl
import streamlit as st

from labelflow.errors import LabelflowError
from labelflow.project import Accepted, Project
from labelflow.suggest import Suggestion

FLASH = "_flash"
ABSTAIN_SWITCH = "Let LFs abstain on rows where they raise an error"
"""The LFs page's switch for the project's ``on_error`` setting, named where an LF error is shown."""
_PYTHON_HINT = re.compile(r" ?\((?:raise the time limit, or )?use on_error='abstain' to abstain on such rows\)")


def apply_and_fit(project: Project, model: str, *, use_dev: bool | None = None) -> dict[str, dict[str, Any]] | None:
    """Apply the LF suite (cached per LF) and fit ``model`` inside an ``st.status`` with a progress bar;
    ``use_dev=None`` keeps the saved model's dev-gold setting and seed.

    Returns ``{split: metrics}`` of the new fit, or ``None`` after showing the error.
    """
    refit = _in_status(project, model, lambda applied: project.refit(model, use_dev=use_dev, on_applied=applied))
    return None if refit is None else refit.metrics


def accept_and_fit(project: Project, model: str, suggestion: Suggestion) -> Accepted | None:
    """Accept ``suggestion``, apply the suite and refit ``model`` with its saved settings
    (:meth:`Project.accept`), shown as :func:`apply_and_fit` shows it; ``None`` after showing the error."""
    return _in_status(project, model, lambda applied: project.accept(suggestion, model=model, on_applied=applied))


def _in_status(project: Project, model: str, run: Callable[[Callable], Any]) -> Any:
    """``run(on_applied)`` (a refit of ``model``) inside an ``st.status`` with a progress bar; ``None`` after
    showing a :class:`LabelflowError` it raised."""
    with st.status(f"Applying the LF suite and fitting {model}…", expanded=True) as status:
        bar = st.progress(0.0, text="Applying LFs (each LF's votes are cached; only new or edited LFs run)")
        lfs = []

        def applied(matrix, cache) -> None:
            lfs.append(matrix.shape[1])
            off = project.config.disabled_lfs
            st.write(f"Label matrix: {matrix.shape[0]} rows × {matrix.shape[1]} LFs "
                     f"({len(cache.misses)} applied, {len(cache.hits)} from cache"
                     + (f"; disabled, left out: {', '.join(off)})" if off else ")"))
            bar.progress(0.5, text=f"Fitting {model}")

        try:
            result = run(applied)
        except LabelflowError as exc:
            status.update(label="Apply and fit failed", state="error")
            st.error(lf_error(str(exc)))
            return None
        bar.progress(1.0, text="Done")
        status.update(label=f"Applied {lfs[-1]} LFs and fitted {model}", state="complete", expanded=False)
    return result


def raised_on_a_row(message: str) -> bool:
    """Whether an LF error says an LF raised on a row (what the project's ``on_error`` setting decides)."""
    return _PYTHON_HINT.search(message) is not None


def lf_error(message: str, *, where: str = "on the LFs page") -> str:
    """An LF error in the app's words: the Python option it names (``on_error='abstain'``) becomes the LFs page's
    switch (:data:`ABSTAIN_SWITCH`), found ``where``."""
    return _PYTHON_HINT.sub(f". Fix the LF, or turn on **{ABSTAIN_SWITCH}** {where} to let it abstain on such rows.",
                            message)


def flash(kind: str, message: str) -> None:
    """Show ``message`` (``st.<kind>``: success, info, error) at the top of the page after the next rerun."""
    st.session_state.setdefault(FLASH, []).append((kind, message))


def show_flashes() -> None:
    """Show and forget the messages :func:`flash` kept."""
    for kind, message in st.session_state.pop(FLASH, []):
        getattr(st, kind)(message)


def accuracy_change(before: dict[str, dict[str, Any]] | None, after: dict[str, dict[str, Any]], split: str) -> str:
    """``"dev accuracy 0.917 → 0.933"`` (or only the new value when there was no fit before)."""
    if split not in after:
        return f"no gold labels in {split} to score"
    new = after[split]["accuracy"]
    old = before.get(split, {}).get("accuracy") if before else None
    return f"{split} accuracy {new:.3f}" if old is None else f"{split} accuracy {old:.3f} → {new:.3f}"


def confusion_chart(confusion: np.ndarray, class_names: list[str]) -> alt.LayerChart:
    """Heat map of a ``[k, k]`` gold × predicted count matrix, with the counts written in."""
    k = len(class_names)
    data = pl.DataFrame({"gold": [class_names[i] for i in range(k) for _ in range(k)],
                         "predicted": [class_names[j] for _ in range(k) for j in range(k)],
                         "rows": np.asarray(confusion).ravel().tolist()})
    base = alt.Chart(data).encode(x=alt.X("predicted:N", sort=class_names, axis=alt.Axis(labelAngle=0)),
                                  y=alt.Y("gold:N", sort=class_names))
    cells = base.mark_rect().encode(color=alt.Color("rows:Q", scale=alt.Scale(scheme="blues"), legend=None),
                                    tooltip=["gold", "predicted", "rows"])
    half = float(np.max(confusion)) / 2
    text = base.mark_text(fontSize=16).encode(
        text="rows:Q", color=alt.condition(alt.datum.rows > half, alt.value("white"), alt.value("black")))
    return (cells + text).properties(width="container", height=alt.Step(50))  # as wide as its column, no wider


def history_chart(history: list[dict[str, Any]]) -> alt.FacetChart:
    """Train loss and dev accuracy by optimizer step (an integer axis), side by side; ``history`` is a run's
    ``metrics.json`` ``"history"`` (one entry per evaluation: ``step``, ``train_loss``, ``dev_accuracy``, ...). A curve
    needs two evaluations: show one as a number instead."""
    series = {"train_loss": "train loss", "dev_accuracy": "dev accuracy"}
    data = pl.DataFrame([{"step": h["step"], "metric": name, "value": float(h[key])}
                         for h in history for key, name in series.items() if h.get(key) is not None],
                        schema={"step": pl.Int64, "metric": pl.String, "value": pl.Float64})
    line = alt.Chart(data).mark_line(point=True).encode(
        x=alt.X("step:Q", title="optimizer step", axis=alt.Axis(format="d", tickMinStep=1)),  # steps are integers
        y=alt.Y("value:Q", title=None, scale=alt.Scale(zero=False), axis=alt.Axis(format=".3~f")),
        color=alt.Color("metric:N", legend=None, sort=list(series.values())),
        tooltip=["metric", alt.Tooltip("step:Q", format="d"), alt.Tooltip("value:Q", format=".4f")])
    return line.properties(width=320, height=200).facet(
        column=alt.Column("metric:N", title=None, sort=list(series.values()))).resolve_scale(y="independent")


def pair_chart(pairs: pl.DataFrame, value: str) -> alt.Chart:
    """Heatmap of ``value`` (``"overlap"`` or ``"conflict"``, shares of rows) for every pair of LFs in ``pairs``
    (columns ``lf``, ``other``, ``overlap``, ``conflict``), every LF named on both axes."""
    names = pairs["lf"].unique(maintain_order=True).to_list()
    axis = alt.Axis(labelOverlap=False, labelLimit=220)
    side = max(18 * len(names), 120)
    return alt.Chart(pairs).mark_rect().encode(
        x=alt.X("other:N", sort=names, title=None, axis=axis), y=alt.Y("lf:N", sort=names, title=None, axis=axis),
        color=alt.Color(f"{value}:Q", scale=alt.Scale(scheme="oranges" if value == "conflict" else "blues"),
                        legend=alt.Legend(format="%", title=f"{value} (share of rows)")),
        tooltip=["lf", "other", alt.Tooltip("overlap:Q", format=".1%"), alt.Tooltip("conflict:Q", format=".1%")],
    ).properties(width=side, height=side)
