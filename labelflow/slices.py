"""Slice discovery: groups of gold-labelled rows where predictions fail.

A slice is a set of rows sharing something a person can name: an LF votes on
them, no LF covers them, LFs conflict on them, they contain an n-gram, they fall
in one embedding cluster, or they share a metadata value or a text-length bucket.
:func:`find_slices` measures every candidate against the gold labels and ranks
them by the number of errors in them (the errors fixing the slice would remove),
then by error rate.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl
import scipy.sparse as sp
from sklearn.cluster import KMeans
from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS, CountVectorizer

from labelflow.conventions import ABSTAIN

TOKEN_PATTERN = r"(?u)\b\w[\w']*\b"
"""What a word is for n-gram slices and suggestions (CountVectorizer's ``token_pattern``; one-letter words count)."""
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


def ngram_matrix(texts: Sequence[str], *, min_df: int = 1, stop_words: bool = False) -> tuple[sp.csr_matrix, list[str]]:
    """``[n, V]`` binary matrix of which rows contain which n-gram, and the ``V`` n-grams.

    N-grams are lower-cased words and two-word phrases (scikit-learn's ``CountVectorizer``
    with :data:`TOKEN_PATTERN`) in at least ``min_df`` rows. Numbers, one-letter words and
    phrases made only of those are left out; with ``stop_words``, scikit-learn's English
    stop words count as such too (for naming slices). Suggestions keep them: "who" and
    "how many" are what a question classifier's LFs are made of, and whether a word singles
    out a class is for its lift over the class prior to say (:mod:`labelflow.suggest`).

    Examples
    --------
    >>> X, grams = ngram_matrix(["Check out my channel", "check out this", "the 2 songs"], stop_words=True)
    >>> grams  # not "my", "out", "this", "the"; phrases with one of them beside a word are kept
    ['2 songs', 'channel', 'check', 'check out', 'my channel', 'songs']
    >>> X.toarray()[:, grams.index("check")].tolist()
    [1, 1, 0]
    >>> ngram_matrix(["Check out my channel", "check out this", "the 2 songs"])[1]
    ['2 songs', 'channel', 'check', 'check out', 'my', 'my channel', 'out', 'out my', 'out this', 'songs', 'the', 'the 2', 'this']
    """
    vectorizer = CountVectorizer(ngram_range=(1, 2), token_pattern=TOKEN_PATTERN, binary=True, min_df=min_df,
                                 dtype=np.int32)
    try:
        X = vectorizer.fit_transform(list(texts)).tocsc()
    except ValueError:  # no word in any text, or none in min_df rows
        return sp.csr_matrix((len(texts), 0), dtype=np.int32), []
    grams = vectorizer.get_feature_names_out().tolist()
    keep = [i for i, gram in enumerate(grams) if not all(_filler(w, stop_words) for w in gram.split())]
    return X[:, keep].tocsr(), [grams[i] for i in keep]


def _filler(word: str, stop_words: bool) -> bool:
    return len(word) < 2 or word.replace("'", "").isdigit() or (stop_words and word in ENGLISH_STOP_WORDS)


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
    votes = np.asarray(L, dtype=np.int64)  # int8 cannot hold the fill value below
    high = np.where(voted, votes, -1).max(axis=1)
    low = np.where(voted, votes, np.iinfo(np.int64).max).min(axis=1)
    groups.append(("conflict", "LFs conflict", covered & (high != low)))  # two LFs vote different classes
    groups += _ngram_groups(texts, wrong, min_size, max_ngram_slices)
    if embeddings is not None and n >= 2 * min_size:
        groups += _cluster_groups(np.asarray(embeddings, dtype=np.float64), n_clusters, seed)
    lengths = pl.DataFrame({"text length (words)": [len(t.split()) for t in texts]})
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
    """The n-grams (see :func:`ngram_matrix`) whose rows are wrong more often than the rest."""
    X, grams = ngram_matrix(texts, min_df=min_size, stop_words=True)
    if not grams:
        return []
    rows = np.asarray(X.sum(axis=0)).ravel()
    errors = np.asarray(X[wrong].sum(axis=0)).ravel()
    base = max(wrong.mean(), 1e-9)
    rate = errors / np.maximum(rows, 1)
    useful = (errors > 0) & (rate > base)
    score = np.where(useful, errors * np.log(np.maximum(rate, 1e-12) / base), -np.inf)
    order = sorted(np.flatnonzero(useful), key=lambda i: (-score[i], grams[i]))[:keep]
    X = X.tocsc()
    return [("ngram", f'text contains "{grams[i]}"', X[:, i].toarray().ravel() > 0) for i in order]


def _cluster_groups(X: np.ndarray, n_clusters: int | None, seed: int) -> list[tuple[str, str, np.ndarray]]:
    """k-means (scikit-learn; cosine: rows normalised) clusters of ``[n, d]`` embeddings."""
    X = X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-12)
    k = min(n_clusters or int(np.clip(len(X) // 25, 2, 12)), len(np.unique(X, axis=0)))
    if k < 2:
        return []
    assign = KMeans(n_clusters=k, n_init=4, random_state=seed).fit_predict(X)
    return [("cluster", f"embedding cluster {c + 1} of {k}", assign == c) for c in range(k)]


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
