"""What an FM LF would do, measured on a sample of dev gold rows before it runs over every row.

:func:`estimate_lf` (and :func:`estimate_suite`, behind ``labelflow apply --estimate``)
runs an LF's real model on a seeded sample of gold-labeled ``dev`` rows and reports:

* the threshold it votes at (an ``"auto"`` one fit exactly as the full run fits it:
  on every dev gold row, so a full run votes on the sampled rows exactly as here);
* its **coverage** on the sample and its **accuracy** on the rows it votes on, with
  the counts (``7 of 9``) and a 95 % Wilson interval;
* **seconds per row** of model time, measured after the model has loaded;
* the rows a full run would ask the model about (its ``budget`` respected) that the
  FM cache does not hold yet, and the **projected time** of that run.

With a ``budget``, the sample is drawn from the dev gold rows in the LF's scope (the
rows the other LFs leave uncovered / conflict on), so coverage and accuracy are those
of the rows it would vote on. The other LFs' votes come from the vote cache or, for
plain LFs, are applied (and cached, as ``apply`` would); FM LFs among them that the
vote cache does not hold are run on the dev rows only, and the scope over all rows is
then projected from the dev rows (``scope_exact`` is false).

Model outputs computed here go to the FM cache (keyed by their content, they are what
the full run would compute); the estimated LF's votes never go to the vote cache.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import polars as pl

from labelflow.apply import apply_lfs, cached_votes
from labelflow.chunk_applier import OnError
from labelflow.conventions import ABSTAIN, LABEL_DTYPE
from labelflow.dataset import Dataset
from labelflow.errors import LFError
from labelflow.fm.cache import FMCache
from labelflow.fm.lfs import FMLF, KnnLF, PromptLF, ZeroShotLF, _dev_gold, budget_rows
from labelflow.lf import LabelingFunction, check_suite
from labelflow.project import Project
from labelflow.validation import check_int

DEFAULT_ROWS = 40
"""Dev gold rows an estimate measures on by default."""
TIMING_ROWS = 16
"""Rows timed without the cache when every sampled row's output was cached already."""
Z95 = 1.959963984540054
KINDS = {PromptLF: "prompt", ZeroShotLF: "zero-shot", KnnLF: "knn"}


@dataclass(frozen=True)
class LFEstimate:
    """An FM LF measured on a sample of dev gold rows (see the module docstring).

    ``coverage`` = ``voted / sample_rows``; ``accuracy`` = ``correct / voted`` with its
    95 % Wilson interval ``accuracy_low .. accuracy_high`` (``None`` when it voted on no
    sampled row). ``fitted_threshold`` is ``inf`` when an ``"auto"`` threshold found no
    cut-off that gains on dev (the LF then votes nowhere). ``scope_rows`` of ``rows``
    are in its budget (projected when not ``scope_exact``); ``pending_rows`` model inputs
    a full run would still compute, taking ``projected_seconds`` at ``seconds_per_row``
    (measured on ``timed_rows`` rows; ``load_seconds`` to load the model and answer one row).
    """

    lf: str
    kind: str
    budget: str | None
    threshold: float | str
    fitted_threshold: float
    sample_rows: int
    scope_dev_rows: int
    voted: int
    correct: int
    coverage: float | None
    accuracy: float | None
    accuracy_low: float | None
    accuracy_high: float | None
    seconds_per_row: float | None
    timed_rows: int
    load_seconds: float
    computed_rows: int
    rows: int
    scope_rows: int
    scope_exact: bool
    pending_rows: int
    projected_seconds: float | None
    projected_coverage: float | None
    seed: int
    sample_ids: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        """The figures as plain JSON values (``inf`` thresholds as ``None``)."""
        out = asdict(self)
        out["sample_ids"] = list(self.sample_ids)
        if not math.isfinite(self.fitted_threshold):
            out["fitted_threshold"] = None
        return out


