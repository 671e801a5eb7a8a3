"""Semi-supervised pool operations: MixMatch, with the place for UDA and ReMixMatch.

ASD (002 Eq. 2, appendix J) and DBD (004 Section 3.3) train on the clean pool D_C with its
labels and on the polluted pool D_P without them. :func:`mixmatch_epoch` is one epoch of
MixMatch (Berthelot et al. 2019) with the settings of 002 appendix B.3: K = 2 augmentations,
sharpening T = 0.5, MixUp Beta(0.75, 0.75), λ_u = 15 ramped up linearly over the run.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

import torch
import torch.nn.functional as F
from torch import nn

from .engine import Images, Objective, Terms, train_steps

__all__ = ["MixMatchConfig", "sharpen", "mixmatch_loss", "mixmatch_epoch", "mixmatch_objective", "mixmatch_rows", "SEMI_METHODS", "PoolSampler"]


@dataclass(frozen=True)
class MixMatchConfig:
    """MixMatch hyper-parameters (002 appendix B.3 / J; the ASD authors' code)."""

    iterations: int = 1024  # optimiser steps per epoch (the authors' train_iteration)
    batch_size: int = 64  # labelled batch; the unlabelled batch has the same size, two views each
    temperature: float = 0.5  # sharpening T
    alpha: float = 0.75  # MixUp Beta(α, α)
    lambda_u: float = 15.0  # weight of the unlabelled loss
    rampup_epochs: float = 120.0  # λ_u ramps up linearly over this many epochs (the whole run)


def sharpen(p: torch.Tensor, temperature: float) -> torch.Tensor:
    """MixMatch's sharpening: p_k^{1/T} / Σ_j p_j^{1/T} (Berthelot et al. 2019, Eq. 7)."""
    pt = p ** (1.0 / temperature)
    return pt / pt.sum(dim=1, keepdim=True)


def mixmatch_loss(logits_x: torch.Tensor, targets_x: torch.Tensor, logits_u: torch.Tensor, targets_u: torch.Tensor,
                  weight_u: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """L = L_x + w·L_u: soft-target cross-entropy on mixed labelled samples, squared error on mixed unlabelled ones.

    L_u is the mean over samples *and classes* of (softmax − target)², as in MixMatch's
    reference code and the ASD authors' copy of it. Returns (L, L_x, L_u).
    """
    lx = -(F.log_softmax(logits_x.float(), dim=1) * targets_x).sum(dim=1).mean()
    lu = ((F.softmax(logits_u.float(), dim=1) - targets_u) ** 2).mean()
    return lx + weight_u * lu, lx, lu


def mixmatch_rows(logits: torch.Tensor, targets: torch.Tensor, b: int, weight_u: float) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`mixmatch_loss` as rows and weights for the one loop: Σ weight·row = L_x + w·L_u.

    The first ``b`` rows are labelled (soft-target CE, weight 1/b); the rest unlabelled
    (squared error averaged over classes, weight w / their number).
    """
    logits = logits.float()
    lx = -(F.log_softmax(logits[:b], dim=1) * targets[:b]).sum(dim=1)
    lu = ((F.softmax(logits[b:], dim=1) - targets[b:]) ** 2).mean(dim=1)
    weight = torch.cat([torch.full((b,), 1.0 / b, device=logits.device), torch.full((len(lu),), weight_u / max(1, len(lu)), device=logits.device)])
    return torch.cat([lx, lu]), weight


class PoolSampler:
    """Endless shuffled batches from one pool (an index tensor), reshuffled at every pass, like a re-iterated loader."""

    def __init__(self, index: torch.Tensor, batch_size: int, generator: torch.Generator) -> None:
        if len(index) == 0:
            raise ValueError("PoolSampler needs a non-empty pool")
        self.index, self.batch_size, self.generator = index, batch_size, generator
        self._order, self._pos = index[:0], 0

    def next(self) -> torch.Tensor:
        if self._pos + self.batch_size > len(self._order):
            self._order = self.index[torch.randperm(len(self.index), generator=self.generator)]
            if len(self._order) < self.batch_size:  # tiny pool: repeat it to fill one batch
                reps = -(-self.batch_size // len(self._order))
                self._order = self._order.repeat(reps)
            self._pos = 0
        batch = self._order[self._pos:self._pos + self.batch_size]
        self._pos += self.batch_size
        return batch


def mixmatch_objective(data: Images, *, config: MixMatchConfig, epoch: int, generator: torch.Generator) -> Objective:
    """MixMatch's step as an objective of the one loop: a batch is (iteration, labelled indices, unlabelled indices).

    Label guessing averages the softmax of K = 2 augmented views (model in train mode, no
    gradient, as in the authors' code) and sharpens it; one MixUp with λ' = max(λ, 1 − λ)
    mixes the concatenated [labelled, view 1, view 2] batch with a random permutation of
    itself; the mixed batch goes through the model in a single forward pass, so every
    BatchNorm batch holds labelled and unlabelled samples together (what the reference
    code's "interleave" achieves with three passes). Rows: b labelled (soft-target CE,
    weight 1/b) and 2b unlabelled (squared error averaged over classes, weight λ_u/2b),
    so Σ weight·loss = L_x + λ_u·L_u (:func:`mixmatch_loss`).
    """
    b = config.batch_size
    mixup_rng = np.random.default_rng(int(torch.randint(0, 2**62, (1,), generator=generator)))

    def objective(model: nn.Module, batch: tuple[int, torch.Tensor, torch.Tensor]) -> Terms:
        it, il, iu = batch
        il, iu = il.to(data.device), iu.to(data.device)
        xl = data.view(il, generator)
        u1, u2 = data.view(iu, generator), data.view(iu, generator)
        with torch.no_grad():
            p = (F.softmax(model(u1).float(), dim=1) + F.softmax(model(u2).float(), dim=1)) / 2
            targets_u = sharpen(p, config.temperature)
        targets_x = F.one_hot(data.y[il], data.num_classes).float()
        all_x, all_t = torch.cat([xl, u1, u2]), torch.cat([targets_x, targets_u, targets_u])
        lam = float(mixup_rng.beta(config.alpha, config.alpha))
        lam = max(lam, 1 - lam)
        perm = torch.randperm(len(all_x), generator=generator).to(data.device)
        mixed_x = lam * all_x + (1 - lam) * all_x[perm]
        mixed_t = lam * all_t + (1 - lam) * all_t[perm]
        weight_u = config.lambda_u * min(1.0, (epoch + it / config.iterations) / config.rampup_epochs)
        rows, weight = mixmatch_rows(model(mixed_x), mixed_t, b, weight_u)
        return Terms(rows, weight, logs={"loss_x": rows[:b].detach().mean(), "loss_u": rows[b:].detach().mean(), "weight_u": weight_u})

    return objective


def mixmatch_epoch(model: nn.Module, data: Images, clean_pool: torch.Tensor, optimizer: torch.optim.Optimizer, *, epoch: int,
                   config: MixMatchConfig, generator: torch.Generator, scheduler=None, average=None, progress=None,
                   precision: str = "fp32") -> dict[str, float]:
    """One epoch of MixMatch: D_C = ``data[clean_pool]`` with labels, D_P = the rest without (002 Eq. 2).

    ``clean_pool`` is a boolean mask over the training set; ``config.iterations`` steps of
    :func:`mixmatch_objective` through the one loop (label guessing too in bfloat16 under ``precision="bf16"``). Returns the epoch means of L, L_x, L_u
    and the λ_u weight.
    """
    labelled = clean_pool.nonzero().squeeze(1)
    unlabelled = (~clean_pool).nonzero().squeeze(1)
    if len(labelled) == 0 or len(unlabelled) == 0:
        raise ValueError(f"MixMatch needs both pools non-empty; got |D_C| = {len(labelled)}, |D_P| = {len(unlabelled)}")
    lab = PoolSampler(labelled, config.batch_size, generator)
    unl = PoolSampler(unlabelled, config.batch_size, generator)
    steps = ((it, lab.next(), unl.next()) for it in range(config.iterations))
    result = train_steps(model, steps, mixmatch_objective(data, config=config, epoch=epoch, generator=generator), optimizer,
                         scheduler=scheduler, average=average, progress=progress, precision=precision)
    return {"loss": result.loss, **result.logs}


# The semi-supervised methods of 002 Table 4. UDA and ReMixMatch plug in here with the same signature.
SEMI_METHODS = {"mixmatch": mixmatch_epoch}
