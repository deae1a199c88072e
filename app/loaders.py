"""What the app's pages read, loaded once per state of the project's files.

The project folder comes from the ``LABELFLOW_PROJECT`` environment variable
(``labelflow ui`` sets it; default: the working directory). Every loader takes
the folder and a *stamp*: the modification times and sizes of the files its
result depends on (config, dataset, FM outputs, label matrix, fitted models,
human annotations, LF suite). A change made anywhere — a saved LF, a label
given in another browser session, a ``labelflow fit`` in a terminal — changes
the stamp, so the next rerun shows it; while the files stay the same nothing is
read or computed twice.
"""

from __future__ import annotations

import html
import os
import re
from pathlib import Path

import numpy as np
import polars as pl
import streamlit as st

from labelflow.conventions import ABSTAIN
from labelflow.error_analysis import Analysis, analyze
from labelflow.errors import LabelflowError, ProjectError
from labelflow.finetune.run_folder import METRICS_FILE
from labelflow.finetune.runs import RunInfo, split_predictions
from labelflow.labelmodels import AutoLabelModel, label_model_names
from labelflow.project import Project
from labelflow.project_config import CONFIG_FILE
from labelflow.suggest import Suggestion, suggest_lfs
from labelflow.suite_edit import LFTrial, try_lf

ENV = "LABELFLOW_PROJECT"
NOTES = "project_notes"
"""Session key of what opening the project changed on its own (:attr:`Project.notes`), shown in the sidebar."""
UNKNOWN = "unknown"
"""What every page shows where a row has no gold label (none in the data, or its split's labels hidden)."""
TAG = re.compile(r"<[^>]{1,200}>")
PREDICTIONS_OF = "predictions_of"
"""Session key of the Error analysis page's choice: ``LABEL_MODEL`` or a complete run's name."""
LABEL_MODEL = ""
Stamp = tuple[tuple[str, int, int], ...]
Student = tuple[str, int]
"""A finished run to analyse: its folder and the ``mtime_ns`` of its ``metrics.json`` (a rewritten run is new)."""


def project() -> Project:
    """The project in ``$LABELFLOW_PROJECT``; stops the page with the reason when it does not open."""
    root = Path(os.environ.get(ENV, ".")).resolve()
    try:
        opened = Project.open(root)
    except ProjectError as exc:
        st.error(f"Cannot open the labelflow project: {exc}")
        st.stop()
    if opened.notes:  # what opening it changed on its own (a moved project's paths): said once, kept for the session
        st.session_state.setdefault(NOTES, []).extend(opened.notes)
    return opened


def stamp(project: Project) -> Stamp:
    """``(path, mtime_ns, size)`` of every file a loader's result depends on.

    The annotations file is in WAL mode: a label lands in ``annotations.sqlite-wal``
    first, so that file counts too.
    """
    files = [project.root / CONFIG_FILE, *project.store.inputs()]
    if project.config.lfs is not None:
        files.append(project.suite_path)
    out = []
    for path in files:
        try:
            info = path.stat()
        except FileNotFoundError:
            continue
        out.append((str(path), info.st_mtime_ns, info.st_size))
    return tuple(out)


def class_name(column: str, names: list[str]) -> pl.Expr:
    """Class indices in ``column`` as names (``ABSTAIN`` → ``"abstain"``, null stays null)."""
    mapping = {i: n for i, n in enumerate(names)} | {ABSTAIN: "abstain"}
    return pl.col(column).replace_strict(mapping, return_dtype=pl.String, default=None)


# --- loaders (each keyed by the project folder and its stamp) ----------------------------------------


@st.cache_data(max_entries=8)
def splits(root: str, stamp: Stamp) -> list[str]:
    """The dataset's split names, in order of first appearance."""
    return Project.open(root).dataset().splits()


