"""Split policies: per-sample scores (and labels) in, the boolean mask of the clean pool D_C out.

Pure functions, as in the ASD authors' split functions and cleanlab's rankers: they never
see the ground-truth poison mask, never train, never log. Lower score ⇒ more likely clean
(a low SCE loss means the model already agrees with the observed label; a small loss
*reduction* under the virtual model means the sample is not learnt suspiciously fast).
"""
from __future__ import annotations

import torch

__all__ = ["class_aware_loss_split", "class_agnostic_loss_split", "meta_split", "lowest_fraction", "lowest_count",
           "natural_break", "exact_two_class_break", "natural_breaks_split"]


def _check_scores(scores: torch.Tensor, name: str) -> None:
    if scores.dim() != 1 or not torch.isfinite(scores).all():
        raise ValueError(f"The '{name}' parameter must be a finite 1-D tensor of per-sample scores. Got shape {tuple(scores.shape)}.")


def lowest_fraction(scores: torch.Tensor, rate: float) -> torch.Tensor:
    """Mask of the ``round(rate·N)`` samples with the lowest scores (ties broken by index)."""
    _check_scores(scores, "scores")
    if not 0 < rate <= 1:
        raise ValueError(f"The 'rate' parameter must be a float in the range (0, 1]. Got {rate!r} instead.")
    return lowest_count(scores, int(round(rate * len(scores))))


def lowest_count(scores: torch.Tensor, k: int, *, keep: torch.Tensor | None = None) -> torch.Tensor:
    """Mask of ``keep`` (indices always in) plus the ``k`` lowest-score samples among the others."""
    _check_scores(scores, "scores")
    mask = torch.zeros(len(scores), dtype=torch.bool)
    if keep is not None:
        mask[keep.cpu()] = True
    candidates = (~mask).nonzero().squeeze(1)
    mask[candidates[torch.argsort(scores.float().cpu()[candidates], stable=True)[:max(0, k)]]] = True
    return mask


def class_aware_loss_split(losses: torch.Tensor, labels: torch.Tensor, *, seeds: torch.Tensor, per_class: int) -> torch.Tensor:
    """Stage 1 of ASD (002 Section 4.1, Algorithm 1 lines 6-9): seeds ∪ the ``per_class`` lowest-loss samples of every class.

    ``seeds`` are indices of the clean seed samples (kept in D_C whatever their loss and
    never counted among the loss-guided picks, as in the authors' code); ``per_class``
    is T/t × n at epoch T. A class with fewer candidates contributes all of them.
    """
    _check_scores(losses, "losses")
    if per_class < 0:
        raise ValueError(f"The 'per_class' parameter must be a non-negative int. Got {per_class!r} instead.")
    labels = labels.cpu()
    mask = torch.zeros(len(losses), dtype=torch.bool)
    mask[seeds.cpu()] = True
    if per_class == 0:
        return mask
    # Sort by (label, loss) once; the first per_class candidates of each label block are picked.
    candidates = (~mask).nonzero().squeeze(1)
    cand_loss, cand_label = losses.float().cpu()[candidates], labels[candidates]
    order = torch.argsort(cand_loss, stable=True)
    order = order[torch.argsort(cand_label[order], stable=True)]
    sorted_label = cand_label[order]
    block_start = torch.searchsorted(sorted_label, sorted_label, right=False)
    rank_in_class = torch.arange(len(order)) - block_start
    mask[candidates[order[rank_in_class < per_class]]] = True
    return mask


def class_agnostic_loss_split(losses: torch.Tensor, *, rate: float = 0.5) -> torch.Tensor:
    """Stage 2 of ASD (002 Section 4.1, Algorithm 1 lines 13-15): the α = ``rate`` lowest-loss samples of the whole set."""
    return lowest_fraction(losses, rate)


def meta_split(loss_reduction: torch.Tensor, *, rate: float = 0.5) -> torch.Tensor:
    """Stage 3 of ASD (002 Section 4.2, Eq. 3, Algorithm 1 lines 18-23): the γ = ``rate`` samples with the least loss reduction.

    ``loss_reduction`` = L1(f_θ) − L1(f_θ'), where θ' is the virtual model after one epoch
    of supervised training on the whole poisoned set: poisoned samples are learnt fast,
    so their reduction is large; clean hard samples reduce little.
    """
    _check_scores(loss_reduction, "loss_reduction")
    return lowest_fraction(loss_reduction, rate)


def exact_two_class_break(scores: torch.Tensor) -> float:
    """The two-class natural break by sorting and prefix sums: the upper bound of the low class that minimises the within-class SSE.

    Two-class Fisher-Jenks is exact in 1-D: over the N − 1 cut positions of the sorted
    scores, SSE(k) = Σx² − (Σ_low)²/k − (Σ_high)²/(N − k). O(N log N); the cross-check of
    :func:`natural_break` (jenkspy).
    """
    _check_scores(scores, "scores")
    s = torch.sort(scores.double().cpu()).values
    n = len(s)
    if n < 2:
        raise ValueError(f"A two-class break needs at least 2 scores. Got {n}.")
    prefix = torch.cumsum(s, 0)
    k = torch.arange(1, n, dtype=torch.float64)
    low, total = prefix[:-1], prefix[-1]
    sse = -(low ** 2) / k - ((total - low) ** 2) / (n - k)  # Σx² is the same for every cut
    return float(s[int(torch.argmin(sse))])


def natural_break(scores: torch.Tensor, *, method: str = "jenks") -> float:
    """The break between two natural classes of ``scores`` (003 Eq. 8): jenkspy's Fisher-Jenks, or the exact sort-and-prefix-sum split.

    Returns the upper bound of the low class (jenkspy's ``breaks[1]``).
    """
    if method == "exact":
        return exact_two_class_break(scores)
    if method != "jenks":
        raise ValueError(f"The 'method' parameter of natural_break must be 'jenks' or 'exact'. Got {method!r} instead.")
    import jenkspy

    _check_scores(scores, "scores")
    return float(jenkspy.jenks_breaks(scores.double().cpu().numpy(), n_classes=2)[1])


def natural_breaks_split(scores: torch.Tensor, *, method: str = "jenks") -> tuple[torch.Tensor, float]:
    """PIPD's isolation (003 Section 3.2): the high-score natural class is flagged as poisoned; returns (the clean-pool mask, the break).

    Tie rule: a score equal to the break belongs to the low class (the break is its upper
    bound), so D_C = scores <= break. The authors' code flags scores >= break, which also
    flags the low class's largest sample (an off-by-one inherited from NONE).
    """
    cut = natural_break(scores, method=method)
    return scores.cpu() <= cut, cut
