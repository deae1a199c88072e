"""Embedding-extended LFs: each LF's votes carried to nearby rows it abstains on (Chen et al., 2022, "Liger").

A labeling function fires on the rows its rule matches and abstains elsewhere,
although rows that *look like* its rows in an embedding space mostly share their
label. :func:`extend_votes` gives each LF ``j`` a second column, ``NAME~ext``:
on a row ``i`` where LF ``j`` abstains, the vote of LF ``j`` on the most similar
row it votes on (cosine similarity of the rows' embeddings), when that similarity
is at least the LF's **radius**. The original column is kept unchanged, so a label
model weighs the extension separately from the LF itself.

**Radius per LF, fit on dev gold.** The rows of the dev split with gold labels
where LF ``j`` abstains are sorted by their similarity to its nearest vote; the
radius is the loosest similarity at which the extended votes on those rows keep a
precision not worse than the LF's own: the Wilson lower bound (one-sided,
``confidence``) of their precision must reach ``max(min_precision, own − max_drop)``,
where ``own`` is the LF's own dev precision (Laplace-smoothed, so an LF with few
dev votes is not held to a perfect score), with at least ``min_dev_votes`` extended
dev votes. An LF without such a radius gets no column; :class:`LFExtension`
says why (no votes to extend from, no dev gold, too little evidence).

**Which rows.** ``scope="uncovered"`` (default) casts extended votes only on rows
no LF of the suite votes on: the suite keeps deciding the rows it covers and the
extensions fill in the rest, so coverage rises without moving a decision of the
suite (measured by ``bench/extended_lfs.py``). ``scope="abstain"`` votes on every
row the LF abstains on, as Liger does. The radius is fit on every dev row the LF
abstains on either way (the uncovered dev rows alone are too few to fit on).

**Which rows an LF extends from.** ``sources="uncontested"`` (default): only rows
where no other LF votes another class. An LF is wrong mostly where other LFs
contradict it ("lol" firing on "subscribe to my channel lol"), and an extension
from such a row carries the error to its neighbours. ``sources="all"``: every row
it votes on.

Names: the extension of LF ``NAME`` is the column ``NAME~ext`` (:data:`EXT_SUFFIX`;
``~`` is never part of an LF's name, so the two cannot collide). Rows whose
embedding is missing (a null or NaN row, a zero vector) neither get nor give
extended votes. Everything is NumPy; similarities are computed ``block_rows ×
block_sources`` at a time, so memory stays bounded for any number of rows (time is
``O(rows in scope × votes × d)``: exact nearest neighbours).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from statistics import NormalDist
from typing import Any, Literal

import numpy as np

from labelflow.conventions import ABSTAIN, LABEL_DTYPE, MAX_CLASSES, LabelArray
from labelflow.errors import LFError
from labelflow.matrix import check_label_matrix
from labelflow.validation import check_choice, check_int, check_number

EXT_SUFFIX = "~ext"
"""Suffix of an extension column's name: LF ``NAME`` → ``NAME~ext``."""

SIMILARITY_TOLERANCE = 1e-6
"""A row within this much cosine similarity of a radius counts as inside it (rounding in blocked products)."""

Scope = Literal["uncovered", "abstain"]
Sources = Literal["uncontested", "all"]

__all__ = [
    "EXT_SUFFIX",
    "ExtendConfig",
    "Extension",
    "ExtensionCandidate",
    "LFExtension",
    "base_columns",
    "extend_votes",
    "extension_candidates",
    "extension_name",
    "is_extension",
    "wilson_lower_bound",
]


