"""The resumable checkpoint as data only: tensors in safetensors, everything else as JSON, in one file.

A checkpoint is a nested structure of dicts, lists, tuples, numbers, strings and
tensors (the trainable weights, the optimizer's and scheduler's ``state_dict()``,
the RNG states, the trainer's position and history). :func:`write_checkpoint`
stores every tensor under its path in the structure (``model/<param>``,
``optimizer/state/0/exp_avg``, ``rng/torch`` ...) in a safetensors file and the
structure itself, with ``{"$tensor": path}`` where a tensor was, as JSON in that
file's metadata (key :data:`METADATA_KEY`). Reading it back
(:func:`read_checkpoint`) parses JSON and raw tensor bytes: nothing is unpickled,
so a crafted checkpoint cannot run code. One file, written atomically: a run
killed mid-write keeps its previous checkpoint.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from labelflow.errors import FinetuneError
from labelflow.files import atomic_path

METADATA_KEY = "labelflow.checkpoint"
"""The safetensors metadata entry holding the checkpoint's JSON structure."""
_TENSOR, _TUPLE, _DICT = "$tensor", "$tuple", "$dict"


def write_checkpoint(path: str | Path, checkpoint: dict[str, Any]) -> None:
    """Write ``checkpoint`` (a nested structure, see the module docstring) to ``path`` atomically.

    Raises :class:`TypeError` naming the path of a value that is neither JSON nor a tensor.
    """
    from safetensors.torch import save_file

    tensors: dict[str, Any] = {}
    structure = _encode(checkpoint, "", tensors)
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={METADATA_KEY: json.dumps(structure)})


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The structure :func:`write_checkpoint` wrote to ``path``, tensors on the CPU.

    Raises :class:`FinetuneError` when the file is not such a checkpoint (a pickle included: it is not read).
    """
    from safetensors import safe_open

    path = Path(path)
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            metadata = f.metadata() or {}
            if METADATA_KEY not in metadata:
                raise FinetuneError(f"cannot read checkpoint {path}: it is a safetensors file without labelflow's "
                                    f"{METADATA_KEY!r} metadata")
            tensors = {name: f.get_tensor(name) for name in f.keys()}
        structure = json.loads(metadata[METADATA_KEY])
        out = _decode(structure, tensors)
    except FinetuneError:
        raise
    except Exception as exc:  # not a safetensors file, bad JSON, a tensor missing
        raise FinetuneError(f"cannot read checkpoint {path}: {type(exc).__name__}: {exc}") from None
    if not isinstance(out, dict):
        raise FinetuneError(f"cannot read checkpoint {path}: it holds a {type(out).__name__}, not a mapping")
    return out


def checkpoint_summary(path: str | Path) -> dict[str, Any]:
    """``{"step", "epoch", "done"}`` of the trainer's position a checkpoint holds, read from the file's header alone
    (no tensor, no torch): which step a resume continues from. Values are ``None`` when the file cannot tell
    (being written, damaged, not labelflow's); :func:`read_checkpoint` says why when it is read.

    >>> import tempfile, torch
    >>> with tempfile.TemporaryDirectory() as d:
    ...     state = {"step": 20, "epoch": 1, "done": False}
    ...     write_checkpoint(f"{d}/c.safetensors", {"state": state, "w": torch.ones(2)})
    ...     checkpoint_summary(f"{d}/c.safetensors")
    {'step': 20, 'epoch': 1, 'done': False}
    """
    out: dict[str, Any] = {"step": None, "epoch": None, "done": None}
    try:
        with open(path, "rb") as f:
            size = int.from_bytes(f.read(8), "little")
            if not 0 < size <= 100_000_000:
                return out
            header = json.loads(f.read(size))
        state = json.loads(header["__metadata__"][METADATA_KEY]).get("state")
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return out
    if isinstance(state, dict):
        for key in out:
            value = state.get(key)
            if isinstance(value, (int, bool)) and (key == "done") == isinstance(value, bool):
                out[key] = value
    return out


def _encode(obj: Any, where: str, tensors: dict[str, Any]) -> Any:
    import numpy as np
    import torch

    if isinstance(obj, torch.Tensor):
        name, i = where or "tensor", 1
        while name in tensors:  # a key holding "/" could spell another value's path
            name, i = f"{where}#{i}", i + 1
        tensors[name] = obj.detach().to("cpu").contiguous()
        return {_TENSOR: name}
    if isinstance(obj, np.generic):
        obj = obj.item()
    if obj is None or isinstance(obj, (bool, int, str)):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else {"$float": repr(obj)}
    if isinstance(obj, dict):
        items = [(k, _encode(v, f"{where}/{k}" if where else str(k), tensors)) for k, v in obj.items()]
        if all(isinstance(k, str) and not k.startswith("$") for k, _ in items):
            return dict(items)
        for k, _ in items:
            if not isinstance(k, (str, int)) or isinstance(k, bool):
                raise TypeError(f"checkpoint key {k!r} at {where or '/'} is neither a string nor an integer")
        return {_DICT: [[k, v] for k, v in items]}
    if isinstance(obj, (list, tuple)):
        values = [_encode(v, f"{where}/{i}", tensors) for i, v in enumerate(obj)]
        return {_TUPLE: values} if isinstance(obj, tuple) else values
    raise TypeError(f"checkpoint value at {where or '/'} is a {type(obj).__name__}: neither JSON nor a tensor")


def _decode(obj: Any, tensors: dict[str, Any]) -> Any:
    if isinstance(obj, list):
        return [_decode(v, tensors) for v in obj]
    if not isinstance(obj, dict):
        return obj
    if set(obj) == {_TENSOR}:
        return tensors[obj[_TENSOR]]
    if set(obj) == {_TUPLE}:
        return tuple(_decode(v, tensors) for v in obj[_TUPLE])
    if set(obj) == {_DICT}:
        return {k: _decode(v, tensors) for k, v in obj[_DICT]}
    if set(obj) == {"$float"}:
        return float(obj["$float"])
    return {k: _decode(v, tensors) for k, v in obj.items()}
