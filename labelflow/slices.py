"""Slice discovery: groups of gold-labelled rows where predictions fail.

A slice is a set of rows sharing something a person can name: an LF votes on
them, no LF covers them, LFs conflict on them, they contain an n-gram, they fall
in one embedding cluster, or they share a metadata value or a text-length bucket.
:func:`find_slices` measures every candidate against the gold labels and ranks
them by the number of errors in them (the errors fixing the slice would remove),
then by error rate.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl

from labelflow.typing import ABSTAIN

TOKEN = re.compile(r"[a-z0-9']+")
N_EXAMPLES = 5


@dataclass(frozen=True)
class Slice:
    """One slice of the analysed rows and how the predictions do on it.

    ``rows`` index the analysed rows (``[size]`` int); ``row_ids`` are their ids;
    ``examples`` the texts of up to five of them, wrong predictions first.
    """

    kind: str
    """``"lf"``, ``"uncovered"``, ``"conflict"``, ``"ngram"``, ``"cluster"`` or ``"metadata"``."""
    name: str
    rows: np.ndarray
    row_ids: list[str]
    size: int
    coverage: float
    """Fraction of the slice's rows some LF votes on."""
    accuracy: float
    errors: int
    top_confusion: str
    """The most frequent error, ``"GOLD→PRED ×count"`` (empty when there is none)."""
    examples: list[str]


def tokens(text: str) -> list[str]:
    """Lower-cased word tokens of ``text``.

    Examples
    --------
    >>> tokens("Check out my CHANNEL!!")
    ['check', 'out', 'my', 'channel']
    """
    return TOKEN.findall(text.lower())


def ngrams(text: str) -> set[str]:
    """The distinct unigrams and bigrams of ``text`` (bigrams joined by one space)."""
    words = tokens(text)
    return set(words) | {f"{a} {b}" for a, b in zip(words, words[1:])}


def find_slices(
    ids: Sequence[str],
    texts: Sequence[str],
    y: np.ndarray,
    pred: np.ndarray,
    *,
    L: np.ndarray,
    lf_names: Sequence[str],
    class_names: Sequence[str],
    embeddings: np.ndarray | None = None,
    metadata: pl.DataFrame | None = None,
    min_size: int = 5,
    max_ngram_slices: int = 15,
    n_clusters: int | None = None,
    seed: int = 0,
) -> list[Slice]:
    """Candidate slices of ``n`` gold-labelled rows, ranked by errors (then error rate); only
    slices with at least one error and ``min_size`` rows.

    Parameters
    ----------
    ids, texts
        ``[n]`` row ids and primary texts.
    y, pred
        ``[n]`` gold and predicted classes.
    L
        ``[n, m]`` votes of the LFs ``lf_names``.
    embeddings
        Optional ``[n, d]`` row embeddings for cluster slices (k-means, ``n_clusters``
        default ``clamp(n // 25, 2, 12)``).
    metadata
        Optional ``n``-row frame; string columns with 2–20 values give a slice per value,
        numeric columns a slice per value (up to 8 values) or per quartile. Text length (words) is always bucketed.
    max_ngram_slices
        Keep the n-grams most enriched in errors (errors × log of the error-rate ratio).
    """
    y, pred = np.asarray(y), np.asarray(pred)
    n = len(y)
    wrong = y != pred
    voted = L != ABSTAIN
    covered = voted.any(axis=1)
    groups: list[tuple[str, str, np.ndarray]] = []
    for j, name in enumerate(lf_names):
        groups.append(("lf", f"{name} votes", voted[:, j]))
    groups.append(("uncovered", "no LF votes", ~covered))
    high = np.where(voted, L, -1).max(axis=1)
    low = np.where(voted, L, np.iinfo(np.int16).max).min(axis=1)
    groups.append(("conflict", "LFs conflict", covered & (high != low)))
    groups += _ngram_groups(texts, wrong, min_size, max_ngram_slices)
    if embeddings is not None and n >= 2 * min_size:
        groups += _cluster_groups(np.asarray(embeddings, dtype=np.float64), n_clusters, seed)
    lengths = pl.DataFrame({"text length (words)": [len(tokens(t)) for t in texts]})
    for frame in (lengths, metadata):
        if frame is not None:
            groups += _metadata_groups(frame)
    slices, seen = [], set()
    for kind, name, mask in groups:
        rows = np.flatnonzero(mask)
        key = rows.tobytes()
        if len(rows) < min_size or not wrong[rows].any() or key in seen:
            continue
        seen.add(key)
        slices.append(_measure(kind, name, rows, ids, texts, y, pred, covered, class_names))
    return sorted(slices, key=lambda s: (-s.errors, s.accuracy, s.name))


