"""Label models: majority vote and the Snorkel adapter against Snorkel itself, the registry, save/load."""

from __future__ import annotations

import json

import numpy as np
import pytest
from snorkel.labeling.model import LabelModel as SnorkelLabelModelRef
from snorkel.labeling.model import MajorityLabelVoter
from snorkel.utils import probs_to_preds as snorkel_probs_to_preds

from labelflow import LabelModelError, get_label_model, label_model_names, load_label_model
from labelflow.labelmodels import AutoLabelModel, MajorityVote, SnorkelLabelModel, probs_to_preds, register_label_model
from labelflow.labelmodels.base import stratified_folds
from labelflow.labelmodels.base import tied_rows
from labelflow.labelmodels.snorkel import dev_class_balance
from labelflow.matrix import LabelMatrix, check_label_matrix

# 3 classes, 3 LFs: shares, a lone vote, an uncovered row, a 1-1 tie, a 2-1 win for class 2
L_HAND = np.array([[0, 1, 1], [0, -1, -1], [-1, -1, -1], [1, 0, -1], [2, 2, 1]], dtype=np.int8)
P_HAND = np.array(
    [[1 / 3, 2 / 3, 0], [1, 0, 0], [1 / 3, 1 / 3, 1 / 3], [1 / 2, 1 / 2, 0], [0, 1 / 3, 2 / 3]]
)