@dataclass(frozen=True)
class ExtendConfig:
    """Settings of embedding-extended LFs (``labelflow.json`` key ``extend``, :func:`extend_votes`).

    Parameters
    ----------
    embedding
        The dataset's embedding column (``labelflow fm embed`` writes ``embedding``); used by a project.
    scope
        ``"uncovered"``: extended votes only on rows no LF votes on; ``"abstain"``: on every row the LF
        abstains on (Liger).
    sources
        ``"uncontested"``: extend from the rows an LF votes on where no other LF votes another class;
        ``"all"``: from every row it votes on.
    min_precision
        Lowest precision bar of an extension on dev, in ``(0, 1]``; ``None``: halfway between chance and
        perfect, ``(1 + 1/k) / 2`` (0.75 for two classes).
    max_drop
        The bar is at least the LF's own (smoothed) dev precision minus this, in ``[0, 1]``.
    confidence
        One-sided confidence of the Wilson lower bound that must reach the bar, in ``[0.5, 1)``.
    min_dev_votes
        Fewest extended votes on dev gold rows a radius must rest on (≥ 1).
    lfs
        Extend only these LFs (by name); ``None``: every LF.

    Examples
    --------
    >>> ExtendConfig(scope="everywhere")
    Traceback (most recent call last):
    ...
    labelflow.errors.LFError: extend: scope must be 'uncovered' or 'abstain'; got 'everywhere'
    """

    embedding: str = "embedding"
    scope: Scope = "uncovered"
    sources: Sources = "uncontested"
    min_precision: float | None = None
    max_drop: float = 0.1
    confidence: float = 0.95
    min_dev_votes: int = 5
    lfs: list[str] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.embedding, str) or not self.embedding:
            _bad("embedding", self.embedding, "a column name")
        check_choice("extend: scope", self.scope, Scope, error=LFError)
        check_choice("extend: sources", self.sources, Sources, error=LFError)
        check_number("extend: min_precision", self.min_precision, above=0, maximum=1, optional=True, error=LFError)
        check_number("extend: max_drop", self.max_drop, minimum=0, maximum=1, error=LFError)
        check_number("extend: confidence", self.confidence, minimum=0.5, below=1, error=LFError)
        check_int("extend: min_dev_votes", self.min_dev_votes, minimum=1, error=LFError)
        if self.lfs is not None and (isinstance(self.lfs, str) or not isinstance(self.lfs, (list, tuple))
                                     or not all(isinstance(n, str) for n in self.lfs)):
            _bad("lfs", self.lfs, "a list of LF names or null")
        if self.lfs is not None:
            object.__setattr__(self, "lfs", list(self.lfs))

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any] | None) -> "ExtendConfig":
        """From ``labelflow.json``'s ``extend`` object (missing keys take their defaults); unknown keys are refused."""
        if raw is None:
            return cls()
        if not isinstance(raw, Mapping):
            raise LFError(f"extend must be an object of settings; got {type(raw).__name__}")
        known = [f.name for f in fields(cls)]
        unknown = sorted(set(raw) - set(known))
        if unknown:
            raise LFError(f"extend: unknown setting(s) {unknown}; known settings are {known}")
        return cls(**raw)

    def to_dict(self) -> dict[str, Any]:
        """Every setting, as ``labelflow.json`` holds it."""
        return asdict(self)

    def bar_floor(self, cardinality: int) -> float:
        """``min_precision``, or ``(1 + 1/k) / 2`` when it is ``None``."""
        return self.min_precision if self.min_precision is not None else (1 + 1 / cardinality) / 2


