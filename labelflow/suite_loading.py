"""Suite files run as modules: the ``--lfs`` file of a project, a path given to ``load_lf_suite``.

A suite file is compiled from the bytes on disk and run as a module of its own
(:func:`import_suite_file`, :func:`exec_suite_module`); what it prints goes to stderr,
a failure names the file and line. Each run is recorded, so that worker processes can
re-create the module (:func:`suite_sources`) and fingerprints can tell its code for
user code (:func:`suite_file`).
"""

from __future__ import annotations

import hashlib
import importlib.util
import linecache
import re
import sys
import types
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from labelflow.errors import LFError
from labelflow.quiet import stdout_to_stderr

SUITE_MODULE_PREFIX = "labelflow_suite_"
"""Suite files are imported as modules named ``labelflow_suite_<stem>_<hash of the path>``."""

_SUITE_SOURCES: dict[str, tuple[str, bytes]] = {}
"""Module name → (path, source) of every suite file imported, so a worker process can re-create it."""


def import_suite_file(path: Path) -> types.ModuleType:
    """Import the suite file at ``path`` as a module named after :data:`SUITE_MODULE_PREFIX` (see
    :func:`exec_suite_module`); raises :class:`LFError` when the file is missing or fails to import."""
    if not path.is_file():
        raise LFError(f"LF suite file not found: {path}")
    digest = hashlib.blake2b(str(path.resolve()).encode(), digest_size=6).hexdigest()
    stem = re.sub(r"\W", "_", path.stem)
    # compile from the bytes on disk, never from __pycache__ or a stale linecache entry: an edit within
    # the same second and of the same size must still change the code and its fingerprint
    return exec_suite_module(f"{SUITE_MODULE_PREFIX}{stem}_{digest}", str(path), path.read_bytes())


def exec_suite_module(name: str, path: str, source: bytes) -> types.ModuleType:
    """Run a suite file's ``source`` as module ``name`` (registered in ``sys.modules``) and return it.

    What the code prints goes to stderr. Raises :class:`LFError` naming the file and line when the
    code fails or calls ``sys.exit()``.
    """
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    sys.modules[name] = module
    try:
        linecache.cache[path] = (len(source), None, source.decode("utf-8").splitlines(True), path)
        with stdout_to_stderr():  # what the suite prints on import must not mix with --json output
            exec(compile(source, path, "exec", dont_inherit=True), module.__dict__)
    except (Exception, SystemExit) as exc:  # sys.exit() in a suite file is an import error, not the end of the run
        sys.modules.pop(name, None)
        line = _error_line(exc, Path(path))
        raise LFError(f"{path}{line}: the LF suite failed to import: {type(exc).__name__}: {exc}") from exc
    _SUITE_SOURCES[name] = (path, source)
    return module


def suite_sources(lfs: Iterable[Any]) -> dict[str, tuple[str, bytes]]:
    """``{module name: (path, source)}`` of the suite files whose code ``lfs`` run (see :func:`exec_suite_module`)."""
    out = {}
    for lf in lfs:
        func = getattr(lf, "func", None)
        func = getattr(func, "_f", func)  # a Snorkel LF's function
        module = getattr(func, "__module__", None)
        if module in _SUITE_SOURCES:
            out[module] = _SUITE_SOURCES[module]
    return out


def suite_file(module: str) -> str | None:
    """The path of the suite file module ``module`` was run from by :func:`exec_suite_module`, ``None`` for any
    other module."""
    found = _SUITE_SOURCES.get(module)
    return found[0] if found is not None else None


def _error_line(exc: BaseException, path: Path) -> str:
    if isinstance(exc, SyntaxError) and exc.lineno:
        return f", line {exc.lineno}"
    tb = exc.__traceback__
    line = None
    while tb is not None:
        if Path(tb.tb_frame.f_code.co_filename) == path:
            line = tb.tb_lineno
        tb = tb.tb_next
    return f", line {line}" if line else ""
