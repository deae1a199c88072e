"""Error analysis: where the label model (or a fine-tuned student) fails on a gold split, and the LFs that would fix
a slice."""

import altair as alt
import polars as pl
import streamlit as st

import loaders
import widgets
from labelflow.errors import LabelflowError
from labelflow.finetune.runs import list_runs
from labelflow.suggest import SUGGESTION_KINDS

SUGGEST = "_suggest_for"

project = loaders.project()
model = st.session_state["model"]
root = str(project.root)
st.title("Error analysis")
widgets.show_flashes()

stamp = loaders.stamp(project)
fitted = loaders.metrics_or_none(root, stamp, model)
if not fitted:
    st.info(f"{model} is not fit on the current LFs, or no split has gold labels: fit it on the Label model page.")
    st.stop()
splits = list(fitted)
students = {run.name: run for run in list_runs(project) if run.status == "complete"}
if st.session_state.get(loaders.PREDICTIONS_OF) not in (loaders.LABEL_MODEL, *students):
    st.session_state.pop(loaders.PREDICTIONS_OF, None)  # its run is gone
source_col, split_col = st.columns(2)
source = source_col.selectbox(
    "Predictions of", [loaders.LABEL_MODEL, *students], key=loaders.PREDICTIONS_OF,
    format_func=lambda s: f"the label model ({model})" if s == loaders.LABEL_MODEL else f"student {s}",
    help="The label model chosen in the sidebar, or a finished run of the Fine-tune page")
split = split_col.selectbox("Split", splits, key="analysis_split", index=splits.index("dev") if "dev" in splits else 0)
student = loaders.student(students[source]) if source != loaders.LABEL_MODEL else None
try:
    analysis = loaders.analysis(root, stamp, model, split, student)
except LabelflowError as exc:
    st.error(f"Cannot analyse student {source}: {exc}")
    st.stop()
names = analysis.class_names
if student is not None:
    st.caption(f"Where student **{source}** errs on {split}. Suggested LFs are still measured by refitting {model} "
               "with each: they fix the labels the next student learns from.")

accuracy, errors, slices = st.columns(3)
lm_accuracy = fitted[split]["accuracy"]
accuracy.metric(f"{split} accuracy", f"{analysis.accuracy:.3f}",
                None if student is None else f"{analysis.accuracy - lm_accuracy:+.3f} vs the label model")
errors.metric("Wrong rows", f"{int((~analysis.rows['correct']).sum())} of {analysis.rows.height}")
slices.metric("Slices with errors", len(analysis.slices))
matrix, table = st.columns([1, 2])
matrix.altair_chart(widgets.confusion_chart(analysis.confusion, names), width="stretch")
table.dataframe(pl.DataFrame([{"kind": s.kind, "slice": s.name, "rows": s.size, "errors": s.errors,
                               "accuracy": s.accuracy, "coverage": s.coverage, "top error": s.top_confusion}
                              for s in analysis.slices]), hide_index=True, height=300,
                column_config={"kind": st.column_config.TextColumn(width=70),
                               "slice": st.column_config.TextColumn(width="medium"),
                               "rows": st.column_config.NumberColumn(width=50),
                               "errors": st.column_config.NumberColumn(width=50),
                               "accuracy": st.column_config.NumberColumn(format="%.3f", width=70),
                               "coverage": st.column_config.NumberColumn(format="percent", width=70),
                               "top error": st.column_config.TextColumn(width="small")})
if not analysis.slices:
    st.success(f"No slice of {split} has errors.")
    st.stop()

by_name = {s.name: s for s in analysis.slices}
chosen = by_name[st.selectbox("Slice", list(by_name), key="slice",
                              format_func=lambda n: f"{n} — {by_name[n].errors} wrong of {by_name[n].size} rows")]
in_slice = pl.col("id").is_in(chosen.row_ids)
st.dataframe(analysis.rows.filter(in_slice).sort("correct").select(
    "id", pl.col("text").map_elements(loaders.display_text, return_dtype=pl.String),
    loaders.class_name("gold", names), loaders.class_name("pred", names), "correct", "covered"),
    hide_index=True, column_config={"id": st.column_config.TextColumn(width="small"),
                                    "text": st.column_config.TextColumn(width="large"),
                                    "gold": st.column_config.TextColumn(width=60),
                                    "pred": st.column_config.TextColumn(width=60),
                                    "correct": st.column_config.CheckboxColumn(width=60),
                                    "covered": st.column_config.CheckboxColumn(width=60)})