@dataclass(frozen=True)
class LFExtension:
    """What extending one LF gave: its radius and the dev evidence behind it, or why it was not extended."""

    lf: str
    """The LF's name."""
    column: str | None
    """``NAME~ext``, or ``None`` when the LF got no column (no radius, or no row in scope within it)."""
    radius: float | None
    """Cosine-similarity threshold: a row at least this similar to one of the LF's votes gets that vote."""
    bar: float
    """The precision its extended dev votes had to reach (with ``confidence``): ``max(min_precision, own − max_drop)``."""
    own_dev_votes: int
    """Votes of the LF itself on dev gold rows."""
    own_precision: float | None
    """Their precision (unsmoothed); ``None`` without any."""
    dev_votes: int
    """Extended votes on dev gold rows within the radius (or, without a radius, in the best-supported one)."""
    dev_precision: float | None
    """Their precision."""
    votes: int
    """Extended votes cast (rows in scope within the radius)."""
    reason: str
    """``"extended"``, or why the LF got no column."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Extension:
    """A label matrix with its extension columns (:func:`extend_votes`)."""

    values: LabelArray
    """``[n, m + e]`` ``int8`` votes: the ``m`` original columns unchanged, then one column per extended LF."""
    names: tuple[str, ...]
    """``[m + e]`` column names: the LF names, then ``NAME~ext`` for each extended LF, in LF order."""
    lfs: tuple[LFExtension, ...]
    """``[m]`` per LF (in column order): radius, dev evidence, votes cast, or why it was not extended."""
    config: ExtendConfig = field(default_factory=ExtendConfig)

    @property
    def radii(self) -> dict[str, float | None]:
        """``{LF name: radius}`` (``None``: not extended)."""
        return {e.lf: e.radius for e in self.lfs}

    @property
    def extension_values(self) -> LabelArray:
        """``[n, e]``: the extension columns alone."""
        return self.values[:, len(self.lfs):]


@dataclass(frozen=True)
class ExtensionCandidate:
    """One LF whose extension would add votes (:func:`extension_candidates`)."""

    lf: str
    """The LF's name."""
    column: str
    """``NAME~ext``."""
    radius: float
    """Fitted radius (cosine similarity)."""
    votes: np.ndarray
    """``[n]`` ``int8`` extended votes (``ABSTAIN`` elsewhere): the column accepting it would add."""
    new_votes: int
    """Rows it votes on."""
    new_covered: int
    """Rows it votes on that no LF covers."""
    in_rows: int
    """Rows it votes on among ``rows`` (all rows when ``rows`` is ``None``)."""
    dev_votes: int
    """Extended votes on dev gold rows within the radius."""
    dev_precision: float
    """Their precision."""
    own_precision: float | None
    """The LF's own dev precision (``None``: no dev votes)."""


# --- names ----------------------------------------------------------------------------------------------


def extension_name(lf: str) -> str:
    """The extension column of LF ``lf``.

    Examples
    --------
    >>> extension_name("keyword_song")
    'keyword_song~ext'
    """
    return f"{lf}{EXT_SUFFIX}"


def is_extension(name: str) -> bool:
    """Whether a column name is an extension column (``NAME~ext``)."""
    return name.endswith(EXT_SUFFIX)


def base_columns(names: Sequence[str]) -> np.ndarray:
    """Indices of the columns that are not extension columns.

    Examples
    --------
    >>> base_columns(["a", "b", "a~ext"])
    array([0, 1])
    """
    return np.array([j for j, name in enumerate(names) if not is_extension(name)], dtype=np.int64)


# --- statistics -----------------------------------------------------------------------------------------


def wilson_lower_bound(correct: int | np.ndarray, total: int | np.ndarray, z: float) -> np.ndarray:
    """Wilson score lower bound of a proportion ``correct / total`` (0 where ``total`` is 0).

    Examples
    --------
    >>> round(float(wilson_lower_bound(9, 10, 1.6448536269514722)), 3)
    0.652
    """
    c, t = np.asarray(correct, dtype=np.float64), np.asarray(total, dtype=np.float64)
    safe = np.maximum(t, 1)
    p = c / safe
    centre = p + z * z / (2 * safe)
    spread = z * np.sqrt(p * (1 - p) / safe + z * z / (4 * safe * safe))
    return np.where(t > 0, (centre - spread) / (1 + z * z / safe), 0.0)


def _fit_radius(sims: np.ndarray, correct: np.ndarray, *, bar: float, z: float,
                min_votes: int) -> tuple[float | None, int, int]:
    """The loosest similarity whose extended dev votes (``sims ≥`` it) reach ``bar`` by Wilson lower bound.

    Parameters
    ----------
    sims
        ``[q]`` similarity of each dev row to the LF's nearest vote.
    correct
        ``[q]`` whether that vote is the row's gold class.

    Returns
    -------
    (radius or None, votes, correct votes)
        With a radius: the dev votes within it. Without: those of the best-supported
        cut (highest lower bound among those with ≥ ``min_votes`` votes; else all).

    Examples
    --------
    >>> _fit_radius(np.array([.9, .8, .7, .6]), np.array([1, 1, 1, 0], bool), bar=0.6, z=1.0, min_votes=2)
    (0.7, 3, 3)
    >>> _fit_radius(np.array([.9, .8]), np.array([1, 1], bool), bar=0.3, z=1.0, min_votes=3)
    (None, 2, 2)
    """
    if not len(sims):
        return None, 0, 0
    order = np.argsort(-sims, kind="stable")
    sims, hits = sims[order], np.cumsum(correct[order])
    ends = np.flatnonzero(np.append(sims[1:] != sims[:-1], True))  # a radius takes a tied group whole
    votes, good = ends + 1, hits[ends]
    lower = wilson_lower_bound(good, votes, z)
    ok = (votes >= min_votes) & (lower >= bar)
    if ok.any():
        last = np.flatnonzero(ok)[-1]
        return float(sims[ends[last]]), int(votes[last]), int(good[last])
    enough = votes >= min_votes
    best = int(np.argmax(np.where(enough, lower, -1.0))) if enough.any() else len(ends) - 1
    return None, int(votes[best]), int(good[best])


