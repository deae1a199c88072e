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
label_choice = label.selectbox("Label", ["any", "unknown", *project.schema.names], key="label")
lfs = voters.multiselect("Voted on by", frame["voters"].explode().drop_nulls().unique().sort().to_list(),
                         key="voters", help="rows at least one of these LFs votes on")

shown = frame
if query:
    shown = shown.filter(pl.col("text").str.to_lowercase().str.contains(query.lower(), literal=True))
if chosen_splits:
    shown = shown.filter(pl.col("split").is_in(chosen_splits))
if label_choice != "any":
    shown = shown.filter(pl.col("label").is_null() if label_choice == "unknown" else pl.col("label") == label_choice)
if lfs:
    shown = shown.filter(pl.col("voters").list.set_intersection(lfs).list.len() > 0)

st.caption(f"{shown.height} of {frame.height} rows · label: gold from the data, replaced by human annotations "
           f"where the annotators agree · pred: {model}'s prediction, as `fit` scores it and `export` writes it "
           "(the most probable class; **tied** rows, rows no LF votes on among them when the model has no reason "
           "to prefer a class, are broken by a fixed hash of the row's position in the dataset)")
if frame["pred"].is_null().all():
    st.info(f"No predictions: {model} is not fit on the current LFs (see the Label model page).")
st.dataframe(shown, hide_index=True, height=520,
             column_order=["split", "label", "pred", "tied", *project.config.text, "votes", "annotations", "id"],
             column_config={"text": st.column_config.TextColumn(width="large"),
                            "votes": st.column_config.ListColumn("LF votes"),
                            "annotations": st.column_config.ListColumn("annotations")})

st.subheader("Labels per split")
counts = frame.with_columns(pl.col("label").fill_null("unknown")).group_by("split", "label").len()
st.bar_chart(counts, x="split", y="len", color="label", y_label="rows", horizontal=True)
