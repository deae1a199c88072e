"""Label models: majority vote and Snorkel's ``LabelModel``, behind one interface and a registry."""

from labelflow.labelmodels.base import (
    LabelModel,
    TiePolicy,
    get_label_model,
    label_model_names,
    load_label_model,
    probs_to_preds,
    register_label_model,
)
from labelflow.labelmodels.majority import MajorityVote
from labelflow.labelmodels.snorkel import SnorkelLabelModel

__all__ = [
    "LabelModel",
    "MajorityVote",
    "SnorkelLabelModel",
    "TiePolicy",
    "get_label_model",
    "label_model_names",
    "load_label_model",
    "probs_to_preds",
    "register_label_model",
]
