"""Annotate: give gold labels to rows one at a time, seeing what the row already has; settle disagreements.

Every label is saved the moment its button is pressed, per annotator (two people on one row both keep
theirs). A label is written only if the row is still as the page showed it: a second tab of the same
annotator cannot silently overwrite the first. Rows whose labels differ (annotators among themselves, or
an annotator and the data file) are listed under **Disagreements**, where a person settles them; a
settlement is recorded with who and when and is the row's gold while it stands.
"""

from datetime import datetime
from typing import get_args

import polars as pl
import streamlit as st

import loaders
import widgets
from labelflow import studio
from labelflow.annotations import ANY, AnnotationConflict
from labelflow.errors import LabelflowError, ProjectError
from labelflow.project import Project

SKIPPED = "_skipped"
VIEWS = ("Label rows", "Disagreements")
ORDERS = {"file": "File order", "uncertain": "Most uncertain first", "slice": "A failing slice"}
SHOWN = 30  # disagreements listed at once
TRAIN_NOTE = ("Labels on **train** rows are stored as gold like any other. They do not change what is trained: "
              "the label model is still fit on the train rows' LF votes alone (dev gold only when it was fit with "
              "dev gold) and the fine-tuner on the label model's probabilities. They are scored as a `train` split "
              "on the Label model page and exported in the `label` column.")


def when(t: float | None) -> str:
    return "" if t is None else datetime.fromtimestamp(t).strftime("%Y-%m-%d %H:%M:%S")


def label(root: str, row_id: str, label: int | None, annotator: str, expect: object = ANY,
          data_label: int | None = None) -> None:
    """Button callback (runs before the rerun, for the row shown when the button was pressed): store the label, or
    remove it when ``label`` is None, if ``annotator``'s label for the row is still ``expect``; say when the row's
    labels now differ."""
    try:
        project = Project.open(root)
        project.annotate(row_id, label, annotator=annotator, expect=expect)
    except AnnotationConflict as exc:
        names = project.schema.names
        held = f"your label {exc.current} (given {when(exc.time)})" if exc.current else "no label of yours"
        shown = "none" if expect is None else names[expect]
        widgets.flash("warning", f"Not saved: row `{row_id}` has {held}, not {shown} as this page showed; another "
                                 "tab or session changed it. Change it from your labels below if needed.")
        return
    except ProjectError as exc:
        widgets.flash("error", f"Not saved: {exc}")
        return
    if label is None:
        return
    names = project.schema.names
    others = project.annotations.frame().filter((pl.col("id") == str(row_id))
                                                & (pl.col("annotator") != annotator.strip())
                                                & (pl.col("label") != label))
    if others.height:
        said = ", ".join(f"{a} said {names[c]}" for a, c in others.select("annotator", "label").iter_rows())
        widgets.flash("warning", f"Row `{row_id}`: you said {names[label]}, {said}. Until someone settles it under "
                                 "**Disagreements** the row has no human gold label.")
    elif data_label is not None and data_label != label:
        widgets.flash("info", f"Row `{row_id}`: your {names[label]} is now its gold label in place of the data "
                              f"file's {names[data_label]}; the row is listed under **Disagreements**.")


def settle(root: str, row_id: str, label: int | None, resolver: str) -> None:
    """Button callback: settle (``label`` None: reopen) a row, recorded with ``resolver`` and the time."""
    try:
        project = Project.open(root)
        project.settle(row_id, label, resolver=resolver)
    except ProjectError as exc:
        widgets.flash("error", f"Not settled: {exc}")
        return
    names = project.schema.names
    widgets.flash("success", f"Row `{row_id}` reopened: its labels decide again." if label is None else
                  f"Row `{row_id}` settled as {names[label]} by {resolver.strip()}.")


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
                                         "no gold label until they agree or someone settles it (Disagreements)")
        if typed:
            studio.remember_url(project, typed)
    except LabelflowError as exc:
        widgets.flash("error", f"Label Studio {action} failed: {exc}")


def skip(row_id: str) -> None:
    """Button callback: leave this row for later (in this browser session)."""
    st.session_state.setdefault(SKIPPED, set()).add(row_id)


