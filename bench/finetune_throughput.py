"""Training throughput of the fine-tuner: samples/s, tokens/s and (on a GPU) MFU.

Two models: the bundled all-MiniLM-L6-v2 (22M parameters) and a BERT-base-sized
model (110M) built from ``BertConfig()`` with random weights (nothing downloaded);
both use the MiniLM tokenizer (the same 30,522-token BERT vocabulary). Each trains
with the fine-tuner's own pieces — LoRA through peft with the architecture
defaults (or ``--method full``), length-grouped batches with dynamic padding,
soft-label cross-entropy, AdamW (fused on a GPU), bf16 autocast and TF32 on a GPU —
on the YouTube comments of ``data/youtube`` (their real length mix) or, with
``--seq-len``, on random tokens of one fixed length.

MFU counts ``6 × non-embedding parameters`` FLOPs per token for full fine-tuning
(``4 ×`` for LoRA: frozen weights get no gradient, activations still do) plus
attention's ``12 × layers × hidden × padded row length`` per token, against the GPU's
dense bf16 peak (a table of common GPUs, or ``--peak-tflops``).

Run::

    python bench/finetune_throughput.py                    # both models, CPU or GPU
    python bench/finetune_throughput.py --models bert-base --batch-size 64 --compile

Human-readable lines first; the last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PEAK_BF16_TFLOPS = {"H200": 989.0, "H100 SXM": 989.0, "H100 80GB HBM3": 989.0, "H100 PCIe": 756.0, "H100": 756.0,
                    "A100": 312.0, "L40S": 362.0, "L4": 121.0, "A10G": 125.0, "A10": 125.0, "RTX 4090": 165.0,
                    "RTX 3090": 71.0, "T4": 65.0, "V100": 125.0}
"""Dense bf16 (fp16 for T4/V100) tensor-core peaks in TFLOPS, by a substring of the device name."""


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="minilm,bert-base", help="comma-separated: minilm, bert-base")
    parser.add_argument("--method", choices=("lora", "full"), default="lora")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=None, help="timed steps (default 20 on a CPU, 100 on a GPU)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    parser.add_argument("--seq-len", type=int, default=None, help="fixed length of random rows instead of YouTube text")
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto")
    parser.add_argument("--compile", action="store_true", help="torch.compile the model")
    parser.add_argument("--cpu-threads", type=int, default=None, help="torch threads on a CPU (default: torch's)")
    parser.add_argument("--peak-tflops", type=float, default=None, help="the GPU's peak TFLOPS for MFU")
    return parser


def texts_and_targets(cfg, tokenizer):
    """Token ids of the training rows and ``[n, 2]`` soft targets."""
    import numpy as np
    import polars as pl

    from labelflow.finetune.data import tokenize

    rng = np.random.default_rng(0)
    if cfg.seq_len:
        n = max(cfg.batch_size * (cfg.warmup + (cfg.steps or 100)), 256)
        ids = [np.concatenate([[101], rng.integers(1000, 30000, cfg.seq_len - 2), [102]]) for _ in range(n)]
    else:
        files = sorted((REPO / "data" / "youtube").glob("Youtube0*.csv"))
        texts = pl.concat([pl.read_csv(f).select("CONTENT") for f in files])["CONTENT"].to_list()
        ids = tokenize(tokenizer, texts, max_length=cfg.max_length)
    p = rng.uniform(0.05, 0.95, len(ids))
    return ids, np.stack([p, 1 - p], axis=1)


def build(name: str, cfg, device):
    """(model, tokenizer, non-embedding parameter count, layers, hidden size) for ``name``."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, BertConfig, BertForSequenceClassification

    from labelflow.finetune import FinetuneConfig
    from labelflow.finetune.model import resolve_base_model, wrap_lora

    folder = resolve_base_model("all-MiniLM-L6-v2")
    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    torch.manual_seed(0)
    if name == "minilm":
        model = AutoModelForSequenceClassification.from_pretrained(folder, num_labels=2, local_files_only=True,
                                                                   attn_implementation="sdpa")
    elif name == "bert-base":
        model = BertForSequenceClassification(BertConfig(num_labels=2, attn_implementation="sdpa"))
    else:
        raise SystemExit(f"unknown model {name!r}; known: minilm, bert-base")
    config = model.config
    embedding = sum(p.numel() for n, p in model.named_parameters() if "embeddings" in n)
    non_embedding = sum(p.numel() for p in model.parameters()) - embedding
    if cfg.method == "lora":
        model = wrap_lora(model, FinetuneConfig(base_model=str(folder)), "bert")
    return model.to(device), tokenizer, non_embedding, config.num_hidden_layers, config.hidden_size


