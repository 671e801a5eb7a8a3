"""DBD — backdoor defense by Decoupling the training process (004, Figure 2), as three phases on the shared core.

    simclr:    SimCLR on the label-removed poisoned set D (004 §4.2): the whole network and a
               projection head learn from two views of every image, NT-Xent τ = 0.5
    head:      the backbone frozen (BatchNorm statistics too), a linear head fitted on D with
               the SCE loss, α 0.1, β 1 (004 §4.4: label-noise learning; ``head_loss=ce`` is
               Fig. 3's and Table 3's CE variant)
    finetune:  every epoch, the α = 50 % of D of lowest SCE loss are labelled, the rest
               unlabelled (004 §4.4; re-filtered every epoch, appendix B.3); MixMatch on the
               whole model (004 §4.5, the same ``asdkit.semi`` as ASD)

``--set defense.split=meta`` swaps the filter for ASD's meta-split (002 Figs. 5a and 9).
Differences from the authors' code, on purpose: the head phase freezes the backbone's
BatchNorm statistics (the code's typo ``require_grad`` and ``train()`` mode let them drift);
the filter scores the images as they are, not an augmented view; the fine-tuning has its own
Adam (the code reuses the head phase's). A SimCLR backbone is cached under a key of
everything it depends on, so runs that differ only after SimCLR reuse it.
"""
from __future__ import annotations

from typing import Any

import torch

from ..engine import batches
from ..losses import cross_entropy
from ..options import choice, flag, integer, real
from ..phases import Optim, Phase, Product
from ..semi import SEMI_METHODS
from ..ssl import ProjectionHead, ViewConfig, linear_probe_accuracy, simclr_objective
from .pieces import CLEAN_HARD, META_OPTIONS, MIXMATCH_OPTIONS, SCE_OPTIONS, mixmatch_config, sce, virtual_model_losses
from .policies import lowest_fraction, meta_split
from .spec import DefenseSpec

OPTIONS = (
    # stage 1: SimCLR (004 appendix I; the authors' code for what the paper leaves out)
    integer("simclr_epochs", 100, low=0, scales={"classroom": 20, "lab": 100, "smoke": 2}, doc="SimCLR epochs (004 appendix B.3: 100)"),
    integer("simclr_horizon", 1000, low=0, scales={"classroom": 0, "smoke": 0},
            doc="epochs the cosine schedule spans; 0 = simclr_epochs (the authors' epoch-100 backbone of 1,000)"),
    integer("simclr_batch_size", 512, low=2, scales={"classroom": 256, "smoke": 128}, doc="SimCLR batch (the authors' 512)"),
    real("simclr_lr", 0.4, low=0, closed="neither", doc="SGD lr of SimCLR, momentum 0.9 (the authors' 0.4)"),
    real("simclr_weight_decay", 1e-4, low=0, doc="SimCLR weight decay (the authors' 1e-4)"),
    real("tau", 0.5, low=0, closed="neither", doc="NT-Xent temperature τ (the authors' 0.5)"),
    choice("anchors", "both", ("both", "view1"), doc="NT-Xent anchors: both views (SimCLR) or view 1 only (the authors' loss)"),
    integer("projection_dim", 128, low=1, doc="output of the projection head (SimCLR: 128)"),
    flag("cache", True, doc="reuse a finished SimCLR backbone of the same data and SimCLR options"),
    # stage 2: the linear head with SCE
    integer("head_epochs", 10, low=1, doc="epochs of the linear head (004 appendix B.3: 10)"),
    real("head_lr", 0.002, low=0, closed="neither", doc="Adam lr of the linear head (004 appendix B.3)"),
    integer("head_batch_size", 128, low=1, doc="batch of the linear head (004 appendix B.3)"),
    *SCE_OPTIONS,
    choice("head_loss", "sce", ("sce", "ce"), doc="L2, the head's loss and the filter's: SCE (DBD) or CE (004 Fig. 3 and Table 3's 'SS with CE')"),
    # stage 3: filtering and MixMatch
    real("filter_rate", 0.5, low=0, high=1, closed="neither", doc="α: the share of D labelled, lowest SCE first (004 §5.1)"),
    choice("split", "loss", ("loss", "meta"), doc="loss: DBD's filter; meta: ASD's meta-split on the same losses (002 Fig. 5a)"),
    integer("finetune_epochs", 190, low=1, scales={"classroom": 4, "lab": 6, "smoke": 2}, doc="MixMatch epochs (004 appendix B.3: 190)"),
    real("finetune_lr", 0.002, low=0, closed="neither", doc="Adam lr of the fine-tuning (004 appendix B.3)"),
    *MIXMATCH_OPTIONS,
    CLEAN_HARD,
    *META_OPTIONS,
    integer("feature_sample", 2000, low=0, doc="training samples whose backbone features the record keeps (004 Fig. 1's t-SNE)"),
)