def gold_now(row_id: str, data_label: int | None, labels: pl.DataFrame,
             settled: pl.DataFrame) -> tuple[int | None, str]:
    """The row's gold label as ``fit`` and ``evaluate`` see it (:meth:`Project.gold`) and where it comes from."""
    found = settled.filter(pl.col("id") == row_id)
    if found.height:
        r = found.row(0, named=True)
        return r["label"], f"settled by {r['resolver']}, {when(r['time'])}"
    given = labels.filter(pl.col("id") == row_id)
    classes = given["label"].unique().to_list()
    if len(classes) == 1:
        who = ", ".join(sorted(given["annotator"].to_list()))
        return classes[0], f"given by {who}" + ("" if data_label is None or data_label == classes[0]
                                               else ", in place of the data file's label")
    if len(classes) > 1:
        return data_label, ("annotators disagree and nobody settled it: " +
                            ("none" if data_label is None else "the data file's label stays"))
    return data_label, "the data file's label" if data_label is not None else ""


def name_of(c: int | None) -> str:
    return "none" if c is None else names[c]


def text_of(row: dict) -> str:
    fields = TEXT
    show = loaders.display_text  # HTML entities and tags as a reader sees them
    return show(row[fields[0]]) if len(fields) == 1 else "\n".join(f"{f}: {show(row[f])}" for f in fields)


def row_context(row: dict, labels: pl.DataFrame, settled: pl.DataFrame) -> None:
    """What the row already has: its gold now, the data file's label, every annotator's label, the label model's
    prediction and the LF votes."""
    gold, how = gold_now(row["id"], row["data_label"], labels, settled)
    given = labels.filter(pl.col("id") == row["id"]).sort("time")
    lines = [f"**Gold now:** {name_of(gold)}" + (f" ({how})" if how else ""),
             f"**Data file:** {name_of(row['data_label'])}" + (" (the project hides this split's labels)"
                                                               if row["split"] in project.config.hide_labels else ""),
             "**Annotators:** " + (" · ".join(f"{a}: {names[c]} ({when(t)})" for a, c, t in
                                              given.select("annotator", "label", "time").iter_rows())
                                   or "none yet")]
    if row["pred"] is None:
        lines.append(f"**Label model** `{model}`: no prediction (not fit on the current LFs)")
    else:
        lines.append(f"**Label model** `{model}`: {names[row['pred']]} (p = {row['confidence']:.2f}, "
                     f"margin {row['margin']:.2f})")
    lines.append(f"**LF votes** ({len(row['votes'])}): " + (" · ".join(f"`{v}`" for v in row["votes"]) or "none"))
    st.markdown("  \n".join(lines))


project = loaders.project()
root = str(project.root)
names = list(project.schema.names)
TEXT = list(project.config.text)
model = st.session_state.get("model") or project.config.label_model
st.title("Annotate")
widgets.show_flashes()
annotator = (st.session_state.get("annotator") or "").strip()
for key in ("annotate_split", "annotate_order", "annotate_slice"):  # kept while the other view is shown
    if key in st.session_state:
        st.session_state[key] = st.session_state[key]
if not annotator:
    st.warning("Enter your name as **Annotator** in the sidebar to label rows.")

stamp = loaders.stamp(project)
context, no_predictions = loaders.annotation_rows(root, loaders.without_annotations(stamp), model)
store = project.annotations
labels, settled = store.frame(), store.resolutions()  # read on every run: other sessions label too
known = context.filter(pl.col("data_label").is_not_null())
disagreements = store.disagreements(dict(zip(known["id"].to_list(), known["data_label"].to_list())))
to_settle = disagreements.filter(pl.col("annotators_disagree") & pl.col("settled").is_null()).height

view = st.radio("View", VIEWS, key="annotate_view", horizontal=True, label_visibility="collapsed",
                captions=["one row at a time", f"{to_settle} to settle · {disagreements.height} "
                                               f"row{'' if disagreements.height == 1 else 's'} whose labels differ"])

