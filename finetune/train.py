"""The training loop: soft-label distillation into a sequence classifier, resumable, multi-device.

:func:`finetune` is the one entry point; it reads the labels, chooses the rows
(:mod:`labelflow.finetune.rows`), prepares the run folder (:mod:`labelflow.finetune.run_folder`: its files
and their formats), sets up the device (:mod:`labelflow.finetune.runtime`), trains, picks the best dev
checkpoint and writes the run (:mod:`labelflow.finetune.export`). Where training is lives in a
:class:`~labelflow.finetune.state.TrainState`, saved in each checkpoint.

Speed: bf16 autocast and TF32 on a GPU, fused AdamW, dynamic padding over
length-grouped batches, gradient accumulation, SDPA attention, optional
``torch.compile``. Several GPUs: launch the same script with ``torchrun`` or
``accelerate launch`` (see :mod:`labelflow.finetune.runtime`).
"""

from __future__ import annotations

import logging
import math
import signal
import sys
import time
from collections.abc import Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from labelflow.errors import FinetuneError, RunStopped, require
from labelflow.finetune.config import FinetuneConfig
from labelflow.finetune.data import LengthGroupedBatches, collate, read_soft_labels, tokenize
from labelflow.finetune.evaluate import dev_loss, gold_scores, metrics, predict_probs
from labelflow.finetune.export import export_run
from labelflow.finetune.loss import confidence_weights, soft_cross_entropy
from labelflow.finetune.model import EXTRA, check_base_model, load_base_model, load_trainable_state, trainable_state
from labelflow.finetune.optim import better, make_optimizer, selection_score
from labelflow.finetune.rows import TrainingRows, select_rows
from labelflow.finetune.run_folder import LABELS_FILE, LOG_FILE, RunFolder, run_meta
from labelflow.finetune.runtime import (StopRequest, check_device, is_first_process, logging_to, make_accelerator,
                                        stop_requests, using_cpu_threads)
from labelflow.finetune.state import Best, TrainState

