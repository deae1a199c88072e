"""LFs: the suite with its statistics; write an LF, see what it does at once, save it into the suite; open, disable or
delete an LF of the suite.

An untrusted project (see :mod:`labelflow.trust`) runs nothing here: the page shows the suite's source,
what else trusting it covers, and a Trust button.
"""

import altair as alt
import streamlit as st

import lf_editor
import loaders
import widgets
from labelflow.errors import LabelflowError
from labelflow.lf_workers import MAX_FAILURES_KEPT
from labelflow.suite_edit import delete_lf, lf_source, save_lf
from labelflow.trust import trust_file

project = loaders.project()
model = st.session_state["model"]
root = str(project.root)
st.title("Labeling functions")
with st.container():  # one block whatever it holds: what follows keeps its place (the editor is not remounted)
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

disabled = table.filter(~table["enabled"])["lf"].to_list()
st.caption(f"Suite `{project.suite_path.resolve()}` · {table.height} LFs"
           + (f" ({len(disabled)} disabled: not applied, not fit)" if disabled else "")
           + f" · coverage, overlaps and conflicts are fractions of the {split} rows; accuracy is measured on its gold "
             "labels")
stray = loaders.stray_lfs(root, stamp)
notes = st.container()  # one block whatever it holds, as above
if set(stray) & set(disabled):
    notes.warning(f"The label matrix still holds disabled LF(s) {', '.join(sorted(set(stray) & set(disabled)))}: "
               "**Apply LFs and fit** on the Label model page leaves them out.", icon=":material/difference:")
    stray = [name for name in stray if name not in disabled]
if stray:
    notes.warning(f"The label matrix holds {len(stray)} LF(s) that are not in this suite ({', '.join(stray)}): it was "
               "applied from another LF list, so the label model's scores are not this suite's. **Apply LFs and fit** "
               "on the Label model page (or saving an LF) rebuilds it from the suite.", icon=":material/difference:")
if not applied:
    notes.info("The suite has not been applied yet: press **Apply LFs and fit** on the Label model page.")
elif (table["coverage"].is_null() & table["enabled"]).any():
    missing = table.filter(table["coverage"].is_null() & table["enabled"])["lf"].to_list()
    notes.info(f"Not applied yet: {', '.join(missing)}. Press **Apply LFs and fit** on the Label model page.")
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

state = st.session_state
CONFIRM = "lf_confirm"  # session key: ("open" | "delete", LF name) waiting for the user's yes


def refit_message(what: str, before, more: str = "") -> None:
    """Apply the suite, refit ``model`` and, when that worked, say ``what`` happened, the accuracy change and
    ``more``."""
    after = widgets.apply_and_fit(project, model)
    if after is not None:
        widgets.flash("success", f"{what}; refit {model}: {widgets.accuracy_change(before, after, 'dev')}.{more}")
        st.rerun()


def set_enabled(name: str, enabled: bool) -> None:
    before = loaders.metrics_or_none(root, stamp, model)
    others = [n for n in project.config.disabled_lfs if n != name]
    project.update_config(disabled_lfs=others if enabled else [*others, name])
    refit_message(f"Enabled LF {name!r}: its votes are back in the label matrix" if enabled else
                  f"Disabled LF {name!r}: its votes left the label matrix (it stays in {project.suite_path.name})",
                  before)


def delete(name: str) -> None:
    before = loaders.metrics_or_none(root, stamp, model)
    state.pop(CONFIRM, None)
    try:
        path = delete_lf(project, name)
    except LabelflowError as exc:
        st.error(f"Not deleted: {exc}")
        return
    if name in project.config.disabled_lfs:
        project.update_config(disabled_lfs=[n for n in project.config.disabled_lfs if n != name])
    refit_message(f"Deleted LF {name!r} from {path.name}", before)


def open_lf(name: str, code: str) -> None:
    state.pop(CONFIRM, None)
    lf_editor.load(project, code, tried=True, editing=name)


st.subheader("Open, disable or delete an LF")
names = table["lf"].to_list()
row = st.container(horizontal=True, vertical_alignment="bottom")
name = row.selectbox("LF", names, key="lf_pick", width=320,
                     format_func=lambda n: f"{n} (disabled)" if n in disabled else n)
found = lf_source(source, name)
draft = state.get(lf_editor.CODE, "")
unsaved = bool(draft.strip()) and draft.strip() not in source
if row.button("Open in editor", key="lf_open", icon=":material/edit:", disabled=found is None,
              help="Its definition from the suite file; saving it replaces it there" if found is not None else
                   f"{name} is not one top-level definition in {project.suite_path.name} (made in a loop, say): "
                   "edit the file"):
    if unsaved and state.get(lf_editor.CODE) != found:
        state[CONFIRM] = ("open", name)
    else:
        open_lf(name, found)
        st.rerun()
on = name not in disabled
if row.button("Disable" if on else "Enable", key="lf_toggle",
              icon=":material/toggle_off:" if on else ":material/toggle_on:",
              disabled=on and len(disabled) + 1 >= len(names),
              help="Leave it out of the label matrix and the fit, keeping its code in the suite file "
                   "(labelflow.json's disabled_lfs; `labelflow apply` honours it too)" if on else
                   "Put its votes back into the label matrix and refit"):
    set_enabled(name, not on)
if row.button("Delete…", key="lf_delete", icon=":material/delete:",
              disabled=len(names) < 2, help=f"Remove its definition from {project.suite_path.name}"):
    state[CONFIRM] = ("delete", name)