def _measure(kind: str, name: str, rows: np.ndarray, ids: Sequence[str], texts: Sequence[str], y: np.ndarray,
             pred: np.ndarray, covered: np.ndarray, class_names: Sequence[str]) -> Slice:
    wrong = y[rows] != pred[rows]
    confusion = Counter(zip(y[rows][wrong].tolist(), pred[rows][wrong].tolist())).most_common(1)
    top = ""
    if confusion:
        (gold, predicted), count = confusion[0]
        top = f"{class_names[gold]}→{_class_name(class_names, predicted)} ×{count}"
    order = np.concatenate([rows[wrong], rows[~wrong]])[:N_EXAMPLES]
    return Slice(kind=kind, name=name, rows=rows, row_ids=[ids[i] for i in rows], size=len(rows),
                 coverage=float(covered[rows].mean()), accuracy=float(1 - wrong.mean()), errors=int(wrong.sum()),
                 top_confusion=top, examples=[texts[i] for i in order])


def _class_name(class_names: Sequence[str], c: int) -> str:
    return "abstain" if c == ABSTAIN else class_names[c]


def _ngram_groups(texts: Sequence[str], wrong: np.ndarray, min_size: int,
                  keep: int) -> list[tuple[str, str, np.ndarray]]:
    """The n-grams (uni- and bigrams) whose rows are wrong more often than the rest."""
    rows_of: dict[str, list[int]] = {}
    for i, text in enumerate(texts):
        for gram in ngrams(text):
            rows_of.setdefault(gram, []).append(i)
    base = max(wrong.mean(), 1e-9)
    scored = []
    for gram, rows in rows_of.items():
        errors = int(wrong[rows].sum())
        if len(rows) >= min_size and errors and errors / len(rows) > base:
            scored.append((errors * np.log(errors / len(rows) / base), gram, rows))
    scored.sort(key=lambda t: (-t[0], t[1]))
    out = []
    for _, gram, rows in scored[:keep]:
        mask = np.zeros(len(texts), dtype=bool)
        mask[rows] = True
        out.append(("ngram", f'text contains "{gram}"', mask))
    return out


def _cluster_groups(X: np.ndarray, n_clusters: int | None, seed: int) -> list[tuple[str, str, np.ndarray]]:
    """k-means (cosine: rows normalised) clusters of ``[n, d]`` embeddings."""
    X = X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-12)
    k = n_clusters or int(np.clip(len(X) // 25, 2, 12))
    assign = kmeans(X, k, seed=seed)
    return [("cluster", f"embedding cluster {c + 1} of {k}", assign == c) for c in range(k)]


def kmeans(X: np.ndarray, k: int, *, seed: int = 0, n_iter: int = 50) -> np.ndarray:
    """``[n]`` cluster of each row of ``[n, d]`` ``X`` by Lloyd's k-means with k-means++ seeding.

    Examples
    --------
    >>> X = np.array([[0.0, 0.0], [0.1, 0.0], [5.0, 5.0], [5.1, 5.0]])
    >>> a = kmeans(X, 2)
    >>> bool(a[0] == a[1] and a[2] == a[3] and a[0] != a[2])
    True
    """
    rng = np.random.default_rng(seed)
    centers = [X[rng.integers(len(X))]]
    for _ in range(1, k):
        dist = np.min([((X - c) ** 2).sum(1) for c in centers], axis=0)
        centers.append(X[rng.choice(len(X), p=dist / dist.sum())] if dist.sum() > 0 else X[rng.integers(len(X))])
    C = np.array(centers)
    assign = np.zeros(len(X), dtype=np.int64)
    for it in range(n_iter):
        new = ((X[:, None, :] - C[None]) ** 2).sum(-1).argmin(1)
        if it and (new == assign).all():
            break
        assign = new
        for c in range(k):
            if (assign == c).any():
                C[c] = X[assign == c].mean(0)
    return assign


def _metadata_groups(frame: pl.DataFrame) -> list[tuple[str, str, np.ndarray]]:
    """A slice per value of string columns with 2–20 values and numeric ones with 2–8, else per quartile
    of numeric columns."""
    out = []
    for name, column in frame.to_dict().items():
        few = 2 <= column.n_unique() <= (8 if column.dtype.is_numeric() else 20)
        if few and (column.dtype == pl.String or column.dtype.is_numeric()):
            for value in column.drop_nulls().unique().sort().to_list():
                out.append(("metadata", f"{name} = {value!r}", (column == value).fill_null(False).to_numpy()))
        elif column.dtype.is_numeric() and column.n_unique() > 8:
            values = column.cast(pl.Float64).to_numpy()
            edges = np.unique(np.nanquantile(values, [0, 0.25, 0.5, 0.75, 1]))
            for lo, hi in zip(edges, edges[1:]):
                last = hi == edges[-1]
                mask = (values >= lo) & ((values <= hi) if last else (values < hi))
                out.append(("metadata", f"{name} in [{lo:g}, {hi:g}{']' if last else ')'}", mask))
    return out
