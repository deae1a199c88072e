"""labelflow's exception hierarchy: every error class it raises, and :func:`require` for optional dependencies.

Every error labelflow raises on bad input derives from :class:`LabelflowError`
and says what was expected and what it got: the file, column, row, LF or
model involved. :mod:`labelflow.io_errors` says the same of a known failure of the
world outside (a full disk, a read-only project, a damaged store file).
"""

from __future__ import annotations


class LabelflowError(Exception):
    """Base class of all labelflow errors."""


class DataError(LabelflowError, ValueError):
    """A dataset could not be read or does not fit the column mapping or class schema."""


class LFError(LabelflowError, ValueError):
    """A labeling function is malformed, failed, or returned an invalid vote."""


class LabelModelError(LabelflowError, ValueError):
    """A label model was configured, fit, applied or loaded incorrectly."""


class ProjectError(LabelflowError):
    """A project folder is missing, incompatible, or lacks a step that must run first."""


class MissingDependencyError(LabelflowError, ImportError):
    """An optional dependency is not installed; the message says how to install it."""


class UntrustedProjectError(ProjectError):
    """The project's code (its LF suite, or the Ray cluster its config names) is not trusted on this machine."""


class AnnotationConflict(ProjectError):
    """A label was given for a row whose stored label is not the one the caller expected (another tab or session
    labelled it since); nothing was written. ``current`` is the stored class name (``None``: no label) and ``time``
    when it was given."""

    def __init__(self, row_id: str, annotator: str, current: str | None, time: float | None) -> None:
        self.row_id, self.annotator, self.current, self.time = row_id, annotator, current, time
        held = "no label" if current is None else f"the label {current!r}"
        super().__init__(f"row {row_id!r} now has {held} from {annotator!r} (given since this page showed it, "
                         "in another tab or session); nothing was written")


class FMError(LabelflowError, ValueError):
    """A model could not be found, loaded or reached, or answered malformed output."""


class EngineError(LabelflowError):
    """The Ray cluster could not be reached, or a shard failed on it after every retry."""


class StudioError(LabelflowError):
    """Label Studio is unreachable, rejected the key, or holds data that does not fit the project."""


class FinetuneError(LabelflowError, ValueError):
    """A fine-tuning config, training set, base model or run folder is not usable; the message says why."""


class RunStopped(FinetuneError):
    """Training was asked to stop (SIGTERM, Ctrl+C) and stopped at a step boundary after writing its checkpoint;
    ``resume`` continues from :attr:`step`."""

    def __init__(self, message: str, *, step: int) -> None:
        super().__init__(message)
        self.step = step


def require(module: str, extra: str):
    """Import an optional dependency, or raise with an install hint.

    Parameters
    ----------
    module
        Module to import, for example ``"snorkel.labeling.model"``.
    extra
        The labelflow extra that installs it, for example ``"snorkel"``.
    """
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependencyError(
            f"{module!r} is not installed; install it with `pip install 'labelflow[{extra}]'` ({exc})"
        ) from exc
