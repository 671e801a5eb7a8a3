"""Tests of asdkit.semi (MixMatch, the pool operation of ASD and DBD) against naive transcriptions of its equations."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import asdkit.semi as semi
from asdkit.engine import Images, Normalizer
from asdkit.semi import MixMatchConfig, PoolSampler, mixmatch_epoch, mixmatch_loss, mixmatch_rows, sharpen

pytestmark = pytest.mark.usefixtures("one_thread")


# --------------------------------------------------------------------------- sharpen


def test_sharpen_matches_hand_computation():
    p = torch.tensor([[0.2, 0.3, 0.5], [0.6, 0.3, 0.1]])
    # T = 0.5: p^2 / Σ p^2
    expected = torch.tensor([[0.04, 0.09, 0.25], [0.36, 0.09, 0.01]])
    expected = expected / expected.sum(dim=1, keepdim=True)  # rows: /0.38, /0.46
    assert torch.allclose(sharpen(p, 0.5), expected, atol=1e-6)
    assert sharpen(p, 0.5)[0, 2].item() == pytest.approx(0.25 / 0.38, abs=1e-6)


def test_sharpen_rows_sum_to_one_and_order_is_kept():
    g = torch.Generator().manual_seed(0)
    p = torch.rand(50, 10, generator=g).softmax(dim=1)
    for t in (0.1, 0.5, 1.0, 2.0):
        s = sharpen(p, t)
        assert torch.allclose(s.sum(dim=1), torch.ones(50), atol=1e-5)
        assert torch.equal(s.argmax(dim=1), p.argmax(dim=1))
    # T < 1 makes every row more peaked, T > 1 flatter
    assert (sharpen(p, 0.5).max(dim=1).values > p.max(dim=1).values).all()
    assert (sharpen(p, 2.0).max(dim=1).values < p.max(dim=1).values).all()


def test_sharpen_small_temperature_approaches_one_hot_and_t1_is_identity():
    p = torch.tensor([[0.2, 0.3, 0.5], [0.45, 0.35, 0.2]])
    s = sharpen(p, 0.02)
    assert torch.allclose(s, torch.tensor([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0]]), atol=1e-4)
    assert torch.allclose(sharpen(p, 1.0), p, atol=1e-7)


# --------------------------------------------------------------------------- mixmatch_loss


def naive_mixmatch_loss(logits_x, targets_x, logits_u, targets_u, w):
    """MixMatch's loss written out element by element (Berthelot et al. 2019 Eq. 2-4, reference code's L_u mean)."""
    def softmax(row):
        m = max(row)
        e = [math.exp(z - m) for z in row]
        return [v / sum(e) for v in e]

    lx = 0.0
    for z, t in zip(logits_x.tolist(), targets_x.tolist()):
        p = softmax(z)
        lx += -sum(tk * math.log(pk) for tk, pk in zip(t, p))
    lx /= len(logits_x)
    lu, count = 0.0, 0
    for z, t in zip(logits_u.tolist(), targets_u.tolist()):
        for pk, tk in zip(softmax(z), t):
            lu += (pk - tk) ** 2
            count += 1
    lu /= count  # mean over samples AND classes
    return lx + w * lu, lx, lu


def test_mixmatch_loss_matches_naive_transcription():
    g = torch.Generator().manual_seed(1)
    c = 7
    logits_x, logits_u = torch.randn(6, c, generator=g) * 3, torch.randn(12, c, generator=g) * 3
    targets_x = torch.rand(6, c, generator=g).softmax(dim=1)
    targets_u = torch.rand(12, c, generator=g).softmax(dim=1)
    total, lx, lu = mixmatch_loss(logits_x, targets_x, logits_u, targets_u, 3.5)
    n_total, n_lx, n_lu = naive_mixmatch_loss(logits_x, targets_x, logits_u, targets_u, 3.5)
    assert lx.item() == pytest.approx(n_lx, rel=1e-5)
    assert lu.item() == pytest.approx(n_lu, rel=1e-5)
    assert total.item() == pytest.approx(n_total, rel=1e-5)


def test_mixmatch_loss_analytic_case_equal_logits():
    """Equal logits → softmax = 1/C: L_x = log C for any target summing to 1; one-hot targets give L_u = (C−1)/C²."""
    c, w = 4, 2.0
    logits = torch.zeros(3, c)
    targets = torch.eye(c)[[0, 2, 3]]
    total, lx, lu = mixmatch_loss(logits, targets, logits, targets, w)
    assert lx.item() == pytest.approx(math.log(c), rel=1e-6)
    assert lu.item() == pytest.approx((c - 1) / c**2, rel=1e-6)  # 3/16, not 3/4 (the sum over classes)
    assert total.item() == pytest.approx(math.log(c) + w * (c - 1) / c**2, rel=1e-6)
    # a perfect unlabelled prediction costs nothing: uniform guesses against uniform targets
    _, _, lu0 = mixmatch_loss(logits, targets, logits, torch.full((3, c), 1 / c), w)
    assert lu0.item() == pytest.approx(0.0, abs=1e-12)


def test_mixmatch_loss_weight_only_scales_lu():
    g = torch.Generator().manual_seed(2)
    a = (torch.randn(4, 5, generator=g), torch.eye(5)[[0, 1, 2, 3]], torch.randn(8, 5, generator=g), torch.rand(8, 5, generator=g).softmax(1))
    t0, lx0, lu0 = mixmatch_loss(*a, 0.0)
    t1, lx1, lu1 = mixmatch_loss(*a, 10.0)
    assert t0.item() == pytest.approx(lx0.item())
    assert lx1.item() == pytest.approx(lx0.item()) and lu1.item() == pytest.approx(lu0.item())
    assert (t1 - t0).item() == pytest.approx(10.0 * lu0.item(), rel=1e-5)


# --------------------------------------------------------------------------- PoolSampler


def test_pool_sampler_yields_every_index_once_per_pass_and_reshuffles():
    pool = torch.arange(0, 60, 3)  # 20 non-contiguous indices
    s = PoolSampler(pool, 5, torch.Generator().manual_seed(0))
    orders = []
    for _ in range(6):  # six passes of four batches
        batches = [s.next() for _ in range(4)]
        assert all(len(b) == 5 for b in batches)
        order = torch.cat(batches)
        assert sorted(order.tolist()) == pool.tolist()  # every index once per pass
        orders.append(tuple(order.tolist()))
    assert len(set(orders)) > 1  # reshuffled between passes


def test_pool_sampler_never_repeats_within_a_pass_when_the_batch_does_not_divide_the_pool():
    pool = torch.arange(100, 112)  # 12 indices, batch 5: two full batches a pass
    s = PoolSampler(pool, 5, torch.Generator().manual_seed(1))
    for _ in range(5):
        order = torch.cat([s.next(), s.next()])
        assert len(set(order.tolist())) == 10
        assert set(order.tolist()) <= set(pool.tolist())


def test_pool_sampler_small_pool_still_gives_full_batches():
    pool = torch.tensor([7, 11, 42])
    s = PoolSampler(pool, 8, torch.Generator().manual_seed(0))
    for _ in range(4):
        b = s.next()
        assert len(b) == 8
        assert set(b.tolist()) == {7, 11, 42}  # only the pool, all of it


def test_pool_sampler_empty_pool_is_a_value_error():
    with pytest.raises(ValueError, match="non-empty"):
        PoolSampler(torch.zeros(0, dtype=torch.long), 4, torch.Generator())


# --------------------------------------------------------------------------- mixmatch_epoch

C, SIDE = 4, 8


def tiny_problem(n=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (n, 1, SIDE, SIDE), generator=g, dtype=torch.uint8)
    y = torch.randint(0, C, (n,), generator=g)
    clean = torch.zeros(n, dtype=torch.bool)
    clean[: n // 2] = True
    return x, y, clean


def tiny_model(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(SIDE * SIDE, 16), nn.ReLU(), nn.Linear(16, C))


def run_epoch(model, x, y, clean, *, epoch=0, seed=0, config=None, optimizer=None):
    config = config or MixMatchConfig(iterations=6, batch_size=4, rampup_epochs=10.0)
    optimizer = optimizer or torch.optim.SGD(model.parameters(), lr=0.05)
    normalize = Normalizer([0.5], [0.25], torch.device("cpu"), channels_last=False)
    data = Images(x, y, normalize, C, pad=1)
    return mixmatch_epoch(model, data, clean, optimizer, epoch=epoch, config=config, generator=torch.Generator().manual_seed(seed))


def test_mixmatch_epoch_takes_exactly_the_requested_optimiser_steps():
    x, y, clean = tiny_problem()
    model = tiny_model()
    before = [p.detach().clone() for p in model.parameters()]
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    steps = []
    opt.register_step_post_hook(lambda *a: steps.append(1))
    stats = run_epoch(model, x, y, clean, optimizer=opt, config=MixMatchConfig(iterations=7, batch_size=4, rampup_epochs=10.0))
    assert len(steps) == 7
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
    assert set(stats) == {"loss", "loss_x", "loss_u", "weight_u"}
    assert all(math.isfinite(v) for v in stats.values())


def test_mixmatch_epoch_never_reads_labels_of_the_polluted_pool():
    x, y, clean = tiny_problem()
    # a label of num_classes + 5 crashes one_hot wherever it is read...
    with pytest.raises(RuntimeError):
        torch.nn.functional.one_hot(torch.tensor([C + 5]), C)
    garbage = y.clone()
    garbage[~clean] = C + 5
    run_epoch(tiny_model(), x, garbage, clean)  # ...and D_P's labels are never read
    # the same garbage on one sample of D_C is read: the check above can fail
    bad = y.clone()
    bad[clean.nonzero()[0]] = C + 5
    small_clean = torch.zeros_like(clean)
    small_clean[clean.nonzero()[0]] = True  # a one-sample D_C: its label is read on the first batch
    with pytest.raises(RuntimeError):
        run_epoch(tiny_model(), x, bad, small_clean)


@pytest.mark.parametrize("which", ["clean", "polluted"])
def test_mixmatch_epoch_empty_pool_is_a_value_error(which):
    x, y, _ = tiny_problem()
    clean = torch.zeros(len(x), dtype=torch.bool) if which == "clean" else torch.ones(len(x), dtype=torch.bool)
    with pytest.raises(ValueError, match=r"\|D_C\| = \d+, \|D_P\| = \d+"):
        run_epoch(tiny_model(), x, y, clean)


def test_mixmatch_epoch_ramps_lambda_u_linearly(monkeypatch):
    seen, real = [], semi.mixmatch_rows

    def spy(logits, targets, b, weight_u):
        seen.append((weight_u, b, len(logits) - b))
        return real(logits, targets, b, weight_u)

    monkeypatch.setattr(semi, "mixmatch_rows", spy)
    x, y, clean = tiny_problem()
    config = MixMatchConfig(iterations=4, batch_size=4, lambda_u=15.0, rampup_epochs=10.0)
    stats = run_epoch(tiny_model(), x, y, clean, epoch=2, config=config)
    expected = [15.0 * min(1.0, (2 + it / 4) / 10.0) for it in range(4)]  # 3.0, 3.375, 3.75, 4.125
    assert [w for w, _, _ in seen] == pytest.approx(expected)
    assert stats["weight_u"] == pytest.approx(sum(expected) / 4)  # the epoch mean, 3.5625
    assert all(nx == 4 and nu == 8 for _, nx, nu in seen)  # labelled batch b, unlabelled 2b (two views)
    seen.clear()
    stats = run_epoch(tiny_model(), x, y, clean, epoch=12, config=config)  # past the ramp: λ_u itself
    assert [w for w, _, _ in seen] == pytest.approx([15.0] * 4)
    assert stats["weight_u"] == pytest.approx(15.0)


def test_mixmatch_epoch_is_deterministic_for_a_generator_seed():
    x, y, clean = tiny_problem()
    m1, m2, m3 = tiny_model(), tiny_model(), tiny_model()
    s1 = run_epoch(m1, x, y, clean, seed=5)
    s2 = run_epoch(m2, x, y, clean, seed=5)
    s3 = run_epoch(m3, x, y, clean, seed=6)
    assert s1 == s2
    assert all(torch.equal(a, b) for a, b in zip(m1.state_dict().values(), m2.state_dict().values()))
    assert s1 != s3
    assert any(not torch.equal(a, b) for a, b in zip(m1.state_dict().values(), m3.state_dict().values()))


def test_mixmatch_epoch_learns_the_labelled_pool():
    """Many iterations on a labelled pool whose images encode the class: the model fits D_C."""
    g = torch.Generator().manual_seed(3)
    n = 64
    y = torch.arange(n) % C
    x = torch.randint(0, 40, (n, 1, SIDE, SIDE), generator=g, dtype=torch.uint8)
    for k in range(C):  # class k: a bright block in row-band k
        x[y == k, :, 2 * k:2 * k + 2, :] = 250
    clean = torch.zeros(n, dtype=torch.bool)
    clean[: n // 2] = True  # every class in both pools
    model = tiny_model()
    config = MixMatchConfig(iterations=60, batch_size=8, rampup_epochs=10.0)
    run_epoch(model, x, y, clean, config=config, optimizer=torch.optim.Adam(model.parameters(), lr=0.01))
    normalize = Normalizer([0.5], [0.25], torch.device("cpu"), channels_last=False)
    with torch.no_grad():
        acc = (model(normalize(x)).argmax(1) == y).float().mean().item()
    assert acc > 0.9


def test_mixmatch_rows_weighted_sum_is_the_mixmatch_loss():
    """The one loop descends on Σ weight·row; for MixMatch's rows that is exactly L_x + w·L_u."""
    g = torch.Generator().manual_seed(0)
    b, classes = 5, 4
    logits = torch.randn(3 * b, classes, generator=g)
    targets = torch.softmax(torch.randn(3 * b, classes, generator=g), dim=1)
    rows, weight = mixmatch_rows(logits, targets, b, 7.5)
    total, lx, lu = mixmatch_loss(logits[:b], targets[:b], logits[b:], targets[b:], 7.5)
    torch.testing.assert_close((rows * weight).sum(), total)
    torch.testing.assert_close(rows[:b].mean(), lx)
    torch.testing.assert_close(rows[b:].mean(), lu)
