"""A labelflow project on disk: a config file (:mod:`labelflow.project_config`) and the store beside it
(:mod:`labelflow.store`, which names every file in it).

:class:`Project` coordinates the pipeline's steps over them: import the dataset, apply the
LF suite, fit and check label models, evaluate, export (:mod:`labelflow.export`), and the
gold labels that human annotations override. The CLI and the app open the same folder.
"""

from __future__ import annotations

import functools
import os
import shutil
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from labelflow.analysis import classification_metrics
from labelflow.annotations import ANY, AnnotationStore
from labelflow.apply import Engine, OnError, VoteCache, apply_lfs
from labelflow.conventions import ABSTAIN
from labelflow.dataset import Dataset, Duplicates, canonical_split, load_dataset
from labelflow.distributed import RayEngine
from labelflow.errors import DataError, LabelModelError, ProjectError
from labelflow.export import Predictions, export_format, export_frame, predict, write_export
from labelflow.extend import ExtendConfig, ExtensionCandidate, extension_candidates
from labelflow.extended_matrix import embeddings, with_extension, without_extension
from labelflow.files import write_json
from labelflow.fm.cache import FMCache
from labelflow.gold import gold_labels
from labelflow.labelmodels import LabelModel, get_label_model, load_label_model
from labelflow.lf import LabelingFunction, load_lf_suite
from labelflow.matrix import LabelMatrix, hash_strings, lf_summary
from labelflow.project_config import (CONFIG_FILE, ProjectConfig, read_config, relative_path, relocate_config,
                                      write_config)
from labelflow.schema import ClassSchema
from labelflow.store import ProjectStore, read_record
from labelflow.trust import (Fingerprint, UntrustedProjectError, fingerprint, is_trusted, record_trust,
                             untrusted_message)
from labelflow.validation import is_int

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


