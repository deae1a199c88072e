"""The label matrix: every LF's vote on every row, with LF names and row ids."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import polars as pl
from numpy.lib.mixins import NDArrayOperatorsMixin

from labelflow.conventions import ABSTAIN, LABEL_DTYPE, MAX_CLASSES, GoldArray, LabelArray
from labelflow.errors import LabelModelError
from labelflow.files import atomic_path
from labelflow.validation import check_int


@dataclass(frozen=True)
class LFFailure:
    """An exception an LF raised on one row (kept when errors abstain)."""

    lf: str
    row_id: str
    error: str


@dataclass(frozen=True, eq=False)
class LabelMatrix(NDArrayOperatorsMixin):
    """Votes of ``m`` LFs on ``n`` rows.

    It is array-like, as Snorkel's label matrix is a NumPy array: ``np.asarray(L)``,
    ``L[:, j]``, ``L[i, j]``, ``len(L)`` and operators (``L != ABSTAIN``, ``L + 1``)
    act on its ``[n, m]`` votes and give NumPy arrays, so it goes where an array of
    votes goes (a label model's ``fit``, Snorkel's ``LFAnalysis``). ``==`` compares
    votes elementwise too; :meth:`fingerprint` tells whether two matrices are equal.

    Parameters
    ----------
    values
        ``[n, m]`` ``int8`` votes: a class in ``0 .. cardinality-1`` or ``ABSTAIN``.
    lf_names
        ``[m]`` LF names, unique, in column order.
    ids
        ``[n]`` row ids, in row order.
    cardinality
        Number of classes ``k``.
    failures
        Exceptions LFs raised on rows where they were made to abstain.
    """

    values: LabelArray
    lf_names: tuple[str, ...]
    ids: pl.Series
    cardinality: int
    failures: tuple[LFFailure, ...] = ()

    def __array__(self, dtype: npt.DTypeLike = None, copy: bool | None = None) -> np.ndarray:
        """The ``[n, m]`` votes as a NumPy array (``int8`` unless ``dtype`` says otherwise)."""
        if copy is False and dtype is not None and np.dtype(dtype) != self.values.dtype:
            raise ValueError(f"the votes are {self.values.dtype}; a {np.dtype(dtype)} array of them needs a copy")
        values = self.values if dtype is None else self.values.astype(dtype, copy=False)
        return values.copy() if copy and values is self.values else values

    def __getitem__(self, index: Any) -> Any:
        """NumPy indexing into the ``[n, m]`` votes: ``L[:, j]`` is LF ``j``'s ``[n]`` votes (see :meth:`rows`
        for a :class:`LabelMatrix` of some rows)."""
        return self.values[index]

    def __len__(self) -> int:
        """``n``, the number of rows."""
        return self.values.shape[0]

    def flatten(self) -> np.ndarray:
        """The ``[n * m]`` votes row after row, as ``ndarray.flatten`` (Snorkel's ``LFAnalysis`` calls it)."""
        return self.values.flatten()

    @classmethod
    def from_array(
        cls, L: np.ndarray, *, lf_names: Sequence[str], ids: pl.Series | Sequence[str] | None = None, cardinality: int
    ) -> "LabelMatrix":
        """Validate an ``[n, m]`` array of votes and wrap it (ids default to ``"0" .. "n-1"``)."""
        values = check_label_matrix(L, cardinality)
        if len(lf_names) != values.shape[1]:
            raise LabelModelError(f"lf_names has {len(lf_names)} names for a matrix with {values.shape[1]} LFs")
        if ids is None:
            ids = pl.Series("id", [str(i) for i in range(values.shape[0])])
        ids = pl.Series("id", ids, dtype=pl.String)
        if len(ids) != values.shape[0]:
            raise LabelModelError(f"ids has {len(ids)} entries for a matrix with {values.shape[0]} rows")
        return cls(values, tuple(lf_names), ids, cardinality)

    @property
    def shape(self) -> tuple[int, int]:
        """``(n, m)``."""
        return self.values.shape  # type: ignore[return-value]

    def summary(self, y: GoldArray | None = None) -> pl.DataFrame:
        """One row per LF, as Snorkel's ``LFAnalysis(L, lfs).lf_summary(Y)``: see :func:`lf_summary`.

        ``y``: optional ``[n]`` gold classes, ``ABSTAIN`` where unknown.
        """
        return lf_summary(self.values, lf_names=self.lf_names, cardinality=self.cardinality, y=y)

    def rows(self, index: np.ndarray) -> "LabelMatrix":
        """The rows at ``index``: a boolean ``[n]`` mask or an integer index array."""
        index = np.asarray(index)
        idx = np.flatnonzero(index) if index.dtype == bool else index
        return LabelMatrix(self.values[idx], self.lf_names, self.ids.gather(idx), self.cardinality, self.failures)

    def to_frame(self) -> pl.DataFrame:
        """``[n, 1 + m]`` frame: ``id`` then one ``Int8`` column per LF."""
        cols = {name: self.values[:, j] for j, name in enumerate(self.lf_names)}
        return pl.DataFrame({"id": self.ids, **cols})

    def save(self, path: str | Path) -> None:
        """Write the matrix as Parquet (cardinality and failures in its metadata), atomically."""
        frame = self.to_frame()
        meta = {
            "labelflow.cardinality": str(self.cardinality),
            "labelflow.failures": json.dumps([f.__dict__ for f in self.failures]),
            "labelflow.content": _content_hash(frame),
        }
        with atomic_path(path) as tmp:
            frame.write_parquet(tmp, metadata=meta)

    @staticmethod
    def read_lf_names(path: str | Path) -> tuple[str, ...]:
        """The LF names of a matrix written by :meth:`save`, read from its schema alone (no votes)."""
        return tuple(c for c in pl.read_parquet_schema(path) if c != "id")

    @classmethod
    def load(cls, path: str | Path, *, check_content: bool = True) -> "LabelMatrix":
        """Read a matrix written by :meth:`save`, checking every vote before it becomes ``int8``.

        A vote outside ``-1 .. cardinality-1`` (``256`` in an ``Int16`` column would wrap to
        ``0``) and a null are refused, naming the value, the LF and the row id: the applier
        writes ``-1`` for an abstain, never a null, so a null means the file was written by
        something else and is not read as an abstain (nor as class ``0``). With ``check_content``,
        votes moved between rows after :meth:`save` wrote the file are refused too (an
        order-independent hash of its rows is kept in its metadata).

        Raises
        ------
        LabelModelError
            Naming the file and what in it does not fit.
        """
        path = Path(path)
        schema = pl.read_parquet_schema(path)
        meta = pl.read_parquet_metadata(path)
        if "id" not in schema:
            raise LabelModelError(f"{path} has no 'id' column; a label matrix carries its rows' ids")
        try:
            cardinality = int(meta["labelflow.cardinality"])
        except (KeyError, ValueError):
            raise LabelModelError(f"{path} lacks its cardinality (metadata 'labelflow.cardinality'); "
                                  "it was not written by LabelMatrix.save") from None
        check_int(f"{path}: cardinality", cardinality, minimum=2, maximum=MAX_CLASSES, error=LabelModelError)
        names = cls.read_lf_names(path)
        for name in names:
            dtype = schema[name]
            if not (dtype.is_integer() or dtype == pl.Null):
                raise LabelModelError(f"{path}: LF {name!r} has votes of type {dtype}; votes are integers "
                                      f"-1..{cardinality - 1}")
        frame = pl.read_parquet(path)
        ids = frame["id"].cast(pl.String)
        if ids.null_count():
            raise LabelModelError(f"{path}: row {int(ids.is_null().arg_max())} has no id")
        for name in names:
            col = frame[name]
            if col.null_count():
                i = int(col.is_null().arg_max())
                raise LabelModelError(f"{path}: LF {name!r} has no vote (null) on row id {ids[i]!r}; a vote is "
                                      f"-1 (abstain) or a class 0..{cardinality - 1}, a null is not read as either")
            bad = (col < ABSTAIN) | (col >= cardinality)
            if bad.any():
                i = int(bad.arg_max())
                raise LabelModelError(f"{path}: LF {name!r} votes {col[i]} on row id {ids[i]!r}, outside "
                                      f"-1..{cardinality - 1} (cardinality {cardinality})")
        recorded = meta.get("labelflow.content")
        if check_content and recorded and recorded.split(":")[0] == pl.__version__ \
                and recorded != _content_hash(frame):
            raise LabelModelError(f"{path}: its votes were changed after `labelflow apply` wrote it (they no longer "
                                  "match the content hash it recorded); run `labelflow apply` to rebuild it")
        values = (frame.select(names).to_numpy().astype(LABEL_DTYPE) if names
                  else np.empty((frame.height, 0), LABEL_DTYPE))
        failures = tuple(LFFailure(**f) for f in json.loads(meta.get("labelflow.failures", "[]")))
        return cls(values, names, ids.alias("id"), cardinality, failures)

    def aligned(self, ids: pl.Series | Sequence[str], *, where: str = "the label matrix") -> "LabelMatrix":
        """The same votes with the rows in the order of ``ids`` (a dataset's ids).

        Rows are re-ordered by id when the matrix holds exactly the rows of ``ids``;
        otherwise this raises :class:`LabelModelError` naming ``where``, how many ids are
        missing or extra, and a few of them.
        """
        ids = pl.Series("id", ids, dtype=pl.String)
        if self.ids.len() == ids.len() and self.ids.equals(ids, check_names=False):
            return self
        mine = self.ids.to_frame("id").with_row_index("row")
        dupes = mine.filter(pl.col("id").is_duplicated())["id"].unique(maintain_order=True)
        if len(dupes):
            raise LabelModelError(f"{where} holds row id(s) {dupes.head(3).to_list()} more than once")
        order = ids.to_frame("id").join(mine, on="id", how="left", maintain_order="left")["row"]
        missing = ids.filter(order.is_null())
        extra = self.ids.filter(~self.ids.is_in(ids.implode()))
        if len(missing) or len(extra):
            raise LabelModelError(
                f"{where} does not hold the dataset's rows: {len(missing)} of the dataset's {len(ids)} ids are "
                f"missing from it {missing.head(3).to_list()}, {len(extra)} of its ids are not in the dataset "
                f"{extra.head(3).to_list()}")
        return self.rows(order.to_numpy())

    def fingerprint(self) -> str:
        """A hash of the LF names, cardinality, row ids (in order) and every vote: equal exactly when the matrix is."""
        h = hashlib.blake2b(digest_size=16)
        h.update(json.dumps([list(self.lf_names), self.cardinality, list(self.shape)]).encode())
        h.update(hash_strings(self.ids).encode())
        h.update(np.ascontiguousarray(self.values, dtype=LABEL_DTYPE).data)
        return h.hexdigest()


def _content_hash(frame: pl.DataFrame) -> str:
    """``"<polars version>:<hex>"``: an order-independent hash of a matrix frame's rows (id and votes), so rows
    re-ordered by id still match and a vote moved to another row does not. Row hashes are polars', stable within
    a polars version only, so a file written under another version is not checked."""
    rows = frame.select(pl.col("id").cast(pl.String), pl.exclude("id").cast(pl.Int16)).hash_rows(seed=0)
    total = int(rows.to_numpy().astype(np.uint64).sum(dtype=np.uint64))
    return f"{pl.__version__}:{total:016x}:{frame.height}"


def hash_strings(values: pl.Series, *, chunk: int = 1 << 18) -> str:
    """A stable hash of a string column's values in order (a null is distinct from every string).

    Examples
    --------
    >>> hash_strings(pl.Series(["a", "b"])) == hash_strings(pl.Series(["a", "b"])) != hash_strings(pl.Series(["b", "a"]))
    True
    """
    h = hashlib.blake2b(digest_size=16)
    values = values.cast(pl.String)
    for start in range(0, len(values), chunk):
        part = values.slice(start, chunk)
        h.update(part.is_null().to_numpy().tobytes())
        part = part.fill_null("")
        h.update(part.str.len_bytes().to_numpy().astype(np.int64).tobytes())
        h.update("".join(part.to_list()).encode())
    return h.hexdigest()


def check_label_matrix(L: np.ndarray, cardinality: int) -> LabelArray:
    """Validate a label matrix and return it as ``int8``.

    Parameters
    ----------
    L
        ``[n, m]`` integer votes in ``-1 .. cardinality-1``.
    cardinality
        Number of classes ``k``, ``2 ≤ k ≤ 127``.

    Raises
    ------
    LabelModelError
        Naming the shape, or the first out-of-range value and its position.

    Examples
    --------
    >>> check_label_matrix([[0, -1], [1, 1]], 2).dtype
    dtype('int8')
    >>> check_label_matrix([[0, 2]], 2)
    Traceback (most recent call last):
    ...
    labelflow.errors.LabelModelError: label matrix value 2 at row 0, LF 1 is outside -1..1 (cardinality 2)
    """
    check_int("cardinality", cardinality, minimum=2, maximum=MAX_CLASSES, error=LabelModelError)
    arr = np.asarray(L)
    if arr.ndim != 2:
        raise LabelModelError(f"a label matrix must be 2-D [n rows, m LFs]; got shape {arr.shape}")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise LabelModelError(f"the label matrix is empty (shape {arr.shape}); it needs at least one row and one LF")
    if not np.issubdtype(arr.dtype, np.integer):
        if not np.issubdtype(arr.dtype, np.floating) or not np.all(np.mod(arr, 1) == 0):
            raise LabelModelError(f"a label matrix holds integer class indices; got dtype {arr.dtype}")
    bad = (arr < ABSTAIN) | (arr >= cardinality)
    if bad.any():
        i, j = np.argwhere(bad)[0]
        raise LabelModelError(
            f"label matrix value {arr[i, j]} at row {i}, LF {j} is outside -1..{cardinality - 1} (cardinality {cardinality})"
        )
    return arr.astype(LABEL_DTYPE, copy=False)


VOTE_CHUNK_ROWS = 1 << 20
"""Rows :func:`vote_counts` counts at a time (its temporaries stay bounded)."""


def vote_counts(L: LabelArray, cardinality: int) -> np.ndarray:
    """``[n, k]`` number of LFs voting for each class, from an ``[n, m]`` label matrix.

    Examples
    --------
    >>> vote_counts(np.array([[0, 1, 1], [-1, -1, 0]], dtype=np.int8), 2)
    array([[1, 2],
           [1, 0]], dtype=int32)
    """
    n = L.shape[0]
    counts = np.zeros((n, cardinality), dtype=np.int32)
    for start in range(0, n, VOTE_CHUNK_ROWS):  # bounded temporaries for large n
        block = L[start:start + VOTE_CHUNK_ROWS]
        rows, cols = np.nonzero(block >= 0)
        flat = rows * cardinality + block[rows, cols]
        counts[start:start + len(block)] = np.bincount(flat, minlength=len(block) * cardinality).reshape(-1, cardinality)
    return counts


def lf_summary(
    L: LabelArray, *, lf_names: Sequence[str], cardinality: int, y: GoldArray | None = None
) -> pl.DataFrame:
    """One row per LF: what it votes, how often, and with whom it agrees.

    Parameters
    ----------
    L
        ``[n, m]`` votes.
    lf_names
        ``[m]`` names.
    cardinality
        Number of classes ``k``.
    y
        Optional ``[n]`` gold classes, ``ABSTAIN`` where unknown; accuracy is
        measured on the rows that have gold.

    Returns
    -------
    polars.DataFrame
        ``lf``, ``polarity`` (sorted classes voted), ``coverage`` (fraction of rows
        voted on), ``overlaps`` (fraction of rows voted on that another LF also votes
        on), ``conflicts`` (… on which another LF votes differently), and with ``y``:
        ``correct``, ``incorrect``, ``emp_acc`` (null where the LF never votes on gold rows).

    Examples
    --------
    >>> L = np.array([[0, 0, -1], [1, 0, -1], [-1, -1, 1]])
    >>> lf_summary(L, lf_names=["a", "b", "c"], cardinality=2, y=np.array([0, 1, -1])).rows()
    [('a', [0, 1], 0.6666666666666666, 0.6666666666666666, 0.3333333333333333, 2, 0, 1.0), \
('b', [0], 0.6666666666666666, 0.6666666666666666, 0.3333333333333333, 1, 1, 0.5), \
('c', [1], 0.3333333333333333, 0.0, 0.0, 0, 0, None)]
    """
    L = check_label_matrix(L, cardinality)
    n, m = L.shape
    if len(lf_names) != m:
        raise LabelModelError(f"lf_names has {len(lf_names)} names for a matrix with {m} LFs")
    voted = L != ABSTAIN
    n_voting = voted.sum(axis=1)
    counts = vote_counts(L, cardinality)
    polarity = [np.unique(L[voted[:, j], j]).tolist() for j in range(m)]
    overlaps = (voted & (n_voting >= 2)[:, None]).sum(axis=0) / n
    # a vote conflicts when some other LF on the row votes a different class
    same = np.take_along_axis(counts, np.where(voted, L, 0).astype(np.int64), axis=1)
    conflicts = (voted & (same < n_voting[:, None])).sum(axis=0) / n
    data = {
        "lf": list(lf_names),
        "polarity": polarity,
        "coverage": voted.sum(axis=0) / n,
        "overlaps": overlaps,
        "conflicts": conflicts,
    }
    if y is not None:
        y = check_gold(y, n, cardinality)
        has_gold = y != ABSTAIN
        correct = (voted & has_gold[:, None] & (L == y[:, None])).sum(axis=0)
        attempted = (voted & has_gold[:, None]).sum(axis=0)
        data["correct"] = correct
        data["incorrect"] = attempted - correct
        data["emp_acc"] = [float(c / a) if a else None for c, a in zip(correct, attempted)]
    return pl.DataFrame(data, schema_overrides={"emp_acc": pl.Float64} if y is not None else None)


def check_gold(y: GoldArray, n: int, k: int) -> GoldArray:
    """Validate ``[n]`` gold classes in ``-1 .. k-1`` (``ABSTAIN``: no gold) and return them as ``int64``."""
    y = np.asarray(y)
    if y.shape != (n,):
        raise LabelModelError(f"gold labels must have shape ({n},); got {y.shape}")
    bad = (y < ABSTAIN) | (y >= k)
    if bad.any():
        i = int(np.argmax(bad))
        raise LabelModelError(f"gold label {int(y[i])} at row {i} is outside the schema's classes 0..{k - 1}")
    return y.astype(np.int64)
