"""The fine-tuner's error: bad input, a missing base model, an incompatible run folder."""

from __future__ import annotations

from labelflow.errors import LabelflowError


class FinetuneError(LabelflowError, ValueError):
    """A fine-tuning config, training set, base model or run folder is not usable; the message says why."""


class RunStopped(FinetuneError):
    """Training was asked to stop (SIGTERM, Ctrl+C) and stopped at a step boundary after writing its checkpoint;
    ``resume`` continues from :attr:`step`."""

    def __init__(self, message: str, *, step: int) -> None:
        super().__init__(message)
        self.step = step
