"""Tests of asdkit.losses against naive transcriptions of the equations and analytic cases."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from asdkit.losses import LOSSES, cross_entropy, get_loss, sce_loss

A = -math.log(1e-4)  # the RCE constant of Wang et al. 2019: -log 1e-4 = 9.2103...


def random_batch(n=32, c=10, scale=3.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, c, generator=g) * scale
    labels = torch.randint(0, c, (n,), generator=g)
    return logits, labels


def naive_sce(logits, labels, alpha, beta, clamp=1e-4):
    """α·CE + β·(−Σ_k p_k log clamp(q_k, 1e-4, 1)), one sample at a time, in float64 Python."""
    out = []
    for row, y in zip(logits.double().tolist(), labels.tolist()):
        m = max(row)
        z = sum(math.exp(v - m) for v in row)
        p = [math.exp(v - m) / z for v in row]
        ce = -math.log(p[y])
        rce = 0.0
        for k, pk in enumerate(p):
            q = 1.0 if k == y else 0.0
            rce -= min(max(pk, 1e-7), 1.0) * math.log(min(max(q, clamp), 1.0))
        out.append(alpha * ce + beta * rce)
    return torch.tensor(out, dtype=torch.float64)


@pytest.mark.parametrize("alpha", [0.1, 0.7, 2.0])
def test_sce_with_beta_zero_is_alpha_times_ce(alpha):
    logits, labels = random_batch()
    expected = alpha * F.cross_entropy(logits, labels, reduction="none")
    torch.testing.assert_close(sce_loss(logits, labels, alpha=alpha, beta=0.0), expected)


@pytest.mark.parametrize("alpha,beta", [(0.1, 1.0), (1.0, 0.5), (0.0, 1.0)])
def test_sce_matches_naive_transcription(alpha, beta):
    logits, labels = random_batch(n=24, c=7, seed=3)
    got = sce_loss(logits, labels, alpha=alpha, beta=beta)
    assert got.shape == (24,) and got.dtype == torch.float32
    torch.testing.assert_close(got.double(), naive_sce(logits, labels, alpha, beta), rtol=1e-5, atol=1e-5)


def test_sce_defaults_are_the_papers():
    """α = 0.1, β = 1 (ASD and DBD code) when not given."""
    logits, labels = random_batch(seed=5)
    torch.testing.assert_close(sce_loss(logits, labels), naive_sce(logits, labels, 0.1, 1.0).float(), rtol=1e-5, atol=1e-5)


def test_rce_of_confident_correct_prediction_is_zero():
    labels = torch.tensor([0, 3, 9])
    logits = F.one_hot(labels, 10).float() * 100.0  # p = one-hot(label)
    rce = sce_loss(logits, labels, alpha=0.0, beta=1.0)
    # only the clamped zeros contribute: 9 · 1e-7 · A ≈ 8e-6
    assert torch.all(rce.abs() < 1e-4)


def test_rce_of_confident_wrong_prediction_is_minus_log_clamp():
    labels = torch.tensor([0, 3, 9])
    wrong = (labels + 1) % 10
    logits = F.one_hot(wrong, 10).float() * 100.0  # all mass on a wrong class
    rce = sce_loss(logits, labels, alpha=0.0, beta=1.0)
    torch.testing.assert_close(rce, torch.full((3,), A), rtol=1e-4, atol=1e-4)


def test_rce_is_A_times_one_minus_p_label():
    """With unclamped p, Σ_{k≠y} p_k · A = A · (1 − p_y): RCE is a linear function of the label's probability."""
    logits, labels = random_batch(n=64, scale=1.0, seed=7)
    p_y = F.softmax(logits, 1).gather(1, labels[:, None]).squeeze(1)
    rce = sce_loss(logits, labels, alpha=0.0, beta=1.0)
    torch.testing.assert_close(rce, A * (1 - p_y), rtol=1e-5, atol=1e-5)


def test_sce_is_lower_when_the_model_agrees_with_the_label():
    logits, labels = random_batch(n=16, seed=11)
    better = logits + 5.0 * F.one_hot(labels, 10)
    assert torch.all(sce_loss(better, labels) < sce_loss(logits, labels))


def test_cross_entropy_matches_torch():
    logits, labels = random_batch(seed=2)
    torch.testing.assert_close(cross_entropy(logits, labels), F.cross_entropy(logits, labels, reduction="none"))


def test_cross_entropy_of_bfloat16_logits_is_float32():
    """Mixed-precision logits are scored in float32."""
    logits, labels = random_batch(seed=4)
    out = cross_entropy(logits.bfloat16(), labels)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, F.cross_entropy(logits.bfloat16().float(), labels, reduction="none"))


def test_get_loss_by_name():
    assert get_loss("ce") is cross_entropy and get_loss("sce") is sce_loss
    assert set(LOSSES) == {"ce", "sce"}
    with pytest.raises(ValueError, match="'loss'.*'mse'"):
        get_loss("mse")
