"""labelflow's own label model and the auto selector."""

import numpy as np
import pytest

from labelflow.errors import LabelModelError
from labelflow.labelmodels import AutoLabelModel, FlowLabelModel, MajorityVote, get_label_model, load_label_model
from labelflow.labelmodels import flow


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
    model = FlowLabelModel(3).fit(L)
    np.testing.assert_allclose(model.accuracy[:, 0], [0.9, 0.8, 0.7, 0.6, 0.55], atol=0.06)
    covered = (L >= 0).any(axis=1)
    ours = np.mean(model.predict(L)[covered] == y[covered])
    mv = np.mean(MajorityVote(3).fit(L).predict(L)[covered] == y[covered])
    assert ours > mv + 0.01


def test_uncovered_rows_get_the_uniform_distribution():
    L = np.array([[0, 0, -1], [-1, -1, -1], [1, 1, 1]])
    probs = FlowLabelModel(2).fit(L).predict_proba(L)
    np.testing.assert_allclose(probs[1], [0.5, 0.5])
    assert probs[0, 0] > 0.5 and probs[2, 1] > 0.5


def test_duplicated_lfs_do_not_outvote_the_others():
    L, _ = synthetic(accuracies=(0.9, 0.85, 0.6))
    duplicated = np.hstack([L, np.repeat(L[:, 2:3], 5, axis=1)])  # the weakest LF five more times
    base = FlowLabelModel(3).fit(L)
    dup = FlowLabelModel(3).fit(duplicated)
    np.testing.assert_allclose(dup.share[2:], 1 / 6)
    agree = np.mean(base.predict(L) == dup.predict(duplicated))
    assert agree > 0.99


def test_lfs_that_never_or_always_fire():
    L, y = synthetic(accuracies=(0.9, 0.8, 0.7))
    never = np.full((len(L), 1), -1, dtype=np.int8)
    always = np.where(np.random.default_rng(1).random(len(L)) < 0.8, y, (y + 1) % 3).astype(np.int8)[:, None]
    model = FlowLabelModel(3).fit(np.hstack([L, never, always]))
    assert model.accuracy[3, 0] == pytest.approx(model.prior_accuracy)
    assert model.accuracy[4, 0] == pytest.approx(0.8, abs=0.05)


def test_strong_class_imbalance_and_many_classes():
    rng = np.random.default_rng(3)
    k, n = 100, 20000
    y = rng.choice(k, n, p=np.r_[0.5, np.full(k - 1, 0.5 / (k - 1))])
    m = 30
    fires = rng.random((n, m)) < 0.2
    right = rng.random((n, m)) < rng.uniform(0.3, 0.9, m)
    L = np.where(fires, np.where(right, y[:, None], rng.integers(0, k, (n, m))), -1).astype(np.int8)
    model = FlowLabelModel(k).fit(L)
    covered = (L >= 0).any(axis=1)
    assert np.mean(model.predict(L)[covered] == y[covered]) >= np.mean(MajorityVote(k).fit(L).predict(L)[covered] == y[covered])


def test_deterministic_and_save_load_without_pickle(tmp_path):
    L, _ = synthetic()
    a, b = FlowLabelModel(3).fit(L), FlowLabelModel(3).fit(L)
    np.testing.assert_array_equal(a.predict_proba(L), b.predict_proba(L))
    a.save(tmp_path / "m.npz", lf_names=[f"lf{j}" for j in range(L.shape[1])])
    with np.load(tmp_path / "m.npz", allow_pickle=False) as npz:
        assert set(npz.files) == {"__meta__", "accuracy", "share"}
    loaded = load_label_model(tmp_path / "m.npz")
    np.testing.assert_array_equal(loaded.predict_proba(L), a.predict_proba(L))
    assert loaded.lf_names == tuple(f"lf{j}" for j in range(L.shape[1]))


def test_dev_gold_moves_accuracies_towards_the_truth():
    L, y = synthetic(n=600, accuracies=(0.9, 0.35, 0.6, 0.6), coverage=0.6, seed=5)
    L_dev, y_dev = synthetic(n=400, accuracies=(0.9, 0.35, 0.6, 0.6), coverage=0.6, seed=6)
    truth = np.array([0.9, 0.35, 0.6, 0.6])
    unsup = FlowLabelModel(3).fit(L)
    semi = FlowLabelModel(3).fit(L, L_dev=L_dev, y_dev=y_dev)
    assert np.abs(semi.accuracy[:, 0] - truth).sum() < np.abs(unsup.accuracy[:, 0] - truth).sum()


def test_given_class_balance_is_the_prior_of_covered_rows():
    L = np.array([[0, 1, -1], [-1, -1, -1], [0, 0, 1]])
    model = FlowLabelModel(2).fit(L, class_balance=np.array([0.9, 0.1]))
    probs = model.predict_proba(L)
    assert probs[0, 0] > 0.8  # a 1-1 tie tips to the frequent class
    np.testing.assert_allclose(probs[1], [0.5, 0.5])  # no votes: still uniform


def test_torch_arithmetic_matches_numpy(monkeypatch):
    torch = pytest.importorskip("torch")
    L, _ = synthetic()
    expected = FlowLabelModel(3).fit(L)
    monkeypatch.setattr(flow, "_backend", lambda device: (torch, lambda a: torch.as_tensor(a)))
    got = FlowLabelModel(3).fit(L)
    np.testing.assert_allclose(got.accuracy, expected.accuracy, rtol=1e-9)
    np.testing.assert_allclose(got.predict_proba(L), expected.predict_proba(L), rtol=1e-9)


@pytest.mark.gpu
def test_cuda_fit_matches_cpu():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU")
    L, _ = synthetic()
    np.testing.assert_allclose(FlowLabelModel(3, device="cuda").fit(L).predict_proba(L),
                               FlowLabelModel(3).fit(L).predict_proba(L), rtol=1e-6)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"prior_accuracy": 0.2}, r"prior_accuracy must lie in \(1/k, 1\) = \(0\.333, 1\); got 0\.2"),
    ({"n_iter": 0}, r"need n_iter ≥ 1"),
    ({"dev_weight": "lots"}, r"dev_weight must be a number ≥ 0 or 'balanced'; got 'lots'"),
    ({"device": "tpu"}, r"device must be 'cpu', 'cuda' or 'auto'; got 'tpu'"),
])
def test_bad_settings_are_named(kwargs, message):
    with pytest.raises(LabelModelError, match=message):
        FlowLabelModel(3, **kwargs)


def test_bad_matrices_and_dev_labels():
    L, _ = synthetic()
    with pytest.raises(LabelModelError, match=r"value 3 at row 0, LF 0 is outside -1\.\.2"):
        FlowLabelModel(3).fit(np.full((2, 2), 3))
    with pytest.raises(LabelModelError, match=r"empty"):
        FlowLabelModel(3).fit(np.empty((0, 3)))
    with pytest.raises(LabelModelError, match=r"dev gold label 7 at dev row 0 is outside the schema's classes 0\.\.2"):
        FlowLabelModel(3).fit(L, L_dev=L[:2], y_dev=np.array([7, 0]))
    model = FlowLabelModel(3).fit(L)
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
