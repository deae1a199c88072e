"""Label models: majority vote, labelflow's own, and Snorkel's ``LabelModel``, behind one interface and a registry."""

from labelflow.labelmodels.base import (
    LabelModel,
    TieBreakPolicy,
    TiePolicy,
    get_label_model,
    label_model_names,
    load_label_model,
    probs_to_preds,
    register_label_model,
)
from labelflow.labelmodels.labelflow_model import LabelflowModel
from labelflow.labelmodels.majority import MajorityVote
from labelflow.labelmodels.snorkel import SnorkelLabelModel
from labelflow.labelmodels.auto import AutoLabelModel  # last: it chooses among the models registered before it

__all__ = [
    "AutoLabelModel",
    "LabelflowModel",
    "LabelModel",
    "MajorityVote",
    "SnorkelLabelModel",
    "TieBreakPolicy",
    "TiePolicy",
    "get_label_model",
    "label_model_names",
    "load_label_model",
    "probs_to_preds",
    "register_label_model",
]
