"""ASD — Adaptively Splitting poisoned Dataset (002, Algorithm 1), as a schedule of phases over shared pieces.

Every epoch T:
    L1 ← SCE loss of f_θ on the whole poisoned set D
    T < T1:  D_C ← seeds ∪ per class the T/t·n lowest-L1 samples      (class-aware loss-guided split)
    T < T2:  D_C ← the α lowest-L1 samples of D                         (class-agnostic loss-guided split)
    T < T3:  θ' ← θ; one epoch of CE on D for θ's last layers; D_C ← the γ samples of least L1(θ) − L1(θ')  (meta-split)
    D_P ← D \\ D_C;  one epoch of MixMatch on (D_C labelled, D_P unlabelled)

Phases: (transfer, transfer_head) → stage1 → stage2 → stage3, the stages sharing one Adam.
Options (``--set defense.NAME=VALUE``, ``asdkit options asd``) cover every ablation of the paper.
"""
from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

import torch

from ..data import load, seed_samples
from ..losses import cross_entropy
from ..options import Option, any_of, choice, integer, real, text
from ..phases import Optim, Phase
from ..semi import SEMI_METHODS, MixMatchConfig
from .pieces import CLEAN_HARD, META_OPTIONS, MIXMATCH_OPTIONS, SCE_OPTIONS, mixmatch_config, sce, virtual_model_losses
from .policies import class_agnostic_loss_split, class_aware_loss_split, lowest_count, meta_split
from .spec import DefenseSpec

_SPLITS = ("class-aware", "class-agnostic")
_FRACTION = real("", 0.5, low=0, high=1, closed="neither")

# Paper-scale defaults (002 Section 5.1 and appendix B.3; the authors' code where the paper is silent);
# classroom and smoke defaults where they differ (the classroom schedule: README, "ASD at classroom scale").
OPTIONS: tuple[Option, ...] = (
    integer("t1", 60, low=0, scales={"classroom": 6, "lab": 6, "smoke": 2}, doc="stage 1 ends at epoch T1 (002 §5.1)"),
    integer("t2", 90, low=0, scales={"classroom": 7, "lab": 9, "smoke": 3}, doc="stage 2 ends at epoch T2; stage 3 at T3 = epochs (002 §5.1)"),
    Option("stages", "123", lambda v: isinstance(v, (str, int)) and not isinstance(v, bool) and str(v) != "" and set(str(v)) <= set("123"),
           "a non-empty subset of '123' (e.g. 13)",
           "which stages run; a skipped stage's epochs go to the next stage that runs (002 Fig. 6)"),
    choice("stage1_split", "class-aware", _SPLITS, doc="the split of stage 1 (swapped for 002 Fig. 11)"),
    choice("stage2_split", "class-agnostic", _SPLITS, doc="the split of stage 2 (swapped for 002 Fig. 11)"),
    integer("seeds_per_class", 10, low=1, doc="w: clean seed samples a class (002 §4.1)"),
    integer("poisoned_seeds", 0, low=0, doc="k poisoned samples slipped into the seeds (002 Table 5)"),
    integer("warmup_every", 5, low=1, scales={"classroom": 1, "smoke": 1}, doc="t: the stage-1 pool grows every t epochs (002 Fig. 7)"),
    any_of("warmup_step", 10, integer("", 0, low=0), real("", 0.5, low=0, high=1, closed="neither"),
           scales={"classroom": 0.15, "smoke": 40}, doc="n: per-class growth of the stage-1 pool; a fraction = of the mean class size (002 Fig. 7)"),
    real("alpha", 0.5, low=0, high=1, closed="neither", doc="split rate of stage 2 (002 Fig. 13)"),
    real("gamma", 0.5, low=0, high=1, closed="neither", doc="split rate of the meta-split (002 Fig. 13)"),
    *META_OPTIONS,
    *MIXMATCH_OPTIONS,
    *SCE_OPTIONS,
    CLEAN_HARD,
    choice("semi", "mixmatch", sorted(SEMI_METHODS), doc="the pool operation (002 Table 4)"),
    real("weight_average", 0.0, low=0, high=1, closed="left", doc="EMA decay of an evaluation copy (off in the authors' code): 0 = off"),
    text("seed_source", "", want="'' or a data set name or path", doc="transfer-based seeds from another data set with D's classes (002 §5.4)"),
    integer("transfer_epochs", 10, low=0, doc="MixMatch pre-training epochs on the transfer seeds (002 §5.4)"),
)


