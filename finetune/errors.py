"""The fine-tuner's error: bad input, a missing base model, an incompatible run folder."""

from __future__ import annotations

from labelflow.errors import LabelflowError


class FinetuneError(LabelflowError, ValueError):
    """A fine-tuning config, training set, base model or run folder is not usable; the message says why."""
