"""Tests of PIPD's pieces: channel discrepancy (003 Eq. 4-7) against a naive transcription and a planted trigger; natural breaks."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from asdkit.attacks import make_attack
from asdkit.defenses.discrepancy import channel_discrepancy, discrepancy_scores, top_channels
from asdkit.defenses.policies import exact_two_class_break, natural_break, natural_breaks_split
from asdkit.models import channel_activations

pytestmark = pytest.mark.usefixtures("one_thread")


def test_channel_discrepancy_matches_the_equation_written_naively():
    g = torch.Generator().manual_seed(0)
    p, b = torch.randn(7, 5, generator=g), torch.randn(40, 5, generator=g)
    d = channel_discrepancy(p, b, beta=3.0)
    for j in range(5):
        naive = p[:, j].max().item() - (np.mean(b[:, j].numpy()) + 3.0 * np.std(b[:, j].numpy()))  # population std
        assert d[j].item() == pytest.approx(naive, abs=1e-5)
    with pytest.raises(ValueError, match="same C"):
        channel_discrepancy(p, b[:, :4])


def test_top_channels_takes_ceil_fraction_largest_first():
    d = torch.tensor([0.1, 5.0, -1.0, 3.0, 3.0] + [0.0] * 45)
    assert top_channels(d, 0.04).tolist() == [1, 3]  # ceil(0.04 · 50) = 2; the tie 3/4 goes to the lower index
    assert top_channels(d, 0.001).tolist() == [1]  # at least one
    with pytest.raises(ValueError, match="'fraction'"):
        top_channels(d, 0)


def test_scores_are_the_summed_activations_of_the_chosen_channels():
    a = {"l1": torch.tensor([[1.0, 9.0], [1.0, 0.0], [2.0, 1.0]]), "l2": torch.tensor([[0.0, 4.0, 1.0], [1.0, 0.0, 0.0], [0.5, 0.0, 0.0]])}
    poisoned = torch.tensor([True, False, False])
    scores, chosen, d = discrepancy_scores(a, poisoned, ~poisoned, beta=1.0, fraction=0.3)
    assert chosen["l1"].tolist() == [1] and chosen["l2"].tolist() == [1]
    assert scores.tolist() == [13.0, 0.0, 1.0]
    assert set(d) == {"l1", "l2"} and d["l1"].shape == (2,)


def test_the_discrepancy_picks_the_channel_a_planted_trigger_drives():
    """A conv layer whose channel 2 detects a bright corner patch: BadNets-triggered images drive exactly that channel."""
    torch.manual_seed(0)
    conv = nn.Conv2d(1, 4, 3, padding=1, bias=False)
    with torch.no_grad():
        conv.weight.mul_(0.1)
        conv.weight[2] = 1.0  # sums a bright 3x3 neighbourhood
    model = nn.Sequential(conv)
    g = torch.Generator().manual_seed(1)
    x = torch.randint(0, 60, (200, 1, 16, 16), generator=g, dtype=torch.uint8)
    poisoned = torch.zeros(200, dtype=torch.bool)
    poisoned[:20] = True
    x[poisoned] = make_attack("badnets", (1, 16, 16), size=3).apply(x[poisoned])
    acts = channel_activations(model, x, ["0"], normalize=lambda t: t.float() / 255)
    d = channel_discrepancy(acts["0"][poisoned[:200]][:5], acts["0"][~poisoned])  # a 5-sample P_p, as PIPD's 1 %
    assert top_channels(d, 0.25).tolist() == [2]
    scores, _, _ = discrepancy_scores(acts, poisoned & (torch.arange(200) < 5), ~poisoned, fraction=0.25)
    mask, _ = natural_breaks_split(scores)
    assert torch.equal(~mask, poisoned)  # every triggered image isolated, nothing else


def _bimodal(n, k, seed):
    g = np.random.default_rng(seed)
    return torch.tensor(np.concatenate([g.normal(0, 1, n - k), g.normal(8, 1, k)]))[torch.randperm(n)]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_jenks_splits_a_bimodal_score_exactly_as_the_exact_split(seed):
    scores = _bimodal(2000, 300, seed)
    assert natural_break(scores) == exact_two_class_break(scores)
    mask, cut = natural_breaks_split(scores, method="exact")
    jmask, jcut = natural_breaks_split(scores)
    assert torch.equal(mask, jmask) and cut == jcut
    assert int((~mask).sum()) == 300 and bool((scores[~mask] > 4).all())


def test_the_tie_at_the_break_goes_to_the_low_class():
    scores = torch.tensor([0.0, 0.0, 1.0, 1.0, 5.0, 5.0])
    for method in ("jenks", "exact"):
        mask, cut = natural_breaks_split(scores, method=method)
        assert cut == 1.0 and mask.tolist() == [True, True, True, True, False, False]
    with pytest.raises(ValueError, match="'method'"):
        natural_break(scores, method="kmeans")
