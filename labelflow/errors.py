"""labelflow's exception hierarchy.

Every error labelflow raises on bad input derives from :class:`LabelflowError`
and says what was expected and what it got: the file, column, row, LF or
model involved.
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
