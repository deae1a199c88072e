"""The store of a labelflow project: every file a project keeps beside its config, and their formats.

Layout of ``PROJECT/store``::

    dataset.parquet         the dataset, imported once by ``init`` (re-imported by ``config``)
    votes/                  per-LF vote cache (one .npz per LF fingerprint and data hash)
    matrix.parquet          the label matrix of the last ``apply``
    ray/                    the dataset as Parquet shards for a Ray cluster (``apply --engine ray``)
    models/NAME.npz         fitted label models; models/NAME.fit.json what each was fit on
    fm.sqlite               FM output cache (content-addressed)
    fm/NAME.parquet         named FM outputs (``labelflow fm ...``), joined to the dataset as column NAME
    extension.json          what the matrix's embedding-extended LF columns were computed from (``extend``)
    annotations.sqlite      human gold labels with annotator and time (the app, Label Studio)
    stale.json              outputs a settings change left stale, until recomputed (``labelflow config``)
    studio.json             the Label Studio project the store is synced with
    drafts/lf.py            the app's LF draft
    runs/                   fine-tuning runs

Only this module names these files; everything else asks a :class:`ProjectStore`. Every
file is written to a temporary name and renamed (:mod:`labelflow.files`), so a failed
command leaves what was saved intact.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from labelflow.errors import ProjectError
from labelflow.io_errors import involving
from labelflow.files import write_json, write_parquet_parts
from labelflow.fm.cache import FMCache
from labelflow.vote_cache import VoteCache


@dataclass(frozen=True)
class ProjectStore:
    """The store folder ``root`` of a project (``PROJECT/store``): its files' paths, and reading and writing them.

    Examples
    --------
    >>> store = ProjectStore(Path("p/store"))
    >>> store.model_file("majority_vote").as_posix(), store.fm_output("embedding").as_posix()
    ('p/store/models/majority_vote.npz', 'p/store/fm/embedding.parquet')
    """

    root: Path

    @classmethod
    def of(cls, project_root: str | Path) -> ProjectStore:
        """The store of the project folder ``project_root``: ``project_root/store``."""
        return cls(Path(project_root) / "store")

    # --- paths ----------------------------------------------------------------------------------------

    @property
    def dataset(self) -> Path:
        """The imported dataset (Parquet)."""
        return self.root / "dataset.parquet"

    @property
    def staged_dataset(self) -> Path:
        """Where a re-imported dataset waits until the config naming it is written (then renamed to :attr:`dataset`)."""
        return self.root / ".dataset.parquet.staged"

    @property
    def votes(self) -> Path:
        """The per-LF vote cache folder."""
        return self.root / "votes"

    @property
    def matrix(self) -> Path:
        """The label matrix of the last ``apply`` (Parquet, :meth:`LabelMatrix.save`)."""
        return self.root / "matrix.parquet"

    @property
    def ray(self) -> Path:
        """Where the dataset is staged as Parquet shards for a Ray cluster."""
        return self.root / "ray"

    @property
    def models(self) -> Path:
        """The fitted label models' folder."""
        return self.root / "models"

    def model_file(self, name: str) -> Path:
        """The saved label model ``name``."""
        return self.models / f"{name}.npz"

    def fit_record(self, name: str) -> Path:
        """What label model ``name`` was fit on and with which settings (JSON)."""
        return self.models / f"{name}.fit.json"

    def fit_models(self) -> list[Path]:
        """The saved label models' files, sorted."""
        return sorted(self.models.glob("*.npz"))

    @property
    def fm_cache_file(self) -> Path:
        """The FM output cache (SQLite)."""
        return self.root / "fm.sqlite"

    @property
    def fm_outputs_folder(self) -> Path:
        """The named FM outputs' folder."""
        return self.root / "fm"

    def fm_output(self, name: str) -> Path:
        """The FM output stored as column ``name`` (Parquet: ``id`` and ``name``)."""
        return self.fm_outputs_folder / f"{name}.parquet"

    def fm_outputs(self) -> list[Path]:
        """The stored FM outputs' files, sorted (the order their columns join the dataset in)."""
        return sorted(self.fm_outputs_folder.glob("*.parquet"))

    @property
    def extension(self) -> Path:
        """The record of what the matrix's embedding-extended columns were computed from (JSON)."""
        return self.root / "extension.json"

    @property
    def annotations(self) -> Path:
        """The human gold labels (SQLite, WAL mode)."""
        return self.root / "annotations.sqlite"

    @property
    def stale_file(self) -> Path:
        """The outputs a settings change left stale (JSON)."""
        return self.root / "stale.json"

    @property
    def studio(self) -> Path:
        """The Label Studio project the store is synced with (JSON)."""
        return self.root / "studio.json"

    @property
    def lf_draft(self) -> Path:
        """The app's LF draft."""
        return self.root / "drafts" / "lf.py"

    @property
    def runs(self) -> Path:
        """The fine-tuning runs' folder."""
        return self.root / "runs"

    def inputs(self) -> list[Path]:
        """The files whose change changes what a project shows (the app's cache key): dataset, matrix,
        annotations (and their WAL file, where a label lands first), FM outputs and saved models."""
        return [self.dataset, self.matrix, self.annotations, self.annotations.with_name("annotations.sqlite-wal"),
                *self.fm_outputs(), *self.fit_models()]

    # --- the dataset ------------------------------------------------------------------------------------

    def _dataset_file(self) -> Path:
        if not self.dataset.is_file():
            raise ProjectError(f"{self.dataset} is missing; re-create the project with `labelflow init`")
        return self.dataset

    def columns(self, *names: str) -> pl.DataFrame:
        """Only these columns of the imported dataset, in its row order."""
        with involving(self.dataset):
            return pl.read_parquet(self._dataset_file(), columns=list(dict.fromkeys(names)))

    def read_dataset(self) -> pl.DataFrame:
        """The imported dataset with its FM output columns."""
        with involving(self.dataset):
            frame = pl.read_parquet(self._dataset_file())
        for output in self.fm_outputs():
            with involving(output):
                frame = frame.join(pl.read_parquet(output), on="id", how="left", maintain_order="left")
        return frame

    def scan_dataset(self) -> pl.LazyFrame:
        """The dataset with its FM output columns, as a lazy frame read a chunk at a time.

        Raises :class:`ProjectError` naming an FM output whose rows do not line up with the dataset's.
        """
        frames = [pl.scan_parquet(self._dataset_file())]
        n = frames[0].select(pl.len()).collect().item()
        for output in self.fm_outputs():
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

    def stage_dataset(self, frame: pl.DataFrame) -> Path:
        """Write ``frame`` to :attr:`staged_dataset` (renamed into place by :meth:`commit_dataset`)."""
        staged = self.staged_dataset
        self.root.mkdir(parents=True, exist_ok=True)
        with involving(self.dataset, writing=True):
            frame.write_parquet(staged)
        return staged

    def commit_dataset(self) -> None:
        """Rename the staged dataset into place."""
        self.staged_dataset.replace(self.dataset)

    def holds_rows(self, frame: pl.DataFrame) -> bool:
        """Whether the imported dataset holds ``frame``'s rows: the same ids in the same order with the same text
        and metadata (gold labels and splits aside), so outputs computed from its rows stay valid."""
        try:
            old = pl.read_parquet(self.dataset)
        except (OSError, pl.exceptions.PolarsError):
            return False
        keep = [c for c in frame.columns if c not in ("label", "split")]
        return sorted(old.columns) == sorted(frame.columns) and old.select(keep).equals(frame.select(keep))

    # --- caches and outputs ------------------------------------------------------------------------------

    def vote_cache(self) -> VoteCache:
        """The per-LF vote cache."""
        return VoteCache(self.votes)

    def fm_cache(self) -> FMCache:
        """The FM output cache."""
        return FMCache(self.fm_cache_file)

    def write_fm_output(self, name: str, chunks: Iterable[tuple[pl.Series, np.ndarray]]) -> Path:
        """Store FM outputs given as consecutive ``(ids, [rows, d] values)`` chunks as column ``name`` (rows not
        computed: NaN → null), one chunk in memory at a time; nothing is stored if ``chunks`` raises."""
        path = self.fm_output(name)
        write_parquet_parts(path, (pl.DataFrame({"id": ids, name: values}).with_columns(
            pl.when(pl.col(name).arr.first().is_nan()).then(None).otherwise(pl.col(name)).alias(name))
            for ids, values in chunks))
        return path

    def existing(self, path: Path, missing: str) -> Path:
        """``path`` (a store file), checked: :class:`ProjectError` naming it when a folder stands there, or saying
        ``missing`` when it is absent."""
        if path.exists() and not path.is_file():
            raise ProjectError(f"{path} is not a file; a store file belongs there: move it away, then run the command "
                               "that writes it again")
        if not path.is_file():
            raise ProjectError(missing)
        return path

    # --- small JSON records -------------------------------------------------------------------------------

    def stale(self) -> dict[str, str]:
        """The stale marks (``{output: why}``); ``{}`` without (or with an unreadable) file."""
        marks = read_record(self.stale_file)
        return {k: v for k, v in marks.items() if isinstance(v, str)}

    def write_stale(self, marks: Mapping[str, str]) -> None:
        """Replace the stale marks with ``marks`` (none: the file goes)."""
        if marks:
            write_json(self.stale_file, dict(marks))
        else:
            self.stale_file.unlink(missing_ok=True)

    def extension_record(self) -> dict[str, Any]:
        """The extension record; ``{}`` without (or with an unreadable) file."""
        return read_record(self.extension)

    def write_extension_record(self, record: dict[str, Any] | None) -> None:
        """Write the extension record (``None``: remove it)."""
        if record is None:
            self.extension.unlink(missing_ok=True)
        else:
            write_json(self.extension, record)

    def fit_settings(self, name: str) -> dict[str, Any]:
        """The ``settings`` of label model ``name``'s fit record (``{}`` when it has none or was never fit).
        Raises :class:`ProjectError` naming the record when it is unreadable."""
        path = self.fit_record(name)
        if not path.is_file():
            return {}
        try:
            recorded = json.loads(path.read_text(encoding="utf-8")).get("settings") or {}
        except (OSError, ValueError, AttributeError) as exc:
            raise ProjectError(f"{path} is unreadable ({exc}); run `labelflow fit` with the settings you want "
                               "(--seed, --dev-gold) to rewrite it") from None
        return recorded if isinstance(recorded, dict) else {}


def read_record(path: Path) -> dict[str, Any]:
    """A JSON object from ``path``; ``{}`` when the file is missing, unreadable or holds something else."""
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}