@st.cache_data(show_spinner="Loading rows…", max_entries=8)
def rows(root: str, stamp: Stamp, model: str) -> pl.DataFrame:
    """One row per data row for browsing.

    Columns: ``id``, ``split``, ``label`` (gold with human annotations, class name, ``"unknown"``
    where there is none or the split's labels are hidden), ``pred`` (the label model's class name from
    :meth:`Project.predictions`, the policy ``fit`` and ``export`` use; all null when ``model`` is not fit
    on the current LFs), ``tied`` (``pred`` came from a tie-break), text field(s) as a reader sees them
    (:func:`display_text`), ``votes`` (``"lf: CLASS"`` for each LF voting), ``annotations``
    (``"annotator: CLASS"``), ``voters`` (the LFs voting), ``covered`` (some LF votes), ``conflict``
    (LFs vote different classes) and ``wrong`` (``pred`` differs from a known ``label``).
    """
    project = Project.open(root)
    names = list(project.schema.names)
    gold = pl.Series(project.gold())
    frame = project.dataset().frame.select(
        "id", "split", pl.when(gold != ABSTAIN).then(gold).alias("label"), pl.lit(None, pl.Int64).alias("pred"),
        pl.lit(None, pl.Boolean).alias("tied"), *project.config.text)
    votes = pl.DataFrame(schema={"id": pl.String, "lf": pl.String, "vote": pl.Int8})
    if project.store.matrix.is_file():
        matrix = project.matrix()
        wide = pl.DataFrame({"id": matrix.ids} | {lf: matrix.values[:, j] for j, lf in enumerate(matrix.lf_names)})
        votes = wide.unpivot(index="id", variable_name="lf", value_name="vote").filter(pl.col("vote") != ABSTAIN)
        try:
            predictions = project.predictions(model)
        except ProjectError:
            pass  # not fit on the current LFs: no predictions
        else:
            frame = frame.with_columns(pl.Series("pred", predictions.pred, dtype=pl.Int64),
                                       pl.Series("tied", predictions.tied))
    per_row = votes.group_by("id").agg(pl.format("{}: {}", "lf", class_name("vote", names)).alias("votes"),
                                       pl.col("lf").alias("voters"), (pl.col("vote").n_unique() > 1).alias("conflict"))
    annotations = project.annotations.frame().group_by("id").agg(
        pl.format("{}: {}", "annotator", class_name("label", names)).sort().alias("annotations"))
    return frame.join(per_row, on="id", how="left", maintain_order="left").join(
        annotations, on="id", how="left", maintain_order="left").with_columns(
        (pl.col("label").is_not_null() & pl.col("pred").is_not_null() & (pl.col("label") != pl.col("pred")))
        .alias("wrong"),
        class_name("label", names).fill_null(UNKNOWN), class_name("pred", names),
        pl.col("votes", "voters", "annotations").fill_null(pl.lit([], pl.List(pl.String))),
        pl.col("conflict").fill_null(False), pl.col("id").is_in(votes["id"].unique().implode()).alias("covered"),
        *(pl.col(c).map_elements(display_text, return_dtype=pl.String) for c in project.config.text))


def display_text(text: str | None) -> str | None:
    """``text`` as a reader sees it: HTML entities decoded (``I&#39;ve`` → ``I've``), tags such as ``<br />`` and
    line breaks as spaces, a byte-order mark dropped. For showing only; the data keeps the raw text.

    Examples
    --------
    >>> display_text("I&#39;ve seen it<br />twice\ufeff")
    "I've seen it twice"
    """
    if text is None:
        return None
    return " ".join(TAG.sub(" ", html.unescape(text)).replace("\ufeff", "").split())


@st.cache_data(show_spinner="Loading the LF suite…", max_entries=8)
def suite(root: str, stamp: Stamp, split: str) -> tuple[str, pl.DataFrame, bool]:
    """The suite file's source and one row per LF in suite order, disabled ones included (``enabled``), with its
    statistics on ``split`` (null for LFs not in the label matrix), ``errors`` (rows it raised on and abstained
    in the last apply, at most :data:`~labelflow.apply.MAX_FAILURES_KEPT`; only when some did), and whether
    there is a label matrix at all.

    Raises :class:`~labelflow.errors.LabelflowError` when the suite does not load.
    """
    project = Project.open(root)
    names = [lf.name for lf in project.lfs(include_disabled=True)]
    frame = pl.DataFrame({"lf": names, "enabled": [n not in project.config.disabled_lfs for n in names]})
    try:
        stats = project.summary(split)
    except ProjectError:
        return project.suite_path.read_text(encoding="utf-8"), frame, False
    failures = pl.Series("lf", [f.lf for f in project.matrix().failures], dtype=pl.String).value_counts(name="errors")
    classes = list(project.schema.names)
    stats = stats.with_columns(pl.col("polarity").list.eval(
        pl.element().replace_strict(dict(enumerate(classes)), return_dtype=pl.String)))
    if failures.height:
        frame = frame.join(failures, on="lf", how="left", maintain_order="left").with_columns(
            pl.col("errors").fill_null(0).cast(pl.Int64))
    return project.suite_path.read_text(encoding="utf-8"), frame.join(stats, on="lf", how="left",
                                                                      maintain_order="left"), True


