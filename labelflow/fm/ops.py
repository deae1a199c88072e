"""FM outputs over a frame's rows, each computed once through the cache.

Each function returns its output array and the :class:`~labelflow.fm.base.RunStats`
of the run (how many rows were cached, computed, and in how many model calls).
"""

from __future__ import annotations

import string
from collections.abc import Sequence

import numpy as np
import polars as pl

from labelflow.fm.base import FMError, Provider, RunStats, run_cached
from labelflow.fm.cache import FMCache


def template_fields(template: str) -> list[str]:
    """Field names a ``str.format`` template reads (``"{text} by {AUTHOR}"`` → ``["text", "AUTHOR"]``)."""
    try:
        return [f.split(".")[0].split("[")[0] for _, f, _, _ in string.Formatter().parse(template) if f]
    except ValueError as exc:
        raise FMError(f"malformed prompt template {template!r}: {exc}") from None


def render_prompts(template: str, frame: pl.DataFrame) -> list[str]:
    """One prompt per row: ``template`` filled with the row's columns.

    Raises :class:`FMError` naming any field the data lacks.
    """
    fields = list(dict.fromkeys(template_fields(template)))
    missing = [f for f in fields if f not in frame.columns]
    if missing:
        raise FMError(f"the prompt template names field(s) {missing} that the data lacks; its columns are {frame.columns}")
    if not fields:
        raise FMError(f"the prompt template {template!r} names no field; put the row's text in it, e.g. {{text}}")
    columns = [frame[f].to_list() for f in fields]
    return [template.format(**dict(zip(fields, values))) for values in zip(*columns)]


def embed_texts(texts: Sequence[str], *, provider: Provider, cache: FMCache | None, progress: bool = False,
                dry_run: bool = False) -> tuple[np.ndarray, RunStats]:
    """``[n, d]`` float32 embeddings (rows not computed in a dry run are NaN)."""
    raw, stats = run_cached(texts, identity=provider.identity, task="embed", cache=cache, batch_size=provider.batch_size,
                            compute=lambda batch: [v.tobytes() for v in provider.embed(batch)],
                            desc="embeddings", progress=progress, dry_run=dry_run)
    return _stack(raw, np.float32), stats


def prompt_logprobs(frame: pl.DataFrame, *, template: str, answers: Sequence[Sequence[str]], provider: Provider,
                    cache: FMCache | None, progress: bool = False, dry_run: bool = False) -> tuple[np.ndarray, RunStats]:
    """``[n, k]`` next-token log-probabilities of each class's answer words, per row's prompt.

    ``answers[c]`` lists the words meaning class ``c`` (empty: the class has no answer
    and gets ``-inf``). Rows not computed in a dry run are NaN.
    """
    if not any(answers):
        raise FMError("the answer mapping is empty; map at least one class to answer words")
    prompts = render_prompts(template, frame)
    params = {"answers": [list(a) for a in answers]}
    raw, stats = run_cached(prompts, identity=provider.identity, task="score", template=template, params=params,
                            cache=cache, batch_size=provider.batch_size, desc="prompt scores", progress=progress,
                            dry_run=dry_run,
                            compute=lambda batch: [v.tobytes() for v in provider.score(batch, answers)])
    return _stack(raw, np.float64, width=len(answers)), stats


def generate_texts(frame: pl.DataFrame, *, template: str, provider: Provider, cache: FMCache | None,
                   max_tokens: int = 32, progress: bool = False) -> tuple[list[str], RunStats]:
    """One greedy completion per row's prompt."""
    prompts = render_prompts(template, frame)
    raw, stats = run_cached(prompts, identity=provider.identity, task="generate", template=template,
                            params={"max_tokens": max_tokens}, cache=cache, batch_size=provider.batch_size,
                            desc="generation", progress=progress,
                            compute=lambda batch: [t.encode() for t in provider.generate(batch, max_tokens=max_tokens)])
    return [b.decode() for b in raw], stats  # type: ignore[union-attr]


def zero_shot_similarity(texts: Sequence[str], *, descriptions: Sequence[str], provider: Provider,
                         cache: FMCache | None, progress: bool = False) -> tuple[np.ndarray, RunStats]:
    """``[n, k]`` cosine similarity of each text to each class description."""
    if any(not d.strip() for d in descriptions):
        raise FMError("every class needs a non-empty description for zero-shot scoring")
    emb, stats = embed_texts(texts, provider=provider, cache=cache, progress=progress)
    desc, desc_stats = embed_texts(descriptions, provider=provider, cache=cache)
    stats.add(desc_stats)
    return emb @ desc.T, stats


def softmax(logp: np.ndarray) -> np.ndarray:
    """Row-wise softmax of ``[n, k]`` log-scores (``-inf`` entries get probability 0)."""
    z = logp - logp.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _stack(raw: list[bytes | None], dtype: type, width: int | None = None) -> np.ndarray:
    """Decode cached byte strings into one ``[n, width]`` array; missing rows are NaN."""
    if width is None:
        width = next((len(b) // np.dtype(dtype).itemsize for b in raw if b is not None), 0)
    out = np.full((len(raw), width), np.nan, dtype=dtype)
    for i, b in enumerate(raw):
        if b is not None:
            out[i] = np.frombuffer(b, dtype=dtype)
    return out
