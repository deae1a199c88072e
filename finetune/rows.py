"""Which rows a run trains on and scores on: :func:`select_rows` applies the config's filters to the soft labels.

Examples
--------
>>> import numpy as np
>>> from labelflow.finetune.config import FinetuneConfig
>>> from labelflow.finetune.data import SoftLabels
>>> data = SoftLabels(("A", "B"), ["r0", "r1", "r2"], ["x", "y", "z"], np.array([[0.9, 0.1], [0.5, 0.5], [0.2, 0.8]]),
...                   np.array(["train", "train", "dev"]), np.array([-1, -1, 1]), np.array([0, 0, 1]),
...                   np.array([True, False, True]), np.array([False, True, False]))
>>> rows = select_rows(data, FinetuneConfig(min_confidence=0.6))
>>> rows.train.tolist(), rows.dev.tolist(), rows.counts
([True, False, False], [False, False, True], {'train_rows': 2, 'dropped_low_confidence': 1, 'train_kept': 1, \
'dev_rows': 1, 'test_rows': 0})
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from labelflow.errors import FinetuneError
from labelflow.finetune.config import FinetuneConfig
from labelflow.finetune.data import SoftLabels


@dataclass
class TrainingRows:
    """The rows a run trains and scores on, after filtering.

    Attributes
    ----------
    data
        The soft labels, every row.
    train
        ``[n]`` bool: training rows kept by the filters.
    dev, test
        ``[n]`` bool: dev and test rows with gold.
    counts
        ``train_rows``, ``dropped_uncovered`` / ``dropped_low_confidence`` (where those filters are on),
        ``train_kept``, ``dev_rows``, ``test_rows``: what ``metrics.json`` reports under ``train``.
    """

    data: SoftLabels
    train: np.ndarray
    dev: np.ndarray
    test: np.ndarray
    counts: dict[str, int] = field(default_factory=dict)


def select_rows(data: SoftLabels, cfg: FinetuneConfig) -> TrainingRows:
    """The training, dev and test rows of ``data`` under ``cfg``'s filters (``drop_uncovered``, ``min_confidence``).

    Raises :class:`FinetuneError` when there are no ``train`` rows, when ``drop_uncovered`` has no ``covered``
    column to read, or when the filters leave no training row (saying how many each dropped).
    """
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
    return TrainingRows(data, train, dev, test, counts)
