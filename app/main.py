"""labelflow's Streamlit app: one page per pipeline stage, each a view over the project's library calls.

Start it with ``labelflow ui -p PROJECT``, which runs
``streamlit run app/main.py`` with ``LABELFLOW_PROJECT=PROJECT``. The sidebar
holds what every page shares: the label model to look at and the annotator's
name.
"""

import streamlit as st

import loaders
from labelflow.labelmodels import label_model_names

ENTER_LEAVES_NAME = """<script>
if (!window.labelflowEnterLeavesName) {  // once per browser tab: Enter in the Annotator field moves focus out of it,
  window.labelflowEnterLeavesName = true;  // so the Annotate page's keys (1-9, S, U) work at once
  window.addEventListener("keydown", (e) => {
    const box = e.target;
    if (e.key === "Enter" && box instanceof HTMLInputElement && box.getAttribute("aria-label") === "Annotator") {
      queueMicrotask(() => box.blur());
    }
  });
}
</script>"""

st.set_page_config(page_title="labelflow", page_icon=":material/label:", layout="wide")
page = st.navigation([
    st.Page("stages/data.py", title="Data", icon=":material/table:", default=True),
    st.Page("stages/lfs.py", title="LFs", icon=":material/function:"),
    st.Page("stages/label_model.py", title="Label model", icon=":material/hub:"),
    st.Page("stages/error_analysis.py", title="Error analysis", icon=":material/troubleshoot:"),
    st.Page("stages/annotate.py", title="Annotate", icon=":material/edit_note:"),
    st.Page("stages/finetune.py", title="Fine-tune", icon=":material/model_training:"),
])
project = loaders.project()
with st.sidebar:
    st.caption(f"Project **{project.config.name}**  \n`{project.root}`")
    models = label_model_names()
    st.selectbox("Label model", models, index=models.index(project.config.label_model), key="model",
                 help="The model the Data, Label model and Error analysis pages show, and saving an LF refits.")
    # kept in the page's address (?annotator=NAME): a reload or a bookmark keeps it
    st.text_input("Annotator", key="annotator", placeholder="your name (needed to label rows)", bind="query-params")
    st.html(ENTER_LEAVES_NAME, unsafe_allow_javascript=True)
    for note in st.session_state.get(loaders.NOTES, []):
        st.info(note, icon=":material/drive_file_move:")
    for key, why in project.stale().items():
        st.warning(("The label matrix is out of date" if key == "apply" else f"FM output {key[3:]!r} is out of date")
                   + f": {why}. " + ("Apply the LFs again." if key == "apply" else "Compute it again."),
                   icon=":material/update:")
page.run()
