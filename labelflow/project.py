"""A labelflow project on disk: a config file (:mod:`labelflow.project_config`) and the store beside it
(:mod:`labelflow.store`, which names every file in it).

:class:`Project` coordinates the pipeline's steps over them; each step is a module of its own:
setting the folder up (:mod:`labelflow.project_setup`), the LF suite it runs and where
(:mod:`labelflow.project_suite`), the label matrix (:mod:`labelflow.project_matrix`), its
embedding-extended LFs (:mod:`labelflow.project_extension`), human gold labels
(:mod:`labelflow.project_annotations`), label models (:mod:`labelflow.project_models`), and their
predictions, metrics and export (:mod:`labelflow.project_predictions`). The CLI and the app open
the same folder.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from labelflow import (project_annotations, project_extension, project_matrix, project_models, project_predictions,
                       project_setup, project_suite)
from labelflow.annotations import ANY, AnnotationStore
from labelflow.apply import Engine
from labelflow.chunk_applier import OnError
from labelflow.dataset import Dataset, Duplicates
from labelflow.distributed import RayEngine
from labelflow.errors import ProjectError, UntrustedProjectError
from labelflow.export import Predictions
from labelflow.extend import ExtendConfig, ExtensionCandidate
from labelflow.fm.cache import FMCache
from labelflow.labelmodels import LabelModel
from labelflow.lf import LabelingFunction
from labelflow.matrix import LabelMatrix
from labelflow.project_config import ProjectConfig, read_config, relative_path, write_config
from labelflow.schema import ClassSchema
from labelflow.store import ProjectStore
from labelflow.trust import Fingerprint, fingerprint, is_trusted, record_trust, untrusted_message
from labelflow.vote_cache import VoteCache

if TYPE_CHECKING:
    from labelflow.suggest import Suggestion


@dataclass(frozen=True)
class Refit:
    """What :meth:`Project.refit` did: the label matrix applied, its vote cache (hits and misses), the label model
    fit and its metrics (``{split: metrics}``, as :meth:`Project.evaluate`)."""

    matrix: LabelMatrix
    cache: VoteCache
    model: LabelModel
    metrics: dict[str, dict[str, Any]]


@dataclass(frozen=True)
class Accepted:
    """What :meth:`Project.accept` did: the file it wrote and the refit that followed."""

    path: Path
    """The suite file (or ``labelflow.json`` for an ``"extend"`` suggestion)."""
    refit: Refit


class Project:
    """An opened project folder; every method is one pipeline step over its store."""

    def __init__(self, root: str | Path, config: ProjectConfig) -> None:
        self.root = Path(root)
        self.config = config
        self.notes: list[str] = []
        """What opening or creating the project changed on its own (a moved project's paths, FM outputs a
        re-init removed), for the CLI and the app to say once."""

    # --- create and open ----------------------------------------------------------------------------

    @classmethod
    def init(cls, root: str | Path, *, sources: Mapping[str, Sequence[str | Path]],
             classes: Sequence[str] | Mapping[str, str], text: str | Mapping[str, str] = "text", id: str | None = None,
             label: str | None = None, split: str | None = None, dev_sample: int = 0, seed: int = 0,
             hide_labels: Sequence[str] = (), duplicates: Duplicates = "error", lfs: str | Path | None = None,
             label_model: str = "labelflow", name: str | None = None) -> "Project":
        """Create (or re-create) a project: write its config and import its dataset.

        Parameters
        ----------
        sources
            ``{split: [paths]}``; the key ``""`` means "split from the ``split``
            column, or ``train``".
        dev_sample
            Move this many seeded-random ``train`` rows to split ``dev``.
        hide_labels
            Splits whose gold labels are dropped (for example ``["train"]``).
        Other parameters are as in :func:`labelflow.load_dataset` and :class:`ProjectConfig`. A failed init
        removes what it created (:func:`~labelflow.project_setup.removing_what_it_made`).
        """
        root = Path(root)
        with project_setup.removing_what_it_made(root):
            root.mkdir(parents=True, exist_ok=True)
            rel = lambda p: relative_path(Path(p), root)  # noqa: E731
            config = ProjectConfig(
                name=name or root.resolve().name,
                classes=ClassSchema.from_spec(classes).to_dict(),
                text={"text": text} if isinstance(text, str) else dict(text),
                sources={k: [rel(p) for p in v] for k, v in sources.items()},
                id=id, label=label, split=split, dev_sample=dev_sample, seed=seed,
                hide_labels=list(hide_labels), duplicates=duplicates,
                lfs=None if lfs is None else rel(lfs), label_model=label_model, root=str(root.resolve()),
            )
            project = cls(root, config)
            project_setup.import_into(project)
            if lfs is not None:  # the caller named the suite file: trust what it holds now (see labelflow.trust)
                project.trust()
        return project

    @classmethod
    def open(cls, root: str | Path) -> "Project":
        """Open an existing project folder, its paths tied to the folder it is in now
        (:func:`~labelflow.project_setup.relocate`)."""
        root = Path(root)
        project = cls(root, read_config(root))
        project_setup.relocate(project)
        return project

    # --- outputs a settings change left stale (labelflow config) ------------------------------------

    def stale(self) -> dict[str, str]:
        """What a settings change (``labelflow config``) left stale and why: ``{"apply": why}`` for the label matrix,
        ``{"fm NAME": why}`` for a stored FM output; each goes when recomputed (:meth:`apply`, ``labelflow fm``)."""
        return self.store.stale()

    def mark_stale(self, marks: Mapping[str, str]) -> None:
        """Record outputs to recompute (see :meth:`stale`); written atomically."""
        if marks:
            self.store.write_stale({**self.stale(), **marks})

    def _clear_stale(self, key: str) -> None:
        marks = self.stale()
        if key in marks:
            del marks[key]
            self.store.write_stale(marks)

    def update_config(self, **changes: Any) -> Path:
        """Change config fields (validated as a whole) and rewrite ``labelflow.json`` atomically; returns its path."""
        unknown = sorted(set(changes) - set(ProjectConfig.__dataclass_fields__))
        if unknown:
            raise ProjectError(f"unknown config keys {unknown}")
        trusted = self.trusted
        self.config = replace(self.config, **changes)
        path = write_config(self.root, self.config)
        if trusted and not self.trusted:  # a change made through labelflow (ray_address, lfs) keeps the trust
            self.trust()
        return path

    # --- pipeline steps -----------------------------------------------------------------------------

    @property
    def store(self) -> ProjectStore:
        """The project's store folder, whose files :class:`~labelflow.store.ProjectStore` names."""
        return ProjectStore.of(self.root)

    @property
    def schema(self) -> ClassSchema:
        return self.config.schema

    def dataset(self) -> Dataset:
        """The imported dataset, with its FM output columns."""
        return Dataset(self.store.read_dataset(), self.schema, tuple(self.config.text))

    def rows(self) -> pl.LazyFrame:
        """The dataset with its FM output columns, as a lazy frame read a chunk at a time (what ``apply`` streams).

        Raises :class:`ProjectError` naming an FM output whose rows do not line up with the dataset's.
        """
        return self.store.scan_dataset()

    @property
    def fm_cache(self) -> FMCache:
        """The project's FM output cache."""
        return self.store.fm_cache()

    def save_fm_output(self, name: str, ids: pl.Series, values: np.ndarray) -> Path:
        """Store ``[n, d]`` FM outputs as column ``name`` (rows not computed: NaN → null)."""
        return self.save_fm_output_chunks(name, [(ids, values)])

    def save_fm_output_chunks(self, name: str, chunks: Iterable[tuple[pl.Series, np.ndarray]]) -> Path:
        """Store FM outputs given as consecutive ``(ids, [rows, d] values)`` chunks of the dataset's rows,
        one chunk in memory at a time; as :meth:`save_fm_output`. Nothing is stored if ``chunks`` raises."""
        if not name.isidentifier() or name in pl.read_parquet_schema(self.store.dataset):
            raise ProjectError(f"FM output name must be a Python identifier that is not a data column; got {name!r}")
        path = self.store.write_fm_output(name, chunks)
        self._clear_stale(f"fm {name}")
        return path

    def ray_engine(self, engine: Engine | RayEngine = "local", address: str | None = None) -> RayEngine | None:
        """``None`` for the local engine; for Ray, the settings with this project's defaults
        (:func:`~labelflow.project_suite.ray_engine`; the config's address only when :meth:`trusted`)."""
        return project_suite.ray_engine(self, engine, address)

    @property
    def suite_path(self) -> Path:
        """The configured LF suite file."""
        if self.config.lfs is None:
            raise ProjectError(f"{self.root}: the project has no LF suite configured; pass --lfs PATH")
        return self._resolve(self.config.lfs)

    def set_suite(self, path: str | Path) -> bool:
        """Make ``path`` (relative to the working directory) the project's LF suite, trusted as it is now; returns
        whether the suite changed (:func:`~labelflow.project_suite.set_suite`). The label matrix keeps its
        columns until the next :meth:`apply` (:meth:`stray_lfs` names those the new suite lacks)."""
        return project_suite.set_suite(self, path)

    def stray_lfs(self, suite: Sequence[str] | None = None) -> list[str]:
        """LF columns of the label matrix the suite does not define (:func:`~labelflow.project_suite.stray_lfs`)."""
        return project_suite.stray_lfs(self, suite)

    def lfs(self, path: str | Path | None = None, *, include_disabled: bool = False) -> list[LabelingFunction]:
        """The LF suite: the file ``path``, or the configured one when the project is trusted (else
        :class:`UntrustedProjectError`), less its disabled LFs (:func:`~labelflow.project_suite.load_suite`)."""
        return project_suite.load_suite(self, path, include_disabled=include_disabled)

    # --- trust (see labelflow.trust) ------------------------------------------------------------------

    def fingerprint(self) -> Fingerprint:
        """What the project would run: its suite file (and the Python files beside it) and config, hashed."""
        return fingerprint(self.root, lfs=self.config.lfs, ray_address=self.config.ray_address)

    @property
    def trusted(self) -> bool:
        """Whether this user trusts the project's suite and config as they are now."""
        return is_trusted(self.fingerprint())

    def require_trusted(self, *, what: str = "its LF suite") -> None:
        """Raise :class:`UntrustedProjectError` (saying how to trust it) unless the project is trusted."""
        fp = self.fingerprint()
        if not is_trusted(fp):
            raise UntrustedProjectError(untrusted_message(fp, self.root, what=what))

    def trust(self) -> Fingerprint:
        """Trust the project's suite and config as they are now (recorded outside the project)."""
        fp = self.fingerprint()
        record_trust(fp, self.root)
        return fp

    # --- human gold labels ----------------------------------------------------------------------------

    @property
    def annotations(self) -> AnnotationStore:
        """Human gold labels (``store/annotations.sqlite``), stored by class name, read as indices of this schema."""
        return AnnotationStore(self.store.annotations, self.schema)

    def annotate(self, row_id: str, label: int | str | None, *, annotator: str, source: str = "app",
                 expect: object = ANY) -> None:
        """Store ``annotator``'s gold label for one row at once (``None`` removes it); a row of any split may be
        labelled (see :meth:`gold`). ``expect``: the label the caller last saw (see
        :func:`~labelflow.project_annotations.annotate`)."""
        project_annotations.annotate(self, row_id, label, annotator=annotator, source=source, expect=expect)

    def settle(self, row_id: str, label: int | str | None, *, resolver: str) -> None:
        """Settle one row's gold label (``None`` withdraws the settlement): while it stands it is the row's gold,
        whatever its annotators and the data say (see :func:`~labelflow.project_annotations.settle`)."""
        project_annotations.settle(self, row_id, label, resolver=resolver)

    def gold(self) -> np.ndarray:
        """``[n]`` gold class per row (``-1`` unknown), by the gold policy (:mod:`labelflow.gold`): the data's labels,
        overridden by human annotations where the annotators agree or a person settled the row; never trained on
        (:meth:`fit` uses the train rows' votes, ``use_dev`` adds dev gold only)."""
        return project_annotations.gold(self)

    # --- the label matrix and label models --------------------------------------------------------------

    def apply(self, *, lfs: str | Path | Sequence[LabelingFunction] | None = None, on_error: OnError | None = None,
              n_jobs: int | None = None, progress: bool = False, engine: Engine | RayEngine = "local",
              address: str | None = None, timeout_s: float | None = None) -> tuple[LabelMatrix, VoteCache]:
        """Apply the LF suite to every row, reusing cached votes; saves ``store/matrix.parquet``
        (:func:`~labelflow.project_matrix.apply_suite`: ``lfs``, a suite file, becomes the project's suite;
        LF objects are applied as given). Returns the matrix, with its extended columns, and the vote cache."""
        matrix, cache = project_matrix.apply_suite(self, lfs=lfs, on_error=on_error, n_jobs=n_jobs, progress=progress,
                                                   engine=engine, address=address, timeout_s=timeout_s)
        self._clear_stale("apply")
        return project_extension.extended(self, matrix), cache

    def matrix(self) -> LabelMatrix:
        """The label matrix of the last :meth:`apply`, its rows in the dataset's order, checked against the dataset
        and with its extended columns (:func:`~labelflow.project_matrix.read_matrix`)."""
        return project_matrix.read_matrix(self)

    def fit(self, model: str | None = None, *, seed: int | None = None, use_dev: bool | None = None,
            progress: bool = False) -> LabelModel:
        """Fit a label model (default: the config's) on the ``train`` rows' votes and save it to ``store/models``;
        ``seed`` and ``use_dev`` left ``None`` keep the saved model's settings
        (:func:`~labelflow.project_models.fit_label_model`)."""
        return project_models.fit_label_model(self, model or self.config.label_model, seed=seed, use_dev=use_dev,
                                              progress=progress)

    def refit(self, model: str | None = None, *, use_dev: bool | None = None, progress: bool = False,
              on_applied: Callable[[LabelMatrix, VoteCache], None] | None = None) -> Refit:
        """Apply the LF suite (cached votes: only new or edited LFs run) and fit ``model`` again, as any change to
        the suite asks (an LF written, accepted or deleted); returns what was applied, fit and measured.

        ``use_dev`` (and the seed) left ``None`` keep the saved model's settings (:meth:`fit`);
        ``progress`` shows the apply's progress; ``on_applied(matrix, cache)`` is called between
        the two steps (the app's status line).
        """
        matrix, cache = self.apply(progress=progress)
        if on_applied is not None:
            on_applied(matrix, cache)
        lm = self.fit(model, use_dev=use_dev)
        return Refit(matrix, cache, lm, self.evaluate(lm))

    def accept(self, suggestion: Suggestion, *, model: str | None = None, progress: bool = False,
               on_applied: Callable[[LabelMatrix, VoteCache], None] | None = None) -> Accepted:
        """Accept a suggested LF (:func:`~labelflow.suggest.accept_suggestion`), then apply the suite and refit
        ``model`` with the saved model's settings (:meth:`refit`, ``progress`` and ``on_applied`` as there): one
        step of the guided loop, as the CLI (``analyze --accept``), the app and ``bench/guided_loop.py`` take it."""
        from labelflow.suggest import accept_suggestion

        path = accept_suggestion(self, suggestion)
        return Accepted(path, self.refit(model, progress=progress, on_applied=on_applied))

    def fit_settings(self, name: str | None = None) -> dict[str, Any]:
        """``{"seed": int, "use_dev": bool}`` the saved label model ``name`` was fit with
        (:func:`~labelflow.project_models.fit_settings`)."""
        return project_models.fit_settings(self, name or self.config.label_model)

    def label_model(self, name: str | None = None, *, matrix: LabelMatrix | None = None) -> LabelModel:
        """A fitted, saved label model; raises :class:`ProjectError` asking for ``labelflow fit`` unless it was fit
        on the current LF set and data (:func:`~labelflow.project_models.checked_label_model`). ``matrix``: the
        current :meth:`matrix`, if already read."""
        return project_models.checked_label_model(self, name or self.config.label_model, matrix=matrix)

    def predictions(self, model: LabelModel | str | None = None) -> Predictions:
        """The label model's prediction for every row of the dataset, by labelflow's one prediction policy
        (:func:`~labelflow.project_predictions.predictions`: the argmax, exact ties broken by the row's position
        in the dataset). ``model``: a fitted label model, or the name of a saved one (default: the project's)."""
        return project_predictions.predictions(self, model)

    def evaluate(self, model: LabelModel | str | None = None) -> dict[str, dict[str, Any]]:
        """Metrics of ``model``'s :meth:`predictions` on every split that has gold labels: ``{split: metrics}``
        (:func:`~labelflow.project_predictions.evaluate`)."""
        return project_predictions.evaluate(self, model)

    def summary(self, split: str = "dev") -> pl.DataFrame:
        """LF statistics on one split (accuracy from its gold labels, where it has them)."""
        return project_matrix.split_summary(self, split)

    def export(self, out: str | Path, *, model: str | None = None, splits: Sequence[str] | None = None,
               fmt: str | None = None) -> pl.DataFrame:
        """Write probabilistic labels: one row per data row, atomically.

        Columns (:mod:`labelflow.export`): ``id``, text field(s), ``split``, ``label`` (gold incl. human
        annotations, null when unknown), ``prob_<class>`` for each class, ``pred`` and ``pred_name`` (by
        :meth:`predictions`), ``covered`` (some LF voted on the row) and ``tied`` (``pred`` came from a
        tie-break). See :func:`~labelflow.project_predictions.export`.
        """
        return project_predictions.export(self, out, model=model, splits=splits, fmt=fmt)

    # --- embedding-extended LFs (labelflow.extend) ------------------------------------------------------

    @property
    def extend_config(self) -> ExtendConfig | None:
        """The ``extend`` settings of ``labelflow.json`` (``None``: no extended LFs)."""
        return project_extension.extend_config(self)

    def embeddings(self, column: str | None = None) -> np.ndarray:
        """``[n, d]`` ``float32`` embedding of every row (NaN rows where the column is null), in dataset order
        (:func:`~labelflow.project_extension.project_embeddings`; ``column`` default: the ``extend`` setting's,
        else ``embedding``)."""
        return project_extension.project_embeddings(self, column)

    def extension(self) -> list[dict[str, Any]]:
        """Per LF, what the matrix's extension gave (:func:`~labelflow.project_extension.extension_report`)."""
        return project_extension.extension_report(self)

    def extension_candidates(self, *, rows: np.ndarray | None = None) -> list[ExtensionCandidate]:
        """The LFs whose embedding extension would add votes to the current matrix, best first (an ``"extend"``
        suggestion; :func:`~labelflow.project_extension.candidates`). ``rows``: a ``[n]`` mask or row indices
        whose extended votes are counted as ``in_rows``."""
        return project_extension.candidates(self, rows=rows)

    # --- helpers ------------------------------------------------------------------------------------

    def columns(self, *names: str) -> pl.DataFrame:
        """Only these columns of the imported dataset, in its row order (no text or FM outputs a step does not
        need: ``fit`` reads ``id``, ``split`` and ``label`` alone)."""
        return self.store.columns(*names)

    def _resolve(self, path: str) -> Path:
        return Path(path) if Path(path).is_absolute() else self.root / path
