"""Label model: apply the suite and fit the model chosen in the sidebar; its scores per split and confusion."""

import polars as pl
import streamlit as st

import loaders
import widgets
from labelflow.errors import LabelflowError, ProjectError
from labelflow.export import EXPORT_FORMATS
from labelflow.labelmodels import label_model_names

project = loaders.project()
model = st.session_state["model"]
root = str(project.root)
st.title("Label model")
st.caption(f"**{model}** (choose another in the sidebar) is fit on the train rows' LF votes and scored on every "
           "split with gold labels (human annotations included).")
use_dev = st.checkbox("Also fit with the dev split's gold labels", key="use_dev",
                      value=project.fit_settings(model)["use_dev"],
                      help="Dev scores are then optimistic. Refits after saving or accepting an LF keep this setting.")
if st.button("Apply LFs and fit", key="fit", type="primary"):
    widgets.apply_and_fit(project, model, use_dev=use_dev)

stamp = loaders.stamp(project)
stray = loaders.stray_lfs(root, stamp)
if stray:
    st.warning(f"The label matrix holds {len(stray)} LF(s) that the project's suite `{project.suite_path.name}` does "
               f"not define ({', '.join(stray)}): the scores below are not the suite's. **Apply LFs and fit** rebuilds "
               "it from the suite.", icon=":material/difference:")
try:
    metrics = loaders.metrics(root, stamp, model)
except ProjectError as exc:
    st.info(f"Nothing to show yet: {exc}. Press **Apply LFs and fit**.")
    st.stop()

choice = loaders.choice(root, stamp, model)
if choice is not None:
    st.info(f"**auto** chose **{choice['chosen']}**: {choice['reason']}.", icon=":material/hub:")
    ranked = sorted(choice["scores"].items(), key=lambda kv: -kv[1])
    st.dataframe(pl.DataFrame(
        [{"model": n, "cross-validated dev accuracy": s, "chosen": n == choice["chosen"], "error": None}
         for n, s in ranked]
        + [{"model": n, "cross-validated dev accuracy": None, "chosen": False, "error": e}
           for n, e in choice["skipped"].items() if n not in choice["scores"]],
        schema={"model": pl.String, "cross-validated dev accuracy": pl.Float64, "chosen": pl.Boolean,
                "error": pl.String}), hide_index=True,
        column_config={"cross-validated dev accuracy": st.column_config.NumberColumn(format="%.3f")})

for column, (split, m) in zip(st.columns(len(metrics)), metrics.items()):
    column.metric(f"{split} accuracy", f"{m['accuracy']:.3f}",
                  help="on every gold row of the split; ties (and rows no LF votes on, when the model gives them "
                       "equal probabilities) are broken by a fixed hash of the row, as `export` writes them")
    covered = "–" if m["accuracy_covered"] is None else f"{m['accuracy_covered']:.3f}"
    column.caption(f"on covered rows {covered} · coverage {m['coverage']:.1%} · macro-F1 {m['macro_f1']:.3f} · "
                   f"{m['n']} gold rows, {m['tied']:.1%} decided by a tie-break")
st.dataframe(pl.DataFrame([
    {"split": split, "accuracy": m["accuracy"], "accuracy (covered rows)": m["accuracy_covered"],
     "coverage": m["coverage"], "macro_f1": m["macro_f1"],
     **{f"F1 {name}": f1 for name, f1 in m["per_class_f1"].items()}, "tied": m["tied"], "rows": m["n"]}
    for split, m in metrics.items()]), hide_index=True,
    column_config={c: st.column_config.NumberColumn(format="percent") for c in ("coverage", "tied")} | {
        c: st.column_config.NumberColumn(format="%.3f")
        for c in ["accuracy", "accuracy (covered rows)", "macro_f1", *(f"F1 {name}" for name in project.schema.names)]})

st.subheader("Confusion matrix")
splits = list(metrics)
split = st.selectbox("Split", splits, key="confusion_split", index=splits.index("dev") if "dev" in splits else 0)
analysis = loaders.analysis(root, stamp, model, split)
st.columns(2)[0].altair_chart(widgets.confusion_chart(analysis.confusion, analysis.class_names), width="stretch")

st.subheader("All label models side by side")
st.caption("Every registered model as last fit on the current LFs (dev and test gold; \"dev gold\": fit with the dev "
           "split's gold labels, so its dev scores are optimistic). Models not fit yet show empty scores.")
if st.button("Fit every model", key="fit_all",
             help="Fit each registered label model on the current label matrix, with dev gold as set above"):
    with st.status("Fitting every label model…", expanded=True) as status:
        for name in label_model_names():
            st.write(f"Fitting {name}")
            try:
                project.fit(name, use_dev=use_dev)
            except LabelflowError as exc:
                st.error(f"{name}: {exc}")
        status.update(label="Fitted every label model", state="complete", expanded=False)
    stamp = loaders.stamp(project)
table = loaders.comparison(root, stamp)
st.dataframe(table, hide_index=True, key="comparison", column_config={
    c: st.column_config.NumberColumn(format="%.3f") for c in table.columns if "accuracy" in c or "F1" in c} | {
    c: st.column_config.NumberColumn(format="percent") for c in table.columns if "coverage" in c})

st.subheader("Export the labels")
fmt_col, button_col = st.columns([1, 3], vertical_alignment="bottom")
fmt = fmt_col.selectbox("Format", EXPORT_FORMATS, index=EXPORT_FORMATS.index("csv"), key="export_format")
button_col.download_button(
    f"Download {model}'s labels", data=loaders.export_bytes(root, stamp, model, fmt), key="export",
    file_name=f"{project.config.name}-{model}-labels.{fmt}", icon=":material/download:",
    help="Every row: text, split, gold label, a probability per class, the predicted class, covered and tied "
         "(the same file as the command line's export)")

st.subheader("LF overlaps and conflicts")
all_splits = loaders.splits(root, stamp)
agreement_split = st.selectbox("Rows of", all_splits, key="agreement_split",
                               index=all_splits.index("train") if "train" in all_splits else 0)
pairs = loaders.lf_agreement(root, stamp, agreement_split)
what = st.segmented_control("Show", ["overlap", "conflict"], default="conflict", key="agreement_kind") or "conflict"
st.altair_chart(widgets.pair_chart(pairs, what), width="stretch")
