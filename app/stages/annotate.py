"""Annotate: give gold labels to rows one at a time; every label is saved the moment its button is pressed."""

import polars as pl
import streamlit as st

import loaders
import widgets
from labelflow import studio
from labelflow.errors import LabelflowError, ProjectError
from labelflow.project import Project

SKIPPED = "_skipped"


def label(root: str, row_id: str, label: int | None, annotator: str) -> None:
    """Button callback (runs before the rerun, for the row shown when the button was pressed):
    store the label, or remove it when ``label`` is None."""
    try:
        Project.open(root).annotate(row_id, label, annotator=annotator)
    except ProjectError as exc:
        widgets.flash("error", f"Not saved: {exc}")


def studio_action(root: str, action: str, url: str, rows: str, n: int, splits: tuple[str, ...]) -> None:
    """Button callback: push to / pull from Label Studio at ``url`` and say what happened.

    A URL typed into the field (one that differs from the project's) is the user's choice: the API key goes there,
    and it is confirmed and saved once the call succeeds. The project's own URL gets the key only once confirmed
    (see :mod:`labelflow.studio`)."""
    try:
        project = Project.open(root)
        typed = url if url and url != project.config.studio_url else None
        if action == "push":
            r = studio.push(project, rows=rows, splits=splits, n=n, url=typed)
            widgets.flash("success", f"Label Studio project {r.project_id}: {r.created} tasks created, {r.updated} "
                                     f"updated, {r.unchanged} unchanged; {r.predictions_added} pre-annotations")
        else:
            r = studio.pull(project, url=typed)
            widgets.flash("success", f"Pulled: {r.added} labels added, {r.changed} changed, {r.unchanged} unchanged, "
                                     f"{r.skipped} skipped")
            for c in r.conflicts:
                widgets.flash("warning", f"Annotators disagree on row {c['id']} ({', '.join(c['annotators'])}): "
                                         "no gold label until they agree")
        if typed:
            studio.remember_url(project, typed)
    except LabelflowError as exc:
        widgets.flash("error", f"Label Studio {action} failed: {exc}")


def skip(row_id: str) -> None:
    """Button callback: leave this row for later (in this browser session)."""
    st.session_state.setdefault(SKIPPED, set()).add(row_id)


project = loaders.project()
root = str(project.root)
names = project.schema.names
st.title("Annotate")
widgets.show_flashes()
annotator = st.session_state.get("annotator", "").strip()
if not annotator:
    st.warning("Enter your name as **Annotator** in the sidebar to label rows.")

stamp = loaders.stamp(project)
splits = [s for s in loaders.splits(root, stamp) if s != "train"] or loaders.splits(root, stamp)
split = st.radio("Split", splits, key="annotate_split", horizontal=True,
                 index=splits.index("dev") if "dev" in splits else 0)
rows, mine = loaders.annotation_queue(root, stamp, split, annotator)
done = int(rows["labeled"].sum())
st.progress(done / max(rows.height, 1), text=f"{done} of {rows.height} {split} rows labeled by {annotator or 'you'}")

skipped = st.session_state.get(SKIPPED, set())
todo = rows.filter(~pl.col("labeled") & ~pl.col("id").is_in(list(skipped)))
if todo.is_empty():
    st.success(f"Every {split} row is labeled or skipped.")
    if skipped and st.button("Show the skipped rows again"):
        st.session_state.pop(SKIPPED)
        st.rerun()
else:
    row = todo.row(0, named=True)
    with st.container(border=True):
        st.caption(f"Row `{row['id']}` · {todo.height} to go")
        for field in project.config.text:
            st.text(row[field] if len(project.config.text) == 1 else f"{field}: {row[field]}")
    buttons = st.columns(len(names) + 1)
    for i, name in enumerate(names):
        buttons[i].button(name, key=f"class_{i}", on_click=label, args=(root, row["id"], i, annotator),
                          shortcut=str(i + 1) if i < 9 else None, disabled=not annotator, width="stretch")
    buttons[-1].button("Skip", key="skip", on_click=skip, args=(row["id"],), shortcut="S", width="stretch")
    st.caption("Keys: " + " · ".join(f"{i + 1} = {n}" for i, n in enumerate(names[:9])) + " · S = skip")

if not mine.is_empty():
    st.subheader("Your labels, newest first")
    st.button(f"Undo the last one ({mine['id'][0]} → {mine['label'][0]})", key="undo", shortcut="U",
              on_click=label, args=(root, mine["id"][0], None, annotator))
    st.dataframe(mine.head(20), hide_index=True)

with st.expander("Label Studio"):
    st.caption(f"The API key is read from the environment variable `{studio.API_KEY_ENV}` of the process running "
               "the app; it is never stored. A URL that comes with the project gets the key only once you confirmed "
               "it on this machine: type your server's URL here (or pass `--url` to `labelflow studio`) once.")
    url = st.text_input("Label Studio URL", value=project.config.studio_url or "", key="studio_url",
                        placeholder="http://127.0.0.1:8080")
    how = st.radio("Rows to push", ["sample", "entropy"], horizontal=True, key="studio_rows",
                   captions=["seeded random unlabeled rows", "rows the label model is least sure about"])
    n = st.number_input("How many", min_value=1, value=50, key="studio_n")
    push_col, pull_col = st.columns(2)
    push_col.button(f"Push unlabeled {split} rows", key="studio_push", on_click=studio_action,
                    args=(root, "push", url, how, int(n), (split,)), width="stretch")
    pull_col.button("Pull finished labels", key="studio_pull", on_click=studio_action,
                    args=(root, "pull", url, how, int(n), (split,)), width="stretch")
