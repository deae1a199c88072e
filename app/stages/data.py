"""Data: browse the rows with their labels, the label model's prediction and every LF vote."""

import polars as pl
import streamlit as st

import loaders

project = loaders.project()
model = st.session_state["model"]
st.title("Data")
frame = loaders.rows(str(project.root), loaders.stamp(project), model)

search, splits, label, voters = st.columns([3, 2, 2, 3])
query = search.text_input("Search the text", key="search", placeholder="words to find (case-insensitive)")
chosen_splits = splits.multiselect("Split", frame["split"].unique(maintain_order=True).to_list(), key="splits")
label_choice = label.selectbox("Label", ["any", loaders.UNKNOWN, *project.schema.names], key="label",
                               help=f"{loaders.UNKNOWN}: no gold label (none in the data, or the split's labels are "
                                    "hidden)")
lfs = voters.multiselect("Voted on by", frame["voters"].explode().drop_nulls().unique().sort().to_list(),
                         key="voters", help="rows at least one of these LFs votes on")
ROW_KINDS = {"all rows": None, "wrong": pl.col("wrong"), "no LF votes": ~pl.col("covered"),
             "LFs conflict": pl.col("conflict")}
kind = st.segmented_control("Show", list(ROW_KINDS), default="all rows", key="row_kind",
                            help="wrong: the prediction differs from the gold label; LFs conflict: two LFs vote "
                                 "different classes") or "all rows"

shown = frame
if query:
    shown = shown.filter(pl.col("text").str.to_lowercase().str.contains(query.lower(), literal=True))
if chosen_splits:
    shown = shown.filter(pl.col("split").is_in(chosen_splits))
if label_choice != "any":
    shown = shown.filter(pl.col("label") == label_choice)
if lfs:
    shown = shown.filter(pl.col("voters").list.set_intersection(lfs).list.len() > 0)
if ROW_KINDS[kind] is not None:
    shown = shown.filter(ROW_KINDS[kind])

st.caption(f"{shown.height} of {frame.height} rows · label: gold from the data, replaced by human annotations "
           f"where the annotators agree · pred: {model}'s prediction, as `fit` scores it and `export` writes it "
           "(the most probable class; **tied** rows, rows no LF votes on among them when the model has no reason "
           "to prefer a class, are broken by a fixed hash of the row's position in the dataset)")
if frame["pred"].is_null().all():
    st.info(f"No predictions: {model} is not fit on the current LFs (see the Label model page).")
event = st.dataframe(shown, hide_index=True, height=480, key="rows", on_select="rerun", selection_mode="single-row",
                     column_order=["split", "label", "pred", *project.config.text, "votes", "annotations", "tied", "id"],
                     column_config={"split": st.column_config.TextColumn(width=60),
                                    "label": st.column_config.TextColumn(width=70),
                                    "pred": st.column_config.TextColumn(width=70),
                                    **{c: st.column_config.TextColumn(width="large") for c in project.config.text},
                                    "votes": st.column_config.ListColumn("LF votes", width="medium"),
                                    "annotations": st.column_config.ListColumn("annotations", width="small"),
                                    "tied": st.column_config.CheckboxColumn(width=50),
                                    "id": st.column_config.TextColumn(width="small")})
picked = event.selection.rows if event is not None else []
if picked:
    row = shown.row(picked[0], named=True)
    with st.container(border=True):
        st.markdown(f"**Row `{row['id']}`** · split **{row['split']}** · label **{row['label']}** · "
                    f"prediction **{row['pred'] or '–'}**" + (" (a tie-break)" if row["tied"] else ""))
        for field in project.config.text:
            st.text(row[field] or "")
        votes_col, notes_col = st.columns(2)
        votes_col.markdown("**LF votes**  \n" + ("  \n".join(row["votes"]) or "no LF votes on this row"))
        notes_col.markdown("**Annotations**  \n" + ("  \n".join(row["annotations"]) or "none"))
else:
    st.caption("Select a row (the box at its left) to read it whole with its LF votes and annotations.")

st.subheader("Labels per split")
counts = frame.group_by("split", "label").len()
st.bar_chart(counts, x="split", y="len", color="label", y_label="rows", horizontal=True)
