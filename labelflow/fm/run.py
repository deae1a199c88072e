"""Project-level FM runs behind ``labelflow fm embed | zero-shot | prompt``.

Each computes one named FM output for every row of a project (through the
project's cache), stores it as a column that LFs read (``x.NAME``), and returns
what the run did: ``{"name", "kind", "rows", "cached", "computed", "calls",
"seconds", "rows_per_s"}``. With ``dry_run`` nothing is computed or stored: the
figures say how many rows are cached and how many model calls a run would make.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from labelflow.fm.base import FMError, RunStats, get_provider
from labelflow.fm.lfs import Budget, budget_rows
from labelflow.fm.ops import embed_texts, prompt_logprobs, softmax
from labelflow.project import Project


def fm_embed(project: Project, *, name: str = "embedding", model: str = "all-MiniLM-L6-v2", device: str = "auto",
             dry_run: bool = False, progress: bool = False) -> dict[str, Any]:
    """Embed every row's ``text``: column ``name`` of ``[d]`` float32 vectors."""
    dataset = project.dataset()
    provider = get_provider("sentence-transformers", model=model, device=device)
    emb, stats = embed_texts(dataset.frame["text"].to_list(), provider=provider, cache=project.fm_cache,
                             progress=progress, dry_run=dry_run)
    return _finish(project, name, "embed", dataset.ids, emb, stats, dry_run)


def fm_zero_shot(project: Project, *, name: str = "zero_shot", model: str = "all-MiniLM-L6-v2", device: str = "auto",
                 dry_run: bool = False, progress: bool = False) -> dict[str, Any]:
    """Cosine similarity of each row's text to each class description: column ``name`` of ``[k]`` floats."""
    dataset = project.dataset()
    descriptions = list(project.schema.descriptions)
    if not descriptions or any(not d.strip() for d in descriptions):
        raise FMError("zero-shot scoring needs a description for every class; re-create the project with described "
                      "classes (labelflow init --describe CLASS=TEXT)")
    provider = get_provider("sentence-transformers", model=model, device=device)
    texts = dataset.frame["text"].to_list()
    emb, stats = embed_texts(texts, provider=provider, cache=project.fm_cache, progress=progress, dry_run=dry_run)
    desc, desc_stats = embed_texts(descriptions, provider=provider, cache=project.fm_cache, dry_run=dry_run)
    for field in ("computed", "calls", "pending", "pending_calls", "seconds"):  # rows/cached count data rows only
        setattr(stats, field, getattr(stats, field) + getattr(desc_stats, field))
    sims = None if dry_run else emb @ desc.T
    return _finish(project, name, "zero-shot", dataset.ids, sims, stats, dry_run)


def fm_prompt(project: Project, *, template: str, answers: Mapping[str, Sequence[str]], name: str = "prompt",
              provider: str = "transformers", provider_config: Mapping[str, Any] | None = None,
              budget: Budget | None = None, limit: int | None = None, dry_run: bool = False,
              progress: bool = False) -> dict[str, Any]:
    """Class probabilities from an LLM prompt: column ``name`` of ``[k]`` floats (null where not asked).

    Parameters
    ----------
    answers
        ``{class name: [answer words]}``; every name must be a class of the project.
    budget
        Only ask about rows the project's current label matrix leaves uncovered or
        conflicting (run ``labelflow apply`` first).
    limit
        Only ask about the first ``limit`` rows (after ``budget``).
    """
    schema = project.schema
    unknown = sorted(set(answers) - set(schema.names))
    if unknown:
        raise FMError(f"the answer mapping names class(es) {unknown} outside the schema's classes {list(schema.names)}")
    words = [list(answers.get(c, [])) for c in schema.names]
    dataset = project.dataset()
    rows = np.ones(len(dataset), dtype=bool)
    if budget is not None:
        rows = budget_rows(project.matrix().values, budget)
    if limit is not None:
        rows &= np.cumsum(rows) <= limit
    idx = np.flatnonzero(rows)
    model = get_provider(provider, **(provider_config or {}))
    logp, stats = prompt_logprobs(dataset.frame[idx], template=template, answers=words, provider=model,
                                  cache=project.fm_cache, progress=progress, dry_run=dry_run)
    probs = np.full((len(dataset), schema.k), np.nan)
    probs[idx] = softmax(logp)
    return _finish(project, name, "prompt", dataset.ids, probs, stats, dry_run)


def _finish(project: Project, name: str, kind: str, ids: Any, values: np.ndarray | None, stats: RunStats,
            dry_run: bool) -> dict[str, Any]:
    report = {"name": name, "kind": kind, "rows": stats.total, "cached": stats.cached, "dry_run": dry_run,
              "computed": stats.computed, "calls": stats.calls, "seconds": round(stats.seconds, 3),
              "rows_per_s": round(stats.total / stats.seconds, 1) if stats.seconds else None}
    if dry_run:
        report["would_compute"] = stats.pending
        report["would_call"] = stats.pending_calls
    else:
        report["stored"] = str(project.save_fm_output(name, ids, values))
    return report
