"""labelflow's fine-tuner: distil probabilistic labels into a small task-specific classifier.

The end of the pipeline: the label model's soft labels (``labelflow export``) train
a small sequence classifier (LoRA through peft on any Hugging Face encoder or
decoder; default the bundled all-MiniLM-L6-v2, so it runs offline on a CPU) with a
soft-label cross-entropy; dev gold picks the checkpoint and test gold scores it,
beside the label model on the same rows.

Example::

    from labelflow.finetune import FinetuneConfig, finetune, predict
    result = finetune("labels.parquet", out="runs/student", config=FinetuneConfig(epochs=4))
    result.metrics["test"]["student"]["accuracy"], result.metrics["test"]["label_model"]["accuracy"]
    predict("runs/student", ["subscribe to my channel!"])   # id, pred, pred_name, prob_<class>

:mod:`labelflow.finetune.runs` runs ``labelflow finetune`` for a project in the background (start, progress,
stop, resume; the app's Fine-tune page is a view over it).

Heavy dependencies (torch, transformers, peft, accelerate) import when a function
needs them; install them with ``pip install 'labelflow[finetune]'``.
"""

from labelflow.errors import FinetuneError
from labelflow.finetune.config import LORA_DEFAULTS, FinetuneConfig
from labelflow.finetune.data import SoftLabels, read_soft_labels
from labelflow.finetune.loss import confidence_weights, soft_cross_entropy
from labelflow.finetune.predict import Student, load_student, predict
from labelflow.finetune.train import FinetuneResult, finetune

__all__ = [
    "LORA_DEFAULTS",
    "FinetuneConfig",
    "FinetuneError",
    "FinetuneResult",
    "SoftLabels",
    "Student",
    "confidence_weights",
    "finetune",
    "load_student",
    "predict",
    "read_soft_labels",
    "soft_cross_entropy",
]