def wilson_interval(correct: int, n: int, z: float = Z95) -> tuple[float, float] | None:
    """The Wilson score interval of a proportion ``correct / n`` (95 % by default); ``None`` when ``n`` is 0.

    Examples
    --------
    >>> [round(x, 3) for x in wilson_interval(7, 9)]
    [0.453, 0.937]
    >>> wilson_interval(0, 0) is None
    True
    """
    if n == 0:
        return None
    p, z2 = correct / n, z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def estimate_lf(data: Project | Dataset | pl.DataFrame, lf: FMLF | str, *, rows: int = DEFAULT_ROWS, seed: int = 0,
                suite: Sequence[Any] | None = None, cardinality: int | None = None,
                fm_cache: FMCache | None = None, progress: bool = False) -> LFEstimate:
    """Measure one FM LF on ``rows`` seeded-random dev gold rows with its real model (see the module docstring).

    Parameters
    ----------
    data
        A :class:`~labelflow.project.Project` (its rows, FM cache, vote cache and, by
        default, its configured suite), a :class:`Dataset`, or a frame with ``id``,
        ``split`` and ``label`` columns.
    lf
        An FM LF (prompt, zero-shot, kNN), or the name of one in ``suite``.
    rows
        Dev gold rows to sample (all of them when fewer are in the LF's scope).
    seed
        Seed of the sample.
    suite
        The LF suite the LF runs in (its ``budget`` is over the other LFs' votes);
        default: the project's configured suite, else the LF alone.
    cardinality
        Number of classes (from the project or dataset when not given).
    fm_cache
        Where model outputs are kept (the project's by default).

    Returns
    -------
    LFEstimate
    """
    return estimate_suite(data, suite, names=[lf] if isinstance(lf, str) else None, lf=None if isinstance(lf, str)
                          else lf, rows=rows, seed=seed, cardinality=cardinality, fm_cache=fm_cache,
                          progress=progress)[0]


def estimate_suite(data: Project | Dataset | pl.DataFrame, suite: Sequence[Any] | None = None, *,
                   names: Sequence[str] | None = None, lf: FMLF | None = None, rows: int = DEFAULT_ROWS, seed: int = 0,
                   cardinality: int | None = None, fm_cache: FMCache | None = None, on_error: OnError = "raise",
                   progress: bool = False) -> list[LFEstimate]:
    """:func:`estimate_lf` for every FM LF of ``suite`` (or those ``names``), in suite order; ``lf``: only
    that LF object (it need not be in ``suite``). ``on_error``: as in :func:`~labelflow.apply.apply_lfs`, for
    the other LFs a budget looks at."""
    check_int("rows", rows, minimum=1, hint="dev gold rows to measure on", error=LFError)
    check_int("seed", seed, minimum=0, error=LFError)
    votes_cache = None
    if isinstance(data, Project):
        cardinality = data.schema.k if cardinality is None else cardinality
        fm_cache = data.fm_cache if fm_cache is None else fm_cache
        votes_cache = data.store.vote_cache()
        if suite is None:  # an LF object alone needs no suite unless the project has one
            suite = data.lfs() if data.config.lfs is not None or lf is None else []
        source: pl.DataFrame | pl.LazyFrame = data.rows()
    elif isinstance(data, Dataset):
        cardinality = data.schema.k if cardinality is None else cardinality
        source = data.frame
    elif isinstance(data, (pl.DataFrame, pl.LazyFrame)):
        source = data
    else:
        raise LFError(f"data must be a Project, a Dataset or a polars frame; got {type(data).__name__}")
    check_int("cardinality", cardinality, minimum=2, hint="pass it with a frame", error=LFError)
    members = list(suite or [])
    if lf is not None:  # the LF estimated takes the place of its namesake in the suite
        members = [x for x in members if getattr(x, "name", None) != getattr(lf, "name", None)] + [lf]
    members = check_suite(members) if members else []
    targets = _targets(members, names, lf)
    wanted = {"id", "split", "label"}.union(*(x.columns() or () for x in members if isinstance(x, FMLF)))
    frame = _collect(source, wanted)
    dev = _dev_gold(frame)
    if not dev.any():
        raise LFError("estimating an FM LF needs gold-labeled rows in split 'dev' to measure it on; the data has none "
                      "(give the project a dev split with labels, e.g. `labelflow init --dev-sample N`)")
    context = _Context(source, frame, members, cardinality, fm_cache, votes_cache, on_error, progress)
    return [_estimate(context, target, rows=rows, seed=seed) for target in targets]


def _targets(members: list[LabelingFunction], names: Sequence[str] | None, lf: FMLF | None) -> list[FMLF]:
    if lf is not None:
        if not isinstance(lf, FMLF):
            raise LFError(f"LF {getattr(lf, 'name', lf)!r} is not an FM LF (prompt, zero-shot or kNN); only those are "
                          "estimated")
        return [lf]
    fms = [x for x in members if isinstance(x, FMLF)]
    if names is None:
        if not fms:
            raise LFError(f"the suite has no FM LF (prompt, zero-shot or kNN) to estimate; its LFs are "
                          f"{[x.name for x in members]}")
        return fms
    by_name = {x.name: x for x in members}
    out = []
    for name in names:
        if name not in by_name:
            raise LFError(f"unknown LF {name!r}; the suite's FM LFs are {[x.name for x in fms]}")
        if not isinstance(by_name[name], FMLF):
            raise LFError(f"LF {name!r} is not an FM LF (prompt, zero-shot or kNN); the suite's FM LFs are "
                          f"{[x.name for x in fms]}")
        out.append(by_name[name])
    return out