PROGRESS_EVERY_S = 1.0
"""Seconds between two writes of ``progress.json`` while training."""
log = logging.getLogger("labelflow.finetune")


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
        frame; see :mod:`labelflow.finetune.data`): ``train`` rows are trained on with their
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
        Each model's metrics are :func:`labelflow.finetune.evaluate.metrics` on the same gold rows:
        ``accuracy`` (all rows), ``accuracy_covered`` (rows some LF voted on), ``coverage``,
        ``tied``, macro-F1, per-class precision/recall/F1, ``n`` and ``n_covered``; the
        label model's as ``labelflow fit`` gives them (its export's ``pred``, ties broken,
        not counted wrong), the student's over every row (coverage 1).
        Also ``train`` (rows, steps, seconds, samples/s, tokens/s), ``best`` and ``history``.

    Raises
    ------
    FinetuneError
        Bad labels (see :func:`labelflow.finetune.data.read_soft_labels`), no training rows left
        after filtering, a base model that cannot be found or has no classification
        head, a run folder holding another run (or, with ``resume``, a run of another task).
    """
    cfg = config or FinetuneConfig()
    if not isinstance(cfg, FinetuneConfig):
        raise FinetuneError(f"config must be a FinetuneConfig; got {type(cfg).__name__}")
    folder = RunFolder(Path(out))
    labels = folder.path / LABELS_FILE
    if data is None:
        if not resume or not labels.is_file():
            raise FinetuneError(f"data=None resumes a run with the labels it started with, but {labels} does not "
                                f"exist{'' if resume else ' and resume is False'}; pass the exported labels")
        data, text = labels, "text"
    soft = read_soft_labels(data, classes=classes, text=text)
    rows = select_rows(soft, cfg)
    check_base_model(cfg, soft.class_names)  # before the run folder is touched
    check_device(cfg)
    meta = run_meta(task or folder.path.resolve().name, cfg, rows)
    if resume and not folder.has_run():
        log.info("nothing to resume in %s; starting a new run", folder.path)
    resumed = folder.prepare(meta, cfg, resume=resume, main=is_first_process())
    if not labels.is_file() and is_first_process():
        folder.write_labels(soft.to_frame())
    return _Trainer(cfg, rows, folder, meta, resume=resumed).run()


# --- the trainer ---------------------------------------------------------------------------------


class _Trainer:
    """One run: holds the model, optimizer and progress; :meth:`run` trains and writes the folder."""

    def __init__(self, cfg: FinetuneConfig, rows: TrainingRows, folder: RunFolder, meta: dict[str, Any], *,
                 resume: bool) -> None:
        self.cfg, self.rows, self.folder, self.meta, self.resume = cfg, rows, folder, meta, resume
        self.state = TrainState()
        self.total_steps: int | None = None
        self.checkpoint_step: int | None = None
        self.stop = StopRequest()
        self._progress_at = 0.0

    # setup ------------------------------------------------------------------------------------------

    def _setup(self) -> None:
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
        self.optimizer, self.scheduler = make_optimizer(model, cfg, self.total_steps, fused=self.device.type == "cuda")
        self.n_trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        self.n_params = sum(p.numel() for p in model.parameters())
        self.state = TrainState()
        self.resumed_from = None
        self.last_window: dict[str, float | None] = {"loss": None, "samples_per_s": None}
        if self.resume:
            self._load_checkpoint(model)
        if cfg.compile:
            model.compile(dynamic=True)
        self.model, self.optimizer = self.acc.prepare(model, self.optimizer)

    def _load_checkpoint(self, model: Any) -> None:
        import torch

        ckpt = self.folder.read_checkpoint()
        load_trainable_state(model, ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        torch.set_rng_state(ckpt["rng"]["torch"])
        if ckpt["rng"].get("cuda") is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(ckpt["rng"]["cuda"])
        self.state = TrainState.from_dict(ckpt["state"], where=f"checkpoint of {self.folder.path}")
        self.resumed_from = self.checkpoint_step = self.state.step
        log.info("resumed %s from step %d (epoch %d, batch %d)", self.folder.path, self.state.step,
                 self.state.epoch, self.state.batch_in_epoch)

    # training ---------------------------------------------------------------------------------------

    def run(self) -> FinetuneResult:
        import torch

        threads = torch.get_num_threads()
        with logging_to(self.folder.path / LOG_FILE), using_cpu_threads(self.cfg), self._failures_recorded():
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
            if not st.done:
                with stop_requests(enabled=self.world == 1) as self.stop:
                    self._train()
            unwrapped = self.acc.unwrap_model(self.model)
            if st.best is not None:
                load_trainable_state(unwrapped, st.best.weights)
            written = None
            if self.is_main:
                written = self._metrics()
                export_run(self.folder, written, unwrapped, self.tokenizer, config=cfg)
                self._write_progress("complete")
            self.acc.wait_for_everyone()
        return FinetuneResult(self.folder.path, self.folder.read_metrics() if written is None else written,
                              self.resumed_from)

    def _metrics(self) -> dict[str, Any]:
        """``metrics.json``'s document (see :func:`labelflow.finetune.finetune`), the best weights loaded."""
        cfg, st, rows = self.cfg, self.state, self.rows
        seconds = st.train_seconds
        return {
            "format": 1,
            "task": self.meta["task"]["name"],
            "classes": list(rows.data.class_names),
            "base_model": cfg.base_model,
            "method": cfg.method,
            "lora": cfg.lora_settings(self.model_type) if cfg.method == "lora" else None,
            **gold_scores(rows, self.student_probs),
            "train": {
                **rows.counts,
                "steps": st.step, "total_steps": self.total_steps,
                "epochs": round(st.step / self.steps_per_epoch, 3), "seconds": round(seconds, 2),
                "samples_per_s": round(st.samples / seconds, 2) if seconds else None,
                "tokens_per_s": round(st.tokens / seconds, 1) if seconds else None,
                "trainable_parameters": self.n_trainable, "parameters": self.n_params,
                "device": str(self.device), "processes": self.world,
                "precision": str(self.autocast_dtype).removeprefix("torch.") if self.autocast_dtype else "fp32",
                "resumed_from": self.resumed_from,
            },
            "best": None if st.best is None else {"step": st.best.step, "epoch": st.best.epoch, "select": cfg.select,
                                                 "score": st.best.score},
            "history": st.history,
        }

    def _train(self) -> None:
        cfg, st, acc = self.cfg, self.state, self.acc
        tqdm = require("tqdm", EXTRA).tqdm
        bar = tqdm(total=self.total_steps, initial=st.step, desc="fine-tune", unit="step", dynamic_ncols=True,
                   disable=not (cfg.progress and self.is_main), file=sys.stderr)
        self.model.train()
        window = {"loss": 0.0, "n": 0, "samples": 0, "tokens": 0, "seconds": 0.0}
        stop = st.step >= self.total_steps
        while not stop and st.epoch < cfg.epochs:
            batches = self.batches.epoch(st.epoch)
            if self.world > 1:
                batches = batches[self.rank::self.world][:self.per_rank]
            start = st.batch_in_epoch
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
                    st.samples += len(rows) * self.world
                    st.tokens += batch["tokens"] * self.world
                if cfg.max_grad_norm is not None:
                    acc.clip_grad_norm_(self.model.parameters(), cfg.max_grad_norm)
                self.optimizer.step()
                self.scheduler.step()
                self.optimizer.zero_grad(set_to_none=True)
                st.step += 1
                st.batch_in_epoch = g + len(group)
                st.train_seconds += time.perf_counter() - t0
                window["seconds"] += time.perf_counter() - t0
                window["loss"] += loss_sum
                st.loss_sum += loss_sum
                st.loss_steps += 1
                window["n"] += 1
                bar.update(1)
                if st.step % cfg.log_every == 0 or st.step == self.total_steps:
                    self._log_window(window, bar)
                end_of_epoch = st.batch_in_epoch >= len(batches)
                if end_of_epoch:
                    st.epoch, st.batch_in_epoch = st.epoch + 1, 0
                last = st.step >= self.total_steps
                evaluate = (end_of_epoch and cfg.eval_every is None) or last or (
                    cfg.eval_every is not None and st.step % cfg.eval_every == 0)
                if evaluate and self._evaluate():
                    log.info("early stop at step %d: dev %s has not improved for %d evaluations", st.step,
                             cfg.select, cfg.patience)
                    stop = True
                if last:
                    stop = True
                if evaluate or stop or (cfg.checkpoint_every is not None and st.step % cfg.checkpoint_every == 0):
                    st.done = stop
                    self._save_checkpoint()
                if stop:
                    break
                if self.stop.signal is not None:
                    self._stop()
                if time.monotonic() - self._progress_at >= PROGRESS_EVERY_S:
                    self._write_progress("training")
            if not stop:
                log.info("epoch %d done in %.1f s", st.epoch, time.perf_counter() - t_epoch)
        if window["n"]:
            self._log_window(window, bar)
        if not st.done:  # epochs ran out exactly at a boundary already checkpointed
            st.done = True
            self._save_checkpoint()
        bar.close()

    def _log_window(self, window: dict[str, Any], bar: Any) -> None:
        elapsed = max(window["seconds"], 1e-9)
        loss = window["loss"] / max(window["n"], 1)
        sps, tps = window["samples"] / elapsed, window["tokens"] / elapsed
        st = self.state
        log.info("step %d/%d epoch %d loss %.4f lr %.2e samples/s %.1f tokens/s %.0f", st.step, self.total_steps,
                 st.epoch + (st.batch_in_epoch > 0), loss, self.scheduler.get_last_lr()[0], sps, tps)
        bar.set_postfix(loss=f"{loss:.4f}", samples_s=f"{sps:.1f}")
        window.update(loss=0.0, n=0, samples=0, tokens=0, seconds=0.0)
        self.last_window = {"loss": loss, "samples_per_s": sps}
        self._write_progress("training")

    def _stop(self) -> None:
        """Stop between two steps as a signal asked: write the checkpoint (the run resumes from this step), mark the
        run stopped and raise :class:`RunStopped`."""
        st = self.state
        if self.checkpoint_step != st.step:
            st.done = False
            self._save_checkpoint()
        name = signal.Signals(self.stop.signal).name
        if self.is_main:
            self.folder.write_meta({**self.meta, "status": "stopped"})
        self._write_progress("stopped")
        log.info("stopped at step %d of %d (%s); the checkpoint is saved: resume continues from step %d", st.step,
                 self.total_steps, name, st.step)
        raise RunStopped(f"fine-tuning stopped at step {st.step} of {self.total_steps} ({name}); resume "
                         f"{self.folder.path} (--resume) to continue from there", step=st.step)

    @contextmanager
    def _failures_recorded(self) -> Iterator[None]:
        """Write ``progress.json`` with status ``failed`` and the error when the body raises (other than a stop)."""
        try:
            yield
        except (RunStopped, KeyboardInterrupt, SystemExit):
            raise  # a stop, not a failure: the run's files say stopped (see labelflow.finetune.runs)
        except Exception as exc:
            if is_first_process():
                st = self.state
                self.folder.write_progress("failed", step=st.step, total_steps=self.total_steps,
                                           checkpoint_step=self.checkpoint_step,
                                           error=f"{type(exc).__name__}: {exc}"[:2000], history=st.history)
            raise

    def _epoch_position(self) -> float:
        """Epochs done so far, fractional (3 decimals)."""
        return round(self.state.epoch + self.state.batch_in_epoch / max(self.per_rank, 1), 3)

    def _write_progress(self, status: str) -> None:
        """Write ``progress.json`` (main process only; :data:`labelflow.finetune.run_folder.PROGRESS_FILE`)."""
        if not self.is_main:
            return
        st = self.state
        self.folder.write_progress(status, step=st.step, total_steps=self.total_steps, epoch=self._epoch_position(),
                                   **self.last_window, dev_accuracy=st.dev_accuracy,
                                   checkpoint_step=self.checkpoint_step, history=st.history)
        self._progress_at = time.monotonic()

    def _evaluate(self) -> bool:
        """Score dev, keep the best weights; True when training should stop early."""
        cfg, st = self.cfg, self.state
        train_loss = st.take_train_loss()
        if not self.rows.dev.any():
            st.history.append({"step": st.step, "train_loss": train_loss})
            st.best = Best(st.step, st.epoch, None, trainable_state(self.acc.unwrap_model(self.model)))
            self._write_progress("training")
            return False
        dev = np.flatnonzero(self.rows.dev)
        probs = self.student_probs(dev)
        gold = self.rows.data.gold[dev]
        preds = probs.argmax(axis=1)
        acc_ = float(np.mean(preds == gold))
        m = metrics(gold, preds, class_names=self.rows.data.class_names)
        loss = dev_loss(probs, gold)
        score = selection_score(cfg.select, accuracy=acc_, macro_f1=m["macro_f1"], loss=loss)
        entry = {"step": st.step, "epoch": self._epoch_position(), "train_loss": train_loss, "dev_accuracy": acc_,
                 "dev_macro_f1": m["macro_f1"], "dev_loss": loss}
        st.history.append(entry)
        self._write_progress("training")
        improved = st.best is None or better(score, st.best.score)
        if improved:
            st.best = Best(st.step, entry["epoch"], score, trainable_state(self.acc.unwrap_model(self.model)))
            st.bad_evals = 0
        else:
            st.bad_evals += 1
        log.info("eval step %d: dev accuracy %.4f macro-F1 %.4f loss %.4f%s", st.step, acc_, m["macro_f1"], loss,
                 " (best so far)" if improved else f" (best: step {st.best.step})")
        return cfg.patience is not None and st.bad_evals >= cfg.patience

    def student_probs(self, rows: np.ndarray) -> np.ndarray:
        """``[len(rows), k]`` probabilities of the current model for dataset rows ``rows`` (indices)."""
        return predict_probs(self.acc.unwrap_model(self.model), [self.tokens[i] for i in rows],
                             batch_size=self.cfg.eval_batch_size, pad_id=self.pad_id, device=self.device,
                             autocast_dtype=self.autocast_dtype, pad_to_multiple_of=self.pad_multiple)

    def _save_checkpoint(self) -> None:
        import torch

        if self.is_main:
            self.folder.write_checkpoint({
                "model": trainable_state(self.acc.unwrap_model(self.model)),
                "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                "rng": {"torch": torch.get_rng_state(),
                        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None},
                "state": self.state.to_dict()})
        self.checkpoint_step = self.state.step
        self.acc.wait_for_everyone()
