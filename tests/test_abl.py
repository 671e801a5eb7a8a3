"""Tests of ABL and the LGA loss: the sign against its definition, LGA holding the loss at γ, isolation, unlearning, resume."""
from __future__ import annotations

import pytest
import torch
from torch import nn

import asdkit
from helpers import dies_after_checkpoint
from asdkit import make_config
from asdkit.engine import Images, Normalizer, train_epoch
from asdkit.losses import cross_entropy, lga_loss, lga_sign
from asdkit.records import Record, load_checked

pytestmark = pytest.mark.usefixtures("one_thread")


def test_lga_sign_flips_at_gamma_per_sample_and_per_batch():
    losses = torch.tensor([0.1, 0.5, 0.9, 2.0])
    assert lga_sign(losses, 0.5, form="sample").tolist() == [-1.0, 1.0, 1.0, 1.0]
    assert lga_sign(losses, 0.5, form="batch").tolist() == [1.0] * 4  # mean 0.875 >= 0.5
    assert lga_sign(losses, 1.0, form="batch").tolist() == [-1.0] * 4  # mean 0.875 < 1
    with pytest.raises(ValueError, match="'form' parameter of lga_sign"):
        lga_sign(losses, 0.5, form="nope")


def test_lga_loss_is_the_signed_batch_cross_entropy():
    g = torch.Generator().manual_seed(0)
    logits, labels = torch.randn(8, 3, generator=g), torch.randint(0, 3, (8,), generator=g)
    ce = cross_entropy(logits, labels)
    for gamma in (0.1, ce.mean().item() + 0.1):
        expected = (1.0 if ce.mean() >= gamma else -1.0) * ce.mean()
        torch.testing.assert_close(lga_loss(logits, labels, gamma=gamma), expected)


def _toy(n=256, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 2
    x = (torch.rand(n, 1, 4, 4, generator=g) * 150 + 60 * y.view(-1, 1, 1, 1)).to(torch.uint8)  # overlapping classes
    return Images(x, y, Normalizer((0.5,), (0.3,), torch.device("cpu"), channels_last=False), 2, pad=0)


@pytest.mark.parametrize("form", ["batch", "sample"])
def test_lga_keeps_the_training_loss_near_gamma_where_plain_ce_drives_it_to_zero(form):
    data = _toy()

    def train(reweight):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Flatten(), nn.Linear(16, 2))
        opt = torch.optim.SGD(model.parameters(), lr=0.2)
        for e in range(40):
            result = train_epoch(model, data, torch.arange(len(data)), opt, generator=torch.Generator().manual_seed(e),
                                 batch_size=32, reweight=reweight)
        return result.loss

    assert train(None) < 0.05  # measured 0.022
    assert train(lambda l, *_: lga_sign(l, 0.5, form=form)) == pytest.approx(0.5, abs=0.05)  # measured 0.489 / 0.503


def test_abl_isolates_unlearns_and_lowers_asr_against_no_defense(runs_env, monkeypatch):
    import asdkit.context as context

    calls, real = [], context.train_epoch

    def spy(model, data, index, optimizer, **kw):
        calls.append((index.clone(), None if kw.get("weight") is None else kw["weight"].clone(), kw.get("reweight") is not None))
        return real(model, data, index, optimizer, **kw)

    monkeypatch.setattr(context, "train_epoch", spy)
    summary = asdkit.run(make_config("smoke", defense="abl"), quiet=True)
    rec = Record.load(summary["record"])
    assert rec.metric("phase") == ["isolation"] + ["training"] * 2 + ["unlearning"] * 5
    d_p = ~rec.epoch_array("clean_pool")
    assert int(d_p.sum()) == 100  # 1 % of 10,000
    is_poison = rec.arrays["is_poison"]
    assert summary["tpr"] == pytest.approx(float((d_p & is_poison).sum() / is_poison.sum()))
    assert summary["fpr"] == pytest.approx(float((d_p & ~is_poison).sum() / (~is_poison).sum()))
    isolation, training, unlearning = calls[0], calls[1:3], calls[3:]
    assert isolation[2] and len(isolation[0]) == 10000  # LGA on all of D
    for index, weight, lga in training:  # CE on D \ D_P
        assert not lga and weight is None and set(index.tolist()) == set((~d_p).nonzero().squeeze(1).tolist())
    for index, weight, _ in unlearning:  # ascent on D_P only
        assert set(index.tolist()) == set(d_p.nonzero().squeeze(1).tolist()) and bool((weight == -1).all())
    none = asdkit.run(make_config("smoke", overrides={"train_size": 10000, "budget": 20000}), quiet=True)
    assert summary["asr"] < none["asr"] - 0.3, (summary["asr"], none["asr"])


def test_a_killed_abl_run_resumes_with_its_isolated_set(runs_env, monkeypatch):
    config = make_config("smoke", defense="abl", overrides={"train_size": 3000, "budget": 3000, "defense.unlearn_epochs": 2})
    reference = asdkit.run(config, quiet=True, root=runs_env / "a")
    with dies_after_checkpoint(monkeypatch, 2):  # after the first training epoch: the isolated set lives only in the checkpoint's state
        asdkit.run(config, quiet=True, root=runs_env / "b")
    folder = runs_env / "b" / __import__("pathlib").Path(reference["record"]).name
    assert "isolated" in load_checked(folder / "checkpoint.pt")["state"]
    resumed = asdkit.run(config, quiet=True, root=runs_env / "b")
    a, b = Record.load(reference["record"]), Record.load(resumed["record"])
    assert a.metric("acc") == b.metric("acc") and a.metric("asr") == b.metric("asr")
    assert torch.equal(a.epoch_array("clean_pool"), b.epoch_array("clean_pool"))