def synthetic_matrix(n: int, accuracies, coverages, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded ``[n, m]`` votes of LFs with the given accuracies and coverages, and the ``[n]`` truth."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    L = np.full((n, len(accuracies)), -1, dtype=np.int64)
    for j, (acc, cov) in enumerate(zip(accuracies, coverages)):
        wrong = (y + rng.integers(1, k, n)) % k
        vote = np.where(rng.random(n) < acc, y, wrong)
        L[:, j] = np.where(rng.random(n) < cov, vote, -1)
    return L, y


# --- majority vote ------------------------------------------------------------------------------------


def test_majority_vote_hand_matrix():
    mv = MajorityVote(3).fit(L_HAND)
    probs = mv.predict_proba(L_HAND)
    np.testing.assert_allclose(probs, P_HAND)
    assert probs.dtype == np.float64
    assert mv.predict(L_HAND, tie_policy="abstain").tolist() == [1, 0, -1, -1, 2]
    assert mv.predict(L_HAND, tie_policy="first").tolist() == [1, 0, 0, 0, 2]
    random = mv.predict(L_HAND, tie_policy="random")
    assert random[[0, 1, 4]].tolist() == [1, 0, 2] and random[3] in (0, 1) and random[2] in (0, 1, 2)
    assert random.dtype == np.int64


def test_majority_vote_equals_snorkel_majority_label_voter():
    rng = np.random.default_rng(2024)
    L = rng.integers(-1, 3, size=(3000, 4))
    L[rng.random(3000) < 0.1] = -1  # some uncovered rows
    counts = np.stack([(L == c).sum(axis=1) for c in range(3)], axis=1)
    tied = (counts == counts.max(axis=1, keepdims=True)).sum(axis=1) > 1
    assert tied.sum() > 300 and (counts.sum(axis=1) == 0).sum() > 100

    ours = MajorityVote(3).fit(L)
    ref = MajorityLabelVoter(cardinality=3)
    for policy in ("random", "abstain"):
        np.testing.assert_array_equal(ours.predict(L, tie_policy=policy), ref.predict(L, tie_break_policy=policy))
        np.testing.assert_array_equal(ours.predict(L, tie_break_policy=policy), ref.predict(L, tie_break_policy=policy))
    np.testing.assert_array_equal(ours.predict(L), ref.predict(L))  # Snorkel's default: ties abstain
    preds, probs = ours.predict(L, return_probs=True)
    np.testing.assert_array_equal(preds, ref.predict(L))
    np.testing.assert_allclose(probs, ours.predict_proba(L))
    Y = rng.integers(-1, 3, size=3000)
    for policy in ("abstain", "random"):
        metrics = ["accuracy", "coverage"]
        assert ours.score(L, Y, metrics=metrics, tie_break_policy=policy) == pytest.approx(
            ref.score(L, Y, metrics=metrics, tie_break_policy=policy))
    assert ours.score(L=L, Y=Y) == pytest.approx(ref.score(L=L, Y=Y))


def test_true_random_ties_are_snorkels_under_the_same_numpy_seed():
    probs = _probs_with_ties(6)
    np.random.seed(3)
    ours = probs_to_preds(probs, tie_policy="true-random")
    np.random.seed(3)
    np.testing.assert_array_equal(ours, snorkel_probs_to_preds(probs, tie_break_policy="true-random"))


def test_tie_break_policy_and_tie_policy_are_one_choice():
    mv = MajorityVote(3).fit(L_HAND)
    with pytest.raises(LabelModelError, match="give tie_break_policy \\(Snorkel's name\\) or tie_policy, not both"):
        mv.predict(L_HAND, tie_break_policy="abstain", tie_policy="first")
    with pytest.raises(LabelModelError, match="tie_break_policy must be 'abstain', 'random' or 'true-random'; "
                                              "got 'first'"):
        mv.predict(L_HAND, tie_break_policy="first")
    with pytest.raises(LabelModelError, match="metric must be 'accuracy' or 'coverage'; got 'f1'"):
        mv.score(L_HAND, [0, 0, 0, 0, 0], metrics=["f1"])


def _probs_with_ties(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    probs = rng.dirichlet(np.ones(3), size=500)
    exact = np.array([[0.5, 0.5, 0.0], [1 / 3, 1 / 3, 1 / 3], [0.2, 0.4, 0.4], [0.4, 0.2, 0.4]])
    near = np.array([[0.5 + 4e-6, 0.5 - 4e-6, 0.0], [0.45, 0.45 + 2e-5, 0.1 - 2e-5]])  # within / beyond tol
    probs[rng.choice(500, 200, replace=False)] = np.concatenate([np.tile(exact, (48, 1)), np.tile(near, (4, 1))])
    return probs


@pytest.mark.parametrize("policy", ["random", "abstain"])
def test_probs_to_preds_equals_snorkel(policy):
    probs = _probs_with_ties(7)
    np.testing.assert_array_equal(probs_to_preds(probs, tie_policy=policy),
                                  snorkel_probs_to_preds(probs, tie_break_policy=policy))


def test_probs_to_preds_first_takes_the_lowest_tied_class():
    probs = _probs_with_ties(8)
    ref = snorkel_probs_to_preds(probs, tie_break_policy="abstain")
    first = probs_to_preds(probs, tie_policy="first")
    tied = ref == -1
    assert 150 < tied.sum() < 250
    np.testing.assert_array_equal(first[~tied], ref[~tied])
    lowest = np.argmax(np.abs(probs - probs.max(axis=1, keepdims=True)) < 1e-5, axis=1)
    np.testing.assert_array_equal(first[tied], lowest[tied])
    assert set(first[tied].tolist()) == {0, 1}


def test_tied_rows_are_the_rows_the_abstain_policy_leaves_open():
    probs = _probs_with_ties(9)
    np.testing.assert_array_equal(tied_rows(probs), probs_to_preds(probs, tie_policy="abstain") == -1)
    assert tied_rows(P_HAND).tolist() == [False, False, True, True, False]


def test_probs_to_preds_unknown_policy():
    with pytest.raises(LabelModelError, match="tie_policy must be 'random', 'abstain', 'first' or 'true-random'; "
                                              "got 'coin'"):
        probs_to_preds(P_HAND, tie_policy="coin")


# --- the Snorkel adapter ------------------------------------------------------------------------------

ACCURACIES = (0.9, 0.8, 0.75, 0.65, 0.6)
COVERAGES = (0.3, 0.5, 0.6, 0.4, 0.8)


@pytest.fixture(scope="module")
def snorkel_fit():
    L, y = synthetic_matrix(1500, ACCURACIES, COVERAGES, k=3, seed=11)
    model = SnorkelLabelModel(3, seed=5, n_epochs=150).fit(L)
    return L, y, model


def test_snorkel_adapter_equals_snorkel(snorkel_fit):
    L, y, model = snorkel_fit
    ref = SnorkelLabelModelRef(cardinality=3, verbose=False)
    ref.fit(L, n_epochs=150, seed=5, progress_bar=False)
    probs = model.predict_proba(L)
    np.testing.assert_allclose(probs, ref.predict_proba(L), rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0)
    np.testing.assert_array_equal(model.predict(L, tie_policy="random"), ref.predict(L, tie_break_policy="random"))
    np.testing.assert_array_equal(model.predict(L), ref.predict(L))
    covered = (L != -1).any(axis=1)
    assert (model.predict(L)[covered] == y[covered]).mean() > 0.8  # it learned something


def test_snorkel_adapter_with_dev_labels_equals_snorkel_given_y_dev():
    L, y = synthetic_matrix(600, ACCURACIES, COVERAGES, k=3, seed=12)
    model = SnorkelLabelModel(3, seed=1, n_epochs=50).fit(L[:500], L_dev=L[500:], y_dev=y[500:])
    balance = np.bincount(y[500:], minlength=3) / 100  # Snorkel's own Y_dev estimate
    ref = SnorkelLabelModelRef(cardinality=3, verbose=False)
    ref.fit(L[:500], Y_dev=y[500:], n_epochs=50, seed=1, progress_bar=False)
    np.testing.assert_allclose(model.predict_proba(L), ref.predict_proba(L), rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(model._model.p, balance)


def test_snorkel_with_dev_gold_missing_a_class_fits():
    # Snorkel's fit(Y_dev=...) raises "Y_dev has 3 class(es). Does not match LabelModel cardinality 4" here
    L, y = synthetic_matrix(400, ACCURACIES, COVERAGES, k=4, seed=13)
    dev = y[300:] != 3
    with pytest.raises(ValueError, match="Does not match LabelModel cardinality 4"):
        SnorkelLabelModelRef(cardinality=4, verbose=False).fit(L[:300], Y_dev=y[300:][dev], n_epochs=5,
                                                               progress_bar=False)
    model = SnorkelLabelModel(4, seed=1, n_epochs=20).fit(L[:300], L_dev=L[300:][dev], y_dev=y[300:][dev])
    balance = np.asarray(model._model.p)
    assert balance[3] == pytest.approx(1 / (dev.sum() + 4)) and balance.sum() == pytest.approx(1.0)
    np.testing.assert_allclose(model.predict_proba(L).sum(axis=1), 1.0)


def test_snorkel_class_balance_wins_over_dev_gold():
    L, y = synthetic_matrix(400, ACCURACIES, COVERAGES, k=3, seed=14)
    given = np.array([0.2, 0.3, 0.5])
    with_both = SnorkelLabelModel(3, seed=1, n_epochs=20).fit(L[:300], L_dev=L[300:], y_dev=y[300:],
                                                              class_balance=given)
    only_balance = SnorkelLabelModel(3, seed=1, n_epochs=20).fit(L[:300], class_balance=given)
    np.testing.assert_allclose(with_both._model.p, given)
    np.testing.assert_array_equal(with_both.predict_proba(L), only_balance.predict_proba(L))


def test_dev_class_balance_is_snorkels_and_add_one_smoothed_only_when_a_class_is_missing():
    np.testing.assert_allclose(dev_class_balance(np.array([0, 1, 1, 2, 3]), 4), [0.2, 0.4, 0.2, 0.2])
    np.testing.assert_allclose(dev_class_balance(np.array([1, 1, 1, 2]), 4), [1 / 8, 4 / 8, 2 / 8, 1 / 8])


def test_snorkel_adapter_save_load_is_identical_and_pickle_free(snorkel_fit, tmp_path):
    L, _, model = snorkel_fit
    path = tmp_path / "models" / "snorkel.npz"
    model.save(path, lf_names=[f"lf{j}" for j in range(5)])
    with np.load(path, allow_pickle=False) as npz:  # raises if anything in it is a pickle
        assert sorted(npz.files) == ["__meta__", "class_balance", "mu"]
        meta = json.loads(str(npz["__meta__"]))
    assert meta["name"] == "snorkel" and meta["n_lfs"] == 5 and meta["seed"] == 5
    assert meta["config"]["n_epochs"] == 150
    loaded = load_label_model(path)
    assert isinstance(loaded, SnorkelLabelModel)
    assert loaded.lf_names == ("lf0", "lf1", "lf2", "lf3", "lf4")
    np.testing.assert_array_equal(loaded.predict_proba(L), model.predict_proba(L))
    np.testing.assert_array_equal(loaded.predict(L), model.predict(L))


def test_majority_vote_save_load(tmp_path):
    path = tmp_path / "mv.npz"
    MajorityVote(3, seed=9).fit(L_HAND).save(path)
    loaded = load_label_model(path)
    assert isinstance(loaded, MajorityVote) and loaded.seed == 9 and loaded.lf_names is None
    np.testing.assert_allclose(loaded.predict_proba(L_HAND), P_HAND)


def test_snorkel_needs_three_lfs():
    with pytest.raises(LabelModelError, match="needs at least 3 LFs; the matrix has 2"):
        SnorkelLabelModel(2).fit(np.array([[0, 1], [1, -1]]))


@pytest.mark.parametrize("kwargs, message", [
    ({"n_epochs": 0}, "n_epochs must be an integer ≥ 1; got 0"),
    ({"lr": 0}, "lr must be a number > 0; got 0"),
    ({"l2": -1.0}, "l2 must be a number ≥ 0; got -1.0"),
    ({"optimizer": "rmsprop"}, "optimizer must be 'sgd', 'adam' or 'adamax'; got 'rmsprop'"),
    ({"log_freq": 2.5}, "log_freq must be an integer ≥ 1; got 2.5"),
])
def test_snorkel_bad_hyperparameters(kwargs, message):
    with pytest.raises(LabelModelError, match=message):
        SnorkelLabelModel(2, **kwargs)
    with pytest.raises(LabelModelError, match=message):
        SnorkelLabelModel(2).fit(L_HAND[:, :3] % 2, **kwargs)


def test_snorkel_adapter_takes_snorkels_fit_arguments_and_a_label_matrix(snorkel_fit):
    L, y, _ = snorkel_fit
    matrix = LabelMatrix.from_array(L, lf_names=[f"lf{j}" for j in range(L.shape[1])], cardinality=3)
    model = get_label_model("snorkel", cardinality=3, verbose=True, lr=0.001)
    assert model.fit(L_train=matrix, n_epochs=100, log_freq=50, seed=7, progress_bar=False) is model
    ref = SnorkelLabelModelRef(cardinality=3, verbose=True)
    ref.fit(L_train=L, n_epochs=100, lr=0.001, log_freq=50, seed=7, progress_bar=False)
    np.testing.assert_allclose(model.predict_proba(matrix), ref.predict_proba(L), rtol=1e-6, atol=1e-9)
    assert (model.n_epochs, model.lr, model.seed, model.log_freq) == (100, 0.001, 7, 50)
    with pytest.raises(LabelModelError, match="give the votes as L \\(or L_train, Snorkel's name\\), once"):
        model.fit(L, L_train=L)


def test_registry_passes_hyperparameters():
    model = get_label_model("labelflow", cardinality=2, prior_accuracy=0.8, n_iter=5)
    assert (model.prior_accuracy, model.n_iter, model.cardinality) == (0.8, 5, 2)
    with pytest.raises(LabelModelError, match="label model 'snorkel' takes no hyperparameter 'n_iter'; it takes "
                                              "n_epochs, lr, l2, optimizer"):
        get_label_model("snorkel", 2, n_iter=5)


# --- auto ---------------------------------------------------------------------------------------------


def test_stratified_folds_put_every_class_with_two_rows_in_both_folds():
    y = np.repeat(np.arange(9), [1, 2, 3, 5, 8, 13, 2, 2, 4])
    folds = stratified_folds(y, 2, seed=4)
    for c in range(9):
        assert set(folds[y == c].tolist()) == ({0, 1} if (y == c).sum() >= 2 else {folds[y == c][0]})
    assert abs(int((folds == 0).sum()) - int((folds == 1).sum())) <= 1
    np.testing.assert_array_equal(folds, stratified_folds(y, 2, seed=4))  # seeded


def test_auto_with_a_dev_set_missing_a_class(failing_model):
    # 9 classes, the dev gold has 8 of them and one class only once: every fold's training half misses a class
    L, y = synthetic_matrix(1200, ACCURACIES, COVERAGES, k=9, seed=15)
    dev = np.arange(1000, 1200)
    dev = dev[y[dev] != 8]
    dev = np.concatenate([dev[y[dev] != 7], dev[y[dev] == 7][:1]])
    auto = AutoLabelModel(9, seed=2).fit(L[:1000], L_dev=L[dev], y_dev=y[dev])
    choice = auto.choice()
    assert set(choice["scores"]) == {"labelflow", "snorkel", "majority_vote"}  # snorkel fit with 8 dev classes
    assert choice["skipped"] == {failing_model: "RuntimeError: this model always fails"}
    assert choice["chosen"] == auto.chosen.name and choice["scores"][choice["chosen"]] == max(choice["scores"].values())
    assert f"{len(dev)} gold rows" in choice["reason"] and "failing_for_test (RuntimeError" in choice["reason"]
    assert all(0 <= s <= 1 for s in choice["scores"].values())


def test_auto_choice_survives_save_and_load(tmp_path):
    L, y = synthetic_matrix(600, ACCURACIES, COVERAGES, k=3, seed=16)
    auto = AutoLabelModel(3).fit(L[:500], L_dev=L[500:], y_dev=y[500:])
    auto.save(tmp_path / "auto.npz")
    loaded = load_label_model(tmp_path / "auto.npz")
    assert loaded.choice() == auto.choice()


def test_auto_without_dev_gold_takes_the_first_preferred_model_that_fits(failing_model):
    auto = AutoLabelModel(3).fit(L_HAND)
    assert auto.choice()["chosen"] == "labelflow" and "no dev gold" in auto.reason


def test_auto_not_fitted_has_no_choice():
    with pytest.raises(LabelModelError, match="label model 'auto' is not fitted"):
        AutoLabelModel(3).choice()


# --- registry -----------------------------------------------------------------------------------------


def test_registry():
    assert {"majority_vote", "snorkel"} <= set(label_model_names())
    mv = get_label_model("majority_vote", 4, seed=3)
    assert isinstance(mv, MajorityVote) and (mv.cardinality, mv.seed, mv.n_lfs) == (4, 3, None)
    assert isinstance(get_label_model("snorkel", 2), SnorkelLabelModel)


def test_unknown_label_model_lists_the_known():
    with pytest.raises(LabelModelError, match=r"unknown label model 'dawid_skene'; known models are \[") as err:
        get_label_model("dawid_skene", 2)
    assert "'majority_vote'" in str(err.value) and "'snorkel'" in str(err.value)


def test_registering_a_taken_name():
    class Impostor(MajorityVote):
        name = "majority_vote"

    with pytest.raises(LabelModelError, match="'majority_vote' is already registered"):
        register_label_model(Impostor)


# --- bad input ----------------------------------------------------------------------------------------


def test_predict_proba_with_another_number_of_lfs():
    mv = MajorityVote(3).fit(L_HAND)
    with pytest.raises(LabelModelError, match="was fit on 3 LFs but this matrix has 2"):
        mv.predict_proba(L_HAND[:, :2])


def test_predict_proba_with_another_number_of_lfs_snorkel(snorkel_fit):
    L, _, model = snorkel_fit
    with pytest.raises(LabelModelError, match="label model 'snorkel' was fit on 5 LFs but this matrix has 6"):
        model.predict_proba(np.hstack([L, L[:, :1]]))


def test_not_fitted():
    with pytest.raises(LabelModelError, match="'majority_vote' is not fitted"):
        MajorityVote(2).predict_proba(np.array([[0]]))
    with pytest.raises(LabelModelError, match="nothing to save"):
        MajorityVote(2).save("unused.npz")


@pytest.mark.parametrize(
    ("L", "message"),
    [
        ([[0, 1], [1, 3]], "label matrix value 3 at row 1, LF 1 is outside -1..2 (cardinality 3)"),
        ([[0, -2]], "label matrix value -2 at row 0, LF 1 is outside -1..2"),
        ([[0.5, 1.0]], "holds integer class indices; got dtype float64"),
        ([0, 1], "must be 2-D"),
        (np.empty((0, 3)), "the label matrix is empty"),
    ],
    ids=["too-big", "below-abstain", "fractional", "1-D", "empty"],
)
def test_label_matrix_values_outside_range(L, message):
    with pytest.raises(LabelModelError) as err:
        MajorityVote(3).fit(L)
    assert message in str(err.value)


def test_whole_float_votes_are_accepted():
    assert check_label_matrix(np.array([[0.0, -1.0]]), 2).tolist() == [[0, -1]]


def test_dev_labels_outside_the_schema():
    with pytest.raises(LabelModelError, match=r"dev gold label .*3.* at dev row 1 is outside the schema's classes 0\.\.2"):
        MajorityVote(3).fit(L_HAND, L_dev=L_HAND[:2], y_dev=np.array([0, 3]))
    with pytest.raises(LabelModelError, match=r"dev gold label .*-1.* at dev row 0"):
        SnorkelLabelModel(3).fit(L_HAND, L_dev=L_HAND[:2], y_dev=np.array([-1, 0]))


def test_dev_label_message_shows_the_plain_value():
    with pytest.raises(LabelModelError, match=r"dev gold label 3 at dev row 1 is outside the schema's classes 0\.\.2"):
        MajorityVote(3).fit(L_HAND, L_dev=L_HAND[:2], y_dev=np.array([0, 3]))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"L_dev": L_HAND[:2]}, "give both L_dev and y_dev, or neither"),
        ({"L_dev": L_HAND[:2, :2], "y_dev": np.array([0, 1])}, "L_dev has 2 LFs but L has 3"),
        ({"L_dev": L_HAND[:2], "y_dev": np.array([0, 1, 1])}, r"y_dev must have shape \(2,\)"),
        ({"class_balance": [0.5, 0.6, 0.0]}, "class_balance must be 3 non-negative numbers summing to 1"),
    ],
)
def test_bad_fit_arguments(kwargs, message):
    with pytest.raises(LabelModelError, match=message):
        MajorityVote(3).fit(L_HAND, **kwargs)


