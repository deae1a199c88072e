"""Run labelflow on a Ray cluster: LF suites with Ray Data, FM inference in actor pools (:mod:`labelflow.ray_actors`).

:class:`RayEngine` is the engine's settings. Passed as ``engine=`` to
:func:`~labelflow.apply.apply_lfs`, ``Project.apply`` or the ``labelflow.fm.run``
functions (``--engine ray`` on the command line), it

* connects to a running cluster (``address``: ``"auto"``, ``"ray://HOST:10001"`` or
  ``"HOST:6379"``; with no address, the connection this process already has, else
  the cluster ``RAY_ADDRESS`` names, else a new local one);
* writes the rows as Parquet shards of ``shard_rows`` rows to ``staging`` (a folder
  every node can read), has Ray Data read them and label each shard with the very
  function the local engine runs on its chunks
  (:class:`~labelflow.chunk_applier.ChunkApplier`), and gathers the votes here: the label
  matrix is identical to the local engine's, and it is cached under the same keys;
* runs FM models in a pool of actors (one GPU each where the cluster has GPUs),
  behind a provider with the model's own identity, so the FM cache keys are the
  local run's too.

Python LFs travel to the workers by pickling (``ray.cloudpickle``); suite files
travel as source and are re-imported there. A worker that dies is replaced and
its shard retried up to ``max_retries`` times; after that the error names the
shard, and nothing has been written to the project.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import socket
import sys
import tempfile
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from labelflow.apply import Engine, register_engine
from labelflow.chunk_applier import ChunkApplier, Failures
from labelflow.chunks import chunk_bounds, read_chunk
from labelflow.conventions import LabelArray
from labelflow.errors import EngineError, LabelflowError, LFError, require
from labelflow.files import atomic_path, write_json
from labelflow.fm.base import Provider
from labelflow.lf_workers import merge_failures
from labelflow.matrix import LFFailure
from labelflow.ray_actors import ActorPoolProvider
from labelflow.suite_loading import exec_suite_module, suite_sources
from labelflow.validation import check_int


@dataclass(frozen=True)
class RayEngine:
    """Settings of a run on Ray.

    Parameters
    ----------
    address
        ``None``: this process's Ray connection, else the cluster named by the
        ``RAY_ADDRESS`` environment variable, else a new local cluster;
        ``"auto"``: the cluster running on this machine; ``"ray://HOST:PORT"``:
        Ray Client; ``"HOST:PORT"``: a cluster's GCS address.
    num_cpus
        CPUs of a new local cluster (``None``: all).
    shard_rows
        Rows per Parquet shard, the unit of work, retry and error.
    max_retries
        Times a shard (or an FM batch) is retried after its worker dies.
    connect_timeout_s
        Seconds to wait for the cluster's address to answer.
    staging
        Folder for the shards, readable by every node (``None``: a temporary
        folder on this machine, enough for a local or single-node cluster).
    fm_actors
        FM actors (``None``: one per GPU of the cluster, else one per CPU).
    """

    address: str | None = None
    num_cpus: int | None = None
    shard_rows: int = 50_000
    max_retries: int = 3
    connect_timeout_s: float = 10.0
    staging: str | None = None
    fm_actors: int | None = None

    def __post_init__(self) -> None:
        if self.address is not None and (not isinstance(self.address, str) or not self.address.strip()):
            raise EngineError(f"address must be None, 'auto', 'ray://HOST:PORT' or 'HOST:PORT'; got {self.address!r}")
        if self.address not in (None, "auto", "local"):
            _host_port(self.address)
        for name, low in (("num_cpus", 1), ("shard_rows", 1), ("max_retries", 0), ("fm_actors", 1)):
            value = getattr(self, name)
            if value is None and name in ("num_cpus", "fm_actors"):
                continue
            check_int(name, value, minimum=low, error=EngineError)
        if not self.connect_timeout_s > 0:
            raise EngineError(f"connect_timeout_s must be > 0; got {self.connect_timeout_s!r}")

    @classmethod
    def of(cls, engine: Engine | RayEngine, *, address: str | None = None) -> RayEngine | None:
        """``None`` for ``"local"``; a ``RayEngine`` at ``address`` for ``"ray"``; a ``RayEngine`` as it is.

        Raises :class:`EngineError` for anything else.
        """
        if isinstance(engine, RayEngine):
            return engine
        if engine == "ray":
            return cls(address=address)
        if engine == "local":
            return None
        raise EngineError(f"engine must be 'local', 'ray' or a RayEngine; got {engine!r}")

    # --- LF suites ----------------------------------------------------------------------------------

    def apply_chunks(self, rows: pl.DataFrame | pl.LazyFrame, applier: ChunkApplier, *, n: int, data_hash: str,
                     bar: Any) -> tuple[LabelArray, Failures]:
        """``applier`` on every shard of ``rows`` on the cluster: ``[n, m]`` votes and the failures per LF.

        ``data_hash`` names the rows' content (shards already staged for it are reused).
        """
        plan = _pack(applier)
        ray = self.connect()
        m = len(applier.lfs)
        out = np.empty((n, m), dtype=np.int8)
        found: list[tuple[int, str, str, str]] = []
        with _StagedShards(self, rows, n, data_hash) as shards, _quiet_ray_data():
            # one task per shard (a batch of one path): the unit of work, retry and error; the task reads its shard
            ds = ray.data.from_items([{"shard": str(p)} for p in shards], override_num_blocks=len(shards))
            # Ray 2.60 has no named parameter for task retries yet; its generic remote args still work
            ds = ds.map_batches(_label_shard, fn_kwargs={"plan": plan}, batch_format="pyarrow", batch_size=1,
                                num_cpus=1, max_retries=self.max_retries)
            ds.context.execution_options.preserve_order = True
            ds.context.enable_progress_bars = False
            ds.context.max_errored_blocks = len(shards)  # a shard whose retries ran out is named below
            done = np.zeros(len(shards), dtype=bool)
            try:
                for batch in ds.iter_batches(batch_format="pyarrow", batch_size=None):
                    for index, part in _by_shard(batch):
                        if part["__error"][0].is_valid:
                            raise _unpack_error(part["__error"][0].as_py(), f"shard {shards[index].name}")
                        start = index * self.shard_rows
                        out[start:start + len(part)] = part["__votes"].combine_chunks().flatten().to_numpy() \
                            .reshape(len(part), m)
                        for i, cell in enumerate(part["__failures"].to_pylist()):
                            found += [(start + i, *f) for f in json.loads(cell or "[]")]
                        done[index] = True
                        bar.update(len(part))
            except LabelflowError:
                raise
            except Exception as exc:
                raise EngineError(f"the Ray run failed: {type(exc).__name__}: {_last_line(exc)}; nothing was "
                                  "written") from exc
            if not done.all():
                lost = np.flatnonzero(~done)
                start = int(lost[0]) * self.shard_rows
                raise EngineError(
                    f"shard {shards[lost[0]]} (rows {start}..{min(start + self.shard_rows, n) - 1})"
                    f"{f' and {len(lost) - 1} more shard(s)' if len(lost) > 1 else ''} failed on the Ray cluster "
                    f"after {self.max_retries} retries: the worker labeling it died each time (killed, out of memory "
                    "or crashed; see the Ray logs); nothing was written")
        failures: Failures = {}
        for _, lf, row_id, error in sorted(found):
            merge_failures(failures, {lf: [LFFailure(lf, row_id, error)]})
        return out, failures

    # --- FM models ----------------------------------------------------------------------------------

    def provider(self, kind: str, config: Mapping[str, Any]) -> Provider:
        """The provider ``kind`` with ``config``, its model run by a pool of actors on the cluster."""
        return ActorPoolProvider(kind, dict(config), connect=self.connect, actors=self.fm_actors,
                                 max_retries=self.max_retries)

    # --- the cluster --------------------------------------------------------------------------------

    def connect(self) -> Any:
        """Connect (once per process) as ``address`` says; returns the ``ray`` module.

        Raises :class:`EngineError` quickly when the address does not answer.
        """
        ray = require("ray", "ray")
        if ray.is_initialized():
            return ray
        address = self.address or os.environ.get("RAY_ADDRESS") or None
        if address not in (None, "auto", "local"):
            _check_reachable(address, self.connect_timeout_s)
        options: dict[str, Any] = {}  # Ray Client (ray://) passes any option on to the server: give it none
        if address is None or address == "local":
            options = {"num_cpus": self.num_cpus, "_node_ip_address": "127.0.0.1", "include_dashboard": False,
                       "configure_logging": False, "log_to_driver": False}
        elif not address.startswith("ray://"):
            options = {"configure_logging": False, "log_to_driver": False}
        try:
            ray.init(address=address, **options)
        except (ConnectionError, TimeoutError, RuntimeError, ValueError) as exc:
            raise EngineError(f"cannot connect to the Ray cluster at {address!r}: {type(exc).__name__}: {exc}") from None
        return ray


register_engine("ray", RayEngine)


# --- shards ------------------------------------------------------------------------------------------


_STAGED_NAME = re.compile(r"[0-9a-f]{32}-[0-9]+")
"""Name of a staged shard folder: the data's hash and the rows per shard."""


