"""labelflow: programmatic labeling from raw text to probabilistic labels.

The public API, in data-flow order: load a :class:`Dataset`, write labeling
functions, apply them into a :class:`LabelMatrix`, fit a label model, analyse.
"""

from labelflow.analysis import classification_metrics
from labelflow.apply import apply_lfs
from labelflow import distributed as _distributed  # noqa: F401  (registers engine "ray")
from labelflow.dataset import Dataset, load_dataset, read_wrench
from labelflow.errors import DataError, LabelflowError, LabelModelError, LFError, ProjectError
from labelflow.labelmodels import LabelModel, get_label_model, label_model_names, load_label_model
from labelflow.lf import ExpressionLF, LabelingFunction, PythonLF, labeling_function, load_lf_suite
from labelflow.lf_builders import keyword_lf, length_lf, regex_lf, threshold_lf
from labelflow.conventions import ABSTAIN
from labelflow.matrix import LabelMatrix, lf_summary
from labelflow.schema import ClassSchema
from labelflow.vote_cache import VoteCache

__version__ = "0.1.0"

__all__ = [
    "ABSTAIN",
    "ClassSchema",
    "DataError",
    "Dataset",
    "ExpressionLF",
    "LFError",
    "LabelMatrix",
    "LabelModel",
    "LabelModelError",
    "LabelingFunction",
    "LabelflowError",
    "ProjectError",
    "PythonLF",
    "VoteCache",
    "apply_lfs",
    "classification_metrics",
    "get_label_model",
    "keyword_lf",
    "label_model_names",
    "labeling_function",
    "length_lf",
    "lf_summary",
    "load_dataset",
    "load_label_model",
    "load_lf_suite",
    "read_wrench",
    "regex_lf",
    "threshold_lf",
]
