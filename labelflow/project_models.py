"""A project's label models: fitting one on the train rows' votes and saving it with a record of what it was fit
on, the settings it was fit with, and loading a saved one checked against the current LF set and data.

Files are named by :class:`~labelflow.store.ProjectStore` (``store/models/NAME.npz`` and ``NAME.fit.json``).

A function's ``project`` is the :class:`~labelflow.project.Project` whose step it runs (not imported here:
dependencies point down, as in :mod:`labelflow.suggest`).
"""

from __future__ import annotations

from typing import Any

import polars as pl

from labelflow.conventions import ABSTAIN
from labelflow.errors import ProjectError
from labelflow.files import write_json
from labelflow.labelmodels import LabelModel, get_label_model, load_label_model
from labelflow.matrix import LabelMatrix, hash_strings
from labelflow.store import read_record
from labelflow.validation import is_int


def fit_label_model(project, name: str, *, seed: int | None = None, use_dev: bool | None = None,
                    progress: bool = False) -> LabelModel:
    """Fit label model ``name`` on the ``train`` rows' votes of ``project`` and save it with a record of what it
    was fit on.

    With ``use_dev``, the dev rows' votes and gold labels are passed too. ``seed`` and ``use_dev``
    left ``None`` keep the settings the saved model was last fit with (:func:`fit_settings`), so a
    refit after accepting an LF does not silently drop dev gold. Raises :class:`ProjectError` when
    no row is in split ``train``.
    """
    saved = fit_settings(project, name)
    seed = saved["seed"] if seed is None else seed
    use_dev = saved["use_dev"] if use_dev is None else use_dev
    matrix, splits = project.matrix(), project.columns("split")["split"]
    split = splits.to_numpy()
    train = split == "train"
    if not train.any():
        raise ProjectError(f"{project.root}: no rows in split 'train' to fit on")
    lm = get_label_model(name, project.schema.k, seed=seed)
    gold = project.gold()
    dev = (split == "dev") & (gold != ABSTAIN)
    dev_args = {"L_dev": matrix.values[dev], "y_dev": gold[dev]} if use_dev and dev.any() else {}
    lm.fit(matrix.values[train], progress=progress, **dev_args)
    lm.save(project.store.model_file(name), lf_names=matrix.lf_names)
    record = _fit_record(project, matrix, splits)
    record["settings"] = {"seed": seed, "use_dev": bool(use_dev)}
    write_json(project.store.fit_record(name), record)
    return lm


def fit_settings(project, name: str) -> dict[str, Any]:
    """``{"seed": int, "use_dev": bool}`` the saved label model ``name`` of ``project`` was fit with
    (``{"seed": 123, "use_dev": False}`` when it has not been fit, or was fit before settings were recorded)."""
    recorded = project.store.fit_settings(name)
    settings = {"seed": 123, "use_dev": False}
    if is_int(recorded.get("seed")):
        settings["seed"] = recorded["seed"]
    if isinstance(recorded.get("use_dev"), bool):
        settings["use_dev"] = recorded["use_dev"]
    return settings


def checked_label_model(project, name: str, *, matrix: LabelMatrix | None = None) -> LabelModel:
    """``project``'s fitted, saved label model ``name``, checked to be fit on the current LF set and data.

    :func:`fit_label_model` records beside the model (``store/models/NAME.fit.json``) the LF names
    and a fingerprint of the label matrix (row ids in order and every vote) and of the splits it
    was fit on. When the current ones differ (LFs re-applied with other votes, data re-imported,
    splits changed) this raises :class:`ProjectError` asking for ``labelflow fit`` rather than
    predicting with a model of other data. Gold labels (and human annotations) are not part of the
    fingerprint: labeling a row does not invalidate a model. ``matrix``: the current
    :meth:`~labelflow.project.Project.matrix`, if already read.
    """
    store = project.store
    path = store.existing(store.model_file(name), f"label model {name!r} has not been fit in {project.root}; "
                                                  f"run `labelflow fit --model {name}`")
    model = load_label_model(path)
    matrix = project.matrix() if matrix is None else matrix
    current = matrix.lf_names
    if model.lf_names != current:
        added = sorted(set(current) - set(model.lf_names or ()))
        removed = sorted(set(model.lf_names or ()) - set(current))
        raise ProjectError(
            f"label model {name!r} was fit on a different LF set (added since: {added}, removed: {removed}, "
            f"or reordered); run `labelflow fit --model {name}` again"
        )
    record_path = store.fit_record(name)
    record = read_record(record_path)
    if not record:
        raise ProjectError(f"label model {name!r} in {project.root} has no record of the data it was fit on "
                           f"({record_path.name} is missing or unreadable); run `labelflow fit --model {name}` "
                           "again")
    now = _fit_record(project, matrix)
    changed = [what for key, what in (("rows", "the number of rows"), ("matrix", "the label matrix (row ids or votes)"),
                                      ("splits", "the rows' splits")) if record.get(key) != now[key]]
    if changed:
        raise ProjectError(f"label model {name!r} was fit on other data: {', '.join(changed)} changed since "
                           f"(re-imported data or re-applied LFs); run `labelflow fit --model {name}` again")
    return model


def _fit_record(project, matrix: LabelMatrix, splits: pl.Series | None = None) -> dict[str, Any]:
    """What a model of ``project`` is fit on: LF names, rows, and fingerprints of the (aligned) ``[n, m]`` ``matrix``
    and of the rows' ``[n]`` ``splits`` (default: the dataset's)."""
    splits = project.columns("split")["split"] if splits is None else splits
    return {"lf_names": list(matrix.lf_names), "rows": matrix.shape[0], "matrix": matrix.fingerprint(),
            "splits": hash_strings(splits)}
