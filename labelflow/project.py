"""A labelflow project on disk: a config file and the store beside it.

Layout of a project folder::

    labelflow.json          config: task name, classes, column mapping, sources, LF suite, label model
    store/dataset.parquet   the dataset, imported once by ``init``
    store/votes/            per-LF vote cache (one .npz per LF fingerprint and data hash)
    store/matrix.parquet    the label matrix of the last ``apply``
    store/ray/              the dataset as Parquet shards for a Ray cluster (``apply --engine ray``)
    store/models/NAME.npz   fitted label models
    store/fm.sqlite         FM output cache (content-addressed)
    store/fm/NAME.parquet   named FM outputs (``labelflow fm ...``), joined to the dataset as column NAME
    store/extension.json    what the matrix's embedding-extended LF columns were computed from (``extend``)
    store/annotations.sqlite  human gold labels with annotator and time (the app, Label Studio)
    store/stale.json        outputs a settings change left stale, until recomputed (``labelflow config``)

The CLI and (later) the app open the same folder. Every file is written to a
temporary name and renamed, so a failed command leaves what was saved intact.
"""

from __future__ import annotations

import filecmp
import functools
import hashlib
import json
import os
import shutil
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import MISSING, asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import polars as pl

from labelflow.analysis import classification_metrics, lf_summary
from labelflow.annotations import ANY, AnnotationStore
from labelflow.apply import Engine, OnError, VoteCache, apply_lfs
from labelflow.dataset import Dataset, canonical_split, load_dataset
from labelflow.distributed import RayEngine
from labelflow.errors import DataError, LabelModelError, LFError, ProjectError, involving
from labelflow.extend import ExtendConfig, ExtensionCandidate, base_columns, extend_votes, extension_candidates
from labelflow.files import atomic_path, write_json, write_parquet_parts
from labelflow.fm.cache import FMCache
from labelflow.labelmodels import LabelModel, get_label_model, label_model_names, load_label_model, probs_to_preds
from labelflow.labelmodels.base import tied_rows
from labelflow.lf import LabelingFunction, load_lf_suite
from labelflow.matrix import LabelMatrix, hash_strings
from labelflow.schema import ClassSchema
from labelflow.trust import (Fingerprint, UntrustedProjectError, fingerprint, is_trusted, record_trust,
                             untrusted_message)
from labelflow.conventions import ABSTAIN

CONFIG_FILE = "labelflow.json"
STALE_FILE = "stale.json"
FORMAT_VERSION = 1
EXPORT_FORMATS = ("parquet", "csv", "jsonl")


@dataclass(frozen=True)
class ProjectConfig:
    """The contents of ``labelflow.json``.

    Paths (``sources``, ``lfs``) are relative to the project folder (the folder holding
    ``labelflow.json``), or absolute. ``root`` records that folder's absolute path when the
    file was written: a project found elsewhere was moved or copied, and :meth:`Project.open`
    re-checks its paths once (see :meth:`Project._relocate`).
    """

    name: str
    classes: list[dict[str, str]]
    text: dict[str, str]
    sources: dict[str, list[str]]
    id: str | None = None
    label: str | None = None
    split: str | None = None
    dev_sample: int = 0
    seed: int = 0
    hide_labels: list[str] = field(default_factory=list)
    duplicates: Literal["error", "drop_identical"] = "error"
    lfs: str | None = None
    label_model: str = "labelflow"
    studio_url: str | None = None
    studio_api_key_env: str = "LABEL_STUDIO_API_KEY"
    ray_address: str | None = None
    extend: dict[str, Any] | None = None
    on_error: Literal["raise", "abstain"] = "raise"
    """What :meth:`Project.apply` and a tried LF do where an LF raises on a row: stop (``"raise"``) or abstain there."""
    disabled_lfs: list[str] = field(default_factory=list)
    """LFs of the suite left out of :meth:`Project.lfs`: not applied, not in the label matrix, not fit."""
    root: str | None = None
    format: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        for key, value in asdict(self).items():  # a hand-edited labelflow.json may hold anything
            check, what = _CONFIG_TYPES[key]
            if not check(value):
                raise ProjectError(f"{key!r} must be {what}; got {json.dumps(value)[:80]}")
        ClassSchema.from_dict(self.classes)
        if self.dev_sample < 0:
            raise ProjectError(f"dev_sample must be ≥ 0; got {self.dev_sample}")
        if self.label_model not in label_model_names():
            raise ProjectError(f"unknown label model {self.label_model!r}; known models are {label_model_names()}")
        try:
            ExtendConfig.from_dict(self.extend)
        except LFError as exc:
            raise ProjectError(str(exc)) from None

    @property
    def schema(self) -> ClassSchema:
        return ClassSchema.from_dict(self.classes)