if view == VIEWS[0]:
    found = loaders.splits(root, stamp)
    splits = [s for s in found if s != "train"] + [s for s in found if s == "train"]
    left, right = st.columns(2)
    split = left.radio("Split", splits, key="annotate_split", horizontal=True,
                       index=splits.index("dev") if "dev" in splits else 0)
    order = right.radio("Queue order", list(ORDERS), format_func=ORDERS.get, key="annotate_order", horizontal=True,
                        help="Most uncertain first: the rows where the label model's two most likely classes are "
                             "closest. A failing slice: the rows of one of Error analysis' slices, wrong ones first.")
    if split == "train":
        st.info(TRAIN_NOTE, icon=":material/info:")
    in_split = context.filter(pl.col("split") == split)
    mine = labels.filter(pl.col("annotator") == annotator) if annotator else labels.clear()
    done = in_split.filter(pl.col("id").is_in(mine["id"].implode())).height
    st.progress(done / max(in_split.height, 1), text=f"{done} of {in_split.height} {split} rows labeled by "
                                                     f"{annotator or 'you'}")

    queue, about = in_split, None
    if order == "uncertain":
        if no_predictions:
            st.warning(f"No predictions of `{model}` to order by: {no_predictions}. Showing file order.")
        else:
            queue = queue.sort("margin", maintain_order=True)
            about = f"smallest margin between `{model}`'s two most likely classes first"
    elif order == "slice":
        try:
            found_slices = loaders.analysis(root, loaders.without_annotations(stamp), model, split).slices
        except LabelflowError as exc:
            st.warning(f"No slices to annotate on {split}: {exc}. Showing file order.")
            found_slices = []
        if found_slices:
            by_name = {s.name: s for s in found_slices}
            chosen = by_name[st.selectbox("Slice", list(by_name), key="annotate_slice", format_func=lambda n: (
                f"{n} — {by_name[n].errors} wrong of {by_name[n].size}"))]
            wrong = set(chosen.row_ids) - set(
                loaders.analysis(root, loaders.without_annotations(stamp), model, split).rows.filter(
                    pl.col("correct"))["id"].to_list())
            queue = queue.filter(pl.col("id").is_in(chosen.row_ids)).sort(
                ~pl.col("id").is_in(list(wrong)), maintain_order=True)
            left_in_slice = queue.filter(~pl.col("id").is_in(mine["id"].implode())).height
            about = (f"slice **{chosen.name}** as Error analysis found it for `{model}`: {queue.height} rows, the "
                     f"{len(wrong)} it gets wrong first; {queue.height - left_in_slice} labeled by you")
    skipped = st.session_state.get(SKIPPED, set())
    todo = queue.filter(~pl.col("id").is_in(mine["id"].implode()) & ~pl.col("id").is_in(list(skipped)))
    if todo.is_empty():
        st.success(f"Every row of this queue ({split}) is labeled by you or skipped.")
        if skipped and st.button("Show the skipped rows again"):
            st.session_state.pop(SKIPPED)
            st.rerun()
    else:
        row = todo.row(0, named=True)
        text_col, context_col = st.columns([3, 2])
        with text_col.container(border=True):
            st.caption(f"Row `{row['id']}` · {split} · {todo.height} to go" + (f" · {about}" if about else ""))
            st.text(text_of(row))
        with context_col.container(border=True):
            row_context(row, labels, settled)
        buttons = st.columns(len(names) + 1)
        for i, name in enumerate(names):
            buttons[i].button(name, key=f"class_{i}", on_click=label,
                              args=(root, row["id"], i, annotator, None, row["data_label"]),
                              shortcut=str(i + 1) if i < 9 else None, disabled=not annotator, width="stretch")
        buttons[-1].button("Skip", key="skip", on_click=skip, args=(row["id"],), shortcut="S", width="stretch")
        st.caption("Keys: " + " · ".join(f"{i + 1} = {n}" for i, n in enumerate(names[:9])) + " · S = skip · "
                   "U = undo your last label. Your label is stored beside everyone else's; where labels differ the "
                   "row is listed under Disagreements.")

    if not mine.is_empty():
        st.subheader("Your labels, newest first")
        history = mine.sort("time", descending=True).join(
            context.select("id", "split", *TEXT), on="id", how="left", maintain_order="left")
        last = history.row(0, named=True)
        st.button(f"Undo the last one ({last['id']} → {names[last['label']]})", key="undo", shortcut="U",
                  on_click=label, args=(root, last["id"], None, annotator, last["label"]))
        st.dataframe(history.select(
            pl.col("label").replace_strict(dict(enumerate(names)), return_dtype=pl.String).alias("your label"),
            pl.col(TEXT[0]).alias("text"), pl.col("time").map_elements(when, return_dtype=pl.String)
            .alias("labelled at"), "split", "id"),
            hide_index=True, height=min(35 * (history.height + 1) + 3, 318), key="history_table",
            column_config={"your label": st.column_config.TextColumn(width="small"),
                           "text": st.column_config.TextColumn(width="large"),
                           "labelled at": st.column_config.TextColumn(width="medium"),
                           "split": st.column_config.TextColumn(width="small"),
                           "id": st.column_config.TextColumn(width="small")})
        entries = {r["id"]: r for r in history.iter_rows(named=True)}
        picked = st.selectbox("Change or undo one of your labels", list(entries), key="history_row",
                              format_func=lambda i: (f"{names[entries[i]['label']]} · {entries[i]['id']} · "
                                                     f"{(entries[i][TEXT[0]] or '')[:80]}"))
        entry = entries[picked]
        change = st.columns(len(names) + 1)
        for i, name in enumerate(names):
            change[i].button(f"Change to {name}", key=f"change_{i}", disabled=entry["label"] == i, width="stretch",
                             on_click=label, args=(root, picked, i, annotator, entry["label"]))
        change[-1].button("Remove my label", key="remove", width="stretch",
                          on_click=label, args=(root, picked, None, annotator, entry["label"]))
