"""Training data: exported probabilistic labels, normalised once, and how they are batched.

:func:`read_soft_labels` turns an export (``labelflow export`` output, a file or a
polars frame) into :class:`SoftLabels`; :class:`LengthGroupedBatches` orders rows
into batches of similar length; :func:`collate` pads one batch to its longest row
(dynamic padding).

An export has one row per data row and these columns (:meth:`labelflow.project.Project.export`):

``text``
    The text to classify (another column with ``text=``).
``prob_<class>``
    The label model's probability of each class, in class order; rows sum to 1.
``split`` (optional)
    ``train`` rows are trained on; ``dev`` rows with gold pick the best checkpoint;
    ``test`` rows with gold are scored once at the end. Without it every row is ``train``.
``label`` (optional)
    Gold class index (or name), null where unknown.
``pred``, ``covered``, ``tied``, ``id`` (optional)
    The label model's prediction, whether any LF voted on the row, whether ``pred``
    came from a tie-break, the row id.

``pred`` follows labelflow's one prediction policy
(:meth:`labelflow.project.Project.predictions`): the argmax of the probabilities,
exact ties broken by Snorkel's deterministic hash of the row's position, so it is
always a class and the label model is scored on every gold row (ties broken, not
counted wrong), as ``labelflow fit`` scores it. Where ``pred`` is missing, or is
``-1``/null on some rows (exports written before that policy), the policy is applied
to the export's probabilities, keyed by the row's position in the export (the
project's own position when the export holds every row, as ``labelflow export``
writes it by default). Where ``tied`` is missing it is computed from the
probabilities (:func:`labelflow.labelmodels.base.tied_rows`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from labelflow.conventions import ABSTAIN
from labelflow.errors import FinetuneError
from labelflow.export import PROB_PREFIX, prob_columns
from labelflow.labelmodels.base import probs_to_preds, tied_rows


@dataclass(frozen=True)
class SoftLabels:
    """An export's rows in one internal form.

    Attributes
    ----------
    class_names
        ``k`` class names, in index order.
    ids
        ``[n]`` row ids (``row<i>`` when the export has none).
    texts
        ``[n]`` texts.
    probs
        ``[n, k]`` float64 soft labels, rows summing to 1.
    split
        ``[n]`` split names.
    gold
        ``[n]`` int64 gold classes, ``-1`` where unknown.
    lm_pred
        ``[n]`` int64 label-model predictions, always a class: the ``pred`` column,
        where it is missing or ``-1`` the prediction policy on ``probs`` (argmax, ties
        broken by the hash of the row's position; see the module docstring).
    covered
        ``[n]`` bool, whether an LF voted on the row; ``None`` when the export does not say.
    tied
        ``[n]`` bool, whether ``lm_pred`` came from a tie-break: the ``tied`` column,
        else computed from ``probs``.
    """

    class_names: tuple[str, ...]
    ids: list[str]
    texts: list[str]
    probs: np.ndarray
    split: np.ndarray
    gold: np.ndarray
    lm_pred: np.ndarray
    covered: np.ndarray | None
    tied: np.ndarray

    def __len__(self) -> int:
        return len(self.texts)

    @property
    def k(self) -> int:
        """Number of classes."""
        return len(self.class_names)

    def gold_rows(self, split: str) -> np.ndarray:
        """``[n]`` mask of the rows of ``split`` that have a gold label."""
        return (self.split == split) & (self.gold != ABSTAIN)

    def fingerprint(self, rows: np.ndarray) -> str:
        """SHA-256 (16 hex digits) of the texts and soft labels of ``rows`` ([n] mask)."""
        digest = hashlib.sha256()
        for i in np.flatnonzero(rows):
            digest.update(self.texts[i].encode("utf-8", "surrogatepass"))
            digest.update(b"\0")
        digest.update(np.ascontiguousarray(self.probs[rows], dtype=np.float32).round(5).tobytes())
        return digest.hexdigest()[:16]

    def to_frame(self) -> pl.DataFrame:
        """These rows as an export frame (``id, text, split, label, prob_<class>..., pred, [covered,] tied``) that
        :func:`read_soft_labels` reads back unchanged: what a run's ``labels.parquet`` holds (``pred`` always a
        class, by the prediction policy; ``covered`` only where the export had it)."""
        cols = [pl.Series("id", self.ids, dtype=pl.String), pl.Series("text", self.texts, dtype=pl.String),
                pl.Series("split", self.split.tolist(), dtype=pl.String),
                pl.Series("label", [None if g < 0 else int(g) for g in self.gold], dtype=pl.Int16),
                *prob_columns(self.class_names, self.probs),
                pl.Series("pred", self.lm_pred, dtype=pl.Int16)]
        if self.covered is not None:
            cols.append(pl.Series("covered", self.covered))
        cols.append(pl.Series("tied", self.tied))
        return pl.DataFrame(cols)


def read_soft_labels(
    source: str | Path | pl.DataFrame | Any,
    *,
    classes: Sequence[str] | None = None,
    text: str = "text",
) -> SoftLabels:
    """Read an export of probabilistic labels (a file or a frame) into :class:`SoftLabels`.

    Parameters
    ----------
    source
        A ``.parquet``, ``.csv`` or ``.jsonl`` file, a polars frame or a pandas frame.
    classes
        The task's class names; every one must have its ``prob_<class>`` column and no
        other ``prob_`` column may appear. ``None``: the ``prob_`` columns, in order.
    text
        The text column.

    Raises
    ------
    FinetuneError
        Naming the file, column or row: a missing text or probability column, an
        export with other classes than ``classes``, null texts, probabilities that are
        missing, negative or do not sum to 1, gold labels outside the classes.

    Examples
    --------
    >>> frame = pl.DataFrame({"text": ["buy now", "nice song"], "prob_HAM": [0.1, 0.9], "prob_SPAM": [0.9, 0.1]})
    >>> data = read_soft_labels(frame)
    >>> data.class_names, data.probs.shape, data.split.tolist(), data.lm_pred.tolist(), data.tied.tolist()
    (('HAM', 'SPAM'), (2, 2), ['train', 'train'], [1, 0], [False, False])
    """
    frame, where = _read(source)
    if text not in frame.columns:
        raise FinetuneError(f"{where} has no text column {text!r}; its columns are {frame.columns}")
    found = [c[len(PROB_PREFIX):] for c in frame.columns if c.startswith(PROB_PREFIX)]
    if classes is None:
        if len(found) < 2:
            raise FinetuneError(f"{where} needs a prob_<class> column for each of ≥ 2 classes (labelflow export "
                                f"writes them); found {[PROB_PREFIX + c for c in found]}")
        names = tuple(found)
    else:
        names = tuple(classes)
        missing = [c for c in names if c not in found]
        extra = [c for c in found if c not in names]
        if missing or extra:
            raise FinetuneError(
                f"{where} has probabilities for classes {found} but the task's classes are {list(names)}"
                + (f": missing {[PROB_PREFIX + c for c in missing]}" if missing else "")
                + (f"; unexpected {[PROB_PREFIX + c for c in extra]}" if extra else "")
                + " (export again with a label model fit on the current classes)")
    n = frame.height
    ids = (frame["id"].cast(pl.String).to_list() if "id" in frame.columns else [f"row{i}" for i in range(n)])
    texts_col = frame[text]
    if texts_col.null_count():
        i = int(texts_col.is_null().arg_max())
        raise FinetuneError(f"{where}: column {text!r} is null at row {i} (id {ids[i]!r}); every row needs a text")
    texts = texts_col.cast(pl.String).to_list()
    probs = _probs(frame, names, ids, where)
    split = (frame["split"].cast(pl.String).fill_null("train").to_numpy().astype(str) if "split" in frame.columns
             else np.full(n, "train"))
    gold = _class_column(frame, "label", names, where) if "label" in frame.columns else np.full(n, ABSTAIN)
    policy = probs_to_preds(probs, tie_policy="random")  # Project.predictions' policy, keyed by export position
    if "pred" in frame.columns:
        lm_pred = _class_column(frame, "pred", names, where)
        lm_pred = np.where(lm_pred == ABSTAIN, policy, lm_pred)  # an export from before the policy left -1
    else:
        lm_pred = policy
    covered = frame["covered"].fill_null(False).cast(pl.Boolean).to_numpy() if "covered" in frame.columns else None
    tied = (frame["tied"].fill_null(False).cast(pl.Boolean).to_numpy() if "tied" in frame.columns
            else tied_rows(probs))
    return SoftLabels(names, ids, texts, probs, split, gold.astype(np.int64), lm_pred.astype(np.int64), covered,
                      tied.astype(bool))


def _read(source: Any) -> tuple[pl.DataFrame, str]:
    from labelflow.tables import read_table
    from labelflow.errors import DataError

    if isinstance(source, (str, Path)) and not Path(source).is_file():
        raise FinetuneError(f"training labels file {source} does not exist (write one with `labelflow export`)")
    if not isinstance(source, (str, Path, pl.DataFrame)) and not type(source).__module__.startswith("pandas"):
        raise FinetuneError(f"training labels must be a file path, a polars frame or a pandas frame; "
                            f"got {type(source).__name__}")
    try:
        where, frame = read_table(source)
    except DataError as exc:
        raise FinetuneError(f"training labels: {exc}") from None
    return frame, where


def _probs(frame: pl.DataFrame, names: Sequence[str], ids: list[str], where: str) -> np.ndarray:
    cols = [PROB_PREFIX + c for c in names]
    for c in cols:
        if not frame[c].dtype.is_numeric():
            raise FinetuneError(f"{where}: column {c!r} must be numeric; got {frame[c].dtype}")
    probs = frame.select([pl.col(c).cast(pl.Float64) for c in cols]).to_numpy()
    bad = ~np.isfinite(probs)
    if bad.any():
        i, j = np.argwhere(bad)[0]
        raise FinetuneError(f"{where}: column {cols[j]!r} is null or not finite at row {i} (id {ids[i]!r})")
    if (probs < 0).any():
        i, j = np.argwhere(probs < 0)[0]
        raise FinetuneError(f"{where}: column {cols[j]!r} is negative ({probs[i, j]}) at row {i} (id {ids[i]!r})")
    sums = probs.sum(axis=1)
    off = np.abs(sums - 1) > 1e-3
    if off.any():
        i = int(np.argmax(off))
        raise FinetuneError(f"{where}: the prob_ columns must sum to 1 on every row; row {i} (id {ids[i]!r}) "
                            f"sums to {sums[i]:.4f}")
    return probs / sums[:, None]


def _class_column(frame: pl.DataFrame, column: str, names: Sequence[str], where: str) -> np.ndarray:
    """``[n]`` int64 classes from an index or name column; null → -1."""
    col = frame[column]
    if col.dtype == pl.String:
        lookup = {n: i for i, n in enumerate(names)}
        unknown = sorted({v for v in col.drop_nulls().to_list() if v not in lookup})
        if unknown:
            raise FinetuneError(f"{where}: column {column!r} holds {unknown[:5]}, not among the classes {list(names)}")
        return np.array([ABSTAIN if v is None else lookup[v] for v in col.to_list()], dtype=np.int64)
    if col.dtype.is_float():  # integer columns with nulls come back from pandas as floats with NaN
        col = col.fill_nan(None)
        if (col.drop_nulls() % 1 != 0).any():
            raise FinetuneError(f"{where}: column {column!r} must hold whole class indices; got {col.drop_nulls()[:3].to_list()}")
    elif not col.dtype.is_integer():
        raise FinetuneError(f"{where}: column {column!r} must hold class indices or names; got {col.dtype}")
    values = col.fill_null(ABSTAIN).cast(pl.Int64).to_numpy()
    bad = (values < ABSTAIN) | (values >= len(names))
    if bad.any():
        i = int(np.argmax(bad))
        raise FinetuneError(f"{where}: column {column!r} is {int(values[i])} at row {i}, outside the classes "
                            f"0..{len(names) - 1} ({list(names)})")
    return values


# --- tokenized rows and batches --------------------------------------------------------------------


def tokenize(tokenizer: Any, texts: Sequence[str], *, max_length: int, chunk: int = 4096) -> list[np.ndarray]:
    """Token ids of each text (special tokens added, truncated to ``max_length``), unpadded."""
    out: list[np.ndarray] = []
    for start in range(0, len(texts), chunk):
        enc = tokenizer(list(texts[start:start + chunk]), truncation=True, max_length=max_length,
                        padding=False, return_attention_mask=False, return_token_type_ids=False)
        out.extend(np.asarray(ids, dtype=np.int64) for ids in enc["input_ids"])
    return out


class LengthGroupedBatches:
    """Seeded batch orders over ``[n]`` rows, grouping rows of similar length.

    Each epoch shuffles the rows (seed + epoch), cuts them into groups of
    ``group_size`` batches, sorts each group by length (longest first) and splits it
    into batches; the batches are then shuffled, except that the epoch's longest batch
    comes first (an out-of-memory error shows at once, not hours in). The same
    ``(seed, epoch)`` always gives the same batches, so a resumed run can skip the
    batches it already trained on.

    Parameters
    ----------
    lengths
        ``[n]`` token counts.
    batch_size
        Rows per batch (the last batch of an epoch may be smaller).
    seed
        Seed of the shuffles.
    group_by_length
        ``False``: plain shuffled batches.
    group_size
        Batches per length group.

    Examples
    --------
    >>> b = LengthGroupedBatches([5, 1, 9, 3, 7, 2], batch_size=2, seed=0)
    >>> [len(x) for x in b.epoch(0)], sorted(np.concatenate(b.epoch(0)).tolist())
    ([2, 2, 2], [0, 1, 2, 3, 4, 5])
    """

    def __init__(self, lengths: Sequence[int], *, batch_size: int, seed: int, group_by_length: bool = True,
                 group_size: int = 50) -> None:
        self.lengths = np.asarray(lengths, dtype=np.int64)
        self.batch_size, self.seed, self.group_by_length, self.group_size = batch_size, seed, group_by_length, group_size

    def __len__(self) -> int:
        return -(-len(self.lengths) // self.batch_size)

    def epoch(self, epoch: int) -> list[np.ndarray]:
        """The batches (row indices) of ``epoch``."""
        rng = np.random.default_rng([self.seed, epoch])
        order = rng.permutation(len(self.lengths))
        if not self.group_by_length:
            return [order[i:i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        span = self.batch_size * self.group_size
        batches: list[np.ndarray] = []
        for start in range(0, len(order), span):
            group = order[start:start + span]
            group = group[np.argsort(-self.lengths[group], kind="stable")]
            batches.extend(group[i:i + self.batch_size] for i in range(0, len(group), self.batch_size))
        longest = int(np.argmax([self.lengths[b].max() for b in batches]))
        rest = [batches[i] for i in rng.permutation(len(batches)) if i != longest]
        return [batches[longest], *rest]


def sorted_batches(lengths: Sequence[int], batch_size: int) -> list[np.ndarray]:
    """Batches of row indices for inference, longest rows first (least padding)."""
    order = np.argsort(-np.asarray(lengths), kind="stable")
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]


def collate(token_ids: Sequence[np.ndarray], rows: np.ndarray, *, pad_id: int, pad_to_multiple_of: int = 1,
            targets: np.ndarray | None = None, weights: np.ndarray | None = None) -> dict[str, Any]:
    """Pad the rows of one batch to its longest (rounded up to ``pad_to_multiple_of``).

    Returns
    -------
    dict
        ``input_ids`` and ``attention_mask`` ``[b, t]`` int64 tensors; with ``targets``
        (``[n, k]``) and ``weights`` (``[n]``), also ``targets`` ``[b, k]`` and
        ``weights`` ``[b]`` float32 tensors; ``tokens``: real tokens in the batch.
    """
    import torch

    seqs = [token_ids[i] for i in rows]
    width = max(len(s) for s in seqs)
    width = -(-width // pad_to_multiple_of) * pad_to_multiple_of
    ids = np.full((len(seqs), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(seqs), width), dtype=np.int64)
    for r, s in enumerate(seqs):
        ids[r, :len(s)] = s
        mask[r, :len(s)] = 1
    batch: dict[str, Any] = {"input_ids": torch.from_numpy(ids), "attention_mask": torch.from_numpy(mask),
                             "tokens": int(mask.sum())}
    if targets is not None:
        batch["targets"] = torch.from_numpy(np.asarray(targets[rows], dtype=np.float32))
    if weights is not None:
        batch["weights"] = torch.from_numpy(np.asarray(weights[rows], dtype=np.float32))
    return batch