@pytest.mark.parametrize("cardinality", [1, True, 2.0])
def test_bad_cardinality(cardinality):
    with pytest.raises(LabelModelError, match="cardinality must be an integer ≥ 2"):
        MajorityVote(cardinality)


def test_load_label_model_errors(tmp_path):
    with pytest.raises(LabelModelError, match="no saved label model at"):
        load_label_model(tmp_path / "absent.npz")
    path = tmp_path / "future.npz"
    np.savez(path, __meta__=np.array(json.dumps({"format": 99, "name": "majority_vote"})))
    with pytest.raises(LabelModelError, match="saved with format 99; this labelflow reads format 1"):
        load_label_model(path)
    np.savez(path, __meta__=np.array(json.dumps({"format": 1, "name": "gone", "cardinality": 2, "seed": 0,
                                                 "n_lfs": 1, "lf_names": None, "config": {}})))
    with pytest.raises(LabelModelError, match="unknown label model 'gone'; known models are"):
        load_label_model(path)


def test_save_checks_lf_names(tmp_path):
    with pytest.raises(LabelModelError, match="lf_names has 2 names; the model was fit on 3 LFs"):
        MajorityVote(3).fit(L_HAND).save(tmp_path / "mv.npz", lf_names=["a", "b"])
    assert not (tmp_path / "mv.npz").exists()