def peak_tflops(cfg, device) -> float | None:
    import torch

    if cfg.peak_tflops:
        return cfg.peak_tflops
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    for key, value in PEAK_BF16_TFLOPS.items():
        if key in name:
            return value
    return None


def measure(name: str, cfg, device, dtype) -> dict:
    import torch

    from labelflow.finetune.data import LengthGroupedBatches, collate
    from labelflow.finetune.loss import soft_cross_entropy

    model, tokenizer, n_params, layers, hidden = build(name, cfg, device)
    if cfg.compile:
        model.compile(dynamic=True)
    ids, targets = texts_and_targets(cfg, tokenizer)
    trainable = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(trainable, lr=1e-4, **({"fused": True} if device.type == "cuda" else {}))
    steps = cfg.steps or (100 if device.type == "cuda" else 20)
    batches = []
    epoch = 0
    while len(batches) < cfg.warmup + steps:
        batches += LengthGroupedBatches([len(x) for x in ids], batch_size=cfg.batch_size, seed=0).epoch(epoch)
        epoch += 1
    model.train()
    pad_multiple = 8 if device.type == "cuda" else 1
    samples = tokens = attn_tokens = 0
    for i, rows in enumerate(batches[:cfg.warmup + steps]):
        if i == cfg.warmup:
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
        batch = collate(ids, rows, pad_id=tokenizer.pad_token_id, pad_to_multiple_of=pad_multiple, targets=targets)
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            logits = model(input_ids=batch["input_ids"].to(device, non_blocking=True),
                           attention_mask=batch["attention_mask"].to(device, non_blocking=True)).logits
        loss = soft_cross_entropy(logits, batch["targets"].to(device, non_blocking=True))
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if i >= cfg.warmup:
            samples += len(rows)
            tokens += batch["tokens"]
            attn_tokens += int(batch["input_ids"].shape[1]) * int(batch["tokens"])  # Σ padded_len × real tokens
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    per_token = (6 if cfg.method == "full" else 4) * n_params
    flops = per_token * tokens + 12 * layers * hidden * attn_tokens
    peak = peak_tflops(cfg, device)
    out = {"model": name, "parameters_non_embedding": n_params, "trainable_parameters": sum(p.numel() for p in trainable),
           "method": cfg.method, "batch_size": cfg.batch_size, "steps": steps, "seconds": round(seconds, 2),
           "samples_per_s": round(samples / seconds, 1), "tokens_per_s": round(tokens / seconds),
           "mean_tokens_per_row": round(tokens / samples, 1), "tflops": round(flops / seconds / 1e12, 3),
           "mfu": round(flops / seconds / (peak * 1e12), 4) if peak else None,
           "peak_memory_gb": round(torch.cuda.max_memory_allocated(device) / 2**30, 2) if device.type == "cuda" else None}
    del model, opt
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    return out


def main(cfg: argparse.Namespace) -> dict:
    import torch
    from transformers import logging as hf_logging

    hf_logging.set_verbosity_error()
    cuda = torch.cuda.is_available()
    if cfg.device == "cuda" and not cuda:
        raise SystemExit("--device cuda but torch sees no CUDA GPU")
    device = torch.device("cuda" if cfg.device == "cuda" or (cfg.device == "auto" and cuda) else "cpu")
    if cfg.cpu_threads:
        torch.set_num_threads(cfg.cpu_threads)
    precision = cfg.precision if cfg.precision != "auto" else ("bf16" if device.type == "cuda" else "fp32")
    dtype = torch.bfloat16 if precision == "bf16" else None
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)"
    print(f"device {name}, {precision}, {cfg.method}, batch {cfg.batch_size}, "
          + (f"random rows of {cfg.seq_len} tokens" if cfg.seq_len else "YouTube comments (length-grouped)"))
    runs = []
    for model in [m.strip() for m in cfg.models.split(",") if m.strip()]:
        r = measure(model, cfg, device, dtype)
        runs.append(r)
        print(f"{model:10s} {r['samples_per_s']:8.1f} samples/s {r['tokens_per_s']:9d} tokens/s  {r['tflops']:.3f} TFLOPS"
              + (f"  MFU {r['mfu']:.1%}" if r["mfu"] is not None else "")
              + f"  ({r['trainable_parameters']:,} trainable, {r['mean_tokens_per_row']} tokens/row)")
    result = {"device": name, "precision": precision, "compile": cfg.compile, "runs": runs}
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main(make_parser().parse_args())