class _StagedShards:
    """Context manager: the rows as Parquet shards of ``shard_rows`` rows; yields their paths.

    Under ``engine.staging`` the shards are kept, named by the data's hash, and reused by
    the next run on the same data (older data's shards are removed); without it they go to a
    temporary folder, removed afterwards.
    """

    def __init__(self, engine: RayEngine, rows: pl.DataFrame | pl.LazyFrame, n: int, data_hash: str) -> None:
        self.engine, self.rows, self.n = engine, rows, n
        if engine.staging is None:
            self.folder = Path(tempfile.mkdtemp(prefix="labelflow-ray-"))
            self.keep = False
        else:
            self.folder = Path(engine.staging) / f"{data_hash}-{engine.shard_rows}"
            self.keep = True

    def __enter__(self) -> list[Path]:
        manifest = self.folder / "manifest.json"
        bounds = list(chunk_bounds(self.n, self.engine.shard_rows))
        shards = [self.folder / _shard_name(i) for i in range(len(bounds))]
        if manifest.is_file() and all(p.is_file() for p in shards):
            return shards
        if self.keep:  # shards of data that has changed since
            for old in self.folder.parent.glob("*-*"):
                if old != self.folder and _STAGED_NAME.fullmatch(old.name) and (old / "manifest.json").is_file():
                    shutil.rmtree(old, ignore_errors=True)
        self.folder.mkdir(parents=True, exist_ok=True)
        for path, (start, stop) in zip(shards, bounds):
            chunk = read_chunk(self.rows, start, stop)
            with atomic_path(path) as tmp:
                chunk.write_parquet(tmp)
        write_json(manifest, {"rows": self.n, "shard_rows": self.engine.shard_rows,
                              "shards": [p.name for p in shards]})
        return shards

    def __exit__(self, *exc: object) -> None:
        if not self.keep:
            shutil.rmtree(self.folder, ignore_errors=True)


