"""The training loop: soft-label distillation into a sequence classifier, resumable, multi-device.

:func:`finetune` is the one entry point; it reads the labels, prepares the run
folder, trains, picks the best dev checkpoint and writes the run (see
:mod:`finetune.export`). A run folder while training::

    RUN_DIR/finetune.json          task, config, data fingerprint, status
    RUN_DIR/labels.parquet         the soft labels it trains on (a resume may reuse them)
    RUN_DIR/train.log              log lines (loss, samples/s, dev scores)
    RUN_DIR/progress.json          where training is (see :data:`PROGRESS_FILE`), rewritten about every
                                   second while it trains, and when it completes, stops or fails
    RUN_DIR/checkpoints/last.safetensors  the resumable state (atomic; tensors as safetensors, the rest as
                                   JSON in its metadata, no pickle: see :mod:`finetune.checkpoint`): trainable
                                   weights, optimizer, schedule, RNG, position in the epoch, best dev weights, history

Speed: bf16 autocast and TF32 on a GPU, fused AdamW, dynamic padding over
length-grouped batches, gradient accumulation, SDPA attention, optional
``torch.compile``. Several GPUs: launch the same script with ``torchrun`` or
``accelerate launch``; every process trains on its share of the batches (DDP through
accelerate) and the first writes the run folder.
"""

from __future__ import annotations

import json
import logging
import math
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from labelflow.errors import require
from labelflow.files import atomic_path, write_json

from finetune.checkpoint import read_checkpoint, write_checkpoint
from finetune.config import FinetuneConfig
from finetune.data import LengthGroupedBatches, SoftLabels, collate, read_soft_labels, tokenize
from finetune.errors import FinetuneError, RunStopped
from finetune.evaluate import dev_loss, predict_probs
from finetune.loss import confidence_weights, soft_cross_entropy
from finetune.model import EXTRA, check_base_model, load_base_model, load_trainable_state, trainable_state

RUN_FILE = "finetune.json"
LABELS_FILE = "labels.parquet"
CHECKPOINT = Path("checkpoints") / "last.safetensors"
LEGACY_CHECKPOINT = Path("checkpoints") / "last.pt"
"""The checkpoint of labelflow before safetensors checkpoints: read only as weights (``torch.load(weights_only=True)``)."""
PROGRESS_FILE = "progress.json"
"""``{"status": "training" | "complete" | "stopped" | "failed", "step", "total_steps", "epoch" (fractional), "loss"
(mean train loss of the last log window, or null), "samples_per_s" (of that window, or null), "dev_accuracy" (of the
last evaluation, or null), "checkpoint_step" (the step of the resumable checkpoint, or null), "history" (the
evaluations so far, as in ``metrics.json``), "pid" and "proc_start" (the training process and its start time in
clock ticks after boot, null without /proc: which process to look for), "time" (Unix seconds), and for ``failed``
"error"}``, written atomically by the main process about every :data:`PROGRESS_EVERY_S` seconds while training."""
PROGRESS_EVERY_S = 1.0
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
"""Signals that stop training at the end of the current step, after a checkpoint (one process, main thread)."""
FORMAT = 1
RUNTIME_OPTIONS = ("device", "precision", "tf32", "compile", "cpu_threads", "eval_batch_size", "log_every",
                   "progress")
"""Options a resumed run may change: they affect speed, not what is learned."""
log = logging.getLogger("finetune")


@dataclass
class FinetuneResult:
    """What :func:`finetune` returns.

    Attributes
    ----------
    run_dir
        The run folder (a Hugging Face model folder once training ends).
    metrics
        The contents of ``metrics.json``.
    resumed_from
        Optimizer step the run resumed from (``None``: it started fresh).
    """

    run_dir: Path
    metrics: dict[str, Any]
    resumed_from: int | None = None


@dataclass
class _Rows:
    """The rows a run trains and scores on, after filtering."""

    data: SoftLabels
    train: np.ndarray  # [n] mask of training rows kept
    dev: np.ndarray  # [n] mask of dev rows with gold
    test: np.ndarray  # [n] mask of test rows with gold
    counts: dict[str, int] = field(default_factory=dict)


