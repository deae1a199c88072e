"""LFs: the suite with its statistics; write an LF, see what it does at once, save it into the suite.

An untrusted project (see :mod:`labelflow.trust`) runs nothing here: the page shows the suite's source,
what else trusting it covers, and a Trust button.
"""

import altair as alt
import streamlit as st

import loaders
import widgets
from labelflow.errors import LabelflowError
from labelflow.guided import save_lf
from labelflow.trust import trust_file

project = loaders.project()
model = st.session_state["model"]
root = str(project.root)
st.title("Labeling functions")
widgets.show_flashes()


def trust_suite(shown: str) -> None:
    """The Trust button: trust the suite only if it is still the one shown (it may change while being read)."""
    now = project.fingerprint()
    if now.digest != shown:
        widgets.flash("warning", "The suite or the files beside it changed while you read them; nothing was trusted. "
                                 "Read them again.")
        return
    project.trust()
    widgets.flash("success", f"Trusted {now.suite.name}: labelflow runs it from now on (until it changes).")


if project.config.lfs is not None and not project.trusted:
    fp = project.fingerprint()
    st.warning(
        f"**This project is not trusted, so none of its code runs.** Its LF suite `{fp.suite}`"
        + (" lies **outside the project folder**" if fp.outside else "")
        + " is Python: loading it runs it, with your permissions. Read it below (and the files beside it, which "
        "it can load); if you trust it, press **Trust**. Trust is recorded outside the project, for these exact "
        "files: an edit must be trusted again.", icon=":material/gpp_maybe:")
    if fp.config.get("ray_address"):
        st.warning(f"Its config also names a Ray cluster, `{fp.config['ray_address']}`, that trusting lets LFs run on.")
    for name in fp.files:
        path = fp.suite.parent / name
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError as exc:
            text = f"# cannot read {path}: {exc}"
        with st.expander(f"Source of {path}", expanded=name == fp.suite.name):
            st.code(text, language="python", line_numbers=True)
    st.button("Trust", key="trust", type="primary", on_click=trust_suite, args=(fp.digest,),
              help=f"Record this suite's hash as trusted in {trust_file()}; the same as `labelflow trust {project.root}`")
    st.stop()

stamp = loaders.stamp(project)
splits = loaders.splits(root, stamp)
split = st.selectbox("Statistics on split", splits, key="summary_split",
                     index=splits.index("dev") if "dev" in splits else 0)
try:
    source, table, applied = loaders.suite(root, stamp, split)
except LabelflowError as exc:
    st.error(f"The LF suite does not load: {exc}")
    st.stop()

st.caption(f"Suite `{project.suite_path.resolve()}` · {table.height} LFs · coverage, overlaps and conflicts are "
           f"fractions of the {split} rows; accuracy is measured on its gold labels")
stray = loaders.stray_lfs(root, stamp)
if stray:
    st.warning(f"The label matrix holds {len(stray)} LF(s) that are not in this suite ({', '.join(stray)}): it was "
               "applied from another LF list, so the label model's scores are not this suite's. **Apply LFs and fit** "
               "on the Label model page (or saving an LF) rebuilds it from the suite.", icon=":material/difference:")
if not applied:
    st.info("The suite has not been applied yet: press **Apply LFs and fit** on the Label model page.")
elif table["coverage"].is_null().any():
    missing = table.filter(table["coverage"].is_null())["lf"].to_list()
    st.info(f"Not applied yet: {', '.join(missing)}. Press **Apply LFs and fit** on the Label model page.")
st.dataframe(table, hide_index=True, column_config={
    "polarity": st.column_config.ListColumn("votes for"),
    "coverage": st.column_config.ProgressColumn("coverage", min_value=0.0, max_value=1.0, format="percent"),
    "overlaps": st.column_config.NumberColumn(format="percent"),
    "conflicts": st.column_config.NumberColumn(format="percent"),
    "emp_acc": st.column_config.NumberColumn("accuracy", format="%.3f"),
})
if applied:  # every LF named; coloured by accuracy where the split has gold (train rows have none)
    gold = "emp_acc" in table.columns
    chart = alt.Chart(table.drop("polarity")).mark_bar().encode(
        x=alt.X("coverage:Q", axis=alt.Axis(format="%")),
        y=alt.Y("lf:N", sort=None, title=None, axis=alt.Axis(labelOverlap=False, labelLimit=260)),
        color=alt.Color("emp_acc:Q", title="accuracy", scale=alt.Scale(
            scheme="redyellowgreen", domain=[0.5, 1], clamp=True)) if gold else alt.value("#4c78a8"),
        tooltip=["lf", alt.Tooltip("coverage:Q", format=".1%"),
                 *([alt.Tooltip("emp_acc:Q", format=".3f")] if gold else [])])
    st.altair_chart(chart.properties(height=22 * table.height + 30), width="stretch")
with st.expander(f"Source of {project.suite_path.name}"):
    st.code(source, language="python", line_numbers=True)

st.subheader("Write or edit an LF")
st.caption("One definition, in the suite's namespace (its imports and constants such as the class names are "
           "there). An LF with the name of one in the suite replaces it on save. Ctrl+Enter tries it.")
code = st.text_area("LF code", key="lf_code", height=180, placeholder=(
    '@labeling_function()\ndef mentions_free(x):\n    return 1 if "free" in x.text.lower() else ABSTAIN\n\n'
    '# or: my_words = keyword_lf("my_words", ["subscribe", "channel"], label=1)'))
if code.strip():
    result = loaders.trial(root, stamp, code)
    if result.error:
        st.error(result.error)
    else:
        name, coverage, dev_coverage, dev_accuracy = st.columns(4)
        name.metric("LF", result.name)
        coverage.metric("Coverage (all rows)", f"{result.coverage:.1%}")
        dev_coverage.metric("Coverage on dev", f"{result.dev_coverage:.1%}")
        dev_accuracy.metric("Accuracy on dev", "—" if result.dev_accuracy is None else f"{result.dev_accuracy:.3f}")
        st.dataframe(result.examples, hide_index=True, column_config={
            "text": st.column_config.TextColumn(width="large")})
    if st.button("Save to the suite", key="save", type="primary", disabled=result.error is not None):
        before = loaders.metrics_or_none(root, stamp, model)
        try:
            path = save_lf(project, code)
        except LabelflowError as exc:
            st.error(f"Not saved: {exc}")
        else:
            after = widgets.apply_and_fit(project, model)
            if after is not None:
                left = (f" The fit before also used {', '.join(stray)}, which the suite does not define: they left "
                        "the label matrix, so the change is not this LF's alone." if stray else "")
                widgets.flash("success", f"Saved LF {result.name!r} to {path.name}; refit {model}: "
                                         f"{widgets.accuracy_change(before, after, 'dev')}.{left}")
                st.rerun()
