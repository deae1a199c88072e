"""How much of the libraries' own output reaches the user: quiet by default, everything when verbose.

labelflow shows one progress bar per stage (applying LFs, embedding, prompting,
fine-tuning) and its tables. The libraries it calls print bars of their own
(Snorkel's per-fit epochs, transformers' "Loading weights"), log load reports and
warn about their own deprecations (``FutureWarning``). Those are silenced at their
source, only for the duration of the call that emits them: :func:`third_party`
around the call, ``progress=verbose()`` for a label model's fit. ``labelflow -v``
(:func:`set_verbosity`) lets all of it through. What LF code prints goes to stderr
(:func:`stdout_to_stderr`), so stdout carries only labelflow's own output.
"""

from __future__ import annotations

import contextlib
import os
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

from labelflow.validation import check_int

_verbosity = 0

NOISY_WARNINGS: tuple[type[Warning], ...] = (FutureWarning, DeprecationWarning, PendingDeprecationWarning)
"""Warnings a library addresses to its own users' code (labelflow's), not to the person running labelflow."""


def set_verbosity(level: int) -> None:
    """Set the verbosity: 0 (the default) silences third-party output, 1 or more lets it through (``-v``)."""
    global _verbosity
    _verbosity = check_int("verbosity", level, minimum=0, error=ValueError)


def verbosity() -> int:
    """The current verbosity (see :func:`set_verbosity`)."""
    return _verbosity


def verbose() -> bool:
    """Whether third-party output is let through (verbosity ≥ 1)."""
    return _verbosity > 0


@contextmanager
def third_party(*, transformers: bool = False) -> Iterator[None]:
    """Silence the libraries called in the body, unless :func:`verbose`.

    Inside, :data:`NOISY_WARNINGS` are ignored (the filter is restored on exit, so a
    warning of labelflow's own code outside still shows); with ``transformers``,
    transformers' logging is set to errors only and its progress bars (and
    huggingface_hub's) are off, both restored on exit.

    Examples
    --------
    >>> import warnings
    >>> with third_party():
    ...     warnings.warn("old API", FutureWarning)   # silenced
    """
    if verbose():
        yield
        return
    with warnings.catch_warnings():
        for category in NOISY_WARNINGS:
            warnings.filterwarnings("ignore", category=category)
        if not transformers:
            yield
            return
        try:
            from transformers.utils import logging as hf
        except ImportError:  # the call will say what to install
            yield
            return
        level, bars = hf.get_verbosity(), hf.is_progress_bar_enabled()
        hf.set_verbosity_error()
        hf.disable_progress_bar()  # huggingface_hub's bars too
        try:
            yield
        finally:
            hf.set_verbosity(level)
            if bars:
                hf.enable_progress_bar()


@contextmanager
def stdout_to_stderr() -> Iterator[None]:
    """While LF code runs, send what it prints to stderr (``sys.stdout`` and file descriptor 1 both), so
    stdout carries only labelflow's own output (``--json`` documents). Processes forked meanwhile inherit it."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()  # what was printed before goes where it was meant to
    saved = None
    try:
        os.fstat(2)
        saved = os.dup(1)
        os.dup2(2, 1)
    except OSError:  # no descriptor 1 or 2 (closed): Python-level only
        if saved is not None:
            os.close(saved)
        saved = None
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        if saved is not None:
            os.dup2(saved, 1)
            os.close(saved)