def finetune(
    data: Any,
    *,
    out: str | Path,
    config: FinetuneConfig | None = None,
    classes: Sequence[str] | None = None,
    text: str = "text",
    resume: bool = False,
    task: str | None = None,
) -> FinetuneResult:
    """Train a small classifier on exported probabilistic labels; write a run folder.

    Parameters
    ----------
    data
        ``None`` (with ``resume``: the run's own ``labels.parquet``) or an export of probabilistic labels (``labelflow export`` file or a polars/pandas
        frame; see :mod:`finetune.data`): ``train`` rows are trained on with their
        ``prob_<class>`` soft labels, ``dev`` rows with gold select the best checkpoint
        and stop early, ``test`` rows with gold are scored once at the end.
    out
        The run folder: empty or new, or (with ``resume``) a run of the same task.
    config
        Fine-tuning options; default :class:`FinetuneConfig()`.
    classes
        The task's class names; the export must have exactly these ``prob_`` columns.
        ``None``: taken from the export.
    text
        The export's text column.
    resume
        Continue the run in ``out`` from its last checkpoint (a finished run is only
        written out again).
    task
        Task name for the model card (default: the run folder's name).

    Returns
    -------
    FinetuneResult
        With ``metrics``: ``dev`` and ``test`` → ``{"rows", "student", "label_model"}`` and,
        where some gold rows have no LF vote, ``"uncovered"`` (both models' accuracy on them).
        Each model's metrics are :func:`finetune.evaluate.metrics` on the same gold rows:
        ``accuracy`` (all rows), ``accuracy_covered`` (rows some LF voted on), ``coverage``,
        ``tied``, macro-F1, per-class precision/recall/F1, ``n`` and ``n_covered``; the
        label model's as ``labelflow fit`` gives them (its export's ``pred``, ties broken,
        not counted wrong), the student's over every row (coverage 1).
        Also ``train`` (rows, steps, seconds, samples/s, tokens/s), ``best`` and ``history``.

    Raises
    ------
    FinetuneError
        Bad labels (see :func:`finetune.data.read_soft_labels`), no training rows left
        after filtering, a base model that cannot be found or has no classification
        head, a run folder holding another run (or, with ``resume``, a run of another task).
    """
    cfg = config or FinetuneConfig()
    if not isinstance(cfg, FinetuneConfig):
        raise FinetuneError(f"config must be a FinetuneConfig; got {type(cfg).__name__}")
    run_dir = Path(out)
    if data is None:
        if not resume or not (run_dir / LABELS_FILE).is_file():
            raise FinetuneError(f"data=None resumes a run with the labels it started with, but "
                                f"{run_dir / LABELS_FILE} does not exist{'' if resume else ' and resume is False'}; "
                                "pass the exported labels")
        data, text = run_dir / LABELS_FILE, "text"
    soft = read_soft_labels(data, classes=classes, text=text)
    rows = select_rows(soft, cfg)
    check_base_model(cfg, soft.class_names)  # before the run folder is touched
    if cfg.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise FinetuneError("device='cuda' but torch sees no CUDA GPU; use device='auto' or 'cpu'")
    meta = {
        "format": FORMAT,
        "task": {"name": task or run_dir.resolve().name, "classes": list(rows.data.class_names),
                 "base_model": cfg.base_model, "method": cfg.method},
        "config": cfg.to_dict(),
        "data": {"train_fingerprint": rows.data.fingerprint(rows.train), **rows.counts},
        "status": "training",
    }
    resumed = _prepare_run_dir(run_dir, meta, cfg, resume=resume)
    if not (run_dir / LABELS_FILE).is_file() and int(os.environ.get("RANK", "0")) == 0:
        with atomic_path(run_dir / LABELS_FILE) as tmp:
            soft_labels_frame(soft).write_parquet(tmp)
    return _Trainer(cfg, rows, run_dir, meta, resume=resumed).run()


def soft_labels_frame(data: SoftLabels) -> "pl.DataFrame":
    """``data`` as an export frame (id, text, split, label, prob_<class>, pred, covered, tied): what ``labels.parquet``
    holds (``pred`` always a class, by the prediction policy; ``covered`` only where the export had it)."""
    import polars as pl

    cols = [pl.Series("id", data.ids, dtype=pl.String), pl.Series("text", data.texts, dtype=pl.String),
            pl.Series("split", data.split.tolist(), dtype=pl.String),
            pl.Series("label", [None if g < 0 else int(g) for g in data.gold], dtype=pl.Int16),
            *[pl.Series(f"prob_{c}", data.probs[:, i]) for i, c in enumerate(data.class_names)],
            pl.Series("pred", data.lm_pred, dtype=pl.Int16)]
    if data.covered is not None:
        cols.append(pl.Series("covered", data.covered))
    cols.append(pl.Series("tied", data.tied))
    return pl.DataFrame(cols)


