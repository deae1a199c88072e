"""A fine-tuning run's folder: the names of its files, and reading and writing them (each written atomically).

While it trains::

    RUN_DIR/finetune.json          task, config, data fingerprint, status (:data:`RUN_FILE`)
    RUN_DIR/labels.parquet         the soft labels it trains on (a resume may reuse them)
    RUN_DIR/train.log              log lines (loss, samples/s, dev scores)
    RUN_DIR/progress.json          where training is (:data:`PROGRESS_FILE`)
    RUN_DIR/checkpoints/last.safetensors  the resumable state (tensors as safetensors, the rest as JSON in its
                                   metadata, no pickle: :mod:`labelflow.finetune.checkpoint`): trainable weights,
                                   optimizer, schedule, RNG and :class:`~labelflow.finetune.state.TrainState`

and once finished also a Hugging Face model folder (:mod:`labelflow.finetune.export`): the merged
model and tokenizer, ``adapter/``, ``metrics.json`` and ``README.md`` (the model card).
:class:`RunFolder` is the one place that knows these paths and formats; :mod:`labelflow.finetune.train`,
:mod:`labelflow.finetune.export`, :mod:`labelflow.finetune.runs` and :mod:`labelflow.finetune.predict` go through it.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from labelflow.errors import FinetuneError
from labelflow.files import atomic_path, write_json
from labelflow.finetune.checkpoint import checkpoint_summary, read_checkpoint, write_checkpoint
from labelflow.finetune.config import FinetuneConfig
from labelflow.finetune.rows import TrainingRows

RUN_FILE = "finetune.json"
LABELS_FILE = "labels.parquet"
LOG_FILE = "train.log"
METRICS_FILE = "metrics.json"
CARD_FILE = "README.md"
ADAPTER_DIR = "adapter"
CHECKPOINT = Path("checkpoints") / "last.safetensors"
LEGACY_CHECKPOINT = Path("checkpoints") / "last.pt"
"""The checkpoint of labelflow before safetensors checkpoints: read only as weights (``torch.load(weights_only=True)``)."""
PROGRESS_FILE = "progress.json"
"""``{"status": "training" | "complete" | "stopped" | "failed", "step", "total_steps", "epoch" (fractional), "loss"
(mean train loss of the last log window, or null), "samples_per_s" (of that window, or null), "dev_accuracy" (of the
last evaluation, or null), "checkpoint_step" (the step of the resumable checkpoint, or null), "history" (the
evaluations so far, as in ``metrics.json``), "pid" and "proc_start" (the training process and its start time in
clock ticks after boot, null without /proc: which process to look for), "time" (Unix seconds), and for ``failed``
"error"}``, written atomically by the main process about every second while training."""
FORMAT = 1
"""Format of ``finetune.json`` and of the checkpoint."""
RUNTIME_OPTIONS = ("device", "precision", "tf32", "compile", "cpu_threads", "eval_batch_size", "log_every",
                   "progress")
"""Options a resumed run may change: they affect speed, not what is learned."""


@dataclass(frozen=True)
class RunFolder:
    """The files of the run in ``path`` (which need not exist yet)."""

    path: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))

    # --- finetune.json --------------------------------------------------------------------------------

    def has_run(self) -> bool:
        """Whether the folder holds a run (its ``finetune.json``)."""
        return (self.path / RUN_FILE).is_file()

    def read_meta(self) -> dict[str, Any]:
        """``finetune.json``: ``{"format", "task": {"name", "classes", "base_model", "method"}, "config", "data",
        "status"}``; :class:`FinetuneError` when missing, not JSON or of another format."""
        path = self.path / RUN_FILE
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except (FileNotFoundError, NotADirectoryError):
            raise FinetuneError(f"{self.path} is not a fine-tuning run folder: {RUN_FILE} is missing") from None
        except json.JSONDecodeError as exc:
            raise FinetuneError(f"{path} is not valid JSON: {exc}") from None
        if not isinstance(raw, dict) or raw.get("format") != FORMAT:
            raise FinetuneError(f"{path} has format {raw.get('format') if isinstance(raw, dict) else None!r}; this "
                                f"labelflow reads format {FORMAT}")
        return raw

    def write_meta(self, meta: dict[str, Any]) -> None:
        """Write ``finetune.json`` (see :meth:`read_meta`)."""
        write_json(self.path / RUN_FILE, meta)

    def set_status(self, status: str) -> None:
        """Rewrite ``finetune.json``'s ``status``."""
        self.write_meta({**self.read_meta(), "status": status})

    def prepare(self, meta: dict[str, Any], cfg: FinetuneConfig, *, resume: bool, main: bool) -> bool:
        """Check the folder can take the run ``meta`` describes and write ``finetune.json``; ``main``: this is the
        first process (it records in ``progress.json`` that it trains the run). True when a checkpoint is to be
        resumed.

        Raises :class:`FinetuneError` for a file, a folder holding something else, a run there without ``resume``,
        or (with ``resume``) a run of another task, other training rows or other training options.
        """
        if self.path.exists() and not self.path.is_dir():
            raise FinetuneError(f"run folder {self.path} is a file, not a folder")
        if not self.has_run():
            if self.path.is_dir() and any(self.path.iterdir()):
                raise FinetuneError(f"run folder {self.path} is not empty and holds no fine-tuning run ({RUN_FILE} "
                                    "is missing); choose a new or empty folder")
            self._mark_started(main)
            self.write_meta(meta)
            return False
        old = self.read_meta()
        if not resume:
            raise FinetuneError(f"run folder {self.path} already holds a run (status {old.get('status')!r}); resume "
                                "it with resume=True (--resume), or choose a new folder")
        self._check_same_task(old, meta, cfg)
        self._mark_started(main)
        self.write_meta({**meta, "status": "complete" if old.get("status") == "complete" else "training"})
        return (self.path / CHECKPOINT).is_file() or (self.path / LEGACY_CHECKPOINT).is_file()

    def _check_same_task(self, old: dict[str, Any], new: dict[str, Any], cfg: FinetuneConfig) -> None:
        for key, what in (("classes", "classes"), ("base_model", "base model"), ("method", "method")):
            if old["task"].get(key) != new["task"][key]:
                raise FinetuneError(f"cannot resume {self.path}: it is a run of a different task ({what} "
                                    f"{old['task'].get(key)!r}, here {new['task'][key]!r}); choose a new run folder")
        if old["data"].get("train_fingerprint") != new["data"]["train_fingerprint"]:
            raise FinetuneError(
                f"cannot resume {self.path}: it was trained on different texts or soft labels "
                f"({old['data'].get('train_kept')} rows, fingerprint {old['data'].get('train_fingerprint')}; here "
                f"{new['data']['train_kept']} rows, {new['data']['train_fingerprint']}); choose a new run folder")
        before = FinetuneConfig.from_dict(old["config"]).to_dict()
        changed = sorted(k for k, v in cfg.to_dict().items() if k not in RUNTIME_OPTIONS and before.get(k) != v)
        if changed:
            raise FinetuneError(f"cannot resume {self.path} with different training options "
                                + ", ".join(f"{k}={before.get(k)!r}→{getattr(cfg, k)!r}" for k in changed)
                                + f" (only {list(RUNTIME_OPTIONS)} may change on resume)")

    def write_labels(self, frame: Any) -> None:
        """Write ``labels.parquet``: the soft labels the run trains on
        (:meth:`labelflow.finetune.data.SoftLabels.to_frame`)."""
        with atomic_path(self.path / LABELS_FILE) as tmp:
            frame.write_parquet(tmp)

    # --- progress.json --------------------------------------------------------------------------------

    def read_progress(self) -> dict[str, Any] | None:
        """``progress.json`` (see :data:`PROGRESS_FILE`), or ``None`` before the first write."""
        return read_json_or_none(self.path / PROGRESS_FILE)

    def write_progress(self, status: str, *, history: list[dict[str, Any]], **fields: Any) -> None:
        """Write ``progress.json``: ``status``, ``fields``, the evaluations (numbers only), this process and the time."""
        history = [{k: v for k, v in h.items() if isinstance(v, (int, float))} for h in history]
        write_json(self.path / PROGRESS_FILE, {"status": status, **fields, "history": history, **process_identity(),
                                               "time": time.time()})

    def _mark_started(self, main: bool) -> None:
        """Record in ``progress.json`` (first process only) that this process trains the run from now, keeping the
        last position a resumed run had (the trainer rewrites it once set up): a reader sees it training while it
        loads."""
        if not main:
            return
        old = self.read_progress()
        old = old if isinstance(old, dict) else {"step": 0}
        old.pop("error", None)
        self.path.mkdir(parents=True, exist_ok=True)
        kept = {k: v for k, v in old.items() if k not in ("status", "history", "pid", "proc_start", "time")}
        self.write_progress("training", history=old.get("history") or [], **kept)

    # --- checkpoints ----------------------------------------------------------------------------------

    def write_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Write the resumable checkpoint (see :func:`labelflow.finetune.checkpoint.write_checkpoint`); drop a legacy
        one."""
        write_checkpoint(self.path / CHECKPOINT, {"format": FORMAT, **checkpoint})
        (self.path / LEGACY_CHECKPOINT).unlink(missing_ok=True)

    def read_checkpoint(self) -> dict[str, Any]:
        """The resumable checkpoint, tensors on the CPU: the safetensors one, else a legacy ``last.pt`` read as
        weights only (never unpickled as code). :class:`FinetuneError` when unreadable or of another format."""
        path = self.path / CHECKPOINT
        if path.is_file():
            ckpt = read_checkpoint(path)
        else:
            import torch

            path = self.path / LEGACY_CHECKPOINT
            try:
                ckpt = torch.load(path, map_location="cpu", weights_only=True)
            except Exception as exc:
                raise FinetuneError(f"cannot read checkpoint {path} as weights only (it is not loaded as a pickle, "
                                    f"which could run code): {type(exc).__name__}: {exc}") from None
            if not isinstance(ckpt, dict):
                raise FinetuneError(f"cannot read checkpoint {path}: it holds a {type(ckpt).__name__}, not a mapping")
        if ckpt.get("format") != FORMAT:
            raise FinetuneError(f"checkpoint {path} has format {ckpt.get('format')!r}; this labelflow reads {FORMAT}")
        return ckpt

    def checkpoint_summary(self) -> dict[str, Any] | None:
        """``{"step", "epoch", "done"}`` of the resumable checkpoint
        (:func:`labelflow.finetune.checkpoint.checkpoint_summary`; all ``None`` for a legacy one), or ``None`` without
        one."""
        if (self.path / CHECKPOINT).is_file():
            return checkpoint_summary(self.path / CHECKPOINT)
        if (self.path / LEGACY_CHECKPOINT).is_file():
            return {"step": None, "epoch": None, "done": None}
        return None

    # --- the finished run -----------------------------------------------------------------------------

    def read_metrics(self) -> dict[str, Any]:
        """``metrics.json`` (see :func:`labelflow.finetune.finetune`)."""
        return json.loads((self.path / METRICS_FILE).read_text(encoding="utf-8"))

    def write_metrics(self, metrics: dict[str, Any]) -> None:
        """Write ``metrics.json``."""
        write_json(self.path / METRICS_FILE, metrics)

    def write_card(self, text: str) -> None:
        """Write the model card ``README.md``."""
        with atomic_path(self.path / CARD_FILE) as tmp:
            tmp.write_text(text, encoding="utf-8")


def run_meta(name: str, cfg: FinetuneConfig, rows: TrainingRows) -> dict[str, Any]:
    """``finetune.json`` of a run of task ``name`` with ``cfg`` on ``rows`` (status ``training``; see
    :meth:`RunFolder.read_meta`): what :meth:`RunFolder.prepare` checks a resumed run against."""
    return {
        "format": FORMAT,
        "task": {"name": name, "classes": list(rows.data.class_names), "base_model": cfg.base_model,
                 "method": cfg.method},
        "config": cfg.to_dict(),
        "data": {"train_fingerprint": rows.data.fingerprint(rows.train), **rows.counts},
        "status": "training",
    }


def read_json_or_none(path: Path) -> dict[str, Any] | None:
    """The JSON document at ``path``, or ``None`` when it is missing or being written (not valid JSON yet)."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def proc_start(pid: int) -> int | None:
    """The start time of process ``pid`` in clock ticks after boot (``/proc/PID/stat`` field 22); None without /proc."""
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def process_identity() -> dict[str, int | None]:
    """``{"pid", "proc_start"}`` of this process: what tells a reader of ``progress.json`` whether training still runs."""
    return {"pid": os.getpid(), "proc_start": proc_start(os.getpid())}
