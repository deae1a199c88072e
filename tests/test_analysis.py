"""lf_summary and classification_metrics: hand-computed values, Snorkel's LFAnalysis and scikit-learn."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from sklearn.metrics import accuracy_score, f1_score
from snorkel.labeling import LFAnalysis

from labelflow import LabelMatrix, LabelModelError, classification_metrics, lf_summary

# 5 rows × 4 LFs, 2 classes; row 4 is uncovered, rows 2 and 4 have no gold
L = np.array(
    [
        [0, 0, -1, -1],
        [1, 0, -1, -1],
        [-1, -1, 1, 0],
        [1, -1, 1, -1],
        [-1, -1, -1, -1],
    ],
    dtype=np.int8,
)
Y = np.array([0, 1, -1, 1, -1])


def test_lf_summary_hand_computed():
    table = lf_summary(L, lf_names=["a", "b", "c", "d"], cardinality=2, y=Y)
    assert table.columns == ["lf", "polarity", "coverage", "overlaps", "conflicts", "correct", "incorrect", "emp_acc"]
    assert table.select("lf", "polarity", "correct", "incorrect", "emp_acc").rows() == [
        ("a", [0, 1], 3, 0, 1.0),
        ("b", [0], 1, 1, 0.5),
        ("c", [1], 1, 0, 1.0),
        ("d", [0], 0, 0, None),  # never votes on a row with gold
    ]
    np.testing.assert_allclose(table["coverage"].to_numpy(), [3 / 5, 2 / 5, 2 / 5, 1 / 5])
    np.testing.assert_allclose(table["overlaps"].to_numpy(), [3 / 5, 2 / 5, 2 / 5, 1 / 5])
    np.testing.assert_allclose(table["conflicts"].to_numpy(), [1 / 5, 1 / 5, 1 / 5, 1 / 5])
    assert table.schema["emp_acc"] == pl.Float64


def test_lf_summary_three_classes_without_gold():
    L3 = np.array([[0, 0, 2], [1, 1, -1], [2, -1, -1]])
    table = lf_summary(L3, lf_names=["x", "y", "z"], cardinality=3)
    assert table.columns == ["lf", "polarity", "coverage", "overlaps", "conflicts"]
    np.testing.assert_allclose(table["overlaps"].to_numpy(), [2 / 3, 2 / 3, 1 / 3])
    np.testing.assert_allclose(table["conflicts"].to_numpy(), [1 / 3, 1 / 3, 1 / 3])  # row 0 only
    assert table["polarity"].to_list() == [[0, 1, 2], [0, 1], [2]]


def test_lf_summary_equals_snorkel_lf_analysis():
    rng = np.random.default_rng(99)
    L_rand = rng.integers(-1, 3, size=(1000, 6))
    L_rand[:, 0] = np.where(rng.random(1000) < 0.8, -1, L_rand[:, 0])  # one sparse LF
    y = rng.integers(0, 3, 1000)
    ours = lf_summary(L_rand, lf_names=[f"lf{j}" for j in range(6)], cardinality=3, y=y)
    ref = LFAnalysis(L_rand)
    np.testing.assert_allclose(ours["coverage"].to_numpy(), ref.lf_coverages())
    np.testing.assert_allclose(ours["overlaps"].to_numpy(), ref.lf_overlaps())
    np.testing.assert_allclose(ours["conflicts"].to_numpy(), ref.lf_conflicts())
    np.testing.assert_allclose(ours["emp_acc"].to_numpy(), ref.lf_empirical_accuracies(y))
    assert ours["polarity"].to_list() == ref.lf_polarities()


def test_label_matrix_is_array_like_and_summarises_itself_as_snorkels_lf_analysis():
    matrix = LabelMatrix.from_array(L, lf_names=["a", "b", "c", "d"], cardinality=2)
    assert np.asarray(matrix).dtype == np.int8 and np.asarray(matrix, dtype=np.int64).dtype == np.int64
    assert len(matrix) == 5 and matrix[3, 0] == 1 and matrix[:, 2].tolist() == [-1, -1, 1, 1, -1]
    np.testing.assert_array_equal((matrix != -1).mean(axis=0), [0.6, 0.4, 0.4, 0.2])  # Snorkel's coverage idiom
    np.testing.assert_array_equal(matrix + 1, L + 1)
    assert matrix.summary(Y).equals(lf_summary(L, lf_names=["a", "b", "c", "d"], cardinality=2, y=Y))
    ref = LFAnalysis(matrix).lf_summary(Y=Y)  # Snorkel's own analysis takes the matrix as it is
    np.testing.assert_allclose(matrix.summary(Y)["coverage"].to_numpy(), ref["Coverage"].to_numpy())
    np.testing.assert_allclose(matrix.summary(Y)["conflicts"].to_numpy(), ref["Conflicts"].to_numpy())


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"lf_names": ["a", "b"]}, "lf_names has 2 names for a matrix with 4 LFs"),
        ({"y": np.array([0, 1, 2, 1, 0])}, "at row 2 is outside the schema's classes 0..1"),
        ({"y": np.array([0, 1])}, r"gold labels must have shape (5,); got (2,)"),
    ],
)
def test_lf_summary_bad_input(kwargs, message):
    args = {"lf_names": ["a", "b", "c", "d"], "cardinality": 2, **kwargs}
    with pytest.raises(LabelModelError) as err:
        lf_summary(L, **args)
    assert message in str(err.value)


def test_lf_summary_bad_matrix():
    with pytest.raises(LabelModelError, match="label matrix value 2 at row 0, LF 0 is outside -1..1"):
        lf_summary(np.array([[2]]), lf_names=["a"], cardinality=2)


# --- classification metrics ---------------------------------------------------------------------------


def test_classification_metrics_hand_computed():
    y = np.array([0, 0, 1, 1, 2, -1])
    preds = np.array([0, 1, 1, -1, 2, 0])
    m = classification_metrics(y, preds, class_names=["a", "b", "c"], covered=np.array([1, 1, 1, 0, 1, 0], bool))
    assert m["n"] == 5
    assert m["accuracy"] == pytest.approx(3 / 5)
    assert m["per_class_f1"] == pytest.approx({"a": 2 / 3, "b": 1 / 2, "c": 1.0})  # abstain counts as wrong
    assert m["macro_f1"] == pytest.approx((2 / 3 + 1 / 2 + 1) / 3)
    assert m["coverage"] == pytest.approx(4 / 5)
    # covered gold rows 0, 1, 2, 4: three right
    assert m["accuracy_covered"] == pytest.approx(3 / 4) and m["n_covered"] == 4
    assert m["tied"] is None


def test_classification_metrics_covered_and_tied_rows():
    y = np.array([0, 1, 1, 0, -1])
    preds = np.array([0, 0, 1, 1, 1])
    covered = np.array([False, False, True, True, True])
    tied = np.array([True, True, False, False, True])
    m = classification_metrics(y, preds, class_names=["a", "b"], covered=covered, tied=tied)
    assert (m["accuracy"], m["accuracy_covered"], m["coverage"], m["tied"]) == (0.5, 0.5, 0.5, 0.5)
    none = classification_metrics(y, preds, class_names=["a", "b"], covered=np.zeros(5, bool))
    assert none["accuracy_covered"] is None and none["coverage"] == 0.0 and none["n_covered"] == 0
    everything = classification_metrics(y, preds, class_names=["a", "b"])
    assert everything["accuracy_covered"] == everything["accuracy"] and everything["coverage"] == 1.0
    with pytest.raises(LabelModelError, match=r"covered has shape \(3,\) but y has \(5,\)"):
        classification_metrics(y, preds, class_names=["a", "b"], covered=covered[:3])


def test_classification_metrics_equals_sklearn():
    rng = np.random.default_rng(5)
    y = rng.integers(-1, 4, 2000)  # -1: no gold, skipped
    preds = np.where(rng.random(2000) < 0.6, np.clip(y, 0, None), rng.integers(-1, 4, 2000))
    keep = y != -1
    m = classification_metrics(y, preds, class_names=["w", "x", "y", "z"])
    labels = [0, 1, 2, 3]
    assert m["n"] == keep.sum()
    assert m["accuracy"] == pytest.approx(accuracy_score(y[keep], preds[keep]))
    per_class = f1_score(y[keep], preds[keep], labels=labels, average=None, zero_division=0)
    assert list(m["per_class_f1"].values()) == pytest.approx(per_class.tolist())
    assert m["macro_f1"] == pytest.approx(f1_score(y[keep], preds[keep], labels=labels, average="macro", zero_division=0))
    assert m["coverage"] == 1.0


def test_classification_metrics_class_never_seen_scores_zero():
    m = classification_metrics(np.array([0, 0]), np.array([0, 0]), class_names=["a", "b"])
    assert m["per_class_f1"] == {"a": 1.0, "b": 0.0}
    assert m["macro_f1"] == 0.5


@pytest.mark.parametrize(
    ("y", "preds", "message"),
    [
        (np.array([-1, -1]), np.array([0, 1]), "no rows with gold labels to score"),
        (np.array([0, 1]), np.array([0]), r"preds has shape \(1,\) but y has \(2,\)"),
        (np.array([0, 5]), np.array([0, 1]), r"gold label .*5.* at row 1 is outside the schema's classes 0\.\.1"),
    ],
)
def test_classification_metrics_bad_input(y, preds, message):
    with pytest.raises(LabelModelError, match=message):
        classification_metrics(y, preds, class_names=["a", "b"])
