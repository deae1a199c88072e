"""Setting a project folder up: importing the dataset its config describes into the store (``labelflow init``,
and ``labelflow config`` when a change re-imports it), undoing a failed ``init``, and tying a moved or copied
project's config to the folder it is in now.

The steps of :meth:`Project.init <labelflow.project.Project.init>` and :meth:`Project.open
<labelflow.project.Project.open>`; the files are named by :class:`~labelflow.store.ProjectStore`.

A function's ``project`` is the :class:`~labelflow.project.Project` whose step it runs (not imported here:
dependencies point down, as in :mod:`labelflow.suggest`).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from labelflow.dataset import Dataset, canonical_split, load_dataset
from labelflow.errors import DataError
from labelflow.project_config import CONFIG_FILE, ProjectConfig, relocate_config, write_config
from labelflow.store import ProjectStore
from labelflow.trust import fingerprint, is_trusted


@contextmanager
def removing_what_it_made(root: Path) -> Iterator[None]:
    """Around an ``init`` of the project folder ``root``: when it fails, remove what it created (the folders it
    made, else the store and config it added, its staged dataset) and nothing that was there before."""
    where = Path(os.path.abspath(root))
    made = [p for p in (where, *where.parents) if not os.path.lexists(p)]  # innermost first
    store, config = ProjectStore.of(root), root / CONFIG_FILE
    had_store, had_config = os.path.lexists(store.root), os.path.lexists(config)
    try:
        yield
    except BaseException:
        if made:  # every folder from the outermost one made down is this init's
            shutil.rmtree(made[-1], ignore_errors=True)
        else:
            if not had_store:
                shutil.rmtree(store.root, ignore_errors=True)
            else:
                store.staged_dataset.unlink(missing_ok=True)
            if not had_config:
                config.unlink(missing_ok=True)
        raise


def import_dataset(root: Path, config: ProjectConfig) -> Dataset:
    """The dataset ``config`` describes: its sources (paths relative to the project folder ``root``) loaded, a dev
    sample drawn and labels hidden as it says.

    Raises :class:`DataError` when only some sources name a split, or ``hide_labels`` names a split the dataset
    lacks (and as :func:`~labelflow.dataset.load_dataset`).
    """
    sources: dict[str, list[Path]] = {k: [root / p for p in v] for k, v in config.sources.items()}
    if set(sources) == {""}:
        source: Any = sources[""]
    elif "" in sources:
        raise DataError("give every source a split, or none")
    else:
        source = sources
    dataset = load_dataset(source, classes=config.schema, text=config.text, id=config.id, label=config.label,
                           split=config.split, duplicates=config.duplicates)
    if config.dev_sample:
        dataset = dataset.with_dev_sample(config.dev_sample, seed=config.seed)
    hidden = sorted({canonical_split(s) for s in config.hide_labels} - set(dataset.splits()))
    if hidden:
        raise DataError(f"hide_labels names split(s) {hidden} the dataset lacks; its splits are {dataset.splits()}")
    return dataset.hide_labels(config.hide_labels) if config.hide_labels else dataset


def import_into(project) -> None:
    """Import the dataset of ``project``'s config into its store and write the config (the steps of ``init``).

    What was computed from a previous dataset goes: the label matrix, the stale marks, and the FM
    outputs unless the rows are the same (said in ``project.notes``). The content-addressed caches
    (votes, FM outputs) stay valid.
    """
    dataset = import_dataset(project.root, project.config)
    store = project.store
    store.stage_dataset(dataset.frame)
    same_rows = store.holds_rows(dataset.frame)  # FM outputs of the same rows stay valid
    write_config(project.root, project.config)
    store.commit_dataset()
    store.matrix.unlink(missing_ok=True)
    store.write_stale({})
    removed = [] if same_rows else store.fm_outputs()
    for output in removed:
        output.unlink()
    if removed:
        project.notes.append(f"removed FM output(s) {[p.stem for p in removed]}: they were computed for the "
                             "previous rows (the FM cache keeps their values: `labelflow fm ...` again recomputes "
                             "only new texts)")


def relocate(project) -> None:
    """Tie ``project``'s config paths to the folder that holds ``labelflow.json`` now, once after a move or copy.

    See :func:`~labelflow.project_config.relocate_config`. The config is rewritten (atomically) so the
    next open has nothing to say; ``project.notes`` says what was done. A suite the project was trusted
    with where it was stays trusted.
    """
    here = project.root.resolve()
    before = project.config
    if before.root is not None and Path(before.root) == here:
        return
    old = None if before.root is None else Path(before.root)
    config, notes = relocate_config(before, here)
    trusted = config.lfs != before.lfs and is_trusted(fingerprint(old, lfs=before.lfs,
                                                                  ray_address=before.ray_address))
    project.config = config
    try:
        write_config(project.root, config)
    except OSError as exc:
        notes.append(f"{project.root / CONFIG_FILE} could not be updated ({exc.strerror or exc}): this is worked "
                     "out again each time the project opens")
    if trusted and not project.trusted:  # the same suite file, named from the new folder
        project.trust()
    project.notes.extend(notes)
