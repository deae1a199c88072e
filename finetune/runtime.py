"""Where and how a run trains: device, precision and TF32 (:func:`make_accelerator`), CPU threads, the log file.

Several GPUs: launch the same script with ``torchrun`` or ``accelerate launch``; every
process trains on its share of the batches (DDP through accelerate) and the first
(:func:`is_first_process`) writes the run folder.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from labelflow.errors import FinetuneError, require
from labelflow.finetune.config import FinetuneConfig
from labelflow.finetune.model import EXTRA

log = logging.getLogger("labelflow.finetune")
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
"""Signals that ask training to stop at the end of the current step, after a checkpoint (one process, main thread)."""


def is_first_process() -> bool:
    """Whether this is the first process of a (possibly multi-process) launch: rank 0, or no launcher."""
    return int(os.environ.get("RANK", "0")) == 0


def check_device(cfg: FinetuneConfig) -> None:
    """:class:`FinetuneError` when ``cfg`` asks for CUDA and torch sees no GPU."""
    if cfg.device != "cuda":
        return
    import torch

    if not torch.cuda.is_available():
        raise FinetuneError("device='cuda' but torch sees no CUDA GPU; use device='auto' or 'cpu'")


def make_accelerator(cfg: FinetuneConfig) -> tuple[Any, Any, Any]:
    """``(accelerator, device, autocast dtype or None)`` for ``cfg``: device, precision, TF32.

    In one process the accelerate state is reset first, so several runs in one process
    may use different devices or precisions.
    """
    import torch

    accelerate = require("accelerate", EXTRA)
    check_device(cfg)
    on_gpu = cfg.device == "cuda" or (cfg.device == "auto" and torch.cuda.is_available())
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
def using_cpu_threads(cfg: FinetuneConfig) -> Iterator[None]:
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
def logging_to(path: Path) -> Iterator[None]:
    """Send the fine-tuner's log lines (logger ``labelflow.finetune``) to ``path`` (appended) and, when nothing else
    handles them, stderr."""
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


@dataclass
class StopRequest:
    """Set by :func:`stop_requests`: the signal that asked training to stop, or ``None``."""

    signal: int | None = None


@contextmanager
def stop_requests(*, enabled: bool) -> Iterator[StopRequest]:
    """While the body trains, :data:`STOP_SIGNALS` are recorded in the yielded :class:`StopRequest` (the trainer
    stops at the end of the current step, after a checkpoint); a second signal acts at once. Only when ``enabled``
    (one process: several must stop at the same step) and in the main thread (the only one that may set handlers);
    elsewhere nothing is recorded, and the checkpoints written so far are what resumes."""
    request = StopRequest()
    if not enabled or threading.current_thread() is not threading.main_thread():
        yield request
        return
    previous = {s: signal.getsignal(s) for s in STOP_SIGNALS}

    def ask_to_stop(signum: int, frame: Any) -> None:
        request.signal = signum
        for s, handler in previous.items():
            signal.signal(s, signal.SIG_DFL if handler is None else handler)

    for s in STOP_SIGNALS:
        signal.signal(s, ask_to_stop)
    try:
        yield request
    finally:
        for s, handler in previous.items():
            signal.signal(s, signal.SIG_DFL if handler is None else handler)