@contextmanager
def _quiet_ray_data() -> Iterator[None]:
    """Ray Data without its per-run log lines and deprecation warnings (labelflow shows its own progress)."""
    import ray.data  # noqa: F401  (its import configures the logger)

    logger = logging.getLogger("ray.data")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*ray_remote_args.*deprecated")
            yield
    finally:
        logger.setLevel(level)


def _shard_name(index: int) -> str:
    return f"part-{index:05d}.parquet"


def _by_shard(batch: Any) -> Iterator[tuple[int, Any]]:
    """``(shard index, its rows)`` for each shard in a batch of :func:`_label_shard` outputs."""
    index = batch["__shard"].to_numpy()
    bounds = np.flatnonzero(np.diff(index)) + 1
    for lo, hi in zip([0, *bounds.tolist()], [*bounds.tolist(), len(index)]):
        yield int(index[lo]), batch.slice(lo, hi - lo)


def _last_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[-1] if text else repr(exc)


def _unpack_error(blob: bytes, where: str) -> LabelflowError:
    """The exception a worker sent back as data: labelflow's own as it was (naming ``where``), others wrapped."""
    from ray import cloudpickle

    try:
        exc = cloudpickle.loads(blob)
    except Exception as unpickle:  # the exception itself did not travel
        return EngineError(f"labeling {where} failed on the Ray cluster; its error could not be read back ({unpickle})")
    if isinstance(exc, LabelflowError):
        return type(exc)(f"{exc} (in {where})")
    return EngineError(f"labeling {where} failed on the Ray cluster: {type(exc).__name__}: {_last_line(exc)}")


