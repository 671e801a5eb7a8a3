"""Per-sample losses of the papers. Each maps (logits, labels) to an N-vector."""
from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["cross_entropy", "sce_loss", "lga_sign", "lga_loss", "LOSSES", "get_loss"]


def cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-sample cross-entropy (002's L2, the virtual model's loss in Eq. 3)."""
    return F.cross_entropy(logits.float(), labels, reduction="none")


def sce_loss(logits: torch.Tensor, labels: torch.Tensor, *, alpha: float = 0.1, beta: float = 1.0, clamp: float = 1e-4) -> torch.Tensor:
    """Symmetric cross-entropy α·CE + β·RCE (Wang et al. 2019; 004 appendix I; 002's L1).

    RCE = −Σ_k p_k log q_k, with the one-hot label q clamped to [``clamp``, 1] so that
    log 0 = log 1e-4 (the authors' A = −9.21) and the prediction p clamped to [1e-7, 1].
    Defaults α = 0.1, β = 1 as in the ASD and DBD code. A lower value means the model
    agrees with the label more.
    """
    logits = logits.float()
    ce = F.cross_entropy(logits, labels, reduction="none")
    p = F.softmax(logits, dim=1).clamp(min=1e-7, max=1.0)
    q = F.one_hot(labels, logits.shape[1]).float().clamp(min=clamp, max=1.0)
    rce = -(p * q.log()).sum(dim=1)
    return alpha * ce + beta * rce


def lga_sign(losses: torch.Tensor, gamma: float = 0.5, *, form: str = "batch") -> torch.Tensor:
    """The sign of local gradient ascent (ABL, Li et al. 2021; 003 Eq. 2): +1 descends a loss above γ, −1 ascends one below.

    ``form="batch"``: one sign for the batch, sign(mean ℓ − γ), as in ABL's code (and 003's
    printed E[sign(ℓ − γ)]·ℓ read at batch level): the *mean* loss is held at γ, so samples
    learnt fast (the poisoned ones) fall far below it while slow ones stay above.
    ``form="sample"``: sign(ℓ_i − γ) for each sample, the per-sample reading of the
    expectation, which holds every loss near γ. sign(0) is taken as +1.
    """
    if form == "batch":
        s = torch.where(losses.mean() >= gamma, 1.0, -1.0)
        return s.expand_as(losses).to(losses.dtype)
    if form == "sample":
        return torch.where(losses >= gamma, 1.0, -1.0).to(losses.dtype)
    raise ValueError(f"The 'form' parameter of lga_sign must be 'batch' or 'sample'. Got {form!r} instead.")


def lga_loss(logits: torch.Tensor, labels: torch.Tensor, *, gamma: float = 0.5, form: str = "batch") -> torch.Tensor:
    """The LGA objective of a batch (003 Eq. 2): mean over the batch of lga_sign(ℓ)·ℓ, ℓ the per-sample cross-entropy."""
    ce = cross_entropy(logits, labels)
    return (lga_sign(ce.detach(), gamma, form=form) * ce).mean()


LOSSES = {"ce": cross_entropy, "sce": sce_loss}


def get_loss(name: str):
    """A loss by its name in the papers (``ce`` or ``sce``)."""
    if name not in LOSSES:
        raise ValueError(f"The 'loss' parameter must be one of {sorted(LOSSES)}. Got {name!r} instead.")
    return LOSSES[name]