@st.cache_data(max_entries=8)
def stray_lfs(root: str, stamp: Stamp) -> list[str]:
    """:meth:`Project.stray_lfs`: LFs of the label matrix that the project's suite does not define (the matrix was
    applied from another LF list); ``[]`` for an untrusted project or a suite that does not load (the pages say so)."""
    project = Project.open(root)
    if project.config.lfs is None or not project.trusted:
        return []
    try:
        return project.stray_lfs()
    except LabelflowError:
        return []


@st.cache_data(show_spinner="Trying the LF on every row…", max_entries=8)
def trial(root: str, stamp: Stamp, code: str) -> LFTrial:
    """:func:`labelflow.suite_edit.try_lf` on ``code``."""
    return try_lf(Project.open(root), code)


@st.cache_data(show_spinner="Scoring the label model…", max_entries=16)
def metrics(root: str, stamp: Stamp, model: str) -> dict[str, dict]:
    """``{split: metrics}`` of the fitted ``model``; raises ProjectError when it is not fit on the current LFs."""
    project = Project.open(root)
    return project.evaluate(project.label_model(model))


@st.cache_data(max_entries=16)
def choice(root: str, stamp: Stamp, model: str) -> dict | None:
    """What the fitted ``auto`` model chose and why (:meth:`AutoLabelModel.choice`); ``None`` for another model
    or one not fit on the current LFs."""
    try:
        fitted = Project.open(root).label_model(model)
    except ProjectError:
        return None
    return fitted.choice() if isinstance(fitted, AutoLabelModel) else None


@st.cache_data(max_entries=8)
def comparison(root: str, stamp: Stamp) -> pl.DataFrame:
    """One row per registered label model: whether it is fit on the current LFs, with dev gold or not (and
    its seed), and its accuracy, accuracy on covered rows, coverage and macro-F1 on dev and test."""
    project = Project.open(root)
    rows = []
    for name in label_model_names():
        found = metrics_or_none(root, stamp, name)
        settings = project.fit_settings(name) if found is not None else {"use_dev": None, "seed": None}
        row = {"model": name, "fit": found is not None, "dev gold": settings["use_dev"], "seed": settings["seed"]}
        for split in ("dev", "test"):
            m = (found or {}).get(split) or {}
            row |= {f"{split} accuracy": m.get("accuracy"), f"{split} accuracy (covered)": m.get("accuracy_covered"),
                    f"{split} coverage": m.get("coverage"), f"{split} macro-F1": m.get("macro_f1")}
        rows.append(row)
    return pl.DataFrame(rows, schema={"model": pl.String, "fit": pl.Boolean, "dev gold": pl.Boolean, "seed": pl.Int64,
                                      **{f"{split} {what}": pl.Float64 for split in ("dev", "test")
                                         for what in ("accuracy", "accuracy (covered)", "coverage", "macro-F1")}})


@st.cache_data(show_spinner="Writing the labels…", max_entries=4)
def export_bytes(root: str, stamp: Stamp, model: str, fmt: str) -> bytes:
    """The file :meth:`Project.export` writes for ``model`` in format ``fmt``, as bytes (a download)."""
    import tempfile

    project = Project.open(root)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"labels.{fmt}"
        project.export(path, model=model)
        return path.read_bytes()


@st.cache_data(max_entries=8)
def lf_agreement(root: str, stamp: Stamp, split: str) -> pl.DataFrame:
    """For every ordered pair of LFs of the label matrix, on the rows of ``split``: ``overlap`` (share of rows
    both vote on) and ``conflict`` (share of rows they vote different classes on)."""
    project = Project.open(root)
    matrix = project.matrix()
    rows = project.columns("split")["split"].to_numpy() == split
    L = matrix.values[rows].astype(np.int64)
    voted = (L != ABSTAIN).astype(np.float64)
    both = voted.T @ voted
    agree = sum(((L == c).astype(np.float64).T @ (L == c).astype(np.float64)) for c in range(project.schema.k))
    n = max(int(rows.sum()), 1)
    names = list(matrix.lf_names)
    return pl.DataFrame({"lf": np.repeat(names, len(names)), "other": np.tile(names, len(names)),
                         "overlap": (both / n).ravel(), "conflict": ((both - agree) / n).ravel()})