# --- what travels to the workers ---------------------------------------------------------------------


def _pack(applier: ChunkApplier) -> bytes:
    """``applier`` pickled for the workers, with the source of the suite files it uses.

    Raises :class:`LFError` naming the first LF that cannot be pickled, and why.
    """
    from ray import cloudpickle

    sources = suite_sources(applier.lfs)
    for lf in applier.lfs:
        try:
            cloudpickle.dumps(lf)
        except Exception as exc:
            raise LFError(
                f"LF {lf.name!r} cannot be sent to the Ray workers: pickling it failed with {type(exc).__name__}: "
                f"{exc}. Keep locks, open files and connections out of the LF (its closure, defaults and resources); "
                "create them inside it, or at module level in a suite file"
            ) from None
    return cloudpickle.dumps({"sources": sources, "applier": cloudpickle.dumps(applier)})


_UNPACKED: dict[str, ChunkApplier] = {}
"""Appliers unpacked in this worker process, by the hash of their pickle."""


def _unpack(plan: bytes) -> ChunkApplier:
    from ray import cloudpickle

    key = hashlib.blake2b(plan, digest_size=16).hexdigest()
    if key not in _UNPACKED:
        packed = cloudpickle.loads(plan)
        for name, (path, source) in packed["sources"].items():
            if name not in sys.modules:
                exec_suite_module(name, path, source)
        _UNPACKED[key] = cloudpickle.loads(packed["applier"])
    return _UNPACKED[key]


def _label_shard(table: Any, plan: bytes) -> Any:
    """Ray Data task: one shard path (pyarrow) → its rows' ``__shard`` index, ``__votes`` (``[m]`` int8 per row),
    ``__failures`` (JSON, per row) and ``__error`` (the pickled exception that stopped the shard, if any).

    Errors travel back as data, so the driver re-raises them as they were; only a dying worker is
    an error to Ray (which retries the task).
    """
    import pyarrow as pa
    from ray import cloudpickle

    path = Path(table["shard"][0].as_py())
    frame = pl.read_parquet(path)
    error = None
    try:
        applier = _unpack(plan)
        votes, failures = applier(frame, n_jobs=1, processes=False)  # the task is the process: Ray retries it
    except Exception as exc:
        try:
            error = cloudpickle.dumps(exc)
        except Exception:
            error = cloudpickle.dumps(RuntimeError(f"{type(exc).__name__}: {exc}"))
        frame, votes, failures = frame.head(1), np.full((1, 1), -1, dtype=np.int8), {}  # not read: the error is
    per_row: dict[int, list[list[str]]] = {}
    index = {row_id: i for i, row_id in enumerate(frame["id"].cast(pl.String).to_list())} if failures else {}
    for name, found in failures.items():
        for f in found:
            per_row.setdefault(index[f.row_id], []).append([name, f.row_id, f.error])
    rows = len(votes)
    flat = pa.array(votes.reshape(-1), type=pa.int8())
    return pa.table({"__shard": pa.array([int(path.stem.split("-")[1])] * rows, type=pa.int64()),
                     "__votes": pa.FixedSizeListArray.from_arrays(flat, votes.shape[1]),
                     "__failures": pa.array([json.dumps(per_row[i]) if i in per_row else None for i in range(rows)],
                                            type=pa.string()),
                     "__error": pa.array([error] + [None] * (rows - 1), type=pa.binary())})


def _host_port(address: str) -> tuple[str, int]:
    """``(host, port)`` of ``"ray://HOST:PORT"`` or ``"HOST:PORT"``; raises :class:`EngineError` for anything else."""
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise EngineError(f"Ray address must be 'auto', 'ray://HOST:PORT' or 'HOST:PORT'; got {address!r}")
    return host.strip("[]"), int(port)


def _check_reachable(address: str, timeout: float) -> None:
    """Raise :class:`EngineError` unless ``HOST:PORT`` (``ray://`` optional) accepts a TCP connection."""
    host, port = _host_port(address)
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as exc:
        raise EngineError(
            f"cannot reach the Ray cluster at {address!r} within {timeout:g} s: {exc.strerror or exc}. Check the "
            "address (ray://HOST:10001 for Ray Client, HOST:6379 for the head node) and that the cluster is up"
        ) from None