if analysis.embedding_2d is None:
    st.caption("No embedding column to map the rows (and for kNN and extend suggestions).")
    if st.button("Compute embeddings", key="embed", help="all-MiniLM-L6-v2 on every row (a minute or two per few "
                 "thousand rows on a CPU), stored with the project as column 'embedding'; cached"):
        from labelflow.fm.run import fm_embed

        with st.spinner("Embedding every row with all-MiniLM-L6-v2…"):
            try:
                fm_embed(project)
            except LabelflowError as exc:
                st.error(f"Embedding failed: {exc}")
            else:
                st.rerun()
else:
    points = analysis.rows.select("text", pl.when("correct").then(pl.lit("correct")).otherwise(pl.lit("wrong"))
                                  .alias("prediction"), in_slice.alias("in slice")).with_columns(
        pl.Series("x", analysis.embedding_2d[:, 0]), pl.Series("y", analysis.embedding_2d[:, 1]))
    st.altair_chart(alt.Chart(points).mark_circle().encode(
        x=alt.X("x:Q", axis=None), y=alt.Y("y:Q", axis=None),
        color=alt.Color("prediction:N", scale=alt.Scale(domain=["correct", "wrong"], range=["#4c78a8", "#e45756"])),
        size=alt.Size("in slice:N", scale=alt.Scale(domain=[False, True], range=[25, 120])),
        opacity=alt.condition(alt.datum["in slice"], alt.value(0.95), alt.value(0.35)), tooltip=["text", "prediction"],
    ).properties(title=f"{split} rows by embedding (PCA); the slice's rows are large", height=380),
        width="stretch")

st.subheader("Suggested LFs")
kinds = tuple(st.multiselect(
    "Kinds", list(SUGGESTION_KINDS), default=["keyword", "regex"], key="suggest_kinds",
    help="knn: neighbours among the slice's gold rows (embeds every row once with all-MiniLM-L6-v2, then cached); "
         "prompt: asks Gemma 3 270M about the rows no LF covers (slow on a CPU); extend: an LF's votes reach the "
         "rows near them in embedding space (needs an embedding column, from `labelflow fm embed`)"))
request = (model, source, split, chosen.name, kinds)
if st.button("Suggest LFs for this slice", key="suggest", disabled=not kinds):
    st.session_state[SUGGEST] = request
if st.session_state.get(SUGGEST) == request:
    with st.spinner("Applying each candidate and refitting the label model with it…"):
        suggestions = loaders.suggestions(root, stamp, model, split, chosen.name, kinds, student)
    if not suggestions:
        st.info(f"No candidate LF for this slice raises {split} accuracy on gold rows it was not mined from "
                "(candidates are mined on one half of the gold rows and measured on the other).")
    for s in suggestions:
        with st.container(border=True):
            st.markdown(f"**{s.name}** · {s.kind} LF voting **{names[s.label]}**")
            precision, coverage, after = st.columns(3)
            precision.metric(f"Right on {split} gold rows", f"{s.support_correct} of {s.support}",
                             help=f"precision {s.precision:.3f}")
            coverage.metric("Coverage", f"{s.coverage:.1%}", help="share of all rows it votes on")
            low, high = s.interval
            after.metric(f"Held-out {split} accuracy with it", f"{s.accuracy_after:.3f}", f"{s.delta:+.3f}",
                         help=f"{model} refit with this LF (same seed and dev-gold setting as the saved model), on "
                              f"{s.held_out_rows} {split} gold rows the LF was not mined from; 95 % interval of the "
                              f"change {low:+.3f} … {high:+.3f}")
            for text, gold in s.examples:
                st.caption(f"{gold}: {' '.join(text.split())[:160]}")
            st.code(s.code, language="python")
            if st.button("Accept", key=f"accept_{s.name}", type="primary"):
                accepted = widgets.accept_and_fit(project, model, s)
                if accepted is not None:
                    st.session_state.pop(SUGGEST)
                    widgets.flash("success", f"Accepted {s.name} into {accepted.path.name}; refit {model}: "
                                             f"{widgets.accuracy_change(fitted, accepted.refit.metrics, split)}.")
                    st.rerun()