# --- nearest votes --------------------------------------------------------------------------------------


def normalize_embeddings(embeddings: np.ndarray, *, n: int | None = None,
                         where: str = "embeddings") -> tuple[np.ndarray, np.ndarray]:
    """Unit-length ``float32`` rows and which rows have an embedding.

    Parameters
    ----------
    embeddings
        ``[n, d]`` numbers; a row holding a NaN, or all zeros, has no embedding.
    n
        The number of rows it must have (the label matrix's).
    where
        What to call it in errors (a column name).

    Returns
    -------
    (``[n, d]`` float32, ``[n]`` bool)
    """
    X = np.asarray(embeddings)
    if X.ndim != 2 or X.shape[1] == 0:
        raise LFError(f"{where} must be a 2-D [rows, dimensions] array of numbers; got shape {X.shape}")
    if n is not None and X.shape[0] != n:
        raise LFError(f"{where} has {X.shape[0]} rows; the label matrix has {n}")
    if not (np.issubdtype(X.dtype, np.floating) or np.issubdtype(X.dtype, np.integer)):
        raise LFError(f"{where} must hold numbers; got dtype {X.dtype}")
    X = np.array(X, dtype=np.float32)  # a copy, normalised in place
    infinite = np.isinf(X).any(axis=1)
    if infinite.any():
        raise LFError(f"{where} holds an infinite value in row {int(np.argmax(infinite))}")
    norms = np.linalg.norm(X, axis=1)  # NaN for a row holding a NaN
    valid = np.isfinite(norms) & (norms > 0)
    X[valid] /= norms[valid, None]
    X[~valid] = 0
    return X, valid


def _nearest(X: np.ndarray, queries: np.ndarray, sources: np.ndarray, *, block_rows: int,
             block_sources: int) -> tuple[np.ndarray, np.ndarray]:
    """For each query row, the most similar source row: ``([q] float32 similarity, [q] index into sources)``.

    ``X`` holds unit rows; similarities are computed ``block_rows × block_sources`` at a
    time. Ties go to the first source row, whatever the blocks.
    """
    best = np.full(len(queries), -np.inf, dtype=np.float32)
    arg = np.full(len(queries), -1, dtype=np.int64)
    for s0 in range(0, len(sources), block_sources):
        Xs = X[sources[s0:s0 + block_sources]].T
        for q0 in range(0, len(queries), block_rows):
            sims = X[queries[q0:q0 + block_rows]] @ Xs
            top = sims.argmax(axis=1)
            value = sims[np.arange(len(top)), top]
            window = slice(q0, q0 + len(top))
            better = value > best[window]
            best[window] = np.where(better, value, best[window])
            arg[window] = np.where(better, s0 + top, arg[window])
    return best, arg


def _conflicts(L: np.ndarray) -> np.ndarray:
    """``[n]`` bool: rows where LFs vote different classes (on them, every LF that votes is contradicted).

    Examples
    --------
    >>> _conflicts(np.array([[0, -1, 0], [0, 1, -1], [-1, -1, -1]])).tolist()
    [False, True, False]
    """
    votes = np.asarray(L, dtype=np.int16)
    voted = votes != ABSTAIN
    high = np.where(voted, votes, -1).max(axis=1)
    low = np.where(voted, votes, np.int16(MAX_CLASSES)).min(axis=1)
    return voted.any(axis=1) & (high != low)


def _source_rows(L: np.ndarray, j: int, valid: np.ndarray, sources: Sources, conflicts: np.ndarray) -> np.ndarray:
    """``[n]`` bool: rows LF ``j`` extends from (``conflicts``: :func:`_conflicts` of ``L``)."""
    fires = (L[:, j] != ABSTAIN) & valid
    return fires & ~conflicts if sources == "uncontested" else fires


