"""Foundation-model providers: one interface, a registry, and the cached batch runner.

A provider turns texts into model outputs. It implements whichever of these it can:

``embed(texts) -> [n, d] float32``
    Sentence embeddings, L2-normalised.
``score(prompts, answers) -> [n, k] float64``
    For each prompt, the log-probability of each class's answer words as the next
    token, from one forward pass (not sampled text). ``answers[c]`` lists the words
    that mean class ``c``; their probabilities are summed.
``generate(prompts, max_tokens) -> list[str]``
    Free text, greedy.

:func:`run_cached` is the one loop every output goes through: it looks each input
up in the :class:`~labelflow.fm.cache.FMCache`, computes only what is missing, in
batches sorted by length, and commits each batch as it finishes.
"""

from __future__ import annotations

import hashlib
import os
import time
from abc import ABC
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol

import numpy as np

from labelflow.conventions import Device
from labelflow.errors import FMError
from labelflow.fm.cache import FMCache, output_key
from labelflow.validation import check_choice


class Provider(ABC):
    """Base class of FM providers; see the module docstring for the methods.

    ``identity`` names the exact model (a file hash or revision) and never holds a
    secret; it is part of every cache key.
    """

    kind: ClassVar[str]
    batch_size: int = 32

    @property
    def identity(self) -> str:
        raise NotImplementedError

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        raise FMError(f"provider {self.kind!r} does not compute embeddings")

    def score(self, prompts: Sequence[str], answers: Sequence[Sequence[str]]) -> np.ndarray:
        raise FMError(f"provider {self.kind!r} does not score prompts")

    def generate(self, prompts: Sequence[str], *, max_tokens: int) -> list[str]:
        raise FMError(f"provider {self.kind!r} does not generate text")


class ModelHost(Protocol):
    """Where an LF's model runs instead of this process: an engine's pool of workers
    (:meth:`labelflow.distributed.RayEngine.provider`)."""

    def provider(self, kind: str, config: Mapping[str, Any]) -> Provider:
        """The provider ``kind`` with ``config``, its model run by the host."""
        ...


_PROVIDERS: dict[str, Callable[..., Provider]] = {}
_LOADED: dict[tuple, Provider] = {}


def register_provider(kind: str) -> Callable[[type[Provider]], type[Provider]]:
    """Class decorator: make a provider available by ``kind``."""

    def wrap(cls: type[Provider]) -> type[Provider]:
        cls.kind = kind
        _PROVIDERS[kind] = cls
        return cls

    return wrap


def provider_kinds() -> list[str]:
    """Registered provider kinds."""
    return list(_PROVIDERS)


def get_provider(kind: str, **config: Any) -> Provider:
    """The provider ``kind`` built from ``config``; built once per process and reused."""
    if kind not in _PROVIDERS:
        raise FMError(f"unknown FM provider {kind!r}; known providers are {provider_kinds()}")
    key = (kind, tuple(sorted((k, repr(v)) for k, v in config.items())))
    if key not in _LOADED:
        _LOADED[key] = _PROVIDERS[kind](**config)
    return _LOADED[key]


def resolve_device(device: Device) -> str:
    """``"auto"`` → ``"cuda"`` when a GPU is visible to torch, else ``"cpu"``."""
    check_choice("device", device, Device, error=FMError)
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


_HASHES: dict[tuple[str, int, int], str] = {}


def file_digest(path: str | Path) -> str:
    """SHA-256 (first 16 hex digits) of a file, memoised per (path, size, mtime)."""
    path = Path(path)
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _HASHES:
        digest = hashlib.sha256()
        with path.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
        _HASHES[key] = digest.hexdigest()[:16]
    return _HASHES[key]


@dataclass
class RunStats:
    """What one cached run did.

    ``total`` inputs, of which ``cached`` were found in the cache; ``computed`` distinct
    inputs by ``calls`` model calls; ``pending`` distinct inputs a dry run left
    uncomputed, which would take ``pending_calls`` model calls.
    """

    total: int = 0
    cached: int = 0
    computed: int = 0
    calls: int = 0
    pending: int = 0
    pending_calls: int = 0
    seconds: float = 0.0

    def add(self, other: "RunStats") -> None:
        for name in ("total", "cached", "computed", "calls", "pending", "pending_calls", "seconds"):
            setattr(self, name, getattr(self, name) + getattr(other, name))


def run_cached(
    inputs: Sequence[str],
    *,
    identity: str,
    task: str,
    template: str = "",
    params: dict[str, Any] | None = None,
    compute: Callable[[list[str]], list[bytes]],
    cache: FMCache | None,
    batch_size: int,
    desc: str,
    progress: bool = False,
    dry_run: bool = False,
) -> tuple[list[bytes | None], RunStats]:
    """Outputs for every input, computing only those not in ``cache``.

    Parameters
    ----------
    inputs
        ``n`` model inputs (rendered prompts or texts).
    identity, task, template, params
        The rest of the cache key (see :func:`~labelflow.fm.cache.output_key`).
    compute
        Maps a batch of inputs to their outputs as bytes, in order (one model call).
    cache
        Where outputs are kept; ``None`` computes everything.
    batch_size
        Inputs per call. Missing inputs are sorted by length so a batch pads little.
    dry_run
        Count what is cached and what would be computed; compute nothing
        (the missing outputs come back as ``None``).

    Returns
    -------
    (outputs, stats)
        ``[n]`` bytes in input order, and the run's :class:`RunStats`.
    """
    from tqdm.auto import tqdm

    start = time.perf_counter()
    params = params or {}
    keys = [output_key(identity, task, template, params, text) for text in inputs]
    unique = list(dict.fromkeys(keys))
    found = cache.get_many(unique) if cache is not None else {}
    first = {key: i for i, key in reversed(list(enumerate(keys)))}
    missing = sorted((k for k in unique if k not in found), key=lambda k: len(inputs[first[k]]))
    stats = RunStats(total=len(inputs), cached=sum(k in found for k in keys))
    if dry_run:
        stats.pending, stats.pending_calls = len(missing), -(-len(missing) // batch_size)
    if missing and not dry_run:
        bar = tqdm(total=len(missing), desc=desc, unit="row", disable=not progress, leave=False)
        try:
            for lo in range(0, len(missing), batch_size):
                batch = missing[lo:lo + batch_size]
                outputs = compute([inputs[first[k]] for k in batch])
                if len(outputs) != len(batch):
                    raise FMError(f"{desc}: the model returned {len(outputs)} outputs for {len(batch)} inputs")
                stats.calls += 1
                stats.computed += len(batch)
                if cache is not None:
                    cache.put_many(zip(batch, outputs))
                found.update(zip(batch, outputs))
                bar.update(len(batch))
        finally:
            bar.close()
    stats.seconds = time.perf_counter() - start
    return [found.get(k) for k in keys], stats


def default_cache_dir() -> Path:
    """Where converted models are kept: ``$LABELFLOW_CACHE`` or ``~/.cache/labelflow``."""
    return Path(os.environ.get("LABELFLOW_CACHE", Path.home() / ".cache" / "labelflow"))