def metrics_or_none(root: str, stamp: Stamp, model: str) -> dict[str, dict] | None:
    """:func:`metrics`, or ``None`` when ``model`` is not fit on the current LFs."""
    try:
        return metrics(root, stamp, model)
    except ProjectError:
        return None


def student(run: RunInfo) -> Student:
    """The :data:`Student` key of a complete run."""
    return str(run.path), (run.path / METRICS_FILE).stat().st_mtime_ns


@st.cache_data(show_spinner="Predicting with the student…", max_entries=8)
def student_predictions(root: str, stamp: Stamp, student: Student, split: str) -> pl.DataFrame:
    """:func:`labelflow.finetune.runs.split_predictions` of the student on ``split``'s gold rows."""
    return split_predictions(Project.open(root), student[0], split)


@st.cache_data(show_spinner="Analysing errors…", max_entries=16)
def analysis(root: str, stamp: Stamp, model: str, split: str, student: Student | None = None) -> Analysis:
    """:func:`labelflow.error_analysis.analyze` of ``model`` on ``split``, or of a student's predictions there."""
    predictions = None if student is None else student_predictions(root, stamp, student, split)
    return analyze(Project.open(root), model=model, split=split, predictions=predictions)


@st.cache_data(show_spinner="Proposing LFs and refitting the label model with each…", max_entries=16)
def suggestions(root: str, stamp: Stamp, model: str, split: str, slice_name: str,
                kinds: tuple[str, ...] = ("keyword", "regex"), student: Student | None = None) -> list[Suggestion]:
    """:func:`labelflow.suggest.suggest_lfs` of ``kinds`` for the slice named ``slice_name`` of :func:`analysis`
    (of the label model, or of ``student``)."""
    found = analysis(root, stamp, model, split, student)
    chosen = next(s for s in found.slices if s.name == slice_name)
    return suggest_lfs(Project.open(root), found, chosen, kinds=kinds)


def without_annotations(stamp: Stamp) -> Stamp:
    """``stamp`` less the human annotations' files: the key of what the Annotate page shows beside a row (data
    labels, votes, predictions, slices), so that giving a label recomputes none of it."""
    return tuple(s for s in stamp if not Path(s[0]).name.startswith("annotations.sqlite"))


@st.cache_data(show_spinner="Loading the rows to annotate…", max_entries=8)
def annotation_rows(root: str, stamp: Stamp, model: str) -> tuple[pl.DataFrame, str | None]:
    """Every row with what the Annotate page shows beside it, none of it from human labels (key it by
    :func:`without_annotations`), and why there are no predictions (``None`` when there are).

    Columns: ``id``, ``split``, text field(s), ``data_label`` (the data file's gold label, class index, null
    where there is none or the split's labels are hidden), ``votes`` (``"lf: CLASS"`` per LF voting),
    ``pred`` (``model``'s class, :meth:`Project.predictions`), ``confidence`` (its probability) and
    ``margin`` (the two most likely classes' probabilities apart; small = uncertain); the last three
    null where ``model`` is not fit on the current LFs.
    """
    project = Project.open(root)
    names = list(project.schema.names)
    frame = project.dataset().frame.select("id", "split", *project.config.text,
                                           pl.col("label").cast(pl.Int16).alias("data_label"))
    n, why = frame.height, None
    pred, confidence, margin = [None] * n, [None] * n, [None] * n
    votes = pl.DataFrame(schema={"id": pl.String, "votes": pl.List(pl.String)})
    try:
        matrix = project.matrix()
        wide = pl.DataFrame({"id": matrix.ids} | {lf: matrix.values[:, j] for j, lf in enumerate(matrix.lf_names)})
        votes = wide.unpivot(index="id", variable_name="lf", value_name="vote").filter(
            pl.col("vote") != ABSTAIN).group_by("id").agg(pl.format("{}: {}", "lf", class_name("vote", names))
                                                          .alias("votes"))
        predictions = project.predictions(model)
    except ProjectError as exc:
        why = str(exc)
    else:
        top = np.sort(predictions.probs, axis=1)
        pred, confidence = predictions.pred, top[:, -1]
        margin = top[:, -1] - top[:, -2] if top.shape[1] > 1 else np.ones(n)
    return frame.with_columns(pl.Series("pred", pred, dtype=pl.Int16), pl.Series("confidence", confidence, pl.Float64),
                              pl.Series("margin", margin, pl.Float64)).join(
        votes, on="id", how="left", maintain_order="left").with_columns(
        pl.col("votes").fill_null(pl.lit([], pl.List(pl.String)))), why