def _collect(source: pl.DataFrame | pl.LazyFrame, wanted: set[str]) -> pl.DataFrame:
    schema = source.collect_schema()
    if "id" not in schema:
        raise LFError(f"the data needs an 'id' column; it has {schema.names()}")
    part = source.select([c for c in schema if c in wanted])
    return part.collect() if isinstance(part, pl.LazyFrame) else part


class _Context:
    """The data and the other LFs' votes, shared by the estimates of one suite."""

    def __init__(self, source, frame, members, cardinality, fm_cache, votes_cache, on_error, progress) -> None:
        self.source, self.frame, self.members, self.on_error = source, frame, members, on_error
        self.k, self.fm_cache, self.votes_cache, self.progress = cardinality, fm_cache, votes_cache, progress
        self.dev = _dev_gold(frame)
        self.gold = frame["label"].fill_null(ABSTAIN).to_numpy().astype(np.int64)
        self._full: dict[str, np.ndarray] | None = None
        self._dev_votes: dict[str, np.ndarray] = {}

    def other_votes(self, target: FMLF) -> tuple[np.ndarray, np.ndarray | None]:
        """``([n, m] votes exact on dev rows, [n, m'] votes over all rows of the LFs known there or None)``:
        the LFs a budget looks at (every LF without a budget, but ``target``)."""
        others = [x for x in self.members if x is not target and not (isinstance(x, FMLF) and x.budget is not None)]
        full = self._full_votes(others)
        n = self.frame.height
        on_dev = []
        for x in others:
            if x.name in full:
                on_dev.append(full[x.name])
            else:  # an FM LF the vote cache lacks: its votes on dev rows are exactly the full run's there
                if x.name not in self._dev_votes:
                    self._dev_votes[x.name] = x.votes(self.frame, cardinality=self.k, cache=self.fm_cache, rows=self.dev,
                                                      progress=self.progress).votes
                on_dev.append(self._dev_votes[x.name])
        known = [full[x.name] for x in others if x.name in full]
        empty = np.full((n, 1), ABSTAIN, LABEL_DTYPE)
        L_dev = np.stack(on_dev, axis=1) if on_dev else empty
        if len(known) == len(others):
            return L_dev, L_dev
        return L_dev, np.stack(known, axis=1) if known else empty

    def _full_votes(self, others: list[LabelingFunction]) -> dict[str, np.ndarray]:
        """Over all rows: the votes the vote cache holds, and those of plain (non-FM) LFs, applied (and cached)."""
        if self._full is None:
            plain = [x for x in self.members if not isinstance(x, FMLF)]
            fms = [x for x in self.members if isinstance(x, FMLF) and x.budget is None]
            self._full = {}
            if self.votes_cache is not None:
                self._full = cached_votes(self.source, fms, cardinality=self.k, cache=self.votes_cache,
                                          on_error=self.on_error)
            if plain:
                L = apply_lfs(self.source, plain, cardinality=self.k, cache=self.votes_cache, on_error=self.on_error,
                              progress=self.progress)
                self._full.update({name: L.values[:, j] for j, name in enumerate(L.lf_names)})
        return {x.name: self._full[x.name] for x in others if x.name in self._full}


