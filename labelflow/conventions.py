"""One place for labelflow's conventions: abstain value, matrix dtypes and shapes, devices.

Every array that crosses a public function boundary follows these aliases.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import numpy.typing as npt

ABSTAIN: int = -1
"""The vote of a labeling function that does not label a row."""

LABEL_DTYPE = np.int8
"""dtype of a label matrix. Classes are ``0 .. k-1``, so k ≤ 127 classes fit."""

MAX_CLASSES: int = int(np.iinfo(LABEL_DTYPE).max)
"""Largest number of classes a label matrix can hold (127 with ``int8``)."""

LabelArray = npt.NDArray[np.int8]
"""An ``[n, m]`` label matrix: row ``i``, LF ``j`` holds a class in ``0 .. k-1`` or ``ABSTAIN``."""

ProbArray = npt.NDArray[np.float64]
"""An ``[n, k]`` matrix of class probabilities; each row sums to 1."""

PredArray = npt.NDArray[np.int64]
"""An ``[n]`` vector of predicted classes in ``0 .. k-1``, or ``ABSTAIN`` under the abstain tie policy."""

GoldArray = npt.NDArray[np.int64]
"""An ``[n]`` vector of gold classes in ``0 .. k-1``; ``ABSTAIN`` where a row has no gold label."""

Device = Literal["auto", "cpu", "cuda"]
"""Where a model runs: ``"auto"`` (a CUDA GPU when there is one, else the CPU), ``"cpu"`` or ``"cuda"``."""
