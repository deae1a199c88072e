"""What a project runs, and where: its LF suite (set in the config, loaded only when the project is trusted, the
label matrix's columns it no longer defines) and the Ray cluster its config names.

Trust itself (fingerprints, the user's trust file) is :mod:`labelflow.trust`'s; these are the steps of
:class:`~labelflow.project.Project` that ask it.

A function's ``project`` is the :class:`~labelflow.project.Project` whose step it runs (not imported here:
dependencies point down, as in :mod:`labelflow.suggest`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from labelflow.apply import Engine
from labelflow.distributed import RayEngine
from labelflow.lf import LabelingFunction, load_lf_suite
from labelflow.project_config import relative_path


def set_suite(project, path: str | Path) -> bool:
    """Make ``path`` (relative to the working directory) ``project``'s LF suite in ``labelflow.json``; returns
    whether the suite changed.

    The caller named the file, so it is trusted as it is now (as ``init --lfs`` does), unless the
    config names a Ray cluster the project was not trusted with.
    """
    rel = relative_path(Path(path), project.root)
    if project.config.lfs is not None and project.suite_path.resolve() == (project.root / rel).resolve():
        return False
    trusted = project.trusted
    project.update_config(lfs=rel)
    if not trusted and project.config.ray_address is None:
        project.trust()
    return True


def load_suite(project, path: str | Path | None = None, *,
               include_disabled: bool = False) -> list[LabelingFunction]:
    """The LFs of the suite file ``path`` (relative to the working directory; the caller's choice, run as it is),
    else of ``project``'s configured suite, which runs only when the project is trusted (else
    :class:`~labelflow.errors.UntrustedProjectError`). LFs the config's ``disabled_lfs`` names are left out
    unless ``include_disabled``."""
    if path is not None:
        suite = load_lf_suite(path)
    else:
        configured = project.suite_path  # a ProjectError first when no suite is configured at all
        project.require_trusted()
        suite = load_lf_suite(configured)
    off = set(project.config.disabled_lfs)
    return suite if include_disabled else [lf for lf in suite if lf.name not in off]


def stray_lfs(project, suite: Sequence[str] | None = None) -> list[str]:
    """LF columns of ``project``'s label matrix that its suite does not define, in matrix order (``[]`` without a
    matrix); embedding-extended columns (``NAME~ext``) count as their LF.

    ``suite``: the suite's LF names, if already loaded (else it is loaded: the project must be trusted).
    """
    if not project.store.matrix.is_file():
        return []
    names = set(suite if suite is not None else (lf.name for lf in load_suite(project)))
    return [name for name in project.matrix().lf_names if name.split("~", 1)[0] not in names]


def ray_engine(project, engine: Engine | RayEngine = "local", address: str | None = None) -> RayEngine | None:
    """``None`` for the local engine; for Ray, the settings with ``project``'s defaults: the address ``address``,
    else the config's ``ray_address`` (only for a trusted project); shards staged in the store."""
    engine = RayEngine.of(engine, address=address or project.config.ray_address)
    if engine is None:
        return None
    if address is None and project.config.ray_address and engine.address == project.config.ray_address:
        project.require_trusted(what=f"code on the Ray cluster its config names ({project.config.ray_address})")
    return engine if engine.staging is not None else replace(engine, staging=str(project.store.ray))