confirm = state.get(CONFIRM)
asking = st.container()  # one block whatever it holds, as above
if confirm is not None and confirm[1] not in names:
    state.pop(CONFIRM)
elif confirm is not None and confirm[0] == "delete":
    with asking.container(border=True):
        st.warning(f"Delete LF **{confirm[1]}**? Its definition (and the comment lines right above it) leaves "
                   f"`{project.suite_path.name}`, only if the suite still loads without it; its votes leave the label "
                   f"matrix and {model} is refit. Only your version control can bring it back.",
                   icon=":material/delete:")
        yes, no = st.columns(2)
        if yes.button(f"Delete {confirm[1]}", key="lf_delete_yes", type="primary", width="stretch"):
            delete(confirm[1])
        if no.button("Cancel", key="lf_delete_no", width="stretch"):
            state.pop(CONFIRM)
            st.rerun()
elif confirm is not None and confirm[0] == "open":
    with asking.container(border=True):
        st.warning(f"The editor holds a draft that is not in the suite. Opening **{confirm[1]}** replaces it.",
                   icon=":material/edit_note:")
        yes, no = st.columns(2)
        if yes.button(f"Replace the draft with {confirm[1]}", key="lf_open_yes", type="primary", width="stretch"):
            open_lf(confirm[1], lf_source(source, confirm[1]) or "")
            st.rerun()
        if no.button("Keep the draft", key="lf_open_no", width="stretch"):
            state.pop(CONFIRM)
            st.rerun()

st.subheader("Write or edit an LF")
st.caption("One definition, in the suite's namespace (its imports and constants such as the class names are "
           "there). An LF with the name of one in the suite replaces it on save. **Ctrl+Enter** (or **Try**) tries "
           "it; Tab indents (Escape, then Tab, leaves the editor). The draft is kept in the project "
           f"(`{project.store.lf_draft.relative_to(project.root)}`) until you save it.")


def abstain_switch() -> None:
    """The project's on_error setting, as a switch."""
    state["lf_on_error"] = project.config.on_error == "abstain"
    st.toggle(widgets.ABSTAIN_SWITCH, key="lf_on_error", on_change=lambda: project.update_config(
        on_error="abstain" if state["lf_on_error"] else "raise"),
        help="A project setting, for every LF: here, in **Apply LFs and fit** and in `labelflow apply`. An LF then "
             "abstains on a row where it raises, and the rows are counted (the table's errors column) instead of "
             "the run stopping at the first.")


@st.fragment
def editor() -> None:
    """The editor, its trial and Save: typing reruns only this part of the page."""
    stamp = loaders.stamp(project)
    editing = state.get(lf_editor.EDITING)
    note = st.empty()  # one element whatever it shows: the editor below keeps its place
    if editing:
        note.caption(f"Opened **{editing}** from the suite: saving replaces its definition.")
    code = lf_editor.show(project)
    st.button("Try", key="lf_try", icon=":material/play_arrow:", help="Ctrl+Enter in the editor",
              disabled=not code.strip(), on_click=lambda: state.update({lf_editor.TRIED: state[lf_editor.CODE]}))
    tried = state.get(lf_editor.TRIED)
    result = loaders.trial(root, stamp, tried) if tried and tried.strip() else None
    if result is not None and tried != code:
        st.caption(":material/edit: The code changed since this trial: **Ctrl+Enter** tries it again.")
    if result is not None and result.error:
        st.error(widgets.lf_error(result.error, where="below"))
    if project.config.on_error == "abstain" or (result is not None and result.error
                                                and widgets.raised_on_a_row(result.error)):
        abstain_switch()
    if result is not None and not result.error:
        if result.failures:
            first = result.failures[0]
            more = "+" if len(result.failures) >= MAX_FAILURES_KEPT else ""
            st.warning(f"{result.name} raised an error on {len(result.failures)}{more} rows and abstains there "
                       f"(first: row id {first.row_id!r}, {first.error}).", icon=":material/error:")
        st.markdown(f"Trial of **{result.name}**")
        coverage, dev_coverage, dev_accuracy = st.columns(3)
        coverage.metric("Coverage (all rows)", f"{result.coverage:.1%}")
        dev_coverage.metric("Coverage on dev", f"{result.dev_coverage:.1%}")
        dev_accuracy.metric("Accuracy on dev", "—" if result.dev_accuracy is None else f"{result.dev_accuracy:.3f}")
        st.dataframe(result.examples, hide_index=True, column_config={
            "text": st.column_config.TextColumn(width="large")})
    if st.button("Save to the suite", key="save", type="primary",
                 disabled=result is None or result.error is not None or tried != code,
                 help="Try the code first (Ctrl+Enter)" if result is None or tried != code else None):
        if state.get(lf_editor.TRIED) != state.get(lf_editor.CODE):
            st.info("The code changed since it was tried: press **Try** (or Ctrl+Enter) first.")
            return
        before = loaders.metrics_or_none(root, stamp, model)
        try:
            path = save_lf(project, tried)
        except LabelflowError as exc:
            st.error(f"Not saved: {widgets.lf_error(str(exc), where='above')}")
            return
        lf_editor.clear(project)
        left = (f" The fit before also used {', '.join(stray)}, which the suite does not define: they left "
                "the label matrix, so the change is not this LF's alone." if stray else "")
        off = (" It is disabled: **Enable** it above to use its votes." if result.name in project.config.disabled_lfs
               else "")
        refit_message(f"Saved LF {result.name!r} to {path.name}", before, left + off)


editor()
