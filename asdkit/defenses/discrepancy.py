"""PIPD's per-channel activation discrepancy (003 Section 3.2, Eq. 4-7): which channels the poisoned subset drives.

For a layer's channel j with activation a_j(x) (the global max of the channel, as the
authors' code pools), given a suspected-poisoned subset P_p and a suspected-benign P_b:

    d_j = max_{x ∈ P_p} a_j(x) − (mean_{x ∈ P_b} a_j(x) + β·std_{x ∈ P_b} a_j(x))      (Eq. 4-5; β = 3, population std)

The top K = ceil(f·C) channels of every layer by d (f = 0.04 in the authors' code) are kept,
and a sample's score is the sum of its raw activations on them (Eq. 7): the higher, the more
it looks like P_p. Pure tensor functions: activations and masks in, numbers out.
"""
from __future__ import annotations

import math

import torch

__all__ = ["channel_discrepancy", "top_channels", "discrepancy_scores"]


def channel_discrepancy(poisoned: torch.Tensor, benign: torch.Tensor, *, beta: float = 3.0) -> torch.Tensor:
    """003 Eq. 4-5 for every channel: max over P_p − (mean + β·std over P_b); ``poisoned``/``benign`` are N × C activations.

    Returns a C-vector; a large value means the suspected-poisoned samples drive the channel
    far beyond anything the benign ones do. std is the population std (ddof 0), as the code.
    """
    if poisoned.dim() != 2 or benign.dim() != 2 or poisoned.shape[1] != benign.shape[1] or not len(poisoned) or not len(benign):
        raise ValueError(f"channel_discrepancy needs two non-empty N × C activation tensors with the same C. "
                         f"Got {tuple(poisoned.shape)} and {tuple(benign.shape)}.")
    b = benign.double()
    return (poisoned.double().amax(dim=0) - (b.mean(dim=0) + beta * b.std(dim=0, unbiased=False))).float()


def top_channels(discrepancy: torch.Tensor, fraction: float) -> torch.Tensor:
    """Indices of the ceil(fraction·C) channels of largest discrepancy, largest first (ties by index)."""
    if not 0 < fraction <= 1:
        raise ValueError(f"The 'fraction' parameter of top_channels must be a float in (0, 1]. Got {fraction!r} instead.")
    k = max(1, math.ceil(fraction * len(discrepancy)))
    return torch.argsort(-discrepancy, stable=True)[:k]


def discrepancy_scores(activations: dict[str, torch.Tensor], poisoned: torch.Tensor, benign: torch.Tensor, *,
                       beta: float = 3.0, fraction: float = 0.04) -> tuple[torch.Tensor, dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """One-step isolation's score (003 Eq. 4-7): per layer the top channels by discrepancy, a sample's score their summed activations.

    ``poisoned``/``benign`` are boolean masks over the samples (P_p, P_b). Returns the N
    scores (higher ⇒ more likely poisoned), the chosen channels and every channel's
    discrepancy, per layer.
    """
    scores = None
    chosen, discrepancies = {}, {}
    for name, a in activations.items():
        d = channel_discrepancy(a[poisoned], a[benign], beta=beta)
        top = top_channels(d, fraction)
        chosen[name], discrepancies[name] = top, d
        part = a[:, top].double().sum(dim=1)
        scores = part if scores is None else scores + part
    if scores is None:
        raise ValueError("discrepancy_scores needs the activations of at least one layer")
    return scores.float(), chosen, discrepancies