def _estimate(ctx: _Context, lf: FMLF, *, rows: int, seed: int) -> LFEstimate:
    frame, dev, n = ctx.frame, ctx.dev, ctx.frame.height
    lf._check(ctx.k)
    # the LF's scope: exact on dev rows; over all rows exact, or projected from the dev rows
    if lf.budget is None:
        scope_dev, scope_all, exact, scope_rows = dev, np.ones(n, dtype=bool), True, n
    else:
        L_dev, L_all = ctx.other_votes(lf)
        scope_dev = budget_rows(L_dev, lf.budget) & dev  # type: ignore[arg-type]
        if L_all is L_dev:
            scope_all, exact = budget_rows(L_all, lf.budget), True  # type: ignore[arg-type]
            scope_rows = int(scope_all.sum())
        else:
            candidates = budget_rows(L_all, lf.budget)  # type: ignore[arg-type]
            exact = False
            if lf.budget == "uncovered":  # uncovered by all others ⊆ uncovered by the known ones
                base = int((candidates & dev).sum())
                share = scope_dev.sum() / base if base else 0.0
                scope_all, scope_rows = candidates, int(round(candidates.sum() * share))
            else:
                scope_all, scope_rows = np.ones(n, dtype=bool), int(round(n * scope_dev.sum() / dev.sum()))
    pool = np.flatnonzero(scope_dev)
    rng = np.random.default_rng(seed)
    sample = np.sort(rng.choice(pool, size=min(rows, len(pool)), replace=False)) if len(pool) else pool
    timing = sample if len(sample) else np.sort(rng.choice(np.flatnonzero(dev), size=min(rows, int(dev.sum())),
                                                           replace=False))

    provider = lf.provider()
    start = time.perf_counter()
    lf._row_outputs(frame, timing[:1], provider=provider, cache=None)  # loads the model
    load_seconds = time.perf_counter() - start

    mask = np.zeros(n, dtype=bool)
    mask[sample] = True
    run = lf.votes(frame, cardinality=ctx.k, cache=ctx.fm_cache, rows=mask, progress=ctx.progress)
    computed, seconds = run.stats.computed, run.stats.seconds
    timed = computed
    if computed == 0:  # every output was cached: time some rows afresh, without the cache
        stats = lf._row_outputs(frame, timing[:TIMING_ROWS], provider=provider, cache=None)
        timed, seconds = stats.computed, stats.seconds
    per_row = seconds / timed if timed else None

    # what a full run would still compute: its scope, plus the dev rows an "auto" threshold (or kNN) needs
    extra = dev if (lf.threshold == "auto" or isinstance(lf, KnnLF)) else np.zeros(n, dtype=bool)
    pending_scope = lf._row_outputs(frame, np.flatnonzero(scope_all & ~extra), provider=provider, cache=ctx.fm_cache,
                                    dry_run=True).pending
    if not exact:
        outside = int((scope_all & ~extra).sum())
        pending_scope = int(round(pending_scope * max(scope_rows - int((scope_dev & extra).sum()), 0) / outside)) \
            if outside else 0
    pending = pending_scope + lf._row_outputs(frame, np.flatnonzero(extra), provider=provider, cache=ctx.fm_cache,
                                              dry_run=True).pending

    got = run.votes[sample]
    voted = int((got != ABSTAIN).sum())
    correct = int(((got != ABSTAIN) & (got == ctx.gold[sample])).sum())
    interval = wilson_interval(correct, voted)
    coverage = voted / len(sample) if len(sample) else None
    return LFEstimate(
        lf=lf.name, kind=KINDS.get(type(lf), type(lf).__name__), budget=lf.budget, threshold=lf.threshold,
        fitted_threshold=run.threshold, sample_rows=len(sample), scope_dev_rows=len(pool),
        voted=voted, correct=correct, coverage=coverage, accuracy=correct / voted if voted else None,
        accuracy_low=interval[0] if interval else None, accuracy_high=interval[1] if interval else None,
        seconds_per_row=per_row, timed_rows=timed, load_seconds=load_seconds, computed_rows=computed, rows=n,
        scope_rows=scope_rows, scope_exact=exact, pending_rows=pending,
        projected_seconds=None if per_row is None else pending * per_row,
        projected_coverage=None if coverage is None else coverage * scope_rows / n,
        seed=seed, sample_ids=tuple(frame["id"].cast(pl.String).gather(sample).to_list()),
    )


def format_estimates(estimates: Sequence[LFEstimate]) -> str:
    """The estimates as a text table, one line per LF, and a line saying how to read it."""
    header = ("LF", "kind", "budget", "threshold", "sample", "coverage", "accuracy", "95% interval", "s/row",
              "rows in scope", "to compute", "projected")
    lines = [header]
    for e in estimates:
        threshold = "never votes" if not math.isfinite(e.fitted_threshold) else f"{e.fitted_threshold:.3g}"
        if e.threshold == "auto":
            threshold = f"auto → {threshold}"
        lines.append((
            e.lf, e.kind, e.budget or "-", threshold,
            f"{e.sample_rows} of {e.scope_dev_rows} dev",
            "-" if e.coverage is None else f"{e.voted} = {e.coverage:.0%}",
            "-" if e.accuracy is None else f"{e.correct} of {e.voted} = {e.accuracy:.0%}",
            "-" if e.accuracy_low is None else f"{e.accuracy_low:.0%}–{e.accuracy_high:.0%}",
            "-" if e.seconds_per_row is None else f"{e.seconds_per_row:.3g}",
            f"{e.scope_rows} of {e.rows}" + ("" if e.scope_exact else " (projected)"),
            str(e.pending_rows),
            "-" if e.projected_seconds is None else _duration(e.projected_seconds),
        ))
    widths = [max(len(row[i]) for row in lines) for i in range(len(header))]
    out = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in lines]
    out.insert(1, "  ".join("-" * w for w in widths))
    out.append("sample: dev gold rows in the LF's scope (its budget), run with its real model; coverage and accuracy "
               "are what a full run gives on them. to compute: model inputs a full run still needs (not in the FM "
               "cache; LFs over one model and the same texts share them); projected: at s/row, loading the model aside")
    return "\n".join(out)


def _duration(seconds: float) -> str:
    """``"42 s"``, ``"3.5 min"``, ``"2.1 h"``."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"
