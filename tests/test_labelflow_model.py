"""labelflow's own label model and the auto selector."""

import numpy as np
import pytest

from labelflow.errors import LabelModelError
from labelflow.labelmodels import AutoLabelModel, LabelflowModel, MajorityVote, get_label_model, load_label_model
from labelflow.labelmodels import labelflow_model


def synthetic(n=4000, k=3, accuracies=(0.9, 0.8, 0.7, 0.6, 0.55), coverage=0.5, seed=0):
    """``[n, m]`` votes of LFs with known accuracies (wrong votes uniform over other classes), and gold."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    m = len(accuracies)
    fires = rng.random((n, m)) < coverage
    right = rng.random((n, m)) < np.array(accuracies)
    wrong = (y[:, None] + rng.integers(1, k, (n, m))) % k
    return np.where(fires, np.where(right, y[:, None], wrong), -1).astype(np.int8), y


def test_recovers_lf_accuracies_and_beats_majority_vote():
    L, y = synthetic()
    model = LabelflowModel(3).fit(L)
    np.testing.assert_allclose(model.accuracy, [0.9, 0.8, 0.7, 0.6, 0.55], atol=0.06)
    covered = (L >= 0).any(axis=1)
    ours = np.mean(model.predict(L)[covered] == y[covered])
    mv = np.mean(MajorityVote(3).fit(L).predict(L)[covered] == y[covered])
    assert ours > mv + 0.01


def unipolar(n=6000, prior=(0.85, 0.15), lfs=((1, 0.3, 0.95),) * 5, seed=0):
    """``[n, m]`` votes of unipolar LFs ``(class, recall, precision)`` and gold: each LF only ever
    votes its class, on that class's rows with probability ``recall`` and elsewhere at the rate
    that makes its precision ``precision``."""
    rng = np.random.default_rng(seed)
    prior = np.asarray(prior)
    y = rng.choice(len(prior), n, p=prior)
    L = np.full((n, len(lfs)), -1, dtype=np.int8)
    for j, (c, recall, precision) in enumerate(lfs):
        false_rate = recall * prior[c] * (1 - precision) / precision / (1 - prior[c])
        fires = rng.random(n) < np.where(y == c, recall, false_rate)
        L[fires, j] = c
    return L, y


def test_uncovered_rows_go_to_the_class_the_lfs_rarely_cover():
    L, y = unipolar()  # spam LFs only; 85 % ham
    model = LabelflowModel(2).fit(L)
    uncovered = (L < 0).all(axis=1)
    assert uncovered.mean() > 0.6
    assert model.uncovered[0] > 0.8  # estimated P(ham | no vote); the truth is ~0.93
    assert np.all(model.predict(L)[uncovered] == 0)
    assert np.mean(MajorityVote(2).fit(L).predict(L)[uncovered] == 0) < 0.6  # majority vote splits them at random


def test_uncovered_rows_follow_the_class_sizes_when_coverage_does_not_depend_on_the_class():
    rng = np.random.default_rng(2)
    y = (rng.random(6000) < 0.3).astype(np.int64)  # 70 % class 0
    fires = rng.random((6000, 4)) < 0.3
    right = rng.random((6000, 4)) < 0.85
    L = np.where(fires, np.where(right, y[:, None], 1 - y[:, None]), -1).astype(np.int8)
    model = LabelflowModel(2).fit(L)
    probs = model.predict_proba(L)
    uncovered = (L < 0).all(axis=1)
    # multipolar LFs cover every class alike: their votes give the class balance, and it is that of the uncovered rows
    assert model.class_balance[0] == pytest.approx(0.7, abs=0.03) and model.prior_p_value < 1e-6
    np.testing.assert_allclose(probs[uncovered][0], model.class_balance)
    assert np.mean(probs[uncovered].argmax(axis=1) == y[uncovered]) > 0.65


def multipolar(n, prior, coverage=0.3, accuracy=0.85, m=4, seed=0):
    """``[n, m]`` votes of multipolar LFs that fire at one rate whatever the class, and gold."""
    rng = np.random.default_rng(seed)
    k = len(prior)
    y = rng.choice(k, n, p=np.asarray(prior))
    fires = rng.random((n, m)) < coverage
    right = rng.random((n, m)) < accuracy
    wrong = (y[:, None] + rng.integers(1, k, (n, m))) % k
    return np.where(fires, np.where(right, y[:, None], wrong), -1).astype(np.int8), y


def test_without_gold_the_class_balance_comes_from_multipolar_votes_where_it_differs_from_uniform():
    L, y = multipolar(20000, (0.97, 0.03), coverage=0.4, accuracy=0.75, m=6, seed=4)
    model = LabelflowModel(2).fit(L)
    assert model.class_balance[1] == pytest.approx(0.03, abs=0.015)
    ours = np.mean(model.predict(L) == y)
    assert ours > 0.95 and ours > np.mean(MajorityVote(2).fit(L).predict(L) == y) + 0.05
    balanced = LabelflowModel(3).fit(multipolar(3000, (1 / 3,) * 3, seed=5)[0])
    assert balanced.class_balance is None and balanced.prior_p_value > 0.05  # not told apart: no prior
    assert model.prior_source == "multipolar" and balanced.prior_source is None


def test_without_gold_or_multipolar_lfs_the_class_balance_is_the_reweighed_posterior():
    L, y = unipolar()  # spam LFs only; 85 % ham
    model = LabelflowModel(2).fit(L)
    assert model.prior_source == "posterior" and model.prior_p_value is None  # no test: one EM step from uniform
    assert model.class_balance[0] == pytest.approx(0.85, abs=0.04)


def test_a_unipolar_lf_is_weighed_by_how_much_more_it_fires_on_its_class():
    """A broad class-0 LF (it fires on 90 % of class-0 rows and ~74 % of class-1 rows) beside precise
    LFs: majority vote counts its vote like theirs, so a row where it and the precise class-1 LF vote
    is a coin toss; its firing-rate ratio is near 1, so it loses its say."""
    L, y = unipolar(n=8000, prior=(0.5, 0.5), lfs=((0, 0.9, 0.55), (1, 0.3, 0.9), (0, 0.3, 0.9)), seed=8)
    model = LabelflowModel(2).fit(L)
    assert 0 <= model.weight[0] < min(model.weight[1], model.weight[2]) / 2
    against = (L[:, 0] == 0) & (L[:, 1] == 1) & (L[:, 2] < 0)  # the broad LF against the precise class-1 LF
    assert against.sum() > 500 and np.mean(y[against] == 1) > 0.85 and np.all(model.predict(L)[against] == 1)
    assert np.mean(model.predict(L) == y) > np.mean(MajorityVote(2).fit(L).predict(L) == y) + 0.1


def test_uncovered_rows_are_ties_where_nothing_tells_the_classes_apart():
    L, _ = multipolar(6000, (1 / 3,) * 3, coverage=0.01, m=5, seed=6)
    model = LabelflowModel(3).fit(L)
    np.testing.assert_allclose(model.uncovered, 1 / 3)
    uncovered = (L < 0).all(axis=1)
    assert np.all(model.predict(L[uncovered], tie_policy="abstain") == -1)


def test_where_accuracies_cannot_be_told_apart_it_is_majority_vote():
    """Unipolar LFs disagreeing says nothing about which side is right (EM would drift to the larger
    class's LFs): they share one accuracy, so every row majority vote decides is decided alike."""
    L, y = unipolar(prior=(0.7, 0.3), lfs=((0, 0.3, 0.9), (0, 0.3, 0.7), (1, 0.3, 0.9), (1, 0.3, 0.6)), seed=3)
    model = LabelflowModel(2).fit(L)
    counts = np.stack([(L == c).sum(axis=1) for c in (0, 1)], axis=1)
    decided = counts[:, 0] != counts[:, 1]
    assert decided.sum() > 500
    np.testing.assert_array_equal(model.predict(L)[decided], counts[decided].argmax(axis=1))
    assert np.ptp(model.accuracy) < 1e-9


def test_a_unipolar_lf_beside_multipolar_ones_gets_its_own_accuracy():
    """Broad multipolar LFs (zero-shot-like) identify the narrow unipolar LFs' precision."""
    rng = np.random.default_rng(6)
    L_u, y_u = unipolar(n=8000, prior=(0.5, 0.5), lfs=((1, 0.3, 0.97), (0, 0.3, 0.6)), seed=6)
    L = np.hstack([np.where(rng.random((8000, 3)) < 0.75, y_u[:, None], 1 - y_u[:, None]), L_u]).astype(np.int8)
    model = LabelflowModel(2).fit(L)
    np.testing.assert_allclose(model.accuracy[:3], 0.75, atol=0.03)
    assert model.accuracy[3] > 0.9 and model.accuracy[4] < 0.7


def test_a_multipolar_lf_worse_than_chance_counts_against_its_vote_and_a_unipolar_one_never_does():
    L, y = synthetic(k=2, accuracies=(0.85, 0.8, 0.75, 0.25, 0.2), coverage=0.6, seed=4)
    model = LabelflowModel(2).fit(L)
    assert model.accuracy[3] < 0.4 and model.accuracy[4] < 0.4
    covered = (L >= 0).any(axis=1)
    ours = np.mean(model.predict(L)[covered] == y[covered])
    assert ours > np.mean(MajorityVote(2).fit(L).predict(L)[covered] == y[covered]) + 0.1
    L_uni, _ = unipolar(prior=(0.5, 0.5), lfs=((0, 0.5, 0.9), (1, 0.5, 0.9), (0, 0.4, 0.3)), seed=5)
    assert LabelflowModel(2).fit(L_uni).accuracy.min() > 0.5


def test_duplicated_lfs_do_not_outvote_the_others():
    L, _ = synthetic(accuracies=(0.9, 0.85, 0.6))
    duplicated = np.hstack([L, np.repeat(L[:, 2:3], 5, axis=1)])  # the weakest LF five more times
    base = LabelflowModel(3).fit(L)
    dup = LabelflowModel(3).fit(duplicated)
    np.testing.assert_allclose(dup.share[2:], 1 / 6)
    agree = np.mean(base.predict(L) == dup.predict(duplicated))
    assert agree > 0.99
    always = np.where(np.random.default_rng(0).random(len(L)) < 0.6, 0, 1).astype(np.int8)[:, None]
    copies = LabelflowModel(3).fit(np.hstack([L, always, always, always]))  # no firing variance to correlate
    np.testing.assert_allclose(copies.share[3:], 1 / 3)


def test_near_copies_of_a_weak_lf_count_about_once():
    """A mediocre LF and 6 near-copies of it (each takes its vote, abstain included, 85 % of the time)
    against 5 better independent LFs: the copies fire together, so they share one LF's say."""
    rng = np.random.default_rng(9)
    L, y = synthetic(k=2, accuracies=(0.6,) + (0.75,) * 5, coverage=0.7, seed=9)
    own = np.where(rng.random((len(L), 6)) < 0.7, np.where(rng.random((len(L), 6)) < 0.6, y[:, None], 1 - y[:, None]), -1)
    copies = np.where(rng.random((len(L), 6)) < 0.85, L[:, :1], own).astype(np.int8)
    model = LabelflowModel(2).fit(np.hstack([L, copies]))
    assert np.all(model.share[[0, 6, 7, 8, 9, 10, 11]] < 0.3) and np.all(model.share[1:6] > 0.9)
    ours = np.mean(model.predict(np.hstack([L, copies])) == y)
    assert ours > np.mean(MajorityVote(2).fit(np.hstack([L, copies])).predict(np.hstack([L, copies])) == y) + 0.03
    assert ours > np.mean(LabelflowModel(2).fit(L).predict(L) == y) - 0.01  # about as if the copies were not there


def test_lfs_that_never_or_always_fire():
    L, y = synthetic(accuracies=(0.9, 0.8, 0.7))
    never = np.full((len(L), 1), -1, dtype=np.int8)
    always = np.where(np.random.default_rng(1).random(len(L)) < 0.8, y, (y + 1) % 3).astype(np.int8)[:, None]
    model = LabelflowModel(3).fit(np.hstack([L, never, always]))
    assert model.share[3] == 1 and model.accuracy[2] < model.accuracy[3] < model.accuracy[0]  # the suite's pooled value
    assert model.accuracy[4] == pytest.approx(0.8, abs=0.05)


def test_strong_class_imbalance_and_many_classes():
    rng = np.random.default_rng(3)
    k, n = 100, 20000
    y = rng.choice(k, n, p=np.r_[0.5, np.full(k - 1, 0.5 / (k - 1))])
    m = 30
    fires = rng.random((n, m)) < 0.2
    right = rng.random((n, m)) < rng.uniform(0.3, 0.9, m)
    L = np.where(fires, np.where(right, y[:, None], rng.integers(0, k, (n, m))), -1).astype(np.int8)
    model = LabelflowModel(k).fit(L)
    covered = (L >= 0).any(axis=1)
    assert np.mean(model.predict(L)[covered] == y[covered]) >= np.mean(MajorityVote(k).fit(L).predict(L)[covered] == y[covered])


def test_deterministic_and_save_load_without_pickle(tmp_path):
    L, _ = synthetic()
    a, b = LabelflowModel(3).fit(L), LabelflowModel(3).fit(L)
    np.testing.assert_array_equal(a.predict_proba(L), b.predict_proba(L))
    a.save(tmp_path / "m.npz", lf_names=[f"lf{j}" for j in range(L.shape[1])])
    with np.load(tmp_path / "m.npz", allow_pickle=False) as npz:
        assert set(npz.files) == {"__meta__", "accuracy", "share", "uncovered", "weight"}
    loaded = load_label_model(tmp_path / "m.npz")
    np.testing.assert_array_equal(loaded.predict_proba(L), a.predict_proba(L))
    assert loaded.lf_names == tuple(f"lf{j}" for j in range(L.shape[1]))
    spam_only = LabelflowModel(2).fit(unipolar()[0])
    spam_only.save(tmp_path / "spam.npz")
    assert load_label_model(tmp_path / "spam.npz").prior_source == "posterior"  # the prior's source is saved with it


def test_dev_gold_moves_accuracies_towards_the_truth():
    L, y = synthetic(n=600, accuracies=(0.9, 0.35, 0.6, 0.6), coverage=0.6, seed=5)
    L_dev, y_dev = synthetic(n=400, accuracies=(0.9, 0.35, 0.6, 0.6), coverage=0.6, seed=6)
    truth = np.array([0.9, 0.35, 0.6, 0.6])
    unsup = LabelflowModel(3).fit(L)
    semi = LabelflowModel(3).fit(L, L_dev=L_dev, y_dev=y_dev)
    assert np.abs(semi.accuracy - truth).sum() < np.abs(unsup.accuracy - truth).sum()
    # the prior is the likelihood's balance of the dev gold and the multipolar train votes together:
    # closer to the classes' sizes over train and dev than the dev gold's alone
    both = np.bincount(np.r_[y, y_dev], minlength=3) / (len(y) + len(y_dev))
    dev_only = (np.bincount(y_dev, minlength=3) + 1) / (len(y_dev) + 3)
    assert semi.prior_source == "dev" and np.abs(semi.class_balance - both).sum() < np.abs(dev_only - both).sum()


def test_dev_gold_gives_the_class_prior_and_the_uncovered_rows_their_dev_distribution():
    L, y = unipolar(n=8000, prior=(0.6, 0.4), lfs=((1, 0.4, 0.7), (1, 0.4, 0.7), (0, 0.1, 0.9)), seed=7)
    train, dev = slice(0, 6000), slice(6000, 8000)
    model = LabelflowModel(2).fit(L[train], L_dev=L[dev], y_dev=y[dev])
    uncovered_dev = (L[dev] < 0).all(axis=1)
    expected = np.bincount(y[dev][uncovered_dev], minlength=2) / uncovered_dev.sum()
    np.testing.assert_allclose(model.uncovered, expected, atol=0.02)
    assert model.predict_proba(np.array([[-1, -1, -1]]))[0] == pytest.approx(model.uncovered)


def test_dev_gold_chooses_the_class_conditional_model_where_it_predicts_held_out_gold_better(tmp_path):
    # rare-class LFs that also fire on other classes: how often each fires per class matters, which
    # the one-coin model cannot express
    prior = (0.6, 0.25, 0.1, 0.05)
    lfs = tuple((c, 0.5, 0.3 if c else 0.9) for c in range(4) for _ in range(4))
    L, y = unipolar(n=9000, prior=prior, lfs=lfs, seed=8)
    train, dev, test = slice(0, 6000), slice(6000, 6600), slice(6600, 9000)
    model = LabelflowModel(4).fit(L[train], L_dev=L[dev], y_dev=y[dev])
    assert model.conditional is not None and model.conditional.shape == (16, 4, 4)
    assert set(model.selection) == {"one_coin", "conditional_50", "conditional_1000"}
    assert max(model.selection["conditional_50"], model.selection["conditional_1000"]) > model.selection["one_coin"]
    one_coin = LabelflowModel(4, conditional_strengths=()).fit(L[train], L_dev=L[dev], y_dev=y[dev])
    assert one_coin.conditional is None and one_coin.selection is None
    assert np.mean(model.predict(L[test]) == y[test]) > np.mean(one_coin.predict(L[test]) == y[test]) + 0.03
    model.save(tmp_path / "m.npz")
    loaded = load_label_model(tmp_path / "m.npz")
    np.testing.assert_array_equal(loaded.predict_proba(L[test]), model.predict_proba(L[test]))
    np.testing.assert_allclose(model.predict_proba(np.full((1, 16), -1))[0], model.uncovered)


def test_dev_gold_missing_a_class_fits():
    L, y = synthetic(accuracies=(0.9, 0.8, 0.7))
    keep = y[:300] != 2
    model = LabelflowModel(3).fit(L, L_dev=L[:300][keep], y_dev=y[:300][keep])
    assert np.isfinite(model.predict_proba(L)).all() and model.class_balance[2] > 0


def test_given_class_balance_is_the_prior_of_covered_rows():
    L = np.array([[0, 1, -1], [-1, -1, -1], [0, 0, 1]])
    model = LabelflowModel(2).fit(L, class_balance=np.array([0.9, 0.1]))
    probs = model.predict_proba(L)
    assert probs[0, 0] > 0.8  # a 1-1 tie tips to the frequent class
    assert probs[1, 0] > 0.5  # no votes: the class balance, times how rarely each class goes unvoted


def test_torch_arithmetic_matches_numpy(monkeypatch):
    torch = pytest.importorskip("torch")
    L, _ = synthetic()
    expected = LabelflowModel(3).fit(L)
    monkeypatch.setattr(labelflow_model, "_backend", lambda device: (torch, lambda a: torch.as_tensor(a)))
    got = LabelflowModel(3).fit(L)
    np.testing.assert_allclose(got.accuracy, expected.accuracy, rtol=1e-9)
    np.testing.assert_allclose(got.uncovered, expected.uncovered, rtol=1e-9)
    np.testing.assert_allclose(got.predict_proba(L), expected.predict_proba(L), rtol=1e-7)


@pytest.mark.gpu
def test_cuda_fit_matches_cpu():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU")
    L, _ = synthetic()
    np.testing.assert_allclose(LabelflowModel(3, device="cuda").fit(L).predict_proba(L),
                               LabelflowModel(3).fit(L).predict_proba(L), rtol=1e-6)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"prior_accuracy": 0.2}, r"prior_accuracy must be a number in \(0\.333333, 1\); got 0\.2"),
    ({"n_iter": 0}, r"n_iter must be an integer ≥ 1; got 0"),
    ({"dev_weight": "lots"}, r"dev_weight \(or 'balanced'\) must be a number ≥ 0; got 'lots'"),
    ({"device": "tpu"}, r"device must be 'auto', 'cpu' or 'cuda'; got 'tpu'"),
    ({"conditional_strengths": (50, 0)}, r"each of conditional_strengths must be a number > 0; got 0"),
])
def test_bad_settings_are_named(kwargs, message):
    with pytest.raises(LabelModelError, match=message):
        LabelflowModel(3, **kwargs)