# what a SimCLR backbone depends on beyond the poisoned set and the network: the product's key (004 appendix I)
SIMCLR_OPTIONS = ("simclr_epochs", "simclr_horizon", "simclr_batch_size", "simclr_lr", "simclr_weight_decay", "tau", "anchors",
                  "projection_dim")


def backbone(config, o) -> Product | None:
    """The SimCLR backbone as a cached product of the poisoned set, the network and the SimCLR options (None: ``cache`` off)."""
    return Product.of(config, "simclr", {k: o[k] for k in SIMCLR_OPTIONS}, state=("simclr_curve",)) if o.cache else None


def simclr_epoch(ctx, epoch: int) -> dict[str, Any]:
    """004 §4.2: one epoch of SimCLR on the label-removed set; the linear probe of the backbone on clean test images after it."""
    o, test = ctx.options, ctx.evaluator
    curve = ctx.state.setdefault("simclr_curve", {"loss": [], "probe_acc": [], "seconds": []})
    if epoch == 0:  # the probe of the untrained network: the baseline the SimCLR curve grows from
        curve["probe_before"] = [linear_probe_accuracy(ctx.features(test.x), test.y)]
    steps = batches(torch.arange(ctx.n), o.simclr_batch_size, generator=ctx.stream("batches", epoch), drop_last=True)
    result = ctx.train_steps(steps, simclr_objective(ctx.data, generator=ctx.stream("views", epoch), temperature=o.tau,
                                                     anchors=o.anchors, views=ViewConfig()))
    probe = linear_probe_accuracy(ctx.features(test.x), test.y)
    curve["loss"].append(result.loss)
    curve["probe_acc"].append(probe)
    curve["seconds"].append(result.seconds)
    if epoch == o.simclr_epochs - 1:  # the backbone stage 2 uses
        backbone_done(ctx, reused=False)
    return {"loss": result.loss, "probe_acc": probe}


def backbone_done(ctx, *, reused: bool) -> None:
    """The SimCLR curve into the record (trained here or by the run that cached the backbone), its features for 004 Fig. 1."""
    tensors = {k: torch.tensor(v) for k, v in ctx.state["simclr_curve"].items()}
    ctx.snapshot("simclr", reused=torch.tensor(int(reused)), **tensors)
    ctx.state.update(simclr_seconds=float(tensors["seconds"].sum()), simclr_reused=reused)
    if not reused and ctx.options.feature_sample:  # a reused one's are stored when the head starts (not in a pre-flight's plan)
        ctx.snapshot_features("simclr_features", ctx.options.feature_sample)


