"""ABL — Anti-Backdoor Learning (Li et al. 2021; 002 Section 2.2 and appendix B.3), as three phases on the shared core.

Its phases::

    isolation:   train on D with the LGA loss sign(ℓ − γ)·ℓ (003 Eq. 2) for a few epochs
                 D_P ← the isolation_rate·N samples of lowest CE loss under that model (static)
    training:    train on D \\ D_P with CE (the run's epochs: the budget at classroom scale)
    unlearning:  gradient ascent (weight −1) on D_P with a small SGD lr (002 B.3: 5e-4, 5 epochs)

In the pool framework of 002 (Table 1): pool initialisation by LGA isolation, static pools,
unlearning as the pool operation. The isolated set is D_P ("isolated as poisoned"); the
runner counts TPR and FPR against it.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any

import torch

from ..losses import cross_entropy
from ..options import choice, integer, real
from ..phases import Optim, Phase
from .spec import DefenseSpec
from .pieces import lga_reweight
from .policies import lowest_fraction

OPTIONS = (
    integer("isolation_epochs", 20, low=1, scales={"classroom": 1, "lab": 20, "smoke": 1}, doc="epochs of LGA training before the isolation (002 B.3)"),
    real("isolation_rate", 0.01, low=0, high=1, closed="neither", doc="fraction of D isolated: the lowest-loss samples (002 B.3)"),
    real("gamma", 0.5, low=0, doc="LGA threshold γ (003 Eq. 2; 002 appendix N searches 0-0.5)"),
    choice("lga_form", "batch", ("batch", "sample"), doc="sign of the batch mean (ABL's code) or of each sample (losses.lga_sign)"),
    integer("unlearn_epochs", 5, low=0, doc="epochs of gradient ascent on the isolated set (002 B.3)"),
    real("unlearn_lr", 5e-4, low=0, closed="neither", doc="SGD lr of the unlearning, momentum 0.9 (002 B.3)"),
)


def isolated(ctx) -> torch.Tensor:
    """D_P: the isolation_rate·N samples of lowest CE under the LGA-trained model, chosen once and kept in ctx.state."""
    if "isolated" not in ctx.state:
        ctx.state["isolated"] = lowest_fraction(ctx.score(cross_entropy), ctx.options.isolation_rate)
    return ctx.state["isolated"]


def plan_abl(ctx) -> list[Phase]:
    """Isolation (LGA) → training on the rest → unlearning of the isolated set."""
    o, c, n = ctx.options, ctx.config, ctx.n
    lga = lga_reweight(o.gamma, o.lga_form)

    def isolation(ctx, epoch: int) -> dict[str, Any]:
        result = ctx.train_epoch(reweight=lga, epoch=epoch)
        ctx.log(arrays={"lga_loss": result.per_sample(n)})
        return {"loss": result.loss}

    def training(ctx, epoch: int) -> dict[str, Any]:
        d_p = isolated(ctx)
        ctx.log_pool(~d_p)
        return {"loss": ctx.train_epoch((~d_p).nonzero().squeeze(1), epoch=epoch).loss}

    def unlearning(ctx, epoch: int) -> dict[str, Any]:
        d_p = isolated(ctx)
        ctx.log_pool(~d_p)
        result = ctx.train_epoch(d_p.nonzero().squeeze(1), weight=-torch.ones(n), epoch=epoch)
        return {"loss": result.loss}

    k, b = max(1, round(o.isolation_rate * n)), c.batch_size  # |D_P|, and the batch every phase takes
    return [
        Phase("isolation", o.isolation_epochs, isolation, replace(Optim.from_config(c), schedule="constant", milestones=()), samples=n, batch_size=b),
        Phase("training", ctx.epochs, training, Optim.from_config(c), samples=n - k, batch_size=b),
        Phase("unlearning", o.unlearn_epochs, unlearning, Optim("sgd", o.unlearn_lr, 0.9, c.weight_decay), samples=k, batch_size=b),
    ]


SPEC = DefenseSpec(
    name="abl",
    plan=plan_abl,
    options=OPTIONS,
    summary="ABL: LGA isolation of the lowest-loss 1 %, training on the rest, unlearning of the isolated (Li et al. 2021)",
    presets={
        # 002 B.3: 20 LGA epochs, 70 of training, 5 of unlearning at lr 5e-4. The training phase's schedule is
        # not given in 002; SGD 0.1 divided by 10 at epochs 40 and 60 is ours.
        "paper": dict(epochs=70, milestones=(40, 60)),
        # Smoke: LGA needs enough steps an epoch to learn the trigger before the isolation; on 2,000 images the
        # lowest 1 % are easy clean samples (TPR 0), on 10,000 they are poisoned ones (TPR 10 %, FPR 0) in seconds.
        "smoke": dict(train_size=10000, budget=20000),
    },
)
