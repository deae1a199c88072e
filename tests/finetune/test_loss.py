"""Soft-label cross-entropy and confidence weights, against values worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from labelflow.finetune import FinetuneError, confidence_weights, soft_cross_entropy  # noqa: E402


def test_one_hot_targets_give_the_usual_cross_entropy():
    logits = torch.tensor([[2.0, 0.5, -1.0], [0.0, 1.0, 3.0]])
    y = torch.tensor([0, 2])
    one_hot = torch.nn.functional.one_hot(y, 3).float()
    assert soft_cross_entropy(logits, one_hot).item() == pytest.approx(torch.nn.functional.cross_entropy(logits, y).item())


def test_by_hand():
    # row 1: -log(e^2 / (e^2 + 1)) = log(1 + e^-2); row 2: uniform logits against [0.5, 0.5] = log 2
    logits = torch.tensor([[2.0, 0.0], [0.0, 0.0]])
    q = torch.tensor([[1.0, 0.0], [0.5, 0.5]])
    assert soft_cross_entropy(logits, q).item() == pytest.approx((math.log(1 + math.exp(-2)) + math.log(2)) / 2)


def test_equals_kl_plus_target_entropy_and_is_minimal_at_the_target():
    q = torch.tensor([[0.7, 0.2, 0.1]])
    entropy = -(q * q.log()).sum().item()
    at_target = soft_cross_entropy(q.log(), q).item()
    assert at_target == pytest.approx(entropy, abs=1e-6)
    for logits in (torch.tensor([[1.0, 0.0, 0.0]]), torch.tensor([[0.0, 0.0, 0.0]]), torch.tensor([[3.0, 1.0, -2.0]])):
        p = torch.softmax(logits, -1)
        kl = (q * (q.log() - p.log())).sum().item()
        assert soft_cross_entropy(logits, q).item() == pytest.approx(entropy + kl, abs=1e-6)
        assert soft_cross_entropy(logits, q).item() >= at_target


def test_gradient_is_softmax_minus_target_over_batch():
    logits = torch.tensor([[1.0, -1.0], [0.3, 0.2]], requires_grad=True)
    q = torch.tensor([[0.9, 0.1], [0.4, 0.6]])
    soft_cross_entropy(logits, q).backward()
    expected = (torch.softmax(logits.detach(), -1) - q) / 2
    assert torch.allclose(logits.grad, expected, atol=1e-6)


def test_weights():
    logits = torch.tensor([[2.0, 0.0], [0.0, 0.0], [0.0, 5.0]])
    q = torch.tensor([[1.0, 0.0], [0.5, 0.5], [1.0, 0.0]])
    per_row = [math.log(1 + math.exp(-2)), math.log(2), -math.log(1 / (1 + math.exp(5)))]
    w = torch.tensor([1.0, 0.0, 3.0])
    assert soft_cross_entropy(logits, q, w).item() == pytest.approx((per_row[0] + 3 * per_row[2]) / 4, rel=1e-6)
    assert soft_cross_entropy(logits, q, torch.ones(3)).item() == pytest.approx(np.mean(per_row), rel=1e-6)
    assert soft_cross_entropy(logits, q, torch.zeros(3)).item() == 0.0


def test_low_precision_logits_are_scored_in_float32():
    logits = torch.tensor([[2.0, 0.0]], dtype=torch.bfloat16)
    out = soft_cross_entropy(logits, torch.tensor([[1.0, 0.0]]))
    assert out.dtype == torch.float32
    assert out.item() == pytest.approx(math.log(1 + math.exp(-2)), rel=1e-3)


def test_shape_errors_name_the_shapes():
    with pytest.raises(FinetuneError, match=r"\[b, k\]; got \(2, 3\) and \(2, 2\)"):
        soft_cross_entropy(torch.zeros(2, 3), torch.zeros(2, 2))
    with pytest.raises(FinetuneError, match=r"weights must be \[b\]"):
        soft_cross_entropy(torch.zeros(2, 2), torch.full((2, 2), 0.5), torch.ones(3))


def test_confidence_weights_by_hand():
    q = np.array([[1.0, 0.0], [0.5, 0.5], [0.8, 0.2], [0.2, 0.8]])
    assert confidence_weights(q, "none").tolist() == [1, 1, 1, 1]
    assert confidence_weights(q, "max_prob").tolist() == [1.0, 0.5, 0.8, 0.8]
    assert np.allclose(confidence_weights(q, "margin"), [1.0, 0.0, 0.6, 0.6])
    h = -(0.8 * math.log(0.8) + 0.2 * math.log(0.2)) / math.log(2)
    assert np.allclose(confidence_weights(q, "entropy"), [1.0, 0.0, 1 - h, 1 - h])
    three = np.array([[0.5, 0.3, 0.2]])
    assert np.allclose(confidence_weights(three, "margin"), [0.2])


def test_confidence_weights_errors():
    with pytest.raises(FinetuneError, match="weighting must be 'none', 'max_prob', 'margin' or 'entropy'; got 'sharp'"):
        confidence_weights(np.array([[0.5, 0.5]]), "sharp")
    with pytest.raises(FinetuneError, match=r"\[n, k\] with k ≥ 2; got shape \(3,\)"):
        confidence_weights(np.array([0.5, 0.5, 1.0]), "none")
