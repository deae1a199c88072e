"""bench/synthetic_matrices.py: the generator hits its targets, and a quick run prints one JSON document last."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

PATH = Path(__file__).resolve().parents[1] / "bench" / "synthetic_matrices.py"


def _load():
    """bench/ is not a package; load the script by path (registered in sys.modules for its dataclasses)."""
    if "bench_synthetic_matrices" in sys.modules:
        return sys.modules["bench_synthetic_matrices"]
    spec = importlib.util.spec_from_file_location("bench_synthetic_matrices", PATH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


sm = _load()


def small_spec(seed: int = 7) -> "sm.MatrixSpec":
    """3 classes, 1:3 imbalance: unipolar, exclusive unipolar, multipolar, exact duplicates, partial copies."""
    return sm.MatrixSpec(
        "test_small", "test", 3, sm.geometric(3, 3),
        (sm.Unipolar(6, (0.3, 0.5), (0.6, 0.9), confusable=0.5),
         sm.Multipolar(4, (0.3, 0.6), (0.4, 0.8), confusion=0.5),
         sm.Copies(3, 1, (1.0, 1.0), parents=1),
         sm.Copies(2, 0, (0.5, 0.7)),
         sm.Unipolar(6, (0.1, 0.2), (0.7, 1.0), exclusive=True)),
        n_train=20000, n_dev=200, n_test=1000, seed=seed)


@pytest.fixture(scope="module")
def small():
    return small_spec(), sm.generate(small_spec())


def test_generate_is_seeded_and_int8(small):
    spec, data = small
    again = sm.generate(small_spec())
    for key in ("L_train", "y_train", "L_dev", "y_dev", "L_test", "y_test"):
        np.testing.assert_array_equal(data[key], again[key])
    assert not np.array_equal(data["L_train"], sm.generate(small_spec(seed=8))["L_train"])
    assert data["L_train"].dtype == np.int8 and data["L_train"].shape == (20000, spec.m) == (20000, 21)
    assert data["L_dev"].shape == (200, 21) and data["L_test"].shape == (1000, 21)
    assert data["L_train"].min() >= -1 and data["L_train"].max() < 3


def test_realised_balance_coverage_and_accuracy_match_the_model(small):
    spec, data = small
    L, y = data["L_train"], data["y_train"]
    np.testing.assert_allclose(np.bincount(y, minlength=3) / len(y), spec.class_balance, atol=0.015)
    votes = L >= 0
    for c in range(3):  # P(vote | y = c) within 5 standard errors of the model's rate
        rate, n_c = data["lf_rates"][:, c], np.sum(y == c)
        assert np.all(np.abs(votes[y == c].mean(axis=0) - rate) <= 5 * np.sqrt(rate * (1 - rate) / n_c) + 1e-9)
    np.testing.assert_allclose(votes.mean(axis=0), data["lf_coverage"], atol=0.02)
    realised = (L == y[:, None]).sum(axis=0) / votes.sum(axis=0)
    np.testing.assert_allclose(realised, data["lf_accuracy"], atol=0.04)
    # the first group's precisions land in the spec's range (nothing clipped at these rates)
    assert np.all((data["lf_accuracy"][:6] >= 0.6 - 1e-9) & (data["lf_accuracy"][:6] <= 0.9 + 1e-9))
    assert np.all(np.abs(realised[:6] - data["lf_accuracy"][:6]) < 0.04)
    # multipolar LFs: accuracy drawn in range
    assert np.all((data["lf_accuracy"][6:10] >= 0.4) & (data["lf_accuracy"][6:10] <= 0.8))


def test_unipolar_lfs_only_vote_their_class(small):
    _, data = small
    L = np.concatenate([data["L_train"], data["L_dev"], data["L_test"]])
    for j in np.flatnonzero(data["lf_target"] >= 0):
        assert set(np.unique(L[:, j])) <= {-1, int(data["lf_target"][j])}
    multi = np.flatnonzero(data["lf_target"] < 0)
    assert all(len(set(np.unique(L[:, j])) - {-1}) == 3 for j in multi)


def test_duplicates_are_identical_and_copies_agree_with_their_parent(small):
    _, data = small
    L = np.concatenate([data["L_train"], data["L_dev"], data["L_test"]])
    assert data["lf_parent"][10:13].tolist() == [6, 6, 6]
    for j in (10, 11, 12):
        np.testing.assert_array_equal(L[:, j], L[:, 6])
    for j in (13, 14):
        parent = data["lf_parent"][j]
        assert data["lf_target"][j] == data["lf_target"][parent]
        both = (L[:, j] >= 0) | (L[:, parent] >= 0)
        agree = np.mean(L[both, j] == L[both, parent])
        assert 0.5 < agree < 0.95 and not np.array_equal(L[:, j], L[:, parent])


def test_exclusive_group_gives_at_most_one_vote_per_row(small):
    _, data = small
    assert (data["L_train"][:, 15:] >= 0).sum(axis=1).max() == 1


def test_feature_lfs_err_together():
    """LFs watching one latent feature are correlated given the class: conditional independence fails."""
    spec = sm.MatrixSpec("test_feature", "test", 2, sm.balanced(2),
                         (sm.Feature(2, 1, (0.4, 0.4), (0.6, 0.6), (0.9, 0.9), targets=(1,)),), n_train=20000, seed=3)
    data = sm.generate(spec)
    L, y = data["L_train"], data["y_train"]
    fires = L[y == 0] >= 0                                  # false positives of both LFs
    assert fires[:, 0].mean() > 0.05
    assert np.mean(fires[:, 0] & fires[:, 1]) > 3 * fires[:, 0].mean() * fires[:, 1].mean()


def test_benchmark_specs_cover_the_regimes():
    specs = sm.matrix_specs()
    assert len(specs) >= 40 and len({s.name for s in specs}) == len(specs)
    assert {s.regime for s in specs} >= {"ci", "unipolar", "coverage", "accuracy", "imbalance", "correlated",
                                         "single_vote", "low_quality", "broad_narrow", "spam", "mixed"}
    assert all(1000 <= s.n_train <= 10000 and 100 <= s.n_dev <= 500 for s in specs)
    assert min(s.k for s in specs) == 2 and max(s.k for s in specs) == 50
    assert min(s.m for s in specs) == 3 and max(s.m for s in specs) == 1000
    assert max(max(s.class_balance) / min(s.class_balance) for s in specs) == pytest.approx(100)
    assert set(sm.QUICK) <= {s.name for s in specs}


def test_single_vote_relation_matrix_is_shaped_like_its_model():
    spec = next(s for s in sm.matrix_specs() if s.name == "single_vote_relation_k9_m164")
    data = sm.generate(spec)
    stats = sm.matrix_stats(data["L_train"], data["y_train"], spec.k)
    assert stats["unipolar_lfs"] == 164 and stats["lf_accuracy_median"] == 1.0
    assert 0.7 <= stats["single_vote_rows"] <= 0.8
    assert stats["class_max"] == pytest.approx(0.29, abs=0.015) and stats["class_min"] == pytest.approx(0.034, abs=0.01)


def test_spec_validation_names_the_value():
    with pytest.raises(ValueError, match="class_balance"):
        sm.MatrixSpec("x", "test", 3, (0.5, 0.5), (sm.Multipolar(3, (0.1, 0.2), (0.5, 0.6)),), n_train=1000)
    with pytest.raises(ValueError, match=r"accuracy .*\(0.9, 0.5\)"):
        sm.Multipolar(3, (0.1, 0.2), (0.9, 0.5))
    with pytest.raises(ValueError, match="earlier"):
        sm.MatrixSpec("x", "test", 2, sm.balanced(2), (sm.Copies(2, 0, (1.0, 1.0)),), n_train=1000)


def test_failures_and_skips_are_recorded(small, monkeypatch):
    spec, data = small
    big = sm.MatrixSpec("big", "test", 50, sm.balanced(50), (sm.Multipolar(100, (0.1, 0.2), (0.5, 0.6)),), n_train=1000)
    skipped = sm.run_model("snorkel", big, {}, with_dev=False, seed=1, max_mk=2000)
    assert skipped["status"] == "skipped" and "5000 > 2000" in skipped["reason"]
    assert sm.run_model("auto", big, {}, with_dev=True, seed=1, max_mk=2000)["status"] == "skipped"

    import labelflow.labelmodels

    class Broken:
        def fit(self, L, **kwargs):
            raise RuntimeError("no convergence")

    monkeypatch.setattr(labelflow.labelmodels, "get_label_model", lambda name, k, seed: Broken())
    failed = sm.run_model("majority_vote", spec, data, with_dev=False, seed=1, max_mk=2000)
    assert failed == {"status": "failed", "reason": "RuntimeError: no convergence"}


def test_quick_run_prints_one_json_document_last(tmp_path, capsys):
    out = tmp_path / "result.json"
    cfg = sm.make_parser().parse_args(["--quick", "--models", "majority_vote", "--out", str(out)])
    returned = sm.main(cfg)
    lines = capsys.readouterr().out.strip().splitlines()
    result = json.loads(lines[-1])
    assert json.loads(out.read_text()) == result == json.loads(json.dumps(returned))
    assert set(result) == {"matrices", "summary"}
    assert [m["name"] for m in result["matrices"]] == list(sm.QUICK)
    for row in result["matrices"]:
        assert {"name", "regime", "k", "m", "n_train", "coverage", "scores"} <= set(row)
        for mode in ("unsupervised", "dev"):
            score = row["scores"]["majority_vote"][mode]
            assert score["status"] == "ok" and 0 <= score["accuracy"] <= 1 and 0 <= score["macro_f1"] <= 1
            assert "fit_seconds" in score
    assert result["summary"]["default"] == "labelflow" and result["summary"]["unsupervised"] is None
    assert any(line.startswith("ci_k2_m10") for line in lines)


def test_list_prints_specs_without_fitting(capsys):
    sm.main(sm.make_parser().parse_args(["--list", "--only", "spam"]))
    out = capsys.readouterr().out
    assert "spam_k2_m10" in out and "ci_k2_m10" not in out and out.strip().endswith("3 matrices")


@pytest.mark.parametrize("name", ["ci_k5_m30", "unipolar_k10_m60", "accuracy_adversarial_k2_m12",
                                  "single_vote_relation_k9_m164", "low_quality_k10_m26", "broad_narrow_k2_m8",
                                  "spam_k2_m10", "correlated_dups_bad_k3"])
def test_labelflow_is_at_least_majority_vote_in_each_regime(name):
    """The default label model, fit without gold on a regime's train split, scores at least majority vote
    (within 0.005) on its test split, with and without dev gold."""
    from labelflow.labelmodels import get_label_model

    spec = next(s for s in sm.matrix_specs() if s.name == name)
    data = sm.generate(spec)
    score = lambda model: np.mean(model.predict(data["L_test"]) == data["y_test"])  # noqa: E731
    mv = score(get_label_model("majority_vote", spec.k).fit(data["L_train"]))
    ours = score(get_label_model("labelflow", spec.k).fit(data["L_train"]))
    with_dev = score(get_label_model("labelflow", spec.k).fit(data["L_train"], L_dev=data["L_dev"], y_dev=data["y_dev"]))
    assert ours >= mv - 0.005
    assert with_dev >= mv - 0.005