else:
    st.caption("Rows whose labels differ: annotators who gave different classes (such a row has no human gold label "
               "until someone settles it), or an annotator's label that replaced a different label of the data file. "
               "Settling records your class, your name and the time; while it stands it is the row's gold label, "
               "whatever the annotators and the data file say.")
    show = st.radio("Show", ["to settle", "all"], key="disagreements_show", horizontal=True)
    listed = disagreements.sort(pl.col("settled").is_not_null(), ~pl.col("annotators_disagree"), maintain_order=True)
    if show == "to settle":
        listed = listed.filter(pl.col("annotators_disagree") & pl.col("settled").is_null())
    if listed.is_empty():
        st.success("Nothing to settle: every annotated row's annotators agree or were settled."
                   if show == "to settle" else "No row's labels differ.")
    texts = context.filter(pl.col("id").is_in(listed["id"].head(SHOWN).implode()))
    by_id = {r["id"]: r for r in texts.iter_rows(named=True)}
    for r in listed.head(SHOWN).iter_rows(named=True):
        row = by_id.get(r["id"])
        with st.container(border=True):
            if row is None:
                st.warning(f"Row `{r['id']}` is no longer in the dataset (re-imported data).")
                continue
            st.caption(f"Row `{r['id']}` · {row['split']}")
            st.text(text_of(row))
            who = [{"who": "data file", "label": name_of(r["data_label"]), "when": ""}] + [
                {"who": x["annotator"], "label": names[x["label"]], "when": when(x["time"])} for x in r["labels"]]
            st.table(pl.DataFrame(who))
            gold, how = gold_now(r["id"], r["data_label"], labels, settled)
            state = (f"**Settled** as {names[r['settled']]} by {r['resolver']}, {when(r['resolved_at'])}."
                     if r["settled"] is not None else
                     "**To settle:** annotators disagree; the row keeps the data file's label "
                     f"({name_of(r['data_label'])})." if r["annotators_disagree"] else
                     f"**Gold now {name_of(gold)}** ({how}).")
            pred = "" if row["pred"] is None else f" · `{model}` predicts {names[row['pred']]}"
            st.markdown(state + pred)
            cols = st.columns(len(names) + 1)
            for i, name in enumerate(names):
                cols[i].button(f"Settle as {name}", key=f"settle_{r['id']}_{i}", width="stretch",
                               disabled=not annotator or r["settled"] == i, on_click=settle,
                               args=(root, r["id"], i, annotator))
            if r["settled"] is not None:
                cols[-1].button("Reopen", key=f"unsettle_{r['id']}", width="stretch", disabled=not annotator,
                                on_click=settle, args=(root, r["id"], None, annotator))
    if listed.height > SHOWN:
        st.caption(f"The first {SHOWN} of {listed.height}; settle these to see the next.")

with st.expander("Label Studio"):
    split = st.session_state.get("annotate_split", "dev")
    st.caption(f"The API key is read from the environment variable `{studio.API_KEY_ENV}` of the process running "
               "the app; it is never stored. A URL that comes with the project gets the key only once you confirmed "
               "it on this machine: type your server's URL here once.")
    url = st.text_input("Label Studio URL", value=project.config.studio_url or "", key="studio_url",
                        placeholder="http://127.0.0.1:8080")
    how = st.radio("Rows to push", get_args(studio.PushRows), horizontal=True, key="studio_rows",
                   captions=["seeded random unlabeled rows", "rows the label model is least sure about"])
    n = st.number_input("How many", min_value=1, value=50, key="studio_n")
    push_col, pull_col = st.columns(2)
    push_col.button(f"Push unlabeled {split} rows", key="studio_push", on_click=studio_action,
                    args=(root, "push", url, how, int(n), (split,)), width="stretch")
    pull_col.button("Pull finished labels", key="studio_pull", on_click=studio_action,
                    args=(root, "pull", url, how, int(n), (split,)), width="stretch")