def select_rows(data: SoftLabels, cfg: FinetuneConfig) -> _Rows:
    """The training, dev and test rows of ``data`` under ``cfg``'s filters (``drop_uncovered``, ``min_confidence``)."""
    in_train = data.split == "train"
    if not in_train.any():
        raise FinetuneError(f"no rows in split 'train' to train on; the splits are {sorted(set(data.split.tolist()))}")
    train = in_train.copy()
    counts = {"train_rows": int(in_train.sum())}
    if cfg.drop_uncovered:
        if data.covered is None:
            raise FinetuneError("drop_uncovered=True needs the export's 'covered' column (labelflow export writes it)")
        counts["dropped_uncovered"] = int((train & ~data.covered).sum())
        train &= data.covered
    if cfg.min_confidence > 0:
        low = data.probs.max(axis=1) < cfg.min_confidence
        counts["dropped_low_confidence"] = int((train & low).sum())
        train &= ~low
    if not train.any():
        dropped = ", ".join(f"{v} {k.removeprefix('dropped_').replace('_', ' ')}" for k, v in counts.items()
                            if k.startswith("dropped_") and v)
        raise FinetuneError(
            f"no training rows left after filtering: {counts['train_rows']} train rows, dropped {dropped} "
            f"(drop_uncovered={cfg.drop_uncovered}, min_confidence={cfg.min_confidence})")
    dev, test = data.gold_rows("dev"), data.gold_rows("test")
    counts.update(train_kept=int(train.sum()), dev_rows=int(dev.sum()), test_rows=int(test.sum()))
    return _Rows(data, train, dev, test, counts)


def _prepare_run_dir(run_dir: Path, meta: dict[str, Any], cfg: FinetuneConfig, *, resume: bool) -> bool:
    """Check ``run_dir`` and write ``finetune.json``; True when a checkpoint is to be resumed."""
    path = run_dir / RUN_FILE
    if run_dir.exists() and not run_dir.is_dir():
        raise FinetuneError(f"run folder {run_dir} is a file, not a folder")
    if not path.is_file():
        if run_dir.is_dir() and any(run_dir.iterdir()):
            raise FinetuneError(f"run folder {run_dir} is not empty and holds no fine-tuning run ({RUN_FILE} is "
                                "missing); choose a new or empty folder")
        if resume:
            log.info("nothing to resume in %s; starting a new run", run_dir)
        _mark_started(run_dir)
        write_json(path, meta)
        return False
    old = read_run(run_dir)
    if not resume:
        raise FinetuneError(f"run folder {run_dir} already holds a run (status {old.get('status')!r}); resume it with "
                            "resume=True (--resume), or choose a new folder")
    _check_same_task(run_dir, old, meta, cfg)
    _mark_started(run_dir)
    write_json(path, {**meta, "status": "complete" if old.get("status") == "complete" else "training"})
    return (run_dir / CHECKPOINT).is_file() or (run_dir / LEGACY_CHECKPOINT).is_file()


