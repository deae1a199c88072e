"""Load data files and frames into labelflow's one representation, :class:`Dataset`.

A dataset is a polars frame with these columns, in this order:

``id`` (str)
    Stable, unique row id: the mapped id column, or ``<file stem>:<row>``.
``text`` (str) and any further text fields
    The primary text field is always called ``text``.
``split`` (str)
    ``train``, ``dev``, ``test`` or any other name. The standard names are read
    case-insensitively and ``valid``/``validation``/``val`` as ``dev`` (``VALID`` → ``dev``,
    ``Train`` → ``train``); any other name is kept as given.
``label`` (Int16, null where unknown)
    Gold class index in ``0 .. k-1``.
metadata
    Every other column, under its own name.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Union

import numpy as np
import polars as pl

from labelflow.conventions import ABSTAIN, GoldArray
from labelflow.errors import DataError
from labelflow.schema import ClassSchema
from labelflow.tables import Source, is_frame, read_table
from labelflow.validation import check_choice

PathLike = Union[str, Path]

RESERVED = ("id", "split", "label")
Duplicates = Literal["error", "drop_identical"]
"""What :func:`load_dataset` does with repeated ids: refuse them, or first drop rows that are exact copies."""
SPLIT_ALIASES = {"valid": "dev", "validation": "dev", "val": "dev"}
STANDARD_SPLITS = ("train", "dev", "test")
"""The split names every command knows; ``SPLIT_ALIASES`` and any capitalisation of these read as them."""


@dataclass(frozen=True)
class Dataset:
    """Rows to label, in labelflow's one representation (see the module docstring).

    Parameters
    ----------
    frame
        ``[n rows]`` frame with ``id``, text field(s), ``split``, ``label`` and metadata.
    schema
        The task's classes.
    text_fields
        Names of the text columns; the first is ``"text"``.
    """

    frame: pl.DataFrame
    schema: ClassSchema
    text_fields: tuple[str, ...] = ("text",)

    def __len__(self) -> int:
        return self.frame.height

    @property
    def ids(self) -> pl.Series:
        """``[n]`` row ids."""
        return self.frame["id"]

    @property
    def metadata_columns(self) -> list[str]:
        """Columns that are neither id, split, label nor text."""
        skip = set(RESERVED) | set(self.text_fields)
        return [c for c in self.frame.columns if c not in skip]

    def split(self, name: str) -> "Dataset":
        """The rows of one split, in order (``name`` as :func:`canonical_split` reads it)."""
        return self.replace(self.frame.filter(pl.col("split") == canonical_split(name)))

    def splits(self) -> list[str]:
        """Split names present, in order of first appearance."""
        return self.frame["split"].unique(maintain_order=True).to_list()

    def gold(self) -> GoldArray:
        """``[n]`` gold classes, ``ABSTAIN`` where unknown."""
        return self.frame["label"].fill_null(ABSTAIN).to_numpy().astype(np.int64)

    def replace(self, frame: pl.DataFrame) -> "Dataset":
        """The same schema and fields over another frame."""
        return Dataset(frame, self.schema, self.text_fields)

    def with_dev_sample(self, n: int, *, seed: int = 0, from_split: str = "train") -> "Dataset":
        """Move a fixed, seeded sample of ``n`` rows of ``from_split`` into split ``dev``.

        The sample depends only on the ids of ``from_split`` and ``seed``.
        """
        pool = self.frame.filter(pl.col("split") == from_split)["id"].to_numpy()
        if n < 0 or n > len(pool):
            raise DataError(f"dev sample size must be within 0..{len(pool)} (rows in split {from_split!r}); got {n}")
        chosen = np.random.default_rng(seed).choice(np.sort(pool), size=n, replace=False)
        is_dev = pl.col("id").is_in(chosen.tolist())
        frame = self.frame.with_columns(split=pl.when(is_dev).then(pl.lit("dev")).otherwise(pl.col("split")))
        return self.replace(frame)

    def hide_labels(self, splits: Sequence[str]) -> "Dataset":
        """Drop the gold labels of the given splits (for example ``["train"]``; names as :func:`canonical_split`)."""
        hidden = pl.col("split").is_in([canonical_split(s) for s in splits])
        frame = self.frame.with_columns(label=pl.when(hidden).then(None).otherwise(pl.col("label")))
        return self.replace(frame)


def rows_to_label(data: Dataset | pl.DataFrame | pl.LazyFrame | Any) -> pl.DataFrame | pl.LazyFrame:
    """The rows LFs label, as a polars (lazy) frame with an ``id`` column.

    ``data`` is a :class:`Dataset`, a polars frame or lazy frame, or a pandas frame (read as
    polars). A frame without an ``id`` column gets row ids ``"0" .. "n-1"``, the row's position
    (a pandas frame's index is not used).

    Raises
    ------
    DataError
        ``data`` is none of those, naming its type.

    Examples
    --------
    >>> rows_to_label(pl.DataFrame({"text": ["a", "b"]})).rows()
    [('0', 'a'), ('1', 'b')]
    """
    if isinstance(data, Dataset):
        return data.frame
    if is_frame(data) and not isinstance(data, pl.DataFrame):
        data = pl.from_pandas(data)
    if not isinstance(data, (pl.DataFrame, pl.LazyFrame)):
        raise DataError(f"the data to label must be a Dataset, a polars or pandas frame, or a polars lazy frame; "
                        f"got {type(data).__name__}")
    if "id" in data.collect_schema():
        return data
    return data.with_row_index("id").with_columns(pl.col("id").cast(pl.String))


def load_dataset(
    source: Source | Sequence[Source] | Mapping[str, Source | Sequence[Source]],
    *,
    classes: ClassSchema | Sequence[str] | Mapping[str, str],
    text: str | Mapping[str, str] = "text",
    id: str | None = None,
    label: str | None = None,
    split: str | None = None,
    default_split: str = "train",
    duplicates: Duplicates = "error",
) -> Dataset:
    """Load files or frames into a :class:`Dataset`.

    Parameters
    ----------
    source
        A path (CSV/TSV, Parquet, JSONL), a polars or pandas frame, a list of them
        (concatenated), or a ``{split: source(s)}`` mapping that sets each row's split.
    classes
        Class names in index order, or ``{name: description}``.
    text
        Source column of the primary text field, or ``{field: source column}`` with a
        ``"text"`` key for several text fields.
    id, label, split
        Source columns holding the row id, the gold label (class index or class name;
        null where unknown) and the split. ``None``: absent.
    default_split
        Split of rows when neither ``split`` nor a split mapping says.
    duplicates
        ``"error"``: any repeated id is an error. ``"drop_identical"``: rows that are
        exact copies of an earlier row (every column equal) are dropped first; ids
        that still repeat are an error.

    Returns
    -------
    Dataset
        ``n`` rows, where ``n`` is the total number of source rows.

    Examples
    --------
    >>> import polars as pl
    >>> df = pl.DataFrame({"msg": ["win cash", "hi mom"], "y": ["spam", "ham"]})
    >>> ds = load_dataset(df, classes=["ham", "spam"], text="msg", label="y")
    >>> ds.frame.select("id", "text", "split", "label").rows()
    [('0', 'win cash', 'train', 1), ('1', 'hi mom', 'train', 0)]
    """
    schema = ClassSchema.from_spec(classes)
    text_map = {"text": text} if isinstance(text, str) else dict(text)
    if "text" not in text_map:
        raise DataError(f"the text mapping must have a 'text' key (the primary text field); got {text_map}")
    mapped = {**{v: k for k, v in text_map.items()}}
    for role, column in (("id", id), ("label", label), ("split", split)):
        if column is not None:
            mapped[column] = role

    parts: list[tuple[str | None, Source]] = []
    if isinstance(source, Mapping):
        for split_name, srcs in source.items():
            for src in _as_list(srcs):
                parts.append((canonical_split(split_name), src))
    else:
        parts = [(None, src) for src in _as_list(source)]
    if not parts:
        raise DataError("no data sources given")

    frames = []
    as_text = [c for c in mapped if mapped[c] == "id" or mapped[c] in text_map]
    for split_name, src in parts:
        where, frame = read_table(src, strings=as_text)
        frames.append(_normalize(frame, where, mapped, text_map, schema, split_name, default_split, multi=len(parts) > 1))
    frame = pl.concat(frames, how="diagonal_relaxed") if len(frames) > 1 else frames[0]
    if duplicates == "drop_identical":
        frame = frame.unique(maintain_order=True)
    else:
        check_choice("duplicates", duplicates, Duplicates, error=DataError)
    _check_unique_ids(frame)
    return Dataset(frame, schema, tuple(text_map))


def read_wrench(folder: PathLike) -> tuple[Dataset, "LabelMatrix"]:  # noqa: F821 (import cycle)
    """Read a WRENCH benchmark folder: its rows and its fixed label matrix.

    The folder holds ``label.json`` (``{class id: name}``) and split files
    ``train.json``, ``valid.json`` (read as ``dev``) and ``test.json``, each
    ``{id: {"label": int, "weak_labels": [int, ...], "data": {"text": str, ...}}}``.

    Returns
    -------
    (Dataset, LabelMatrix)
        Rows with ids ``<split>:<key>``; the ``[n, m]`` weak-label matrix, LFs named
        ``lf_0 .. lf_{m-1}``.
    """
    from labelflow.matrix import LabelMatrix

    folder = Path(folder)
    label_file = folder / "label.json"
    if not label_file.is_file():
        raise DataError(f"{folder} is not a WRENCH folder: {label_file.name} is missing")
    names = json.loads(label_file.read_text())
    schema = ClassSchema(tuple(names[str(i)] for i in range(len(names))))
    rows, votes = [], []
    for split_name in ("train", "valid", "test"):
        path = folder / f"{split_name}.json"
        if not path.is_file():
            continue
        for key, item in json.loads(path.read_text(encoding="utf-8")).items():
            data = dict(item["data"])
            if "text" not in data:
                raise DataError(f"{path}: row {key!r} has no data.text field; it has {sorted(data)}")
            rows.append({"id": f"{split_name}:{key}", **data, "split": canonical_split(split_name),
                         "label": item.get("label")})
            votes.append(item["weak_labels"])
    if not rows:
        raise DataError(f"{folder} holds no train.json, valid.json or test.json")
    widths = {len(v) for v in votes}
    if len(widths) != 1:
        raise DataError(f"{folder}: rows have weak_labels of different lengths {sorted(widths)}")
    frame = pl.DataFrame(rows, infer_schema_length=None)
    dataset = load_dataset(frame, classes=schema, id="id", label="label", split="split")
    L = np.asarray(votes, dtype=np.int64)
    lf_names = tuple(f"lf_{j}" for j in range(L.shape[1]))
    return dataset, LabelMatrix.from_array(L, lf_names=lf_names, ids=dataset.ids, cardinality=schema.k)


def canonical_split(name: str) -> str:
    """The split a name means: the standard names in any capitalisation, ``valid``/``validation``/``val`` as
    ``dev``; any other name as given.

    Examples
    --------
    >>> [canonical_split(n) for n in ("VALID", "Train", "test", "holdout")]
    ['dev', 'train', 'test', 'holdout']
    """
    lower = name.strip().lower()
    lower = SPLIT_ALIASES.get(lower, lower)
    return lower if lower in STANDARD_SPLITS else name


def _as_list(src: Any) -> list[Any]:
    if isinstance(src, (str, Path)) or is_frame(src):
        return [src]
    return list(src)


def _normalize(
    frame: pl.DataFrame,
    where: str,
    mapped: dict[str, str],
    text_map: dict[str, str],
    schema: ClassSchema,
    split_name: str | None,
    default_split: str,
    *,
    multi: bool,
) -> pl.DataFrame:
    """Rename, cast and validate one source frame into the dataset layout."""
    if frame.height == 0:
        raise DataError(f"{where} has no rows")
    missing = [c for c in mapped if c not in frame.columns]
    if missing:
        roles = {c: mapped[c] for c in missing}
        raise DataError(f"{where} has no column {', '.join(map(repr, missing))} (mapped as {roles}); "
                        f"its columns are {frame.columns}")
    clashes = [c for c in frame.columns if c not in mapped and (c in RESERVED or c in text_map)]
    if clashes:
        raise DataError(f"{where}: unmapped column(s) {clashes} collide with labelflow's reserved names; "
                        f"map them (id=, label=, split=, text=) or rename them")
    frame = frame.rename({src: dst for src, dst in mapped.items() if src != dst})
    stem = None if where.startswith("the ") else Path(where).stem

    for column in ("id", *text_map):
        if column in frame.columns and (frame[column].dtype.is_nested() or frame[column].dtype == pl.Object):
            col = frame[column]
            row = int(col.is_not_null().arg_max() or 0)
            raise DataError(f"{where}: row {row} has a {col.dtype} value in column {column!r} ({col[row]!r}); "
                            "an id or text field must be a string or a number")
    if "id" in frame.columns:
        if frame["id"].null_count():
            row = frame["id"].is_null().arg_max()
            raise DataError(f"{where}: the id column has an empty value at row {row}")
        frame = frame.with_columns(pl.col("id").cast(pl.String))
    else:
        prefix = f"{stem}:" if stem is not None and multi else ""
        frame = frame.with_row_index("id").with_columns(pl.format(f"{prefix}{{}}", pl.col("id")))

    for field in text_map:
        if frame[field].dtype != pl.String:
            frame = frame.with_columns(pl.col(field).cast(pl.String))
        frame = frame.with_columns(pl.col(field).fill_null(""))

    if split_name is not None:
        frame = frame.with_columns(split=pl.lit(canonical_split(split_name)))
    elif "split" in frame.columns:
        names = frame["split"].cast(pl.String).unique().drop_nulls().to_list()
        aliases = pl.col("split").cast(pl.String).replace({n: canonical_split(n) for n in names})
        frame = frame.with_columns(split=aliases.fill_null(canonical_split(default_split)))
    else:
        frame = frame.with_columns(split=pl.lit(canonical_split(default_split)))

    frame = frame.with_columns(label=_gold_column(frame, where, schema))
    if multi and stem is not None and "source" not in frame.columns:
        frame = frame.with_columns(source=pl.lit(Path(where).name))
    head = ["id", *text_map, "split", "label"]
    return frame.select(head + [c for c in frame.columns if c not in head])


def _gold_column(frame: pl.DataFrame, where: str, schema: ClassSchema) -> pl.Series:
    """The ``label`` column as Int16 class indices, validated against the schema."""
    if "label" not in frame.columns:
        return pl.Series("label", [None] * frame.height, dtype=pl.Int16)
    col = frame["label"]
    if col.dtype == pl.String:
        known = {name: i for i, name in enumerate(schema.names)}
        bad = col.is_not_null() & ~col.is_in(list(known))
        codes = col.replace_strict(known, default=None, return_dtype=pl.Int16)
    elif col.dtype.is_integer() or col.dtype == pl.Null:
        codes = col.cast(pl.Int64)
        bad = codes.is_not_null() & ((codes < 0) | (codes >= schema.k))
    elif col.dtype.is_float():
        codes = col.cast(pl.Int64, strict=False)
        bad = (col.is_not_null() & ((codes < 0) | (codes >= schema.k) | (codes.cast(pl.Float64) != col))).fill_null(True)
    else:
        raise DataError(f"{where}: the label column has type {col.dtype}; expected class indices or class names")
    if bad.any():
        i = int(bad.arg_max())
        raise DataError(
            f"{where}: row {i} (id {frame['id'][i]!r}) has gold label {col[i]!r}, which is not in the schema; "
            f"expected a class index 0..{schema.k - 1} or one of {list(schema.names)}"
        )
    return codes.cast(pl.Int16).alias("label")


def _check_unique_ids(frame: pl.DataFrame) -> None:
    dupes = frame.filter(pl.col("id").is_duplicated())["id"].unique(maintain_order=True)
    if len(dupes):
        shown = dupes.head(5).to_list()
        raise DataError(f"duplicate ids: {shown}{' ...' if len(dupes) > 5 else ''} ({len(dupes)} ids appear more than once); "
                        "if they are exact copies, load with duplicates='drop_identical'")