def _removes_what_it_made(init):
    """``Project.init``: a failed init removes what it created (the folders it made, else the store and config it
    added, its staged dataset) and nothing that was there before."""

    @functools.wraps(init)
    def create(cls, root: str | Path, **kwargs: Any) -> "Project":
        root = Path(root)
        where = Path(os.path.abspath(root))
        made = [p for p in (where, *where.parents) if not os.path.lexists(p)]  # innermost first
        store, config = ProjectStore.of(root), root / CONFIG_FILE
        had_store, had_config = os.path.lexists(store.root), os.path.lexists(config)
        try:
            return init(cls, root, **kwargs)
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

    return create


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
    @_removes_what_it_made
    def init(
        cls,
        root: str | Path,
        *,
        sources: Mapping[str, Sequence[str | Path]],
        classes: Sequence[str] | Mapping[str, str],
        text: str | Mapping[str, str] = "text",
        id: str | None = None,
        label: str | None = None,
        split: str | None = None,
        dev_sample: int = 0,
        seed: int = 0,
        hide_labels: Sequence[str] = (),
        duplicates: Duplicates = "error",
        lfs: str | Path | None = None,
        label_model: str = "labelflow",
        name: str | None = None,
    ) -> "Project":
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
        Other parameters are as in :func:`labelflow.load_dataset` and :class:`ProjectConfig`.
        """
        root = Path(root)
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
        dataset = project._import_dataset()
        hidden = sorted({canonical_split(s) for s in hide_labels} - set(dataset.splits()))
        if hidden:
            raise DataError(f"hide_labels names split(s) {hidden} the dataset lacks; its splits are {dataset.splits()}")
        store = project.store
        store.stage_dataset(dataset.frame)
        same_rows = store.holds_rows(dataset.frame)  # FM outputs of the same rows stay valid
        write_config(root, config)
        store.commit_dataset()
        # outputs of the previous dataset go; the content-addressed caches (votes, FM outputs) stay valid
        store.matrix.unlink(missing_ok=True)
        store.write_stale({})
        removed = [] if same_rows else store.fm_outputs()
        for output in removed:
            output.unlink()
        if removed:
            project.notes.append(f"removed FM output(s) {[p.stem for p in removed]}: they were computed for the "
                                 "previous rows (the FM cache keeps their values: `labelflow fm ...` again recomputes "
                                 "only new texts)")
        if lfs is not None:  # the caller named the suite file: trust what it holds now (see labelflow.trust)
            project.trust()
        return project

    @classmethod
    def open(cls, root: str | Path) -> "Project":
        """Open an existing project folder."""
        root = Path(root)
        project = cls(root, read_config(root))
        project._relocate()
        return project

    def _relocate(self) -> None:
        """Tie the config's relative paths to the folder that holds ``labelflow.json`` now, once after a move or copy.

        See :func:`~labelflow.project_config.relocate_config`. The config is rewritten (atomically) so the
        next open has nothing to say; :attr:`notes` says what was done. A suite the project was trusted with
        where it was stays trusted.
        """
        here = self.root.resolve()
        if self.config.root is not None and Path(self.config.root) == here:
            return
        old = None if self.config.root is None else Path(self.config.root)
        config, notes = relocate_config(self.config, here)
        trusted = config.lfs != self.config.lfs and is_trusted(fingerprint(old, lfs=self.config.lfs,
                                                                           ray_address=self.config.ray_address))
        self.config = config
        try:
            write_config(self.root, config)
        except OSError as exc:
            notes.append(f"{self.root / CONFIG_FILE} could not be updated ({exc.strerror or exc}): this is worked out "
                         "again each time the project opens")
        if trusted and not self.trusted:  # the same suite file, named from the new folder
            self.trust()
        self.notes.extend(notes)

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
        """``None`` for the local engine; for Ray, the settings with this project's defaults: the address
        ``address``, else the config's ``ray_address`` (only for a trusted project: :meth:`require_trusted`);
        shards staged under ``store/ray``."""
        engine = RayEngine.of(engine, address=address or self.config.ray_address)
        if engine is None:
            return None
        if address is None and self.config.ray_address and engine.address == self.config.ray_address:
            self.require_trusted(what=f"code on the Ray cluster its config names ({self.config.ray_address})")
        return engine if engine.staging is not None else replace(engine, staging=str(self.store.ray))

    @property
    def suite_path(self) -> Path:
        """The configured LF suite file."""
        if self.config.lfs is None:
            raise ProjectError(f"{self.root}: the project has no LF suite configured; pass --lfs PATH")
        return self._resolve(self.config.lfs)

    def set_suite(self, path: str | Path) -> bool:
        """Make ``path`` (relative to the working directory) the project's LF suite in ``labelflow.json``.

        The caller named the file, so it is trusted as it is now (as ``init --lfs`` does), unless
        the config names a Ray cluster the project was not trusted with. Returns whether the suite
        changed. The label matrix keeps its columns until the next :meth:`apply`
        (:meth:`stray_lfs` names those the new suite lacks).
        """
        rel = relative_path(Path(path), self.root)
        if self.config.lfs is not None and self._resolve(self.config.lfs).resolve() == self._resolve(rel).resolve():
            return False
        trusted = self.trusted
        self.update_config(lfs=rel)
        if not trusted and self.config.ray_address is None:
            self.trust()
        return True

    def stray_lfs(self, suite: Sequence[str] | None = None) -> list[str]:
        """LF columns of the current label matrix that the project's suite does not define, in matrix order.

        Non-empty when the matrix was applied from another LF list (an older config, LF objects
        passed to :meth:`apply`) or an LF was removed from the suite (or disabled) since the last :meth:`apply`:
        what is fit and scored then is not the suite's. ``suite``: the suite's LF names, if already
        loaded (else the suite is loaded: the project must be trusted). ``[]`` without a matrix.
        Embedding-extended columns (``NAME~ext``) count as their LF.
        """
        if not self.store.matrix.is_file():
            return []
        names = set(suite if suite is not None else (lf.name for lf in self.lfs()))
        return [name for name in self.matrix().lf_names if name.split("~", 1)[0] not in names]

    def lfs(self, path: str | Path | None = None, *, include_disabled: bool = False) -> list[LabelingFunction]:
        """The LF suite: ``path`` (relative to the working directory; the caller's choice, run as it is) or the
        configured one, which runs only when the project is trusted (else :class:`UntrustedProjectError`).
        LFs named in the config's ``disabled_lfs`` are left out unless ``include_disabled``."""
        if path is not None:
            suite = load_lf_suite(path)
        else:
            configured = self.suite_path  # a ProjectError first when no suite is configured at all
            self.require_trusted()
            suite = load_lf_suite(configured)
        off = set(self.config.disabled_lfs)
        return suite if include_disabled else [lf for lf in suite if lf.name not in off]

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

    @property
    def annotations(self) -> AnnotationStore:
        """Human gold labels (``store/annotations.sqlite``), stored by class name, read as indices of this schema."""
        return AnnotationStore(self.store.annotations, self.schema)

    def annotate(self, row_id: str, label: int | str | None, *, annotator: str, source: str = "app",
                 expect: object = ANY) -> None:
        """Store ``annotator``'s gold label for one row at once (``None`` removes it).

        ``label`` is a class index or name; a row of any split may be labelled (see :meth:`gold`).
        ``expect``: the label of ``annotator`` the caller last saw for the row (``None``: none);
        when another is stored (another tab or session), :class:`~labelflow.annotations.AnnotationConflict`
        is raised and nothing is written. Raises :class:`ProjectError` naming the row when it is not
        in the dataset, or the label when it is not a class.
        """
        self._known_row(row_id, "annotation")
        if label is None:
            self.annotations.remove(row_id, annotator=annotator, expect=expect)
            return
        self.annotations.add(str(row_id), label, annotator=annotator, source=source, expect=expect)

    def settle(self, row_id: str, label: int | str | None, *, resolver: str) -> None:
        """Settle one row's gold label (``None`` withdraws the settlement), recorded with ``resolver`` and the time:
        while it stands it is the row's gold, whatever its annotators and the data say (see
        :meth:`~labelflow.annotations.AnnotationStore.settle`)."""
        self._known_row(row_id, "settlement")
        self.annotations.settle(str(row_id), label, resolver=resolver)

    def _known_row(self, row_id: str, what: str) -> None:
        if not self.columns("id")["id"].is_in([str(row_id)]).any():
            raise ProjectError(f"{self.root}: no row with id {row_id!r} in the dataset (it may have been removed "
                               f"when the data was re-imported); the {what} was not saved")

    def gold(self) -> np.ndarray:
        """``[n]`` gold class per row (``-1`` unknown), by the gold policy (:mod:`labelflow.gold`): the data's labels,
        overridden by human annotations where the annotators agree or a person settled the row; never trained on
        (:meth:`fit` uses the train rows' votes, ``use_dev`` adds dev gold only)."""
        frame = self.columns("id", "label")
        return gold_labels(frame["id"], frame["label"], self.annotations.resolve()[0])

    def apply(self, *, lfs: str | Path | Sequence[LabelingFunction] | None = None, on_error: OnError | None = None,
              n_jobs: int | None = None, progress: bool = False, engine: Engine | RayEngine = "local",
              address: str | None = None, timeout_s: float | None = None) -> tuple[LabelMatrix, VoteCache]:
        """Apply the LF suite to every row, reusing cached votes; saves ``store/matrix.parquet``.

        A project has one suite, and the matrix holds its LFs: ``lfs=None`` applies the configured
        suite; a suite file (``apply --lfs FILE``) becomes the project's suite once it applied
        (:meth:`set_suite`). LF objects are applied as given (the caller's list, e.g. the configured
        suite already loaded): where they differ from the suite, :meth:`stray_lfs` names them and the
        app says so. The rows are read and labeled a chunk at a time, here or on Ray (``engine="ray"``,
        see :meth:`ray_engine`); ``timeout_s`` limits each Python LF call and ``on_error`` (default: the
        config's) decides what an LF raising on a row does (see :func:`~labelflow.apply.apply_lfs`)."""
        on_error = on_error or self.config.on_error
        cache = self.store.vote_cache()
        given = isinstance(lfs, Sequence) and not isinstance(lfs, str)
        suite = lfs if given else self.lfs(lfs)
        matrix = apply_lfs(self.rows(), suite, cardinality=self.schema.k, cache=cache, on_error=on_error,
                           n_jobs=n_jobs, progress=progress, fm_cache=self.fm_cache,
                           engine=self.ray_engine(engine, address) or "local", timeout_s=timeout_s)
        if lfs is not None and not given:
            self.set_suite(lfs)
        matrix.save(self.store.matrix)
        self._clear_stale("apply")
        return self._extended(matrix), cache

    def matrix(self) -> LabelMatrix:
        """The label matrix of the last :meth:`apply`, its rows in the dataset's order.

        The matrix's row ids are checked against the dataset's: rows are re-ordered by
        id when it holds exactly the dataset's rows, and anything else (rows missing or
        extra, votes out of range or null, see :meth:`LabelMatrix.load`) raises
        :class:`ProjectError` naming the file and asking for ``labelflow apply``. With the
        ``extend`` setting it ends with the embedding-extended LFs' ``NAME~ext`` columns,
        recomputed whenever what they were computed from changed (:mod:`labelflow.extended_matrix`).
        """
        path = self.store.existing(self.store.matrix,
                                   f"{self.root} has no label matrix yet; run `labelflow apply` first")
        try:
            try:
                matrix = LabelMatrix.load(path)
            except LabelModelError:  # say first which rows it lacks, when that is what changed
                LabelMatrix.load(path, check_content=False).aligned(self.columns("id")["id"], where=str(path))
                raise
            if matrix.cardinality != self.schema.k:
                raise LabelModelError(f"{path} holds votes for {matrix.cardinality} classes; the project has "
                                      f"{self.schema.k} ({list(self.schema.names)})")
            matrix = matrix.aligned(self.columns("id")["id"], where=str(path))
        except LabelModelError as exc:
            raise ProjectError(f"{exc}; run `labelflow apply` again to rebuild it") from None
        return self._extended(matrix)

    def fit(self, model: str | None = None, *, seed: int | None = None, use_dev: bool | None = None,
            progress: bool = False) -> LabelModel:
        """Fit a label model on the ``train`` rows' votes and save it to ``store/models``.

        With ``use_dev``, the dev rows' votes and gold labels are passed too. ``seed`` and
        ``use_dev`` left ``None`` keep the settings the saved model was last fit with
        (:meth:`fit_settings`), so a refit after accepting an LF does not silently drop dev gold.
        """
        name = model or self.config.label_model
        saved = self.fit_settings(name)
        seed = saved["seed"] if seed is None else seed
        use_dev = saved["use_dev"] if use_dev is None else use_dev
        matrix, splits = self.matrix(), self.columns("split")["split"]
        split = splits.to_numpy()
        train = split == "train"
        if not train.any():
            raise ProjectError(f"{self.root}: no rows in split 'train' to fit on")
        lm = get_label_model(name, self.schema.k, seed=seed)
        gold = self.gold()
        dev = (split == "dev") & (gold != ABSTAIN)
        dev_args = {"L_dev": matrix.values[dev], "y_dev": gold[dev]} if use_dev and dev.any() else {}
        lm.fit(matrix.values[train], progress=progress, **dev_args)
        lm.save(self.store.model_file(name), lf_names=matrix.lf_names)
        record = self._fit_record(matrix, splits)
        record["settings"] = {"seed": seed, "use_dev": bool(use_dev)}
        write_json(self.store.fit_record(name), record)
        return lm

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
        (``{"seed": 123, "use_dev": False}`` when it has not been fit, or was fit before settings were recorded)."""
        recorded = self.store.fit_settings(name or self.config.label_model)
        settings = {"seed": 123, "use_dev": False}
        if is_int(recorded.get("seed")):
            settings["seed"] = recorded["seed"]
        if isinstance(recorded.get("use_dev"), bool):
            settings["use_dev"] = recorded["use_dev"]
        return settings

    def label_model(self, name: str | None = None, *, matrix: LabelMatrix | None = None) -> LabelModel:
        """A fitted, saved label model; checks it was fit on the current LF set and data.

        :meth:`fit` records beside the model (``store/models/NAME.fit.json``) the LF names
        and a fingerprint of the label matrix (row ids in order and every vote) and of the
        splits it was fit on. When the current ones differ (LFs re-applied with other
        votes, data re-imported, splits changed) this raises :class:`ProjectError` asking
        for ``labelflow fit`` rather than predicting with a model of other data. Gold
        labels (and human annotations) are not part of the fingerprint: labeling a row
        does not invalidate a model. ``matrix``: the current :meth:`matrix`, if already read.
        """
        name = name or self.config.label_model
        path = self.store.existing(self.store.model_file(name), f"label model {name!r} has not been fit in "
                                                                f"{self.root}; run `labelflow fit --model {name}`")
        model = load_label_model(path)
        matrix = self.matrix() if matrix is None else matrix
        current = matrix.lf_names
        if model.lf_names != current:
            added = sorted(set(current) - set(model.lf_names or ()))
            removed = sorted(set(model.lf_names or ()) - set(current))
            raise ProjectError(
                f"label model {name!r} was fit on a different LF set (added since: {added}, removed: {removed}, "
                f"or reordered); run `labelflow fit --model {name}` again"
            )
        record_path = self.store.fit_record(name)
        record = read_record(record_path)
        if not record:
            raise ProjectError(f"label model {name!r} in {self.root} has no record of the data it was fit on "
                               f"({record_path.name} is missing or unreadable); run `labelflow fit --model {name}` "
                               "again")
        now = self._fit_record(matrix)
        changed = [what for key, what in (("rows", "the number of rows"), ("matrix", "the label matrix (row ids or votes)"),
                                          ("splits", "the rows' splits")) if record.get(key) != now[key]]
        if changed:
            raise ProjectError(f"label model {name!r} was fit on other data: {', '.join(changed)} changed since "
                               f"(re-imported data or re-applied LFs); run `labelflow fit --model {name}` again")
        return model

    def _fit_record(self, matrix: LabelMatrix, splits: pl.Series | None = None) -> dict[str, Any]:
        """What a model is fit on: LF names, rows, and fingerprints of the (aligned) matrix and of the splits."""
        splits = self.columns("split")["split"] if splits is None else splits
        return {"lf_names": list(matrix.lf_names), "rows": matrix.shape[0], "matrix": matrix.fingerprint(),
                "splits": hash_strings(splits)}

    def predictions(self, model: LabelModel | str | None = None) -> Predictions:
        """The label model's prediction for every row of the dataset, by labelflow's one prediction policy.

        **Policy.** A row's prediction is the argmax of the label model's class
        probabilities. Exact ties (equal within 1e-5, including rows no LF votes on
        when the model gives them a uniform distribution) are broken by Snorkel's
        deterministic hash (``tie_policy="random"``) of the row's position in the
        project's full dataset, so a row gets the same class whichever split or
        subset is looked at. A model may give uncovered rows a non-uniform
        distribution (an estimated class prior); then the argmax decides them like
        any other row. Nothing is left unpredicted: ``pred`` is always a class, and
        ``tied`` says which rows a tie-break decided. ``fit``'s and ``evaluate``'s
        metrics, ``export``, ``analyze`` and the app all read their predictions
        from here (or, equally, from ``model.predict`` on the full matrix), so they
        agree by construction. (``labelflow bench label-models`` keys the same hash by
        the row's position in the test split, as WRENCH's and Snorkel's published
        figures do.)

        Parameters
        ----------
        model
            A fitted label model, or the name of a saved one (default: the project's).
        """
        matrix = self.matrix()
        lm = model if isinstance(model, LabelModel) else self.label_model(model, matrix=matrix)
        return predict(lm, matrix.values)

    def evaluate(self, model: LabelModel | str | None = None) -> dict[str, dict[str, Any]]:
        """Metrics of ``model`` on every split that has gold labels: ``{split: metrics}``.

        Each split's metrics are :func:`~labelflow.analysis.classification_metrics` of
        :meth:`predictions` on its gold rows: ``accuracy`` (all rows), ``accuracy_covered``
        (rows some LF voted on), ``macro_f1``, ``per_class_f1``, ``coverage``, ``tied``
        (the fraction decided by a tie-break), ``n`` and ``n_covered``.
        """
        predictions, splits = self.predictions(model), self.columns("split")["split"]
        gold, split = self.gold(), splits.to_numpy()
        out = {}
        for name in splits.unique(maintain_order=True).to_list():
            rows = (split == name) & (gold != ABSTAIN)
            if rows.any():
                out[name] = classification_metrics(gold[rows], predictions.pred[rows], class_names=self.schema.names,
                                                   covered=predictions.covered[rows], tied=predictions.tied[rows])
        return out

    def summary(self, split: str = "dev") -> pl.DataFrame:
        """LF statistics on one split (accuracy from its gold labels, where it has them)."""
        matrix, splits = self.matrix(), self.columns("split")["split"]
        split = canonical_split(split)
        rows = splits.to_numpy() == split
        if not rows.any():
            raise ProjectError(f"{self.root}: no rows in split {split!r}; splits are "
                               f"{splits.unique(maintain_order=True).to_list()}")
        gold = self.gold()[rows]
        return lf_summary(matrix.values[rows], lf_names=matrix.lf_names, cardinality=self.schema.k,
                          y=gold if (gold != ABSTAIN).any() else None)

    def export(self, out: str | Path, *, model: str | None = None, splits: Sequence[str] | None = None,
               fmt: str | None = None) -> pl.DataFrame:
        """Write probabilistic labels: one row per data row, atomically.

        Columns: ``id``, text field(s), ``split``, ``label`` (gold incl. human annotations, null when unknown),
        ``prob_<class>`` for each class, ``pred`` and ``pred_name`` (the class :meth:`predictions` gives
        the row: the argmax, ties broken by the row's position in the dataset, so accuracy recomputed
        from ``pred`` equals ``fit``'s), ``covered`` (some LF voted on the row) and ``tied`` (``pred``
        came from a tie-break; filter on it, or on ``covered``, to keep only decided rows).
        """
        out = Path(out)
        fmt = export_format(out, fmt)
        rows = self.columns("id", *self.config.text, "split")
        present = rows["split"].unique(maintain_order=True).to_list()
        if splits:
            splits = [canonical_split(s) for s in splits]
            unknown = sorted(set(splits) - set(present))
            if unknown:
                raise ProjectError(f"unknown split(s) {unknown}; the dataset's splits are {present}")
        frame = export_frame(rows, gold=self.gold(), predictions=self.predictions(model), class_names=self.schema.names)
        if splits:
            frame = frame.filter(pl.col("split").is_in(list(splits)))
        write_export(frame, out, fmt)
        return frame

    # --- embedding-extended LFs (labelflow.extend) ------------------------------------------------------

    @property
    def extend_config(self) -> ExtendConfig | None:
        """The ``extend`` settings of ``labelflow.json`` (``None``: no extended LFs)."""
        return None if self.config.extend is None else ExtendConfig.from_dict(self.config.extend)

    def embeddings(self, column: str | None = None) -> np.ndarray:
        """``[n, d]`` ``float32`` embedding of every row (NaN rows where the column is null), in dataset order.

        ``column``: an array column of the dataset or an FM output (default: the ``extend``
        setting's, else ``embedding``, which ``labelflow fm embed`` writes). Raises
        :class:`ProjectError` naming the column and the command that makes it.
        """
        return embeddings(self.rows(), column or (self.extend_config or ExtendConfig()).embedding, where=self.root)

    def extension(self) -> list[dict[str, Any]]:
        """Per LF, what the current matrix's extension gave (:class:`~labelflow.extend.LFExtension` as dicts:
        radius, dev evidence, votes cast, or why it got no column); ``[]`` without extended LFs."""
        if self.extend_config is None:
            return []
        self.matrix()  # recomputes the extension when its inputs changed
        return self.store.extension_record()["lfs"]

    def extension_candidates(self, *, rows: np.ndarray | None = None) -> list[ExtensionCandidate]:
        """The LFs whose embedding extension would add votes to the current matrix, best first (an
        ``"extend"`` suggestion): :func:`~labelflow.extend.extension_candidates` over the matrix, the
        ``extend`` setting's embedding column (else ``embedding``) and the dev gold. ``rows``: a ``[n]``
        mask or row indices (for example a slice's) whose extended votes are counted as ``in_rows``.
        Accepting one is adding its LF to the setting's ``lfs``."""
        matrix, config = self.matrix(), self.extend_config or ExtendConfig()
        dev = self.columns("split")["split"].to_numpy() == "dev"
        return extension_candidates(matrix.values, self.embeddings(config.embedding), dev_rows=dev,
                                    y_dev=self.gold()[dev], cardinality=self.schema.k, lf_names=matrix.lf_names,
                                    config=config, rows=rows)

    def _extended(self, matrix: LabelMatrix) -> LabelMatrix:
        """``matrix`` with the extension columns the ``extend`` setting asks for, never stale (see
        :mod:`labelflow.extended_matrix`); without the setting, extension columns are dropped."""
        config = self.extend_config
        if config is None:
            return without_extension(matrix, self.store)
        dev = self.columns("split")["split"].to_numpy() == "dev"
        return with_extension(matrix, config, store=self.store, dev=dev, gold=self.gold(), embedding=self.embeddings)

    # --- helpers ------------------------------------------------------------------------------------

    def columns(self, *names: str) -> pl.DataFrame:
        """Only these columns of the imported dataset, in its row order (no text or FM outputs a step does not
        need: ``fit`` reads ``id``, ``split`` and ``label`` alone)."""
        return self.store.columns(*names)

    def _resolve(self, path: str) -> Path:
        return Path(path) if Path(path).is_absolute() else self.root / path

    def _import_dataset(self) -> Dataset:
        cfg = self.config
        sources: dict[str, list[Path]] = {k: [self._resolve(p) for p in v] for k, v in cfg.sources.items()}
        if set(sources) == {""}:
            source: Any = sources[""]
        elif "" in sources:
            raise DataError("give every source a split, or none")
        else:
            source = sources
        dataset = load_dataset(source, classes=cfg.schema, text=cfg.text, id=cfg.id, label=cfg.label,
                               split=cfg.split, duplicates=cfg.duplicates)
        if cfg.dev_sample:
            dataset = dataset.with_dev_sample(cfg.dev_sample, seed=cfg.seed)
        if cfg.hide_labels:
            dataset = dataset.hide_labels(cfg.hide_labels)
        return dataset
