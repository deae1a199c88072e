"""Project-level FM runs behind ``labelflow fm embed | zero-shot | prompt``.

Each computes one named FM output for every row of a project (through the
project's cache), stores it as a column that LFs read (``x.NAME``), and returns
what the run did: ``{"name", "kind", "rows", "cached", "computed", "calls",
"seconds", "rows_per_s"}``. With ``dry_run`` nothing is computed or stored: the
figures say how many rows are cached and how many model calls a run would make.

The rows are read, computed and written :data:`CHUNK_ROWS` at a time, so memory
stays bounded however many rows there are (the counts are per chunk: a text
repeated in a later chunk counts as cached there). With ``engine="ray"`` the
model runs in a pool of actors on a Ray cluster (:mod:`labelflow.distributed`);
the cache keys, so the cache, are the local run's.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import polars as pl

from labelflow.apply import Engine
from labelflow.chunks import chunk_bounds, read_chunk
from labelflow.distributed import RayEngine
from labelflow.fm.base import FMError, Provider, RunStats, get_provider
from labelflow.fm.lfs import Budget, budget_rows
from labelflow.fm.ops import embed_texts, prompt_logprobs, softmax
from labelflow.project import Project

CHUNK_ROWS = 65_536
"""Rows read, computed and written at a time."""

Outputs = Callable[[pl.DataFrame, int, int], tuple[np.ndarray | None, RunStats]]
"""``(chunk, start, stop) -> ([rows, d] outputs or None in a dry run, stats)``."""


def fm_embed(project: Project, *, name: str = "embedding", model: str = "all-MiniLM-L6-v2", device: str = "auto",
             dry_run: bool = False, progress: bool = False, engine: Engine | RayEngine = "local",
             address: str | None = None) -> dict[str, Any]:
    """Embed every row's ``text``: column ``name`` of ``[d]`` float32 vectors."""
    provider = _provider(project, "sentence-transformers", {"model": model, "device": device}, engine, address)

    def outputs(chunk: pl.DataFrame, start: int, stop: int) -> tuple[np.ndarray | None, RunStats]:
        return embed_texts(chunk["text"].to_list(), provider=provider, cache=project.fm_cache, progress=progress,
                           dry_run=dry_run)

    return _run(project, name, "embed", outputs, ["text"], dry_run=dry_run, progress=progress)


def fm_zero_shot(project: Project, *, name: str = "zero_shot", model: str = "all-MiniLM-L6-v2", device: str = "auto",
                 dry_run: bool = False, progress: bool = False, engine: Engine | RayEngine = "local",
                 address: str | None = None) -> dict[str, Any]:
    """Cosine similarity of each row's text to each class description: column ``name`` of ``[k]`` floats."""
    descriptions = list(project.schema.descriptions)
    if not descriptions or any(not d.strip() for d in descriptions):
        raise FMError("zero-shot scoring needs a description for every class; re-create the project with described "
                      "classes (labelflow init --describe CLASS=TEXT)")
    provider = _provider(project, "sentence-transformers", {"model": model, "device": device}, engine, address)
    desc, desc_stats = embed_texts(descriptions, provider=provider, cache=project.fm_cache, dry_run=dry_run)

    def outputs(chunk: pl.DataFrame, start: int, stop: int) -> tuple[np.ndarray | None, RunStats]:
        emb, stats = embed_texts(chunk["text"].to_list(), provider=provider, cache=project.fm_cache,
                                 progress=progress, dry_run=dry_run)
        return (None if dry_run else emb @ desc.T), stats

    return _run(project, name, "zero-shot", outputs, ["text"], dry_run=dry_run, progress=progress, extra=desc_stats)


def fm_prompt(project: Project, *, template: str, answers: Mapping[str, Sequence[str]], name: str = "prompt",
              provider: str = "transformers", provider_config: Mapping[str, Any] | None = None,
              budget: Budget | None = None, limit: int | None = None, dry_run: bool = False,
              progress: bool = False, engine: Engine | RayEngine = "local", address: str | None = None) -> dict[str, Any]:
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
    n = project.rows().select(pl.len()).collect().item()
    asked = np.ones(n, dtype=bool)
    if budget is not None:
        asked = budget_rows(project.matrix().values, budget)
    if limit is not None:
        asked &= np.cumsum(asked) <= limit
    model = _provider(project, provider, provider_config or {}, engine, address)

    def outputs(chunk: pl.DataFrame, start: int, stop: int) -> tuple[np.ndarray | None, RunStats]:
        idx = np.flatnonzero(asked[start:stop])
        logp, stats = prompt_logprobs(chunk[idx], template=template, answers=words, provider=model,
                                      cache=project.fm_cache, progress=progress, dry_run=dry_run)
        probs = np.full((stop - start, schema.k), np.nan)
        probs[idx] = softmax(logp)
        return probs, stats

    return _run(project, name, "prompt", outputs, None, dry_run=dry_run, progress=progress)


def _provider(project: Project, kind: str, config: Mapping[str, Any], engine: Engine | RayEngine,
              address: str | None) -> Provider:
    ray = project.ray_engine(engine, address)
    return get_provider(kind, **config) if ray is None else ray.provider(kind, config)


def _run(project: Project, name: str, kind: str, outputs: Outputs, columns: list[str] | None, *, dry_run: bool,
         progress: bool, extra: RunStats | None = None) -> dict[str, Any]:
    """``outputs`` on each chunk of the project's rows (``id`` and ``columns``, ``None``: all); stores them
    unless ``dry_run``."""
    from tqdm.auto import tqdm

    rows = project.rows()
    if columns is not None:
        rows = rows.select("id", *columns)
    n = rows.select(pl.len()).collect().item()
    stats = RunStats()

    def chunks(bar: Any) -> Iterator[tuple[pl.Series, np.ndarray]]:
        for start, stop in chunk_bounds(n, CHUNK_ROWS):
            chunk = read_chunk(rows, start, stop)
            values, chunk_stats = outputs(chunk, start, stop)
            stats.add(chunk_stats)
            bar.update(stop - start)
            yield chunk["id"], values  # type: ignore[misc]

    with tqdm(total=n, desc=f"fm {kind}", unit="row", unit_scale=True, disable=not progress, leave=False) as bar:
        stored = None
        if dry_run:
            for _ in chunks(bar):
                pass
        else:
            stored = project.save_fm_output_chunks(name, chunks(bar))
    if extra is not None:  # work done besides the rows (class descriptions): rows and cached count data rows only
        for field in ("computed", "calls", "pending", "pending_calls", "seconds"):
            setattr(stats, field, getattr(stats, field) + getattr(extra, field))
    report = {"name": name, "kind": kind, "rows": stats.total, "cached": stats.cached, "dry_run": dry_run,
              "computed": stats.computed, "calls": stats.calls, "seconds": round(stats.seconds, 3),
              "rows_per_s": round(stats.total / stats.seconds, 1) if stats.seconds else None}
    if dry_run:
        report["would_compute"] = stats.pending
        report["would_call"] = stats.pending_calls
    else:
        report["stored"] = str(stored)
    return report