def _is_str(v: Any) -> bool:
    return isinstance(v, str)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _str_list(v: Any) -> bool:
    return isinstance(v, list) and all(map(_is_str, v))


_OPTIONAL_STR = (lambda v: v is None or _is_str(v), "a string or null")
_CONFIG_TYPES: dict[str, tuple[Any, str]] = {
    "name": (_is_str, "a string"),
    "classes": (lambda v: isinstance(v, list) and all(isinstance(c, dict) and _is_str(c.get("name"))
                                                      and _is_str(c.get("description", "")) for c in v),
                'a list of {"name": ..., "description": ...} objects'),
    "text": (lambda v: isinstance(v, dict) and bool(v) and all(map(_is_str, [*v, *v.values()])),
             "an object of text field → column name"),
    "sources": (lambda v: isinstance(v, dict) and all(_is_str(k) and _str_list(p) for k, p in v.items()),
                "an object of split → list of file paths"),
    "id": _OPTIONAL_STR, "label": _OPTIONAL_STR, "split": _OPTIONAL_STR, "lfs": _OPTIONAL_STR, "root": _OPTIONAL_STR,
    "studio_url": _OPTIONAL_STR, "ray_address": _OPTIONAL_STR,
    "dev_sample": (_is_int, "an integer"), "seed": (_is_int, "an integer"), "format": (_is_int, "an integer"),
    "hide_labels": (_str_list, "a list of split names"),
    "duplicates": (lambda v: v in ("error", "drop_identical"), '"error" or "drop_identical"'),
    "label_model": (_is_str, "a label model's name"), "studio_api_key_env": (_is_str, "a string"),
    "extend": (lambda v: v is None or isinstance(v, dict), "null or an object of settings (labelflow.extend)"),
    "on_error": (lambda v: v in ("raise", "abstain"), '"raise" or "abstain"'),
    "disabled_lfs": (_str_list, "a list of LF names"),
}
"""What each key of ``labelflow.json`` holds: (check, what the error says it must be)."""


@dataclass(frozen=True)
class Predictions:
    """A label model's output for every row of a project's dataset (see :meth:`Project.predictions`)."""

    probs: np.ndarray
    """``[n, k]`` class probabilities."""
    pred: np.ndarray
    """``[n]`` predicted class: the argmax, exact ties broken by the row's position in the dataset."""
    tied: np.ndarray
    """``[n]`` booleans: ``pred`` came from a tie-break."""
    covered: np.ndarray
    """``[n]`` booleans: at least one LF voted on the row."""


