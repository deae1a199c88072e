"""The gold policy: which class a row's gold label is.

A row's gold is the data's label, overridden by human annotations where the annotators
agree or a person settled the row (rows they disagree on and nobody settled keep the
data's label). Human labels count in every split. On ``train`` rows they are scored and
exported, but never trained on: the label model is fit on the train rows' votes alone
(dev gold only with ``use_dev``), and the fine-tuner trains on the exported
probabilities, not on ``label``.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import polars as pl

from labelflow.conventions import ABSTAIN


def gold_labels(ids: pl.Series, labels: pl.Series, agreed: Mapping[str, int]) -> np.ndarray:
    """``[n]`` gold class per row (``ABSTAIN`` unknown) of rows ``ids`` whose data labels are ``labels``
    (null: unknown), given the human labels ``agreed`` (``{row id: class}``, agreed or settled).

    Examples
    --------
    >>> gold_labels(pl.Series(["a", "b", "c"]), pl.Series([0, None, 1]), {"b": 1, "c": 0}).tolist()
    [0, 1, 0]
    """
    gold = labels.fill_null(ABSTAIN).to_numpy().astype(np.int64)
    if agreed:
        hit = ids.is_in(list(agreed)).to_numpy()
        gold[hit] = [agreed[i] for i in ids.filter(hit).to_list()]
    return gold
