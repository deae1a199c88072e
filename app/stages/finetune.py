"""Fine-tune: the LoRA fine-tuner's page; empty until the fine-tuner lands."""

import streamlit as st

import loaders

project = loaders.project()
st.title("Fine-tune")
st.info("The LoRA fine-tuner (`finetune/`, `labelflow finetune`) is still being built, so there is nothing to run "
        "here yet. Once it lands, this page trains a small model on the label model's probabilistic labels and "
        "compares it with the label model on dev and test.")
st.markdown(f"Until then, export the labels to train on with `labelflow export -p {project.root} labels.parquet`.")