def test_bad_matrices_and_dev_labels():
    L, _ = synthetic()
    with pytest.raises(LabelModelError, match=r"value 3 at row 0, LF 0 is outside -1\.\.2"):
        LabelflowModel(3).fit(np.full((2, 2), 3))
    with pytest.raises(LabelModelError, match=r"empty"):
        LabelflowModel(3).fit(np.empty((0, 3)))
    with pytest.raises(LabelModelError, match=r"dev gold label 7 at dev row 0 is outside the schema's classes 0\.\.2"):
        LabelflowModel(3).fit(L, L_dev=L[:2], y_dev=np.array([7, 0]))
    model = LabelflowModel(3).fit(L)
    with pytest.raises(LabelModelError, match=r"fit on 5 LFs but this matrix has 4"):
        model.predict_proba(L[:, :4])


def test_auto_picks_by_dev_score_and_says_why(tmp_path):
    L, y = synthetic(accuracies=(0.9, 0.8, 0.7, 0.6, 0.55))
    auto = get_label_model("auto", 3).fit(L[:3000], L_dev=L[3000:], y_dev=y[3000:])
    assert set(auto.scores) == {"labelflow", "majority_vote", "snorkel"}
    best = max(auto.scores.values())
    assert auto.scores[auto.chosen.name] == best
    assert auto.chosen.name in auto.reason and "2-fold dev accuracy over 1000 gold rows" in auto.reason
    auto.save(tmp_path / "auto.npz")
    loaded = load_label_model(tmp_path / "auto.npz")
    assert isinstance(loaded, AutoLabelModel) and loaded.chosen.name == auto.chosen.name
    np.testing.assert_allclose(loaded.predict_proba(L), auto.predict_proba(L))


def test_auto_without_dev_takes_the_preferred_model():
    L, _ = synthetic()
    auto = get_label_model("auto", 3).fit(L)
    assert auto.chosen.name == "labelflow" and "no dev gold" in auto.reason