def plan_dbd(ctx) -> list[Phase]:
    """004 Figure 2: SimCLR → linear head with SCE → filtered MixMatch fine-tuning (or a cached backbone, then the last two)."""
    o, c, n = ctx.options, ctx.config, ctx.n
    l2 = sce(o) if o.head_loss == "sce" else cross_entropy  # 004 §4.4's L2: the head is fitted with it, the filter ranks by it
    mm = mixmatch_config(o, o.finetune_epochs)
    ctx.attach("projection", lambda: ProjectionHead(ctx.model.linear.in_features, o.projection_dim))
    product = backbone(c, o)
    reuse = product is not None and ctx.reuse(product)
    if reuse:
        backbone_done(ctx, reused=True)

    def head(ctx, epoch: int) -> dict[str, Any]:
        if reuse and epoch == 0 and o.feature_sample:  # the cached backbone's features (004 Fig. 1)
            ctx.snapshot_features("simclr_features", o.feature_sample)
        result = ctx.train_epoch(loss_fn=l2, epoch=epoch, batch_size=o.head_batch_size)
        if epoch == o.head_epochs - 1:  # 004 Fig. 3: the stage-2 losses of every sample
            ctx.snapshot_losses("stage2", sce=sce(o))
        return {"loss": result.loss}

    def finetune(ctx, epoch: int) -> dict[str, Any]:
        losses = ctx.score(l2)  # L2 (SCE) of the current model on every sample, re-filtered every epoch (004 appendix B.3)
        if o.split == "meta":  # 002 Fig. 5a: ASD's meta-split on the same losses
            reduction = losses - virtual_model_losses(ctx, epoch, l2)
            labelled = meta_split(reduction, rate=o.filter_rate)
            ctx.log(arrays={"loss_reduction": reduction})
        else:
            labelled = lowest_fraction(losses, o.filter_rate)
        ctx.log_pool(labelled, score=losses, hard_fraction=o.clean_hard_fraction)
        ctx.log(arrays={f"{o.head_loss}_loss": losses})
        return ctx.semi(SEMI_METHODS["mixmatch"], ctx.data, labelled, epoch=epoch, config=mm)

    simclr = Optim("sgd", o.simclr_lr, 0.9, o.simclr_weight_decay, "cosine", horizon=float(o.simclr_horizon))
    return [
        Phase("simclr", 0 if reuse else o.simclr_epochs, simclr_epoch, simclr, samples=n, batch_size=o.simclr_batch_size,
              drop_last=True, evaluate=False, product=product),
        Phase("head", o.head_epochs, head, Optim("adam", o.head_lr), samples=n, batch_size=o.head_batch_size, train="head"),
        # the authors' λ_u ramp counts the head's epochs too: it starts at head/finetune epochs of full weight
        Phase("finetune", o.finetune_epochs, finetune, Optim("adam", o.finetune_lr), steps=o.iterations, first_epoch=o.head_epochs),
    ]


def check(ctx) -> None:
    """What needs the data: a SimCLR batch that fits the set, a filtered pool that leaves both pools non-empty."""
    o = ctx.options
    if o.simclr_epochs and o.simclr_batch_size > ctx.n:
        raise ValueError(f"The 'simclr_batch_size' option of dbd must be an int in [2, {ctx.n}] (the training set). "
                         f"Got {o.simclr_batch_size} instead.")
    if not 1 <= round(o.filter_rate * ctx.n) < ctx.n:
        raise ValueError(f"The 'filter_rate' option of dbd labels round({o.filter_rate} × {ctx.n}) samples; both pools must be "
                         "non-empty. Give a rate in (0, 1) that leaves samples on each side.")
    if not hasattr(ctx.model, "linear") or not hasattr(ctx.model, "features"):
        raise ValueError(f"DBD needs a model with a 'features' backbone and a 'linear' head; {ctx.config.model!r} has not.")


def finish(ctx) -> dict[str, Any]:
    """The final losses; the projection head leaves the saved model (a plain classifier, like every other run's)."""
    ctx.snapshot_losses("final", sce=sce(ctx.options))
    del ctx.model.projection
    return {"simclr_reused": bool(ctx.state.get("simclr_reused", False)), "simclr_seconds": round(ctx.state.get("simclr_seconds", 0.0), 1)}


SPEC = DefenseSpec(
    name="dbd",
    plan=plan_dbd,
    options=OPTIONS,
    check=check,
    finish=finish,
    products=lambda config, o: [p for p in [backbone(config, o)] if p is not None],
    isolated="the unlabelled pool, 1 − α of the set by design, so FPR ~50 % at α = 50 %",
    summary="DBD: SimCLR backbone → linear head with SCE → the lowest-SCE half labelled, MixMatch (004)",
    presets={
        # Classroom: 10k training images, 20 SimCLR epochs (batch 256, cosine over them), the paper's 10 head epochs,
        # 4 fine-tuning epochs of 200 MixMatch steps. 8 SimCLR epochs left BadNets at ASR 10.8 % (58 poisoned samples
        # labelled, two classes starved); 20 give 3.4 %. Measured: the README, "DBD at classroom scale".
        "classroom": dict(train_size=10000, test_size=5000),
        # Lab: the lab's 5,000 images, 100 SimCLR epochs (004 appendix I's count; 1,900 steps of 256), 6 fine-tuning epochs of
        # 800 MixMatch steps; ~17 min on two cores. Measured (seed 0): probe 83.2 % (classroom 81.3 %), ACC 75.6 %, ASR 4.1 %
        # against no defense's 88.5 %: the lowest-SCE half still never labels a shirt (0 %). The README, "The lab scale".
        "lab": dict(train_size=5000, test_size=0),
    },
)