def stage_of(epoch: int, o: dict[str, Any], epochs: int) -> int:
    """The stage (1, 2 or 3) that runs at ``epoch``; a skipped stage's epochs go to the next stage that runs."""
    ends = {1: o["t1"], 2: o["t2"], 3: epochs}
    natural = 1 if epoch < ends[1] else 2 if epoch < ends[2] else 3
    running = [s for s in (1, 2, 3) if str(s) in str(o["stages"])]
    later = [s for s in running if s >= natural]
    return later[0] if later else running[-1]


def stage_ranges(o: dict[str, Any], epochs: int) -> list[tuple[int, range]]:
    """The stages as (stage, its epochs), in order: the phases of Algorithm 1."""
    out: list[tuple[int, range]] = []
    for e in range(epochs):
        s = stage_of(e, o, epochs)
        if out and out[-1][0] == s:
            out[-1] = (s, range(out[-1][1].start, e + 1))
        else:
            out.append((s, range(e, e + 1)))
    return out


def warmup_step(o: dict[str, Any], n: int, num_classes: int) -> int:
    """n, the per-class growth of D_C every t epochs: an int, or a fraction of the mean class size."""
    step = o["warmup_step"]
    return step if isinstance(step, int) else int(round(step * n / num_classes))


def transfer_seeds(ctx) -> tuple[torch.Tensor, torch.Tensor]:
    """w seed images a class and their labels from another data set (002 Section 5.4), resized to D's images."""
    o, (_, channels, height, _) = ctx.options, ctx.data.x.shape
    source = load(o.seed_source, resolution=height).train
    if source.num_classes != ctx.num_classes or source.shape[0] != channels:
        raise ValueError(f"ASD's seed_source {o.seed_source!r} has {source.num_classes} classes of {source.shape[0]}-channel images; "
                         f"the training set has {ctx.num_classes} classes of {channels}-channel images. Give a set with the same classes, in the same order.")
    try:
        index = seed_samples(source.y, o.seeds_per_class, seed=ctx.config.seed)
    except ValueError as exc:
        raise ValueError(f"ASD's seeds_per_class={o.seeds_per_class} cannot be drawn from seed_source {o.seed_source!r}: {exc}") from None
    return source.x[index], source.y[index]