def _mark_started(run_dir: Path) -> None:
    """Record in ``progress.json`` (first process only) that this process trains the run from now, keeping the last
    position a resumed run had (the trainer rewrites it once set up): a reader sees it training while it loads."""
    if int(os.environ.get("RANK", "0")) != 0:
        return
    try:
        old = json.loads((run_dir / PROGRESS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        old = None
    old = old if isinstance(old, dict) else {"step": 0}
    old.pop("error", None)
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json(run_dir / PROGRESS_FILE, {**old, "status": "training", **_process(), "time": time.time()})


def read_run(run_dir: str | Path) -> dict[str, Any]:
    """``finetune.json`` of a run folder."""
    path = Path(run_dir) / RUN_FILE
    if not path.is_file():
        raise FinetuneError(f"{run_dir} is not a fine-tuning run folder: {RUN_FILE} is missing")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise FinetuneError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise FinetuneError(f"{path} has format {raw.get('format') if isinstance(raw, dict) else None!r}; this "
                            f"labelflow reads format {FORMAT}")
    return raw


def _check_same_task(run_dir: Path, old: dict[str, Any], new: dict[str, Any], cfg: FinetuneConfig) -> None:
    for key, what in (("classes", "classes"), ("base_model", "base model"), ("method", "method")):
        if old["task"].get(key) != new["task"][key]:
            raise FinetuneError(f"cannot resume {run_dir}: it is a run of a different task ({what} "
                                f"{old['task'].get(key)!r}, here {new['task'][key]!r}); choose a new run folder")
    if old["data"].get("train_fingerprint") != new["data"]["train_fingerprint"]:
        raise FinetuneError(f"cannot resume {run_dir}: it was trained on different texts or soft labels "
                            f"({old['data'].get('train_kept')} rows, fingerprint {old['data'].get('train_fingerprint')}; "
                            f"here {new['data']['train_kept']} rows, {new['data']['train_fingerprint']}); choose a "
                            "new run folder")
    before = FinetuneConfig.from_dict(old["config"]).to_dict()
    changed = sorted(k for k, v in cfg.to_dict().items() if k not in RUNTIME_OPTIONS and before.get(k) != v)
    if changed:
        raise FinetuneError(f"cannot resume {run_dir} with different training options "
                            + ", ".join(f"{k}={before.get(k)!r}→{getattr(cfg, k)!r}" for k in changed)
                            + f" (only {list(RUNTIME_OPTIONS)} may change on resume)")


# --- the trainer ---------------------------------------------------------------------------------


class _Trainer:
    """One run: holds the model, optimizer and progress; :meth:`run` trains and writes the folder."""

    def __init__(self, cfg: FinetuneConfig, rows: _Rows, run_dir: Path, meta: dict[str, Any], *, resume: bool) -> None:
        self.cfg, self.rows, self.run_dir, self.meta, self.resume = cfg, rows, run_dir, meta, resume
        self.stop_signal: int | None = None
        self.checkpoint_step: int | None = None
        self._progress_at = 0.0

    # setup ------------------------------------------------------------------------------------------

    def _setup(self) -> None:
        import torch

        cfg = self.cfg
        self.acc, self.device, self.autocast_dtype = make_accelerator(cfg)
        self.is_main = self.acc.is_main_process
        model, tokenizer, self.model_type = load_base_model(cfg, self.rows.data.class_names, device=str(self.device))
        self.tokenizer, self.pad_id = tokenizer, tokenizer.pad_token_id
        self.pad_multiple = 8 if self.device.type == "cuda" else 1
        data = self.rows.data
        need = self.rows.train | self.rows.dev | self.rows.test
        ids = tokenize(tokenizer, [t if need[i] else "" for i, t in enumerate(data.texts)], max_length=cfg.max_length)
        self.tokens = ids
        self.train_idx = np.flatnonzero(self.rows.train)
        self.train_ids = [ids[i] for i in self.train_idx]
        self.targets = data.probs[self.train_idx]
        self.weights = confidence_weights(self.targets, cfg.weighting)
        self.batches = LengthGroupedBatches([len(t) for t in self.train_ids], batch_size=cfg.batch_size, seed=cfg.seed,
                                            group_by_length=cfg.group_by_length)
        world, rank = self.acc.num_processes, self.acc.process_index
        self.per_rank = len(self.batches) // world if world > 1 else len(self.batches)
        if self.per_rank == 0:
            raise FinetuneError(f"{len(self.train_idx)} training rows make {len(self.batches)} batches of "
                                f"{cfg.batch_size}, fewer than the {world} processes; lower batch_size")
        self.rank, self.world = rank, world
        self.steps_per_epoch = math.ceil(self.per_rank / cfg.grad_accum)
        self.total_steps = cfg.epochs * self.steps_per_epoch
        if cfg.max_steps is not None:
            self.total_steps = min(self.total_steps, cfg.max_steps)
        params = [p for p in model.parameters() if p.requires_grad]
        decay = [p for n, p in model.named_parameters() if p.requires_grad and p.ndim >= 2]
        no_decay = [p for n, p in model.named_parameters() if p.requires_grad and p.ndim < 2]
        groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
        fused = {"fused": True} if self.device.type == "cuda" else {}
        self.optimizer = torch.optim.AdamW([g for g in groups if g["params"]], lr=cfg.learning_rate, **fused)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lr_schedule(cfg, self.total_steps))
        self.n_trainable = sum(p.numel() for p in params)
        self.n_params = sum(p.numel() for p in model.parameters())
        self.state = {"step": 0, "epoch": 0, "batch_in_epoch": 0, "best": None, "bad_evals": 0, "history": [],
                      "train_seconds": 0.0, "samples": 0, "tokens": 0, "loss_sum": 0.0, "loss_steps": 0,
                      "done": False}
        self.resumed_from = None
        self.last_window: dict[str, float | None] = {"loss": None, "samples_per_s": None}
        if self.resume:
            self._load_checkpoint(model)
        if cfg.compile:
            model.compile(dynamic=True)
        self.model, self.optimizer = self.acc.prepare(model, self.optimizer)

    def _load_checkpoint(self, model: Any) -> None:
        import torch

        path = self.run_dir / CHECKPOINT
        if path.is_file():
            ckpt = read_checkpoint(path)
        else:  # a run checkpointed by an older labelflow: tensors and plain containers only, never code
            path = self.run_dir / LEGACY_CHECKPOINT
            try:
                ckpt = torch.load(path, map_location="cpu", weights_only=True)
            except Exception as exc:
                raise FinetuneError(f"cannot read checkpoint {path} as weights only (it is not loaded as a pickle, "
                                    f"which could run code): {type(exc).__name__}: {exc}") from None
            if not isinstance(ckpt, dict):
                raise FinetuneError(f"cannot read checkpoint {path}: it holds a {type(ckpt).__name__}, not a mapping")
        if ckpt.get("format") != FORMAT:
            raise FinetuneError(f"checkpoint {path} has format {ckpt.get('format')!r}; this labelflow reads {FORMAT}")
        load_trainable_state(model, ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        torch.set_rng_state(ckpt["rng"]["torch"])
        if ckpt["rng"].get("cuda") is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(ckpt["rng"]["cuda"])
        self.state = ckpt["state"]
        self.resumed_from = self.checkpoint_step = self.state["step"]
        log.info("resumed %s from step %d (epoch %d, batch %d)", self.run_dir, self.state["step"],
                 self.state["epoch"], self.state["batch_in_epoch"])

    # training ---------------------------------------------------------------------------------------

    def run(self) -> FinetuneResult:
        from finetune.export import export_run

        import torch

        threads = torch.get_num_threads()
        with _log_to(self.run_dir / "train.log"), _cpu_threads(self.cfg), self._failures_recorded():
            self._setup()
            cfg, st = self.cfg, self.state
            log.info("training %s (%s, %s trainable of %s parameters) on %d rows, %d steps (%d per epoch), device %s "
                     "(%d process%s%s), %s", cfg.base_model, cfg.method, f"{self.n_trainable:,}", f"{self.n_params:,}",
                     len(self.train_idx), self.total_steps, self.steps_per_epoch, self.device, self.world,
                     "" if self.world == 1 else "es",
                     f", {torch.get_num_threads()} of {threads} threads" if self.device.type == "cpu" else "",
                     "autocast " + str(self.autocast_dtype).removeprefix("torch.") if self.autocast_dtype else "fp32")
            if not self.rows.dev.any():
                log.warning("no dev rows with gold labels: the last checkpoint is kept and nothing stops early")
            self._write_progress("training")
            if not st["done"]:
                with self._stop_on_signal():
                    self._train()
            unwrapped = self.acc.unwrap_model(self.model)
            if st["best"] is not None:
                load_trainable_state(unwrapped, st["best"]["state"])
            metrics = None
            if self.is_main:
                metrics = export_run(self, unwrapped)
                self._write_progress("complete")
            self.acc.wait_for_everyone()
        if metrics is None:
            metrics = json.loads((self.run_dir / "metrics.json").read_text(encoding="utf-8"))
        return FinetuneResult(self.run_dir, metrics, self.resumed_from)

    def _train(self) -> None:
        import torch

        cfg, st, acc = self.cfg, self.state, self.acc
        tqdm = require("tqdm", EXTRA).tqdm
        bar = tqdm(total=self.total_steps, initial=st["step"], desc="fine-tune", unit="step", dynamic_ncols=True,
                   disable=not (cfg.progress and self.is_main), file=sys.stderr)
        self.model.train()
        window = {"loss": 0.0, "n": 0, "samples": 0, "tokens": 0, "seconds": 0.0}
        stop = st["step"] >= self.total_steps
        while not stop and st["epoch"] < cfg.epochs:
            batches = self.batches.epoch(st["epoch"])
            if self.world > 1:
                batches = batches[self.rank::self.world][:self.per_rank]
            start = st["batch_in_epoch"]
            t_epoch = time.perf_counter()
            for g in range(start, len(batches), cfg.grad_accum):
                group = batches[g:g + cfg.grad_accum]
                t0 = time.perf_counter()
                loss_sum = 0.0
                for j, rows in enumerate(group):
                    batch = collate(self.train_ids, rows, pad_id=self.pad_id, pad_to_multiple_of=self.pad_multiple,
                                    targets=self.targets, weights=self.weights)
                    sync = j == len(group) - 1
                    with (nullcontext() if sync or self.world == 1 else acc.no_sync(self.model)):
                        logits = self.model(input_ids=batch["input_ids"].to(self.device),
                                            attention_mask=batch["attention_mask"].to(self.device)).logits
                        loss = soft_cross_entropy(logits, batch["targets"].to(self.device),
                                                  batch["weights"].to(self.device)) / len(group)
                        acc.backward(loss)
                    loss_sum += float(loss.detach())
                    window["samples"] += len(rows) * self.world
                    window["tokens"] += batch["tokens"] * self.world
                    st["samples"] += len(rows) * self.world
                    st["tokens"] += batch["tokens"] * self.world
                if cfg.max_grad_norm is not None:
                    acc.clip_grad_norm_(self.model.parameters(), cfg.max_grad_norm)
                self.optimizer.step()
                self.scheduler.step()
                self.optimizer.zero_grad(set_to_none=True)
                st["step"] += 1
                st["batch_in_epoch"] = g + len(group)
                st["train_seconds"] += time.perf_counter() - t0
                window["seconds"] += time.perf_counter() - t0
                window["loss"] += loss_sum
                st["loss_sum"] += loss_sum
                st["loss_steps"] += 1
                window["n"] += 1
                bar.update(1)
                if st["step"] % cfg.log_every == 0 or st["step"] == self.total_steps:
                    self._log_window(window, bar)
                end_of_epoch = st["batch_in_epoch"] >= len(batches)
                if end_of_epoch:
                    st["epoch"], st["batch_in_epoch"] = st["epoch"] + 1, 0
                last = st["step"] >= self.total_steps
                evaluate = (end_of_epoch and cfg.eval_every is None) or last or (
                    cfg.eval_every is not None and st["step"] % cfg.eval_every == 0)
                if evaluate and self._evaluate():
                    log.info("early stop at step %d: dev %s has not improved for %d evaluations", st["step"],
                             cfg.select, cfg.patience)
                    stop = True
                if last:
                    stop = True
                if evaluate or stop or (cfg.checkpoint_every is not None and st["step"] % cfg.checkpoint_every == 0):
                    st["done"] = stop
                    self._save_checkpoint()
                if stop:
                    break
                if self.stop_signal is not None:
                    self._stop()
                if time.monotonic() - self._progress_at >= PROGRESS_EVERY_S:
                    self._write_progress("training")
            if not stop:
                log.info("epoch %d done in %.1f s", st["epoch"], time.perf_counter() - t_epoch)
        if window["n"]:
            self._log_window(window, bar)
        if not st["done"]:  # epochs ran out exactly at a boundary already checkpointed
            st["done"] = True
            self._save_checkpoint()
        bar.close()

    def _log_window(self, window: dict[str, Any], bar: Any) -> None:
        elapsed = max(window["seconds"], 1e-9)
        loss = window["loss"] / max(window["n"], 1)
        sps, tps = window["samples"] / elapsed, window["tokens"] / elapsed
        st = self.state
        log.info("step %d/%d epoch %d loss %.4f lr %.2e samples/s %.1f tokens/s %.0f", st["step"], self.total_steps,
                 st["epoch"] + (st["batch_in_epoch"] > 0), loss, self.scheduler.get_last_lr()[0], sps, tps)
        bar.set_postfix(loss=f"{loss:.4f}", samples_s=f"{sps:.1f}")
        window.update(loss=0.0, n=0, samples=0, tokens=0, seconds=0.0)
        self.last_window = {"loss": loss, "samples_per_s": sps}
        self._write_progress("training")

    def _stop(self) -> None:
        """Stop between two steps as a signal asked: write the checkpoint (the run resumes from this step), mark the
        run stopped and raise :class:`RunStopped`."""
        st = self.state
        if self.checkpoint_step != st["step"]:
            st["done"] = False
            self._save_checkpoint()
        name = signal.Signals(self.stop_signal).name
        if self.is_main:
            write_json(self.run_dir / RUN_FILE, {**self.meta, "status": "stopped"})
        self._write_progress("stopped")
        log.info("stopped at step %d of %d (%s); the checkpoint is saved: resume continues from step %d", st["step"],
                 self.total_steps, name, st["step"])
        raise RunStopped(f"fine-tuning stopped at step {st['step']} of {self.total_steps} ({name}); resume "
                         f"{self.run_dir} (--resume) to continue from there", step=st["step"])

    @contextmanager
    def _stop_on_signal(self) -> Iterator[None]:
        """While the body trains, :data:`STOP_SIGNALS` ask it to stop at the end of the current step (see
        :meth:`_stop`); a second signal acts at once. Only in one process and its main thread: several processes must stop at the same
        step, and only the main thread may set handlers; elsewhere the checkpoints written so far are what resumes."""
        if self.world > 1 or threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {s: signal.getsignal(s) for s in STOP_SIGNALS}

        def ask_to_stop(signum: int, frame: Any) -> None:
            self.stop_signal = signum
            for s, handler in previous.items():
                signal.signal(s, signal.SIG_DFL if handler is None else handler)

        for s in STOP_SIGNALS:
            signal.signal(s, ask_to_stop)
        try:
            yield
        finally:
            for s, handler in previous.items():
                signal.signal(s, signal.SIG_DFL if handler is None else handler)

    @contextmanager
    def _failures_recorded(self) -> Iterator[None]:
        """Write ``progress.json`` with status ``failed`` and the error when the body raises (other than a stop)."""
        try:
            yield
        except (RunStopped, KeyboardInterrupt, SystemExit):
            raise  # a stop, not a failure: the run's files say stopped (see finetune.runs)
        except Exception as exc:
            if int(os.environ.get("RANK", "0")) == 0:
                st = getattr(self, "state", None) or {"step": 0, "history": []}
                write_json(self.run_dir / PROGRESS_FILE, {
                    "status": "failed", "step": st["step"], "total_steps": getattr(self, "total_steps", None),
                    "checkpoint_step": self.checkpoint_step, "error": f"{type(exc).__name__}: {exc}"[:2000],
                    "history": _history(st["history"]), **_process(), "time": time.time()})
            raise

    def _epoch_position(self) -> float:
        """Epochs done so far, fractional (3 decimals)."""
        return round(self.state["epoch"] + self.state["batch_in_epoch"] / max(self.per_rank, 1), 3)

    def _write_progress(self, status: str) -> None:
        """Write :data:`PROGRESS_FILE` (main process only)."""
        if not self.is_main:
            return
        st = self.state
        dev = next((h["dev_accuracy"] for h in reversed(st["history"]) if "dev_accuracy" in h), None)
        write_json(self.run_dir / PROGRESS_FILE, {
            "status": status, "step": st["step"], "total_steps": self.total_steps, "epoch": self._epoch_position(),
            **self.last_window, "dev_accuracy": dev, "checkpoint_step": self.checkpoint_step,
            "history": _history(st["history"]), **_process(), "time": time.time()})
        self._progress_at = time.monotonic()

    def _evaluate(self) -> bool:
        """Score dev, keep the best weights; True when training should stop early."""
        cfg, st = self.cfg, self.state
        train_loss = st["loss_sum"] / max(st["loss_steps"], 1)
        st["loss_sum"], st["loss_steps"] = 0.0, 0
        if not self.rows.dev.any():
            st["history"].append({"step": st["step"], "train_loss": train_loss})
            st["best"] = {"step": st["step"], "epoch": st["epoch"], "score": None,
                          "state": trainable_state(self.acc.unwrap_model(self.model))}
            self._write_progress("training")
            return False
        dev = np.flatnonzero(self.rows.dev)
        probs = self.student_probs(dev)
        gold = self.rows.data.gold[dev]
        preds = probs.argmax(axis=1)
        acc_ = float(np.mean(preds == gold))
        from finetune.evaluate import metrics

        m = metrics(gold, preds, class_names=self.rows.data.class_names)
        loss = dev_loss(probs, gold)
        score = {"accuracy": [acc_, -loss], "macro_f1": [m["macro_f1"], -loss], "loss": [-loss]}[cfg.select]
        entry = {"step": st["step"], "epoch": self._epoch_position(), "train_loss": train_loss, "dev_accuracy": acc_,
                 "dev_macro_f1": m["macro_f1"], "dev_loss": loss}
        st["history"].append(entry)
        self._write_progress("training")
        best = st["best"]
        improved = best is None or _better(score, best["score"])
        if improved:
            st["best"] = {"step": st["step"], "epoch": entry["epoch"], "score": score,
                          "state": trainable_state(self.acc.unwrap_model(self.model))}
            st["bad_evals"] = 0
        else:
            st["bad_evals"] += 1
        log.info("eval step %d: dev accuracy %.4f macro-F1 %.4f loss %.4f%s", st["step"], acc_, m["macro_f1"], loss,
                 " (best so far)" if improved else f" (best: step {st['best']['step']})")
        return cfg.patience is not None and st["bad_evals"] >= cfg.patience

    def student_probs(self, rows: np.ndarray) -> np.ndarray:
        """``[len(rows), k]`` probabilities of the current model for dataset rows ``rows`` (indices)."""
        return predict_probs(self.acc.unwrap_model(self.model), [self.tokens[i] for i in rows],
                             batch_size=self.cfg.eval_batch_size, pad_id=self.pad_id, device=self.device,
                             autocast_dtype=self.autocast_dtype, pad_to_multiple_of=self.pad_multiple)

    def _save_checkpoint(self) -> None:
        import torch

        if self.is_main:
            ckpt = {"format": FORMAT, "model": trainable_state(self.acc.unwrap_model(self.model)),
                    "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                    "rng": {"torch": torch.get_rng_state(),
                            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None},
                    "state": self.state}
            write_checkpoint(self.run_dir / CHECKPOINT, ckpt)
            (self.run_dir / LEGACY_CHECKPOINT).unlink(missing_ok=True)
        self.checkpoint_step = self.state["step"]
        self.acc.wait_for_everyone()


# --- runtime helpers -------------------------------------------------------------------------------


def _history(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The evaluation history as ``progress.json`` holds it (numbers only)."""
    return [{k: v for k, v in h.items() if isinstance(v, (int, float))} for h in history]


def proc_start(pid: int) -> int | None:
    """The start time of process ``pid`` in clock ticks after boot (``/proc/PID/stat`` field 22); None without /proc."""
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def _process() -> dict[str, int | None]:
    """``{"pid", "proc_start"}`` of this process: what tells a reader of ``progress.json`` whether training still runs."""
    return {"pid": os.getpid(), "proc_start": proc_start(os.getpid())}


def _better(score: list[float], best: list[float], *, min_delta: float = 1e-4) -> bool:
    """Whether dev ``score`` beats ``best``: ``[accuracy or macro-F1, -loss]`` (the loss breaks an exact tie) or
    ``[-loss]``, higher is better; a loss must improve by more than ``min_delta``.

    >>> _better([0.9, -0.3], [0.8, -0.1]), _better([0.9, -0.3], [0.9, -0.30001]), _better([-0.2], [-0.3])
    (True, False, True)
    """
    if score[0] != best[0]:
        return score[0] > best[0] + (min_delta if len(score) == 1 else 0.0)
    return len(score) > 1 and score[1] > best[1] + min_delta


def make_accelerator(cfg: FinetuneConfig) -> tuple[Any, Any, Any]:
    """``(accelerator, device, autocast dtype or None)`` for ``cfg``: device, precision, TF32.

    In one process the accelerate state is reset first, so several runs in one process
    may use different devices or precisions.
    """
    import torch

    accelerate = require("accelerate", EXTRA)
    cuda = torch.cuda.is_available()
    if cfg.device == "cuda" and not cuda:
        raise FinetuneError("device='cuda' but torch sees no CUDA GPU; use device='auto' or 'cpu'")
    on_gpu = cfg.device == "cuda" or (cfg.device == "auto" and cuda)
    precision = cfg.precision
    if precision == "auto":
        precision = ("bf16" if torch.cuda.is_bf16_supported() else "fp16") if on_gpu else "fp32"
    if precision == "fp16" and not on_gpu:
        raise FinetuneError("precision='fp16' needs a GPU; on a CPU use 'fp32' or 'bf16'")
    if on_gpu and cfg.tf32:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    if int(os.environ.get("WORLD_SIZE", "1")) == 1:
        from accelerate.state import AcceleratorState

        AcceleratorState._reset_state(reset_partial_state=True)
    acc = accelerate.Accelerator(cpu=not on_gpu, mixed_precision={"fp32": "no"}.get(precision, precision))
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    return acc, acc.device, dtype


def lr_schedule(cfg: FinetuneConfig, total_steps: int):
    """The multiplier of the peak learning rate at each optimizer step: linear warm-up, then ``cfg.scheduler``.

    Examples
    --------
    >>> f = lr_schedule(FinetuneConfig(warmup_ratio=0.2, scheduler="linear"), 10)
    >>> [round(f(s), 2) for s in range(10)]
    [0.33, 0.67, 1.0, 0.88, 0.75, 0.62, 0.5, 0.38, 0.25, 0.12]
    """
    warmup = int(round(cfg.warmup_ratio * total_steps))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        progress = (step - warmup) / max(1, total_steps - warmup)
        if cfg.scheduler == "linear":
            return max(0.0, 1.0 - progress)
        if cfg.scheduler == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))
        return 1.0

    return factor


def cpu_threads(cfg: FinetuneConfig) -> int:
    """Threads to train with on a CPU: ``cfg.cpu_threads``, or torch's default less the cores other processes
    keep busy (the 1-minute load average), at least 1."""
    import torch

    if cfg.cpu_threads is not None:
        return cfg.cpu_threads
    default = torch.get_num_threads()
    try:
        busy = os.getloadavg()[0]
    except OSError:  # not on this platform
        return default
    return max(1, min(default, int(round((os.cpu_count() or default) - busy))))


@contextmanager
def _cpu_threads(cfg: FinetuneConfig) -> Iterator[None]:
    """Run the body with :func:`cpu_threads` torch threads when it trains on a CPU; restore the count after."""
    import torch

    before = torch.get_num_threads()
    on_cpu = cfg.device == "cpu" or (cfg.device == "auto" and not torch.cuda.is_available())
    if on_cpu:
        torch.set_num_threads(cpu_threads(cfg))
    try:
        yield
    finally:
        torch.set_num_threads(before)


@contextmanager
def _log_to(path: Path) -> Iterator[None]:
    """Send the ``finetune`` logger's lines to ``path`` (appended) and, when nothing else handles them, stderr."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    log.addHandler(handler)
    stream = None
    if not logging.getLogger().handlers and not any(isinstance(h, logging.StreamHandler) and
                                                    not isinstance(h, logging.FileHandler) for h in log.handlers):
        stream = logging.StreamHandler(sys.stderr)
        stream.setFormatter(logging.Formatter("finetune: %(message)s"))
        log.addHandler(stream)
    level = log.level
    if log.getEffectiveLevel() > logging.INFO:
        log.setLevel(logging.INFO)
    try:
        yield
    finally:
        log.removeHandler(handler)
        handler.close()
        if stream is not None:
            log.removeHandler(stream)
        log.setLevel(level)
