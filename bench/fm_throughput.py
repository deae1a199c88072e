"""Throughput of labelflow's local foundation-model providers, computed and cached.

Three runs over real text, the YouTube comments of ``data/youtube/*.csv`` (or
``--data``), repeated to ``--rows`` rows with a unique suffix on every repeated
comment so that each row is a distinct model input (``run_cached`` computes a
repeated input only once):

1. embeddings: ``SentenceTransformerProvider`` (all-MiniLM-L6-v2) through
   :func:`labelflow.fm.ops.embed_texts` with ``cache=None``, so every row is
   computed; best of ``--repeat`` runs. Tokens are counted with the model's own
   tokenizer, truncated as the model truncates.
2. prompt scoring: Gemma 3 270M (``TransformersLMProvider``) through
   :func:`labelflow.fm.ops.prompt_logprobs` with a short spam question, answers
   ``[["no"], ["yes"]]`` and ``cache=None``, on the first ``--prompt-rows`` rows;
   one run (``--prompt-repeat`` for best of more). Prompt tokens are counted after
   truncation to ``--max-length``, padding excluded.
3. the cached path: the embedding run again through an :class:`FMCache` in a
   temporary folder. The first pass fills it (reported as ``fill``); then best of
   ``--repeat`` passes find every row cached. Their ratio to the uncached rate is
   ``cache_speedup``.

Each model first runs one warm-up batch on other texts. Loading (building the
provider, converting the Gemma GGUF on first use, loading the weights) is timed
apart from the runs and reported as ``load_seconds``, never in a rate.
``--device auto`` picks CUDA (bf16) when torch sees a GPU, else CPU (float32).

Run::

    python bench/fm_throughput.py                 # 512 rows, 64 prompt rows
    python bench/fm_throughput.py --device cuda --rows 20000 --prompt-rows 2000

Human-readable lines come first; the last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = 'YouTube comment: "{text}"\nQuestion: Is this comment spam?\nAnswer:'
ANSWERS = [["no"], ["yes"]]  # class 0 = ham, 1 = spam


def load_texts(cfg) -> tuple[list[str], int]:
    """``cfg.rows`` distinct comment texts (the source comments, repeated with suffixes) and the source count."""
    import polars as pl

    paths = [cfg.data] if cfg.data else sorted((ROOT / "data" / "youtube").glob("*.csv"))
    base = [t for path in paths for t in pl.read_csv(path, columns=[cfg.text])[cfg.text].to_list() if t]
    texts, seen = [], set()
    for i in range(cfg.rows):
        text = base[i % len(base)]
        if text in seen:  # a repeat of the source, or a comment that occurs twice in it
            text = f"{text} [{i}]"
        seen.add(text)
        texts.append(text)
    return texts, len(base)


def timed(fn):
    """``(seconds, result)`` of one call of ``fn()``, with CUDA work finished."""
    sync()
    start = time.perf_counter()
    result = fn()
    sync()
    return time.perf_counter() - start, result


def best_of(fn, repeat: int):
    """``(best seconds, last result)`` of ``repeat`` calls of ``fn()``."""
    best, result = float("inf"), None
    for _ in range(max(1, repeat)):
        seconds, result = timed(fn)
        best = min(best, seconds)
    return best, result


def sync() -> None:
    import torch

    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def cpu_gflops(size: int = 1024, loops: int = 10) -> float:
    """float32 matrix-multiply GFLOP/s this process gets on the CPU now (best of 3): context for the CPU rates.

    On a shared virtual machine this can sit far below the CPU's nominal speed, and vary run to run.
    """
    import torch

    a = torch.randn(size, size)
    best = min(timed(lambda: [a @ a for _ in range(loops)])[0] for _ in range(3))
    return 2 * size**3 * loops / best / 1e9


def main(cfg) -> dict:
    """Time embeddings, prompt scores and cached embeddings; print the rates; returns the JSON summary."""
    import numpy as np
    import polars as pl
    import torch
    import transformers

    from labelflow.fm import FMCache, get_provider
    from labelflow.fm.base import default_cache_dir, resolve_device
    from labelflow.fm.ops import embed_texts, prompt_logprobs

    transformers.utils.logging.disable_progress_bar()
    device = resolve_device(cfg.device)
    texts, n_source = load_texts(cfg)
    n, cpus = len(texts), os.cpu_count()
    assert len(set(texts)) == n, "rows must be distinct model inputs"
    gpu = f" ({torch.cuda.get_device_name(0)})" if device == "cuda" else ""
    gflops = cpu_gflops()
    print(f"rows: {n:,} ({n_source:,} source comments{', repeated with suffixes' if n > n_source else ''}); "
          f"prompt rows: {min(cfg.prompt_rows, n):,}")
    print(f"torch {torch.__version__}, transformers {transformers.__version__}; device: {device}{gpu}; "
          f"CPUs: {cpus}; torch threads: {torch.get_num_threads()}; CPU float32 matmul {gflops:.0f} GFLOP/s now")
    load: dict[str, float] = {}

    # -- embeddings, every row computed --------------------------------------------------
    extra = {} if cfg.embed_batch is None else {"batch_size": cfg.embed_batch}
    load["embed_model"], embedder = timed(lambda: get_provider("sentence-transformers", device=cfg.device, **extra))
    seconds, st = timed(embedder._load)
    load["embed_model"] += seconds
    tok = st.tokenizer(texts, truncation=True, max_length=st.max_seq_length)["input_ids"]
    embed_tokens = sum(len(ids) for ids in tok)
    print(f"embeddings: {embedder.name} on {st.device}, {st.dtype}, batch {embedder.batch_size}, "
          f"max {st.max_seq_length} tokens; loaded in {load['embed_model']:.2f} s")
    embed_texts([f"warm-up {i}: {t}" for i, t in enumerate(texts[:embedder.batch_size])], provider=embedder, cache=None)
    embed_s, (emb, stats) = best_of(lambda: embed_texts(texts, provider=embedder, cache=None), cfg.repeat)
    assert stats.computed == n and stats.cached == 0, stats
    norms = np.linalg.norm(emb, axis=1)
    print(f"  computed   {embed_s:8.3f} s  {n / embed_s:10,.1f} rows/s  {embed_tokens / embed_s:12,.0f} tokens/s  "
          f"({embed_tokens / n:.1f} tokens/row, {stats.calls} calls, dim {emb.shape[1]}, "
          f"norms {norms.min():.3f}..{norms.max():.3f})")

    # -- the same embeddings through an FMCache: fill, then every row cached ------------
    with tempfile.TemporaryDirectory(prefix="labelflow-fm-bench-") as tmp:
        cache = FMCache(Path(tmp) / "fm.sqlite")
        fill_s, (_, fill) = timed(lambda: embed_texts(texts, provider=embedder, cache=cache))
        assert fill.computed == n and fill.cached == 0, fill
        cached_s, (emb_cached, hit) = best_of(lambda: embed_texts(texts, provider=embedder, cache=cache), cfg.repeat)
        assert hit.cached == n and hit.computed == 0, hit
        cache_bytes = sum(p.stat().st_size for p in Path(tmp).iterdir())
        cache.close()
    drift = float(np.abs(emb_cached - emb).max())
    print(f"  fill cache {fill_s:8.3f} s  {n / fill_s:10,.1f} rows/s  (computed and written)")
    print(f"  all cached {cached_s:8.3f} s  {n / cached_s:10,.1f} rows/s  ({embed_s / cached_s:,.1f}x computed; "
          f"{cache_bytes / 1e6:.1f} MB on disk; max |cached - computed| {drift:.2g})")

    # -- prompt scoring with Gemma 3 270M, every row computed ------------------------------
    m = min(cfg.prompt_rows, n)
    frame = pl.DataFrame({"text": texts[:m]})
    extra = {} if cfg.prompt_batch is None else {"batch_size": cfg.prompt_batch}
    load["prompt_model"], lm = timed(lambda: get_provider("transformers", device=cfg.device,
                                                         max_length=cfg.max_length, **extra))
    if lm.gguf_file:  # converting the GGUF happens once per machine; report it apart from loading
        converted = (default_cache_dir() / "converted" / f"{Path(lm.gguf_file).stem}-{lm._digest}" / "config.json")
        was_converted = converted.is_file()
        load["gguf_conversion"], _ = timed(lm._converted)
    seconds, (model, tokenizer) = timed(lm._load)
    load["prompt_model"] += seconds
    prompts = [TEMPLATE.format(text=t) for t in texts[:m]]
    prompt_tokens = sum(len(ids) for ids in tokenizer(prompts, truncation=True, max_length=lm.max_length)["input_ids"])
    conversion = ("" if not lm.gguf_file else
                  f"; GGUF {'already converted' if was_converted else 'converted'} in {load['gguf_conversion']:.2f} s")
    print(f"prompt scores: {lm.gguf_file or lm.name} on {model.device}, {model.dtype}, batch {lm.batch_size}, "
          f"max {lm.max_length} tokens; loaded in {load['prompt_model']:.2f} s{conversion}")
    warm = pl.DataFrame({"text": [f"warm-up {i}: {t}" for i, t in enumerate(texts[:lm.batch_size])]})
    prompt_logprobs(warm, template=TEMPLATE, answers=ANSWERS, provider=lm, cache=None)
    prompt_s, (logp, stats) = best_of(lambda: prompt_logprobs(frame, template=TEMPLATE, answers=ANSWERS, provider=lm,
                                                              cache=None), cfg.prompt_repeat)
    assert stats.computed == m and stats.cached == 0, stats
    assert np.isfinite(logp).all(), "non-finite prompt log-probabilities"
    says_yes = float(np.mean(logp[:, 1] > logp[:, 0]))
    print(f"  computed   {prompt_s:8.3f} s  {m / prompt_s:10,.2f} rows/s  {prompt_tokens / prompt_s:12,.0f} tokens/s  "
          f"({prompt_tokens / m:.1f} tokens/row, {stats.calls} calls, {prompt_s / m:.3f} s/row; "
          f"'yes' > 'no' on {says_yes:.0%}, uncalibrated)")
    print("load seconds (not in any rate): " + ", ".join(f"{k} {v:.2f}" for k, v in load.items()))

    summary = {
        "device": device, "gpu": torch.cuda.get_device_name(0) if device == "cuda" else None,
        "embed_dtype": str(st.dtype).removeprefix("torch."), "prompt_dtype": str(model.dtype).removeprefix("torch."),
        "cpus": cpus, "torch_threads": torch.get_num_threads(), "cpu_matmul_gflops": round(gflops, 1),
        "embed_batch": embedder.batch_size, "prompt_batch": lm.batch_size, "prompt_max_length": lm.max_length,
        "embed_rows": n, "embed_seconds": round(embed_s, 4), "embed_rows_per_s": round(n / embed_s, 1),
        "embed_tokens": embed_tokens, "embed_tokens_per_s": round(embed_tokens / embed_s, 1),
        "prompt_rows": m, "prompt_seconds": round(prompt_s, 4), "prompt_rows_per_s": round(m / prompt_s, 2),
        "prompt_tokens": prompt_tokens, "prompt_tokens_per_s": round(prompt_tokens / prompt_s, 1),
        "fill_embed_rows_per_s": round(n / fill_s, 1),
        "cached_embed_rows_per_s": round(n / cached_s, 1), "cache_speedup": round(embed_s / cached_s, 1),
        "load_seconds": {k: round(v, 2) for k, v in load.items()},
    }
    print(json.dumps(summary))
    return summary


def make_parser() -> argparse.ArgumentParser:
    """Command-line options (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=512, help="rows to embed (default 512)")
    parser.add_argument("--prompt-rows", type=int, default=64, help="rows to score with Gemma (default 64)")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                        help="auto: CUDA (bf16) when torch sees a GPU, else CPU (default auto)")
    parser.add_argument("--embed-batch", type=int, default=None, help="texts per embedding call (provider default)")
    parser.add_argument("--prompt-batch", type=int, default=None, help="prompts per Gemma call (provider default)")
    parser.add_argument("--max-length", type=int, default=96,
                        help="prompt tokens kept, as the shipped gemma_spam LF does (default 96)")
    parser.add_argument("--repeat", type=int, default=3, help="embedding runs; the best counts (default 3)")
    parser.add_argument("--prompt-repeat", type=int, default=1, help="prompt-scoring runs; the best counts (default 1)")
    parser.add_argument("--data", type=Path, default=None, help="a CSV instead of data/youtube/*.csv")
    parser.add_argument("--text", default="CONTENT", help="its text column (default CONTENT)")
    return parser


if __name__ == "__main__":
    main(make_parser().parse_args())