# --- extension ------------------------------------------------------------------------------------------


def extend_votes(
    L: np.ndarray,
    embeddings: np.ndarray,
    *,
    dev_rows: np.ndarray,
    y_dev: np.ndarray,
    cardinality: int,
    lf_names: Sequence[str] | None = None,
    config: ExtendConfig | None = None,
    block_rows: int = 2048,
    block_sources: int = 8192,
) -> Extension:
    """Extend each LF's votes to unlabeled rows near the rows it votes on (see the module docstring).

    Parameters
    ----------
    L
        ``[n, m]`` votes of the suite's LFs (``ABSTAIN`` = -1); no extension columns.
    embeddings
        ``[n, d]`` row embeddings (any scale: rows are normalised; a NaN or zero row has none).
    dev_rows
        The dev rows: a ``[n]`` boolean mask or integer row indices.
    y_dev
        Gold class of each dev row (``ABSTAIN`` where unknown), in the order of ``dev_rows``.
    cardinality
        Number of classes ``k``.
    lf_names
        ``[m]`` LF names (default ``lf0 .. lf{m-1}``).
    config
        :class:`ExtendConfig` (its ``embedding`` is not used here).
    block_rows, block_sources
        Similarities are computed this many query × source rows at a time (memory
        ``4 · block_rows · block_sources`` bytes); the result does not depend on them.

    Returns
    -------
    Extension
        ``values`` ``[n, m + e]``: ``L`` unchanged, then ``NAME~ext`` for each of the ``e``
        LFs that got a radius and cast a vote; ``lfs``: per LF, its radius and evidence or
        why it was not extended.

    Raises
    ------
    LFError
        Naming the argument, LF or column that does not fit.

    Examples
    --------
    Two clusters; LF ``a`` votes 0 on two rows of the first, LF ``b`` 1 on two of the second:

    >>> X = np.array([[1, 0], [1, .1], [1, .2], [1, .15], [0, 1], [.1, 1], [.2, 1], [.15, 1]])
    >>> L = np.array([[0, -1], [0, -1], [-1, -1], [-1, -1], [-1, 1], [-1, 1], [-1, -1], [-1, -1]])
    >>> ext = extend_votes(L, X, dev_rows=np.array([2, 6]), y_dev=np.array([0, 1]), cardinality=2,
    ...                    lf_names=["a", "b"], config=ExtendConfig(min_dev_votes=1, min_precision=0.6,
    ...                                                               confidence=0.5))
    >>> ext.names
    ('a', 'b', 'a~ext', 'b~ext')
    >>> ext.values[:, 2:].T.tolist()
    [[-1, -1, 0, 0, -1, -1, -1, -1], [-1, -1, -1, -1, -1, -1, 1, 1]]
    """
    config = config or ExtendConfig()
    values = check_label_matrix(L, cardinality)
    n, m = values.shape
    names = tuple(f"lf{j}" for j in range(m)) if lf_names is None else tuple(lf_names)
    if len(names) != m:
        raise LFError(f"lf_names has {len(names)} names for a label matrix with {m} LFs")
    for name in names:
        if is_extension(name):
            raise LFError(f"column {name!r} is already an extension column; pass the suite's own LF columns "
                          f"(drop the {EXT_SUFFIX} columns: labelflow.extend.base_columns)")
    if len(set(names)) != m:
        raise LFError(f"lf_names must be unique; {sorted({x for x in names if names.count(x) > 1})} repeat")
    if config.lfs is not None:
        unknown = sorted(set(config.lfs) - set(names))
        if unknown:
            raise LFError(f"extend: lfs names LF(s) {unknown} the suite lacks; its LFs are {list(names)}")
    for arg, value in (("block_rows", block_rows), ("block_sources", block_sources)):
        check_int(arg, value, minimum=1, error=LFError)
    X, valid = normalize_embeddings(embeddings, n=n)
    dev_idx, gold = _dev_gold(dev_rows, y_dev, n, cardinality)
    z = NormalDist().inv_cdf(config.confidence)
    floor = config.bar_floor(cardinality)
    covered = (values != ABSTAIN).any(axis=1)
    conflicts = _conflicts(values)
    wanted = set(names if config.lfs is None else config.lfs)

    columns: list[np.ndarray] = []
    column_names: list[str] = []
    report: list[LFExtension] = []
    for j, name in enumerate(names):
        own = values[dev_idx, j] != ABSTAIN
        own_votes = int(np.sum(own))
        own_hits = int(np.sum(values[dev_idx[own], j] == gold[own])) if own_votes else 0
        own_precision = own_hits / own_votes if own_votes else None
        bar = max(floor, (own_hits + 1) / (own_votes + 2) - config.max_drop)

        def skip(reason: str, dev_votes: int = 0, dev_hits: int = 0, radius: float | None = None) -> None:
            report.append(LFExtension(name, None, radius, round(bar, 4), own_votes, own_precision, dev_votes,
                                      dev_hits / dev_votes if dev_votes else None, 0, reason))

        if name not in wanted:
            skip("not listed in extend.lfs")
            continue
        src = np.flatnonzero(_source_rows(values, j, valid, config.sources, conflicts))
        if not src.size:
            skip("no votes to extend from" if not ((values[:, j] != ABSTAIN) & valid).any() else
                 "no uncontested votes to extend from (another LF votes another class on every row it votes on)")
            continue
        evidence = (values[dev_idx, j] == ABSTAIN) & valid[dev_idx]
        if not evidence.any():
            skip("no dev gold rows where it abstains to fit a radius on")
            continue
        sims, nearest = _nearest(X, dev_idx[evidence], src, block_rows=block_rows, block_sources=block_sources)
        correct = values[src[nearest], j] == gold[evidence]
        radius, dev_votes, dev_hits = _fit_radius(sims.astype(np.float64), correct, bar=bar, z=z,
                                                  min_votes=config.min_dev_votes)
        if radius is None:
            lower = float(wilson_lower_bound(dev_hits, dev_votes, z))
            skip(f"too little dev evidence: no radius with ≥ {config.min_dev_votes} extended dev votes whose "
                 f"precision reaches {bar:.3f} at {config.confidence:.0%} confidence (best: {dev_hits} of "
                 f"{dev_votes} right, lower bound {lower:.3f})", dev_votes, dev_hits)
            continue
        scope = ~covered if config.scope == "uncovered" else values[:, j] == ABSTAIN
        queries = np.flatnonzero(scope & valid)
        sims, nearest = _nearest(X, queries, src, block_rows=block_rows, block_sources=block_sources)
        inside = sims >= radius - SIMILARITY_TOLERANCE
        column = np.full(n, ABSTAIN, dtype=LABEL_DTYPE)
        column[queries[inside]] = values[src[nearest[inside]], j]
        votes = int(inside.sum())
        if not votes:
            skip("no row in scope within its radius", dev_votes, dev_hits, radius)
            continue
        columns.append(column)
        column_names.append(extension_name(name))
        report.append(LFExtension(name, column_names[-1], radius, round(bar, 4), own_votes, own_precision,
                                  dev_votes, dev_hits / dev_votes, votes, "extended"))
    full = np.column_stack([values, *columns]) if columns else values.copy()
    return Extension(full.astype(LABEL_DTYPE, copy=False), names + tuple(column_names), tuple(report), config)