def _removes_what_it_made(init):
    """``Project.init``: a failed init removes what it created (the folders it made, else the store and config it
    added, its staged dataset) and nothing that was there before."""

    @functools.wraps(init)
    def create(cls, root: str | Path, **kwargs: Any) -> "Project":
        root = Path(root)
        where = Path(os.path.abspath(root))
        made = [p for p in (where, *where.parents) if not os.path.lexists(p)]  # innermost first
        store, config = root / "store", root / CONFIG_FILE
        had_store, had_config = os.path.lexists(store), os.path.lexists(config)
        try:
            return init(cls, root, **kwargs)
        except BaseException:
            if made:  # every folder from the outermost one made down is this init's
                shutil.rmtree(made[-1], ignore_errors=True)
            else:
                if not had_store:
                    shutil.rmtree(store, ignore_errors=True)
                else:
                    _staged(store / "dataset.parquet").unlink(missing_ok=True)
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
        duplicates: Literal["error", "drop_identical"] = "error",
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
        rel = lambda p: _relative(Path(p), root)  # noqa: E731
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
        with involving(project.store / "dataset.parquet", writing=True):
            dataset.frame.write_parquet(_staged(project.store / "dataset.parquet"))
        same_rows = project._same_rows(dataset.frame)  # FM outputs of the same rows stay valid
        write_json(root / CONFIG_FILE, asdict(config))
        os.replace(_staged(project.store / "dataset.parquet"), project.store / "dataset.parquet")
        # outputs of the previous dataset go; the content-addressed caches (votes, FM outputs) stay valid
        (project.store / "matrix.parquet").unlink(missing_ok=True)
        (project.store / STALE_FILE).unlink(missing_ok=True)
        removed = [] if same_rows else sorted((project.store / "fm").glob("*.parquet"))
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
        path = root / CONFIG_FILE
        if not path.is_file():
            raise ProjectError(f"{root} is not a labelflow project: {CONFIG_FILE} is missing (create one with `labelflow init`)")
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise ProjectError(f"{path} is not valid JSON: {exc}") from None
        if not isinstance(raw, dict):
            raise ProjectError(f"{path} must hold a JSON object; got {type(raw).__name__}")
        if raw.get("format") != FORMAT_VERSION:
            raise ProjectError(f"{path} has format {raw.get('format')!r}; this labelflow reads format {FORMAT_VERSION}")
        known = set(ProjectConfig.__dataclass_fields__)
        unknown = sorted(set(raw) - known)
        if unknown:
            raise ProjectError(f"{path}: unknown keys {unknown}; known keys are {sorted(known)}")
        fields = ProjectConfig.__dataclass_fields__.values()
        missing = [f.name for f in fields if f.default is MISSING and f.default_factory is MISSING and f.name not in raw]
        if missing:
            raise ProjectError(f"{path}: missing keys {missing}")
        try:
            config = ProjectConfig(**raw)
        except (ProjectError, DataError) as exc:
            raise ProjectError(f"{path}: {exc}; fix it by hand or re-create the project with `labelflow init`") from None
        project = cls(root, config)
        project._relocate()
        return project

    def _relocate(self) -> None:
        """Tie the config's relative paths to the folder that holds ``labelflow.json`` now, once after a move or copy.

        ``root`` records where the project was when its paths were written. When the project
        is found elsewhere (moved or copied), each relative path (``lfs``, ``sources``) is
        checked: a file found relative to the project's folder now is kept (it moved along);
        a file found only relative to where the project was is pointed at (rewritten relative
        to the new folder); a path found in neither place, or in both with different
        contents, is said rather than guessed. An older config without ``root`` gets it. The
        config is rewritten (atomically) so the next open has nothing to say; :attr:`notes`
        says what was done. A suite the project was trusted with where it was stays trusted.
        """
        here = self.root.resolve()
        if self.config.root is not None and Path(self.config.root) == here:
            return
        old = None if self.config.root is None else Path(self.config.root)
        notes = [f"{CONFIG_FILE} now records the project's folder, {here} (it was written by an older labelflow), "
                 "so its paths keep resolving after a move or copy" if old is None else
                 f"the project was at {old} and is now at {here} (moved or copied): its paths were checked"]
        lfs = _relocated("lfs", self.config.lfs, old, here, notes)
        moved: list[str] = []  # data files re-pointed to where they were: said in one line when there are several
        sources = {split: [_relocated(f"sources.{split or 'all'}", p, old, here, notes, moved) for p in paths]
                   for split, paths in self.config.sources.items()}
        if len(moved) > 2:
            notes = [n for n in notes if not (n.startswith("sources.") and n.endswith(tuple(moved)))]
            notes.append(f"sources: {len(moved)} data files are not beside the project's new folder; they now name the "
                         f"files they named before the move, in {', '.join(sorted({str(Path(m).parent) for m in moved}))}")
        trusted = lfs != self.config.lfs and is_trusted(fingerprint(old, lfs=self.config.lfs,
                                                                    ray_address=self.config.ray_address))
        self.config = replace(self.config, lfs=lfs, sources=sources, root=str(here))
        try:
            write_json(self.root / CONFIG_FILE, asdict(self.config))
        except OSError as exc:
            notes.append(f"{self.root / CONFIG_FILE} could not be updated ({exc.strerror or exc}): this is worked out "
                         "again each time the project opens")
        if trusted and not self.trusted:  # the same suite file, named from the new folder
            self.trust()
        self.notes.extend(notes)

    def _same_rows(self, frame: pl.DataFrame) -> bool:
        """Whether the imported dataset holds ``frame``'s rows: the same ids in the same order with the same text
        and metadata (gold labels and splits aside), so outputs computed from its rows stay valid."""
        path = self.store / "dataset.parquet"
        try:
            old = pl.read_parquet(path)
        except (OSError, pl.exceptions.PolarsError):
            return False
        keep = [c for c in frame.columns if c not in ("label", "split")]
        return sorted(old.columns) == sorted(frame.columns) and old.select(keep).equals(frame.select(keep))

    # --- outputs a settings change left stale (labelflow config) ------------------------------------

    def stale(self) -> dict[str, str]:
        """What a settings change (``labelflow config``) left stale and why: ``{"apply": why}`` for the label matrix,
        ``{"fm NAME": why}`` for a stored FM output; each goes when recomputed (:meth:`apply`, ``labelflow fm``)."""
        try:
            marks = json.loads((self.store / STALE_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return {k: v for k, v in marks.items() if isinstance(v, str)} if isinstance(marks, dict) else {}

    def mark_stale(self, marks: Mapping[str, str]) -> None:
        """Record outputs to recompute (see :meth:`stale`); written atomically."""
        if marks:
            write_json(self.store / STALE_FILE, {**self.stale(), **marks})

    def _clear_stale(self, key: str) -> None:
        marks = self.stale()
        if key in marks:
            del marks[key]
            if marks:
                write_json(self.store / STALE_FILE, marks)
            else:
                (self.store / STALE_FILE).unlink(missing_ok=True)

    def update_config(self, **changes: Any) -> Path:
        """Change config fields (validated as a whole) and rewrite ``labelflow.json`` atomically; returns its path."""
        unknown = sorted(set(changes) - set(ProjectConfig.__dataclass_fields__))
        if unknown:
            raise ProjectError(f"unknown config keys {unknown}")
        trusted = self.trusted
        self.config = replace(self.config, **changes)
        write_json(self.root / CONFIG_FILE, asdict(self.config))
        if trusted and not self.trusted:  # a change made through labelflow (ray_address, lfs) keeps the trust
            self.trust()
        return self.root / CONFIG_FILE

    # --- pipeline steps -----------------------------------------------------------------------------

    @property
    def store(self) -> Path:
        return self.root / "store"

    @property
    def schema(self) -> ClassSchema:
        return self.config.schema

    def dataset(self) -> Dataset:
        """The imported dataset."""
        path = self.store / "dataset.parquet"
        if not path.is_file():
            raise ProjectError(f"{path} is missing; re-create the project with `labelflow init`")
        frame = pl.read_parquet(path)
        for output in sorted((self.store / "fm").glob("*.parquet")):
            with involving(output):
                frame = frame.join(pl.read_parquet(output), on="id", how="left", maintain_order="left")
        return Dataset(frame, self.schema, tuple(self.config.text))

    def rows(self) -> pl.LazyFrame:
        """The dataset with its FM output columns, as a lazy frame read a chunk at a time (what ``apply`` streams).

        Raises :class:`ProjectError` naming an FM output whose rows do not line up with the dataset's.
        """
        path = self.store / "dataset.parquet"
        if not path.is_file():
            raise ProjectError(f"{path} is missing; re-create the project with `labelflow init`")
        frames = [pl.scan_parquet(path)]
        n = frames[0].select(pl.len()).collect().item()
        for output in sorted((self.store / "fm").glob("*.parquet")):
            fm = pl.scan_parquet(output)
            ids = pl.concat([frames[0].select("id"), fm.select(pl.col("id").alias("fm_id"))], how="horizontal")
            with involving(output):
                misaligned = fm.select(pl.len()).collect().item() != n \
                    or ids.select((pl.col("id") != pl.col("fm_id")).any()).collect().item()
            if misaligned:
                raise ProjectError(f"{output} does not hold the dataset's rows in its order; run `labelflow fm` "
                                   f"again to recompute {output.stem!r}")
            frames.append(fm.drop("id"))
        return pl.concat(frames, how="horizontal") if len(frames) > 1 else frames[0]

    @property
    def fm_cache(self) -> FMCache:
        """The project's FM output cache."""
        return FMCache(self.store / "fm.sqlite")

    def save_fm_output(self, name: str, ids: pl.Series, values: np.ndarray) -> Path:
        """Store ``[n, d]`` FM outputs as column ``name`` (rows not computed: NaN → null)."""
        return self.save_fm_output_chunks(name, [(ids, values)])

    def save_fm_output_chunks(self, name: str, chunks: Iterable[tuple[pl.Series, np.ndarray]]) -> Path:
        """Store FM outputs given as consecutive ``(ids, [rows, d] values)`` chunks of the dataset's rows,
        one chunk in memory at a time; as :meth:`save_fm_output`. Nothing is stored if ``chunks`` raises."""
        if not name.isidentifier() or name in pl.read_parquet_schema(self.store / "dataset.parquet"):
            raise ProjectError(f"FM output name must be a Python identifier that is not a data column; got {name!r}")
        path = self.store / "fm" / f"{name}.parquet"
        write_parquet_parts(path, (pl.DataFrame({"id": ids, name: values}).with_columns(
            pl.when(pl.col(name).arr.first().is_nan()).then(None).otherwise(pl.col(name)).alias(name))
            for ids, values in chunks))
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
        return engine if engine.staging is not None else replace(engine, staging=str(self.store / "ray"))

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
        rel = _relative(Path(path), self.root)
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
        if not (self.store / "matrix.parquet").is_file():
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
        return AnnotationStore(self.store / "annotations.sqlite", self.schema)

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
        """``[n]`` gold class per row (``-1`` unknown): the data's labels, overridden by human annotations
        where the annotators agree or a person settled the row (rows they disagree on and nobody settled
        keep the data's label).

        Human labels count in every split. On ``train`` rows they are scored (:meth:`evaluate` reports a
        ``train`` split) and exported, but :meth:`fit` never trains on them: the label model is fit on the
        train rows' votes alone (``use_dev`` adds dev gold only), and the fine-tuner trains on the exported
        probabilities, not on ``label``."""
        frame = self.columns("id", "label")
        gold = frame["label"].fill_null(ABSTAIN).to_numpy().astype(np.int64)
        agreed, _ = self.annotations.resolve()
        if agreed:
            ids = frame["id"]
            hit = ids.is_in(list(agreed)).to_numpy()
            gold[hit] = [agreed[i] for i in ids.filter(hit).to_list()]
        return gold

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
        cache = VoteCache(self.store / "votes")
        given = isinstance(lfs, Sequence) and not isinstance(lfs, str)
        suite = lfs if given else self.lfs(lfs)
        matrix = apply_lfs(self.rows(), suite, cardinality=self.schema.k, cache=cache, on_error=on_error,
                           n_jobs=n_jobs, progress=progress, fm_cache=self.fm_cache,
                           engine=self.ray_engine(engine, address) or "local", timeout_s=timeout_s)
        if lfs is not None and not given:
            self.set_suite(lfs)
        matrix.save(self.store / "matrix.parquet")
        self._clear_stale("apply")
        return self._extended(matrix), cache

    def matrix(self) -> LabelMatrix:
        """The label matrix of the last :meth:`apply`, its rows in the dataset's order.

        The matrix's row ids are checked against the dataset's: rows are re-ordered by
        id when it holds exactly the dataset's rows, and anything else (rows missing or
        extra, votes out of range or null, see :meth:`LabelMatrix.load`) raises
        :class:`ProjectError` naming the file and asking for ``labelflow apply``. With the
        ``extend`` setting it ends with the embedding-extended LFs' ``NAME~ext`` columns,
        recomputed whenever what they were computed from changed (:meth:`_extended`).
        """
        path = self._matrix_path()
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

    def _matrix_path(self) -> Path:
        path = self.store / "matrix.parquet"
        _not_a_folder(path)
        if not path.is_file():
            raise ProjectError(f"{self.root} has no label matrix yet; run `labelflow apply` first")
        return path

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
        lm.save(self.store / "models" / f"{name}.npz", lf_names=matrix.lf_names)
        record = self._fit_record(matrix, splits)
        record["settings"] = {"seed": seed, "use_dev": bool(use_dev)}
        write_json(self._fit_record_path(name), record)
        return lm

    def fit_settings(self, name: str | None = None) -> dict[str, Any]:
        """``{"seed": int, "use_dev": bool}`` the saved label model ``name`` was fit with
        (``{"seed": 123, "use_dev": False}`` when it has not been fit, or was fit before settings were recorded)."""
        path = self._fit_record_path(name or self.config.label_model)
        settings = {"seed": 123, "use_dev": False}
        if path.is_file():
            try:
                recorded = json.loads(path.read_text(encoding="utf-8")).get("settings") or {}
            except (OSError, ValueError, AttributeError) as exc:
                raise ProjectError(f"{path} is unreadable ({exc}); run `labelflow fit` with the settings you want "
                                   "(--seed, --dev-gold) to rewrite it") from None
            if isinstance(recorded.get("seed"), int) and not isinstance(recorded.get("seed"), bool):
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
        path = self.store / "models" / f"{name}.npz"
        _not_a_folder(path)
        if not path.is_file():
            raise ProjectError(f"label model {name!r} has not been fit in {self.root}; run `labelflow fit --model {name}`")
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
        record_path = self._fit_record_path(name)
        try:
            record = json.loads(record_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            raise ProjectError(f"label model {name!r} in {self.root} has no record of the data it was fit on "
                               f"({record_path.name} is missing or unreadable); run `labelflow fit --model {name}` "
                               "again") from None
        now = self._fit_record(matrix)
        changed = [what for key, what in (("rows", "the number of rows"), ("matrix", "the label matrix (row ids or votes)"),
                                          ("splits", "the rows' splits")) if record.get(key) != now[key]]
        if changed:
            raise ProjectError(f"label model {name!r} was fit on other data: {', '.join(changed)} changed since "
                               f"(re-imported data or re-applied LFs); run `labelflow fit --model {name}` again")
        return model

    def _fit_record_path(self, name: str) -> Path:
        return self.store / "models" / f"{name}.fit.json"

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
        values = matrix.values
        probs = lm.predict_proba(values)
        return Predictions(probs=probs, pred=probs_to_preds(probs, tie_policy="random"), tied=tied_rows(probs),
                           covered=(values != ABSTAIN).any(axis=1))

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
        fmt = fmt or out.suffix.lstrip(".").lower()
        if fmt not in EXPORT_FORMATS:
            raise ProjectError(f"export format must be one of {list(EXPORT_FORMATS)}; got {fmt!r} (from {out})")
        rows = self.columns("id", *self.config.text, "split")
        present = rows["split"].unique(maintain_order=True).to_list()
        if splits:
            splits = [canonical_split(s) for s in splits]
            unknown = sorted(set(splits) - set(present))
            if unknown:
                raise ProjectError(f"unknown split(s) {unknown}; the dataset's splits are {present}")
        predictions = self.predictions(model)
        names = np.array(self.schema.names, dtype=object)
        gold = self.gold()
        frame = rows.with_columns(
            pl.Series("label", np.where(gold == ABSTAIN, None, gold).tolist(), dtype=pl.Int16),
            *[pl.Series(f"prob_{c}", predictions.probs[:, i]) for i, c in enumerate(self.schema.names)],
            pl.Series("pred", predictions.pred, dtype=pl.Int16),
            pl.Series("pred_name", names[predictions.pred].tolist(), dtype=pl.String),
            pl.Series("covered", predictions.covered),
            pl.Series("tied", predictions.tied),
        )
        if splits:
            frame = frame.filter(pl.col("split").is_in(list(splits)))
        with atomic_path(out) as tmp:
            getattr(frame, {"parquet": "write_parquet", "csv": "write_csv", "jsonl": "write_ndjson"}[fmt])(tmp)
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
        column = column or (self.extend_config or ExtendConfig()).embedding
        rows = self.rows()
        schema = rows.collect_schema()
        arrays = [c for c, t in schema.items() if isinstance(t, (pl.Array, pl.List))]
        if column not in schema:
            raise ProjectError(f"{self.root}: no embedding column {column!r} in the dataset (array columns: {arrays}); "
                               f"run `labelflow fm embed -p {self.root}` first (it writes column 'embedding'), or "
                               "name another array column (`--extend COLUMN`)")
        dtype = schema[column]
        inner = getattr(dtype, "inner", None)
        if not isinstance(dtype, (pl.Array, pl.List)) or inner is None or not inner.is_numeric():
            raise ProjectError(f"{self.root}: column {column!r} is {dtype}, not an embedding (an array of numbers); "
                               f"run `labelflow fm embed -p {self.root}` for one")
        values = rows.select(column).collect()[column]
        present = values.is_not_null().to_numpy()
        kept = values.filter(pl.Series(present))
        width = dtype.size if isinstance(dtype, pl.Array) else (kept.list.len().unique().to_list() or [0])
        if isinstance(width, list):
            if len(width) > 1:
                raise ProjectError(f"{self.root}: column {column!r} holds lists of lengths {sorted(width)[:5]}; an "
                                   "embedding has one length")
            width = width[0]
            kept = kept.list.to_array(width) if width else kept
        X = np.full((len(values), width), np.nan, dtype=np.float32)
        if width and present.any():
            X[present] = kept.to_numpy().astype(np.float32)
        return X

    def extension(self) -> list[dict[str, Any]]:
        """Per LF, what the current matrix's extension gave (:class:`~labelflow.extend.LFExtension` as dicts:
        radius, dev evidence, votes cast, or why it got no column); ``[]`` without extended LFs."""
        if self.extend_config is None:
            return []
        self.matrix()  # recomputes the extension when its inputs changed
        return json.loads((self.store / "extension.json").read_text(encoding="utf-8"))["lfs"]

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
        """``matrix`` with the extension columns the ``extend`` setting asks for, never stale.

        The columns are a pure function of the suite's votes (the matrix's other columns),
        the embedding column, the dev rows' gold labels (annotations included) and the
        settings; ``store/extension.json`` records fingerprints of all four and of the
        matrix it was saved with. When any differs (LFs re-applied, ``fm embed`` run again,
        a dev row labelled, settings changed) the columns are recomputed and the matrix saved
        again; a saved label model then asks for ``labelflow fit``. Without the setting, extension
        columns are dropped.
        """
        base_idx = base_columns(matrix.lf_names)
        base = matrix if len(base_idx) == len(matrix.lf_names) else LabelMatrix(
            matrix.values[:, base_idx], tuple(matrix.lf_names[j] for j in base_idx), matrix.ids, matrix.cardinality,
            matrix.failures)
        config, record_path = self.extend_config, self.store / "extension.json"
        if config is None:
            if base is not matrix:
                self._save_extended(base, None)
            return base
        split = self.columns("split")["split"].to_numpy()
        dev = split == "dev"
        gold = np.where(dev, self.gold(), ABSTAIN)
        key = {"version": 1, "config": config.to_dict(), "base": base.fingerprint(),
               "dev_gold": hashlib.blake2b(dev.tobytes() + gold.astype(np.int64).tobytes(), digest_size=16).hexdigest()}
        stamp = self._embedding_stamp(config.embedding)
        try:
            record = json.loads(record_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            record = {}
        X = None
        if isinstance(record, dict) and all(record.get(k) == v for k, v in key.items()) \
                and record.get("matrix") == matrix.fingerprint():
            if record.get("embedding_file") == stamp:
                return matrix
            X = self.embeddings(config.embedding)
            if record.get("embedding") == _array_digest(X):
                return matrix
        X = self.embeddings(config.embedding) if X is None else X
        ext = extend_votes(base.values, X, dev_rows=dev, y_dev=gold[dev], cardinality=self.schema.k,
                           lf_names=base.lf_names, config=config)
        extended = LabelMatrix(ext.values, ext.names, base.ids, base.cardinality, base.failures)
        self._save_extended(extended, {**key, "embedding": _array_digest(X), "embedding_file": stamp,
                                       "matrix": extended.fingerprint(), "lfs": [e.to_dict() for e in ext.lfs]})
        return extended

    def _save_extended(self, matrix: LabelMatrix, record: dict[str, Any] | None) -> None:
        """Save a matrix whose extension columns changed, and its record; on a read-only store it stays in memory
        (it is recomputed on the next read)."""
        record_path = self.store / "extension.json"
        try:
            matrix.save(self.store / "matrix.parquet")
            if record is None:
                record_path.unlink(missing_ok=True)
            else:
                write_json(record_path, record)
        except OSError:
            pass

    def _embedding_stamp(self, column: str) -> list[Any]:
        """``[file, size, mtime_ns]`` of the file holding ``column`` (a quick test that it is unchanged)."""
        path = self.store / "fm" / f"{column}.parquet"
        path = path if path.is_file() else self.store / "dataset.parquet"
        try:
            st = path.stat()
        except OSError:
            return [path.name, None, None]
        return [path.name, st.st_size, st.st_mtime_ns]


    # --- helpers ------------------------------------------------------------------------------------

    def columns(self, *names: str) -> pl.DataFrame:
        """Only these columns of the imported dataset, in its row order (no text or FM outputs a step does not
        need: ``fit`` reads ``id``, ``split`` and ``label`` alone)."""
        path = self.store / "dataset.parquet"
        if not path.is_file():
            raise ProjectError(f"{path} is missing; re-create the project with `labelflow init`")
        return pl.read_parquet(path, columns=list(dict.fromkeys(names)))

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


def _relocated(key: str, path: str | None, old: Path | None, here: Path, notes: list[str],
               moved: list[str] | None = None) -> str | None:
    """A relative ``path`` of a project moved from ``old`` to ``here`` (``old`` ``None``: not known), as it should
    be written now; what was decided and is worth saying goes to ``notes`` (see :meth:`Project._relocate`), a file
    re-pointed to where it was to ``moved`` when given (its caller says those in one line when there are several)."""
    if path is None or Path(path).is_absolute():
        return path
    new_file = Path(os.path.normpath(here / path))
    old_file = None if old is None else Path(os.path.normpath(old / path))
    if new_file.exists():
        if old_file is not None and old_file.is_file() and new_file.is_file() and not _same_file(new_file, old_file):
            notes.append(f"{key}: using {new_file}, beside the project; the file it named before the move, {old_file}, "
                         f"also exists and differs (`labelflow config --set {key}=PATH` chooses another)")
        return path
    if old_file is not None and old_file.exists():
        if moved is not None:
            moved.append(str(old_file))
        notes.append(f"{key}: {path} is not beside the project's new folder; it now names the file it named before "
                     f"the move, {old_file}")
        return _relative(old_file, here)
    notes.append(f"{key}: {path} is not found at {new_file}" + ("" if old_file is None else
                 f" nor at {old_file}, where the project was") + f"; set it with `labelflow config --set {key}=PATH`")
    return path


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b) or filecmp.cmp(a, b, shallow=False)
    except OSError:
        return False


def _relative(path: Path, root: Path) -> str:
    """``path`` relative to ``root`` when possible (so a project folder can move), else absolute."""
    try:
        return os.path.relpath(path.resolve(), root.resolve())
    except ValueError:  # different drives on Windows
        return str(path.resolve())


def _array_digest(X: np.ndarray) -> str:
    """A hash of an array's shape and bytes."""
    h = hashlib.blake2b(repr(X.shape).encode(), digest_size=16)
    h.update(np.ascontiguousarray(X).data)
    return h.hexdigest()


def _not_a_folder(path: Path) -> None:
    """Raise :class:`ProjectError` naming ``path`` when a folder (or anything not a file) stands where a store file belongs."""
    if path.exists() and not path.is_file():
        raise ProjectError(f"{path} is not a file; a store file belongs there: move it away, then run the command "
                           "that writes it again")


def _staged(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.with_name(f".{path.name}.staged")
