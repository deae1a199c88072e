"""Per-LF votes on disk, keyed so that editing one LF re-applies only that LF.

A key is made of the LF's fingerprint (:mod:`labelflow.lf_fingerprint`), the settings the
votes depend on, and content hashes of the columns it reads (:func:`column_hashes`), whichever
engine computed the votes. :func:`labelflow.apply.apply_lfs` reads and fills a :class:`VoteCache`.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from labelflow.chunks import chunk_bounds, read_chunk
from labelflow.files import atomic_path
from labelflow.lf import LabelingFunction, PythonLF
from labelflow.matrix import LFFailure


class VoteCache:
    """Per-LF votes on disk, one ``.npz`` file per (LF fingerprint, data hash) key.

    ``hits`` and ``misses`` list the LF names looked up since the cache was opened (an LF
    that cannot be cached counts as a miss); ``uncached`` maps each LF that was re-applied
    because its fingerprint cannot prove it unchanged to what the fingerprint cannot cover.
    For each :class:`FrameLF` applied, ``fitted`` holds what it fit on the rows (stored beside
    its votes, so a cache hit gives the same) and, for each one run rather than read from
    the cache, ``runs`` holds what its model run did (``calls``, ``computed``, ``cached``, ...).
    """

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.hits: list[str] = []
        self.misses: list[str] = []
        self.uncached: dict[str, str] = {}
        self.fitted: dict[str, dict[str, Any]] = {}
        self.runs: dict[str, dict[str, Any]] = {}

    def skip(self, lf_name: str, uncovered: Sequence[str]) -> None:
        """Record that ``lf_name`` is re-applied, neither read nor stored: its fingerprint misses ``uncovered``."""
        self.misses.append(lf_name)
        shown = "; ".join(uncovered[:3]) + (f"; and {len(uncovered) - 3} more" if len(uncovered) > 3 else "")
        self.uncached[lf_name] = f"fingerprint cannot cover {shown}"

    def get(self, key: str, lf_name: str, n: int, *, fitted: bool = False,
            ) -> tuple[np.ndarray, list[LFFailure], dict[str, Any] | None] | None:
        """The ``[n]`` votes, failures and fitted state stored under ``key``, or ``None``; with ``fitted``, an
        entry without fitted state (written before it was kept) is a miss too."""
        path = self.folder / f"{key}.npz"
        try:
            with np.load(path, allow_pickle=False) as npz:
                votes = npz["votes"]
                failures = [LFFailure(**f) for f in json.loads(str(npz["failures"]))]
                state = json.loads(str(npz["fitted"])) if "fitted" in npz.files else None
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):  # missing or corrupt: recompute
            self.misses.append(lf_name)
            return None
        if votes.shape != (n,) or (fitted and state is None):
            self.misses.append(lf_name)
            return None
        self.hits.append(lf_name)
        return votes, failures, state

    def put(self, key: str, votes: np.ndarray, failures: list[LFFailure], fitted: dict[str, Any] | None = None) -> None:
        """Store votes, failures and what the LF fit (if it fits anything) under ``key`` (atomically)."""
        extra = {} if fitted is None else {"fitted": np.array(json.dumps(fitted))}
        with atomic_path(self.folder / f"{key}.npz") as tmp, open(tmp, "wb") as fh:
            np.savez(fh, votes=votes, failures=np.array(json.dumps([f.__dict__ for f in failures])), **extra)


def column_hashes(rows: pl.DataFrame | pl.LazyFrame, n: int, chunk_rows: int) -> dict[str, str]:
    """A content hash of each column (name, dtype and values), read a chunk at a time."""
    digests = {name: hashlib.blake2b(f"{name}:{dtype}:{n}".encode(), digest_size=16)
               for name, dtype in rows.collect_schema().items()}
    for start, stop in chunk_bounds(n, max(chunk_rows, 1 << 20)):
        chunk = read_chunk(rows, start, stop)
        for name, digest in digests.items():
            digest.update(chunk[name].hash(seed=0).to_numpy().tobytes())
    return {name: digest.hexdigest() for name, digest in digests.items()}


def data_hash(col_hashes: dict[str, str]) -> str:
    """One hash of all columns (names, order and contents)."""
    return hashlib.blake2b(json.dumps(col_hashes).encode(), digest_size=16).hexdigest()


def cache_key(lf: LabelingFunction, fingerprint: str, col_hashes: dict[str, str], cardinality: int, on_error: str,
               extra: str = "", *, timeout_s: float | None = None) -> str:
    """The vote cache key: the LF's fingerprint, the settings, and the hashes of the columns it reads (all
    columns when that is unknown). A Python LF's time limit counts when late calls abstain (they change votes)."""
    cols = lf.columns()
    used = sorted(col_hashes) if cols is None else sorted(set(cols) | {"id"})
    digest = hashlib.blake2b(digest_size=20)
    if timeout_s is not None and on_error == "abstain" and isinstance(lf, PythonLF):
        extra += f"timeout={float(timeout_s)!r}"
    parts = [fingerprint, str(cardinality), on_error, pl.__version__, extra]
    parts += [f"{c}={col_hashes.get(c, 'missing')}" for c in used]
    digest.update("\n".join(parts).encode())
    return digest.hexdigest()