def extension_candidates(
    L: np.ndarray,
    embeddings: np.ndarray,
    *,
    dev_rows: np.ndarray,
    y_dev: np.ndarray,
    cardinality: int,
    lf_names: Sequence[str],
    config: ExtendConfig | None = None,
    rows: np.ndarray | None = None,
    block_rows: int = 2048,
    block_sources: int = 8192,
) -> list[ExtensionCandidate]:
    """The LFs whose extension would add votes, best first: what an ``"extend"`` suggestion offers.

    Parameters
    ----------
    L
        ``[n, m]`` votes; extension columns (``NAME~ext``) in it are dropped first, and
        the LFs they extend are not offered again.
    embeddings, dev_rows, y_dev, cardinality, config, block_rows, block_sources
        As in :func:`extend_votes` (``config.lfs`` is ignored: every LF is a candidate).
    lf_names
        ``[m]`` column names of ``L``.
    rows
        Rows to count ``in_rows`` on (a ``[n]`` boolean mask or indices, e.g. an error
        slice); ``None``: all rows.

    Returns
    -------
    list of ExtensionCandidate
        One per LF that gets a radius and casts a vote, sorted by ``in_rows``, then
        ``new_covered``, then dev precision (descending).
    """
    names = list(lf_names)
    if np.ndim(L) != 2 or len(names) != np.shape(L)[1]:
        raise LFError(f"lf_names has {len(names)} names for a label matrix of shape {np.shape(L)}")
    base = base_columns(names)
    already = {name[: -len(EXT_SUFFIX)] for name in names if is_extension(name)}
    values = np.asarray(L)[:, base]
    config = ExtendConfig(**{**(config or ExtendConfig()).to_dict(), "lfs": None})
    ext = extend_votes(values, embeddings, dev_rows=dev_rows, y_dev=y_dev, cardinality=cardinality,
                       lf_names=[names[j] for j in base], config=config, block_rows=block_rows,
                       block_sources=block_sources)
    n = values.shape[0]
    mask = np.ones(n, dtype=bool) if rows is None else _mask(rows, n, "rows")
    covered = (np.asarray(L) != ABSTAIN).any(axis=1)
    out = []
    for e in ext.lfs:
        if e.column is None or e.lf in already:
            continue
        votes = ext.values[:, ext.names.index(e.column)]
        cast = votes != ABSTAIN
        out.append(ExtensionCandidate(e.lf, e.column, float(e.radius), votes, int(cast.sum()),
                                      int((cast & ~covered).sum()), int((cast & mask).sum()), e.dev_votes,
                                      float(e.dev_precision), e.own_precision))
    return sorted(out, key=lambda c: (-c.in_rows, -c.new_covered, -c.dev_precision, c.lf))


