"""What several defenses share: the MixMatch, SCE and virtual-model option groups, the virtual model's losses, LGA's reweight."""
from __future__ import annotations

import copy
from functools import partial

import torch

from ..losses import cross_entropy, lga_sign, sce_loss
from ..models import last_layers, meta_layers_default, train_only
from ..options import any_of, choice, integer, real
from ..phases import Optim
from ..semi import MixMatchConfig

__all__ = ["META_OPTIONS", "MIXMATCH_OPTIONS", "SCE_OPTIONS", "CLEAN_HARD", "mixmatch_config", "sce", "virtual_model_losses",
           "lga_reweight"]

# The virtual model of the meta-split (002 Eq. 3, §5.1 and B.3; the authors' code where the paper is silent).
META_OPTIONS = (
    integer("meta_epochs", 1, low=1, doc="epochs of the virtual model per stage-3 epoch (002 Fig. 12)"),
    real("meta_lr", 0.015, low=0, closed="neither", doc="lr of the virtual model (002 §5.1; Adam in the authors' code)"),
    any_of("meta_layers", "auto", choice("", "auto", ("auto",)), integer("", 3, low=1),
           doc="last layer groups the virtual model updates; auto = half the feature extractor + the linear layer (002 B.3)"),
    choice("meta_optimizer", "adam", ("adam", "sgd"), doc="optimiser of the virtual model (002 B.3 says SGD; §5.1 and the code Adam)"),
    integer("meta_batch_size", 128, low=1, doc="batch of the virtual model's epoch (the authors' code)"),
)

# MixMatch as the pool operation (002 B.3; 004 §4.5 uses the same).
MIXMATCH_OPTIONS = (
    integer("iterations", 1024, low=1, scales={"classroom": 200, "lab": 800, "smoke": 20}, doc="MixMatch steps an epoch (002 B.3)"),
    integer("mixmatch_batch_size", 64, low=1, doc="MixMatch labelled batch; the unlabelled batch the same, two views (002 B.3)"),
    real("temperature", 0.5, low=0, closed="neither", doc="MixMatch sharpening T (002 B.3)"),
    real("mixup_alpha", 0.75, low=0, closed="neither", doc="MixUp Beta(α, α) (002 B.3)"),
    real("lambda_u", 15.0, low=0, doc="weight of the unlabelled loss, ramped up over the run (002 B.3)"),
)

# The symmetric cross entropy that ranks samples (002 §4.1's L1; 004 §4.4's L2).
SCE_OPTIONS = (
    real("sce_alpha", 0.1, low=0, doc="α of the SCE loss L1 (002 §4.1, 004 appendix I)"),
    real("sce_beta", 1.0, low=0, doc="β of the SCE loss L1"),
)

CLEAN_HARD = real("clean_hard_fraction", 0.1, low=0, high=1, closed="neither",
                  doc="clean-hard samples: this fraction of N, the clean ones of largest L1 (002 §5.2: 5,000 of 50,000)")


def mixmatch_config(o, rampup_epochs: float) -> MixMatchConfig:
    """MixMatch's hyper-parameters from a defense's options (:data:`MIXMATCH_OPTIONS`), λ_u ramped over ``rampup_epochs`` (002 B.3)."""
    return MixMatchConfig(iterations=o.iterations, batch_size=o.mixmatch_batch_size, temperature=o.temperature,
                          alpha=o.mixup_alpha, lambda_u=o.lambda_u, rampup_epochs=float(rampup_epochs))


def sce(o):
    """The SCE loss with a defense's α and β (:data:`SCE_OPTIONS`)."""
    return partial(sce_loss, alpha=o.sce_alpha, beta=o.sce_beta)


def virtual_model_losses(ctx, epoch: int, l1) -> torch.Tensor:
    """L1 under the virtual model θ' after ``meta_epochs`` of CE on the whole poisoned set, updating only the last layers (002 Eq. 3).

    The other layers run in train mode, so their BatchNorm statistics move, as in the authors' code.
    """
    o = ctx.options
    virtual = copy.deepcopy(ctx.model)
    k = meta_layers_default(virtual) if o.meta_layers == "auto" else o.meta_layers
    params = train_only(virtual, last_layers(virtual, k), norm_stats="drift")
    opt = Optim(o.meta_optimizer, o.meta_lr).build(params)  # Adam by default (002 §5.1 and the authors' code; B.3 says SGD)
    for e in range(o.meta_epochs):
        ctx.train_epoch(model=virtual, optimizer=opt, loss_fn=cross_entropy, batch_size=o.meta_batch_size,
                        generator=ctx.stream("virtual model", epoch, e))
    return ctx.score(l1, model=virtual)


def lga_reweight(gamma: float, form: str):
    """LGA (003 Eq. 2) as the one step's reweight: the sign of each loss (or of the batch mean) against γ."""
    return lambda losses, *_: lga_sign(losses, gamma, form=form)