def loss_guided_splits(ctx):
    """Stages 1 and 2 as (stage, mode) → policy(epoch, losses); Fig. 11 swaps a mode but keeps the pool size (002 appendix I)."""
    o, labels, seeds, n, k = ctx.options, ctx.labels, ctx.seeds, ctx.n, ctx.num_classes
    per_class = lambda e: (e // o.warmup_every) * warmup_step(o, n, k)  # noqa: E731 - T/t × n (Algorithm 1 line 9)
    return {
        (1, "class-aware"): lambda e, losses: class_aware_loss_split(losses, labels, seeds=seeds, per_class=per_class(e)),
        (1, "class-agnostic"): lambda e, losses: lowest_count(losses, per_class(e) * k, keep=seeds),
        (2, "class-agnostic"): lambda e, losses: class_agnostic_loss_split(losses, rate=o.alpha),
        (2, "class-aware"): lambda e, losses: class_aware_loss_split(losses, labels, seeds=seeds[:0], per_class=round(o.alpha * n / k)),
    }


def plan_asd(ctx) -> list[Phase]:
    """Algorithm 1 of 002: (transfer-based initialisation,) then stages 1-3 of pool maintenance, MixMatch as the pool operation."""
    o, c = ctx.options, ctx.config
    l1, mm = sce(o), mixmatch_config(o, c.epochs)
    data, extra = ctx.data, torch.zeros(0, dtype=torch.bool)  # what MixMatch trains on: D, then the transfer seeds if any
    if o.seed_source:
        xs, ys = transfer_seeds(ctx)
        data, extra = ctx.data.extended(xs, ys), torch.ones(len(xs), dtype=torch.bool)
        ctx.snapshot("transfer_seeds", labels=ys)
    if o.weight_average:
        ctx.keep_average(o.weight_average)  # measures ACC/ASR only; splits use f_θ
    splits, ranges = loss_guided_splits(ctx), stage_ranges(o, c.epochs)
    stage3_start = next((r.start for s, r in ranges if s == 3), None)

    def stage(s: int):
        def epoch_fn(ctx, epoch: int) -> dict[str, Any]:
            t0 = time.perf_counter()
            losses = ctx.score(l1)  # L1 of f_θ on the whole poisoned set
            if s == 3:
                virtual = virtual_model_losses(ctx, epoch, l1)
                clean = meta_split(losses - virtual, rate=o.gamma)
                ctx.log(arrays={"virtual_loss": virtual, "loss_reduction": losses - virtual})
            else:
                clean = splits[s, o[f"stage{s}_split"]](epoch, losses)
            ctx.log_pool(clean, score=losses, hard_fraction=o.clean_hard_fraction)
            ctx.log(arrays={"l1_loss": losses}, stage=s, split_seconds=round(time.perf_counter() - t0, 3))
            stats = ctx.semi(SEMI_METHODS[o.semi], data, torch.cat([clean, extra]), epoch=epoch, config=mm)
            if s != 3 and epoch + 1 == stage3_start:  # Fig. 3 (a)-(c): the model as it enters stage 3
                ctx.save_weights("end_of_stage2", epoch=epoch)
            return stats
        return epoch_fn

    phases = transfer_phases(ctx, data, extra, mm) if o.seed_source else []
    main = Optim.from_config(c)  # 002 B.3: one Adam at 0.002 for the whole run
    phases += [Phase(f"stage{s}", len(r), stage(s), main, steps=o.iterations, optimizer="stages", first_epoch=r.start) for s, r in ranges]
    return phases


def transfer_phases(ctx, data, extra: torch.Tensor, mm: MixMatchConfig) -> list[Phase]:
    """Transfer-based initialisation (002 Section 5.4): MixMatch with only the transfer seeds labelled, then the linear head on D.

    The pre-training has its own Adam at the config's peak lr (λ_u ramped over these epochs);
    the head is fitted by one epoch of CE on the whole poisoned D with the backbone frozen,
    its BatchNorm statistics too. Its epoch's ACC/ASR is Table 6's "transfer-based pre-training" row.
    """
    o, c = ctx.options, ctx.config
    seeds_only = torch.cat([torch.zeros(ctx.n, dtype=torch.bool), extra])
    pre = replace(mm, rampup_epochs=float(max(1, o.transfer_epochs)))

    def pretrain(ctx, epoch: int) -> dict[str, Any]:
        return ctx.semi(SEMI_METHODS[o.semi], data, seeds_only, epoch=epoch, config=pre, average=False)

    def head(ctx, epoch: int) -> dict[str, Any]:
        result = ctx.train_epoch(loss_fn=cross_entropy, epoch=epoch)
        if ctx.average is not None:
            ctx.average.model.load_state_dict(ctx.model.state_dict())
        return {"loss": result.loss}

    return [Phase("transfer", o.transfer_epochs, pretrain, Optim("adam", c.lr), steps=o.iterations),
            Phase("transfer_head", 1, head, Optim("adam", c.lr), samples=ctx.n, batch_size=c.batch_size, train="head")]


def seeds(o) -> tuple[int, int]:
    """The trusted seeds ASD asks the runner for: w clean a class, k of them swapped for poisoned (Table 5); none with transfer seeds."""
    return (0, 0) if o.seed_source else (o.seeds_per_class, o.poisoned_seeds)


def constraints(config, o) -> None:
    """Checks across fields, on the config alone (make_config)."""
    if config.epochs < 1:
        raise ValueError(f"ASD counts its stages in epochs: the 'epochs' field must be an int in [1, inf) for asd. Got {config.epochs} instead.")
    if not o.t1 <= o.t2 <= config.epochs:
        raise ValueError(f"ASD needs 0 <= t1 <= t2 <= epochs; got t1={o.t1}, t2={o.t2}, epochs={config.epochs}.")
    if o.seed_source and o.poisoned_seeds:
        raise ValueError("ASD's 'poisoned_seeds' slips poisoned samples of D into seeds drawn from D; it cannot be combined with 'seed_source'.")
    from ..models import CompactResNet, ResNet18

    groups = {"compact": CompactResNet, "resnet18": ResNet18}.get(config.model)
    if groups is not None and o.meta_layers != "auto" and o.meta_layers > len(groups.layer_groups):
        raise ValueError(f"The 'meta_layers' option of asd must be 'auto' or an int in [1, {len(groups.layer_groups)}] for model "
                         f"{config.model!r} (its layer groups: {list(groups.layer_groups)}). Got {o.meta_layers} instead.")


def check(ctx) -> None:
    """What needs the data or the model, before training: meta_layers against the model, a warm-up that would empty D_P."""
    o, c = ctx.options, ctx.config
    groups = len(getattr(ctx.model, "layer_groups", ()))
    if o.meta_layers != "auto" and o.meta_layers > groups:
        raise ValueError(f"The 'meta_layers' option of asd must be 'auto' or an int in [1, {groups}] for model {c.model!r} "
                         f"(its layer groups: {list(ctx.model.layer_groups)}). Got {o.meta_layers} instead.")
    # The polluted pool must never be empty: the largest stage-1 pool (last stage-1 epoch) must leave samples out.
    last_stage1 = max((e for e in range(c.epochs) if stage_of(e, o, c.epochs) == 1), default=None)
    if last_stage1 is not None:
        per_class = (last_stage1 // o.warmup_every) * warmup_step(o, ctx.n, ctx.num_classes) + o.seeds_per_class
        sizes = torch.bincount(ctx.labels, minlength=ctx.num_classes)
        full = bool((sizes <= per_class).all()) if o.stage1_split == "class-aware" else per_class * ctx.num_classes >= ctx.n
        if full:
            raise ValueError(f"ASD's warm-up (warmup_step={o.warmup_step} every {o.warmup_every} epochs, t1={o.t1}) would put "
                             f"the whole training set ({ctx.n}) in the clean pool by epoch {last_stage1}; lower warmup_step or t1.")


def finish(ctx) -> dict[str, Any]:
    """Fig. 3 (d): the final model's losses."""
    ctx.snapshot_losses("final", sce=sce(ctx.options))
    return {}


SPEC = DefenseSpec(
    name="asd",
    isolated="the polluted pool D_P (half the set by design, so FPR ~50 %)",
    plan=plan_asd,
    options=OPTIONS,
    seeds=seeds,
    constraints=constraints,
    check=check,
    finish=finish,
    dataset_presets={("paper", "gtsrb"): dict(epochs=100)},  # 002 Section 5.1: T3 = 100 on GTSRB
    summary="ASD: seeds → class-aware → class-agnostic → meta-split pools, MixMatch (002)",
    presets={
        # 002 B.3: Adam 0.002, batch 64, 120 epochs, T1/T2 = 60/90, 1,024 MixMatch iterations an epoch.
        "paper": dict(epochs=120, optimizer="adam", lr=0.002, weight_decay=0.0, schedule="constant", milestones=()),
        # Classroom: 10k training images, 8 epochs of 200 MixMatch steps; stage 1 for 6 epochs growing 15 % of a
        # class (150 images here) an epoch, one epoch each of stages 2 and 3; one-cycle Adam (peak 0.002).
        # Measured numbers and the trade-offs: the README, "ASD at classroom scale".
        "classroom": dict(epochs=8, optimizer="adam", lr=0.002, schedule="onecycle", train_size=10000, test_size=5000),
        # Lab: 5,000 images, 12 epochs of 800 MixMatch steps (~120 passes over each image, as 002's 120 x 1,024 x 64 over
        # 50,000 gives ~157), stages 6/3/3 in 002's 60/30/30 proportions, the classroom's warm-up; ~15 min on two cores.
        # Chosen by measurement (seed 0, one Xeon): 82.5 % / ASR 2.5 % against no defense's 88.5 % on the same images,
        # lowest class 52 %. 10,000 images at 16 x 1,000 steps take 24.5 min; a narrower network (16/32/64) at
        # 16 x 1,500 steps on 10,000 images starved the sneakers to 0 % in its fourth stage-3 epoch (ACC 73.6 %).
        # Over seeds and beside the other defenses: the README, "The lab scale".
        "lab": dict(epochs=12, train_size=5000, test_size=0),
        "smoke": dict(epochs=4, optimizer="adam", lr=0.002, schedule="constant"),
    },
)