# --- helpers --------------------------------------------------------------------------------------------


def _dev_gold(dev_rows: np.ndarray, y_dev: np.ndarray, n: int, cardinality: int) -> tuple[np.ndarray, np.ndarray]:
    """``(row indices, gold classes)`` of the dev rows that have gold."""
    idx = np.flatnonzero(_mask(dev_rows, n, "dev_rows"))
    rows = np.asarray(dev_rows)
    order = np.flatnonzero(rows) if rows.dtype == bool else rows.astype(np.int64)
    y = np.asarray(y_dev)
    if y.ndim != 1 or len(y) != len(order):
        raise LFError(f"y_dev must hold one gold class per dev row ({len(order)}); got shape {y.shape}")
    if not np.issubdtype(y.dtype, np.integer):
        raise LFError(f"y_dev must hold integer classes (ABSTAIN = -1 where unknown); got dtype {y.dtype}")
    bad = (y < ABSTAIN) | (y >= cardinality)
    if bad.any():
        raise LFError(f"y_dev holds {y[bad][0]} for dev row {order[bad][0]}, outside -1..{cardinality - 1}")
    gold = np.full(n, ABSTAIN, dtype=np.int64)
    gold[order] = y
    idx = idx[gold[idx] != ABSTAIN]
    return idx, gold[idx]


def _mask(rows: np.ndarray, n: int, what: str) -> np.ndarray:
    """A ``[n]`` boolean mask from a mask or integer indices."""
    rows = np.asarray(rows)
    if rows.dtype == bool:
        if rows.shape != (n,):
            raise LFError(f"{what} as a mask must have one entry per row ({n}); got shape {rows.shape}")
        return rows
    if rows.ndim != 1 or (rows.size and not np.issubdtype(rows.dtype, np.integer)):
        raise LFError(f"{what} must be a boolean mask or integer row indices; got dtype {rows.dtype}, "
                      f"shape {rows.shape}")
    if rows.size and (rows.min() < 0 or rows.max() >= n):
        raise LFError(f"{what} holds row index {rows[(rows < 0) | (rows >= n)][0]}, outside 0..{n - 1}")
    mask = np.zeros(n, dtype=bool)
    mask[rows.astype(np.int64)] = True
    return mask


def _bad(key: str, value: Any, what: str) -> None:
    raise LFError(f"extend: {key} must be {what}; got {value!r}")
