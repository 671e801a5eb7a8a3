"""ASD — Adaptively Splitting poisoned Dataset (002, Algorithm 1), as a schedule of shared pieces.

Every epoch T:
    L1 ← SCE loss of f_θ on the whole poisoned set D
    T < T1:  D_C ← seeds ∪ per class the T/t·n lowest-L1 samples      (class-aware loss-guided split)
    T < T2:  D_C ← the α lowest-L1 samples of D                         (class-agnostic loss-guided split)
    T < T3:  θ' ← θ; one epoch of CE on D for θ's last layers; D_C ← the γ samples of least L1(θ) − L1(θ')  (meta-split)
    D_P ← D \\ D_C;  one epoch of MixMatch on (D_C labelled, D_P unlabelled)

Options (``--set defense.NAME=VALUE``) cover every ablation of the paper; see :data:`DEFAULTS`.
"""
from __future__ import annotations

import copy
import time
from dataclasses import replace
from typing import Any

import torch

from ..data import load, seed_samples
from ..engine import WeightAverage, epoch_generator, score, train_epoch
from ..losses import cross_entropy, sce_loss
from ..models import last_layers
from ..semi import SEMI_METHODS, MixMatchConfig
from . import DefenseSpec
from .policies import class_agnostic_loss_split, class_aware_loss_split, lowest_count, meta_split

# Paper-scale defaults (002 Section 5.1 and appendix B.3; the authors' code where the paper is silent).
DEFAULTS: dict[str, Any] = {
    "t1": 60, "t2": 90,  # stage 1 ends at epoch T1, stage 2 at T2, stage 3 at T3 = config.epochs (120)
    "stages": "123",  # which stages run; a skipped stage's epochs go to the next stage that runs (Fig. 6)
    "stage1_split": "class-aware", "stage2_split": "class-agnostic",  # swap them for Fig. 11
    "seeds_per_class": 10,  # w: clean seed samples a class
    "poisoned_seeds": 0,  # k poisoned samples slipped into the seeds (Table 5)
    "warmup_every": 5, "warmup_step": 10,  # t and n: the per-class pool grows by n every t epochs (Fig. 7);
    # n may also be a fraction in (0, 1) of the mean class size, so a preset scales with the data
    "alpha": 0.5, "gamma": 0.5,  # split rates of stages 2 and 3 (Fig. 13)
    "meta_epochs": 1, "meta_lr": 0.015, "meta_layers": 3, "meta_optimizer": "adam", "meta_batch_size": 128,  # Fig. 12
    "iterations": 1024, "mixmatch_batch_size": 64, "temperature": 0.5, "mixup_alpha": 0.75, "lambda_u": 15.0,
    "sce_alpha": 0.1, "sce_beta": 1.0,
    "clean_hard_fraction": 0.1,  # 002 Section 5.2: the 5,000 of 50,000 samples with the largest L1 loss
    "semi": "mixmatch",  # the pool operation (002 Table 4); UDA and ReMixMatch plug into asdkit.semi.SEMI_METHODS
    "weight_average": 0.0,  # EMA decay of an evaluation copy (MixMatch's; commented out in the authors' code): 0 = off
    # Transfer-based seeds (002 Section 5.4, Table 6): "" = w clean seeds drawn from D; else a data set that
    # asdkit.data.load accepts (name, .npz, image folder) with D's classes in D's order, whose training part gives
    # the w seeds a class. The model is then pre-trained for transfer_epochs of MixMatch (seeds labelled, all of D
    # unlabelled) and one epoch of CE on D for the linear head, before stage 1; the seeds stay in D_C throughout.
    "seed_source": "", "transfer_epochs": 10,
}
_SPLITS = ("class-aware", "class-agnostic")


def options(run) -> dict[str, Any]:
    """DEFAULTS updated by the config's defense_args, validated (unknown names, ranges, stage boundaries)."""
    c = run.config
    unknown = sorted(set(c.defense_args) - set(DEFAULTS))
    if unknown:
        raise ValueError(f"Unknown ASD option(s) {unknown}; ASD options: {sorted(DEFAULTS)}.")
    o = {**DEFAULTS, **c.defense_args}
    if not 0 <= o["t1"] <= o["t2"] <= c.epochs:
        raise ValueError(f"ASD needs 0 <= t1 <= t2 <= epochs; got t1={o['t1']}, t2={o['t2']}, epochs={c.epochs}.")
    if not set(str(o["stages"])) <= set("123") or not str(o["stages"]):
        raise ValueError(f"The 'stages' option of ASD must be a non-empty subset of '123'. Got {o['stages']!r} instead.")
    if isinstance(o["weight_average"], bool) or not isinstance(o["weight_average"], (int, float)) or not 0 <= o["weight_average"] < 1:
        raise ValueError(f"The 'weight_average' option of ASD must be a float in the range [0, 1). Got {o['weight_average']!r} instead.")
    for key in ("alpha", "gamma", "clean_hard_fraction"):
        if not 0 < o[key] < 1:
            raise ValueError(f"The '{key}' option of ASD must be a float in the range (0, 1). Got {o[key]!r} instead.")
    for key in ("stage1_split", "stage2_split"):
        if o[key] not in _SPLITS:
            raise ValueError(f"The '{key}' option of ASD must be one of {list(_SPLITS)}. Got {o[key]!r} instead.")
    if o["semi"] not in SEMI_METHODS:
        raise ValueError(f"The 'semi' option of ASD must be one of {sorted(SEMI_METHODS)}. Got {o['semi']!r} instead.")
    if o["meta_optimizer"] not in ("adam", "sgd"):
        raise ValueError(f"The 'meta_optimizer' option of ASD must be 'adam' or 'sgd'. Got {o['meta_optimizer']!r} instead.")
    def is_int(v) -> bool:
        return isinstance(v, int) and not isinstance(v, bool)

    if not isinstance(o["seed_source"], str):
        raise ValueError(f"The 'seed_source' option of ASD must be '' or a data set name or path. Got {o['seed_source']!r} instead.")
    for key in ("warmup_every", "iterations", "mixmatch_batch_size", "meta_epochs", "meta_layers", "seeds_per_class", "meta_batch_size"):
        if not is_int(o[key]) or o[key] < 1:
            raise ValueError(f"The '{key}' option of ASD must be a positive int. Got {o[key]!r} instead.")
    step = o["warmup_step"]
    if not (is_int(step) and step >= 0) and not (isinstance(step, float) and 0 < step < 1):
        raise ValueError(f"The 'warmup_step' option of ASD must be a non-negative int or a fraction in (0, 1) of the mean "
                         f"class size. Got {step!r} instead.")
    for key in ("meta_lr", "temperature", "mixup_alpha"):
        if isinstance(o[key], bool) or not isinstance(o[key], (int, float)) or o[key] <= 0:
            raise ValueError(f"The '{key}' option of ASD must be a positive float. Got {o[key]!r} instead.")
    for key in ("lambda_u", "sce_alpha", "sce_beta"):
        if isinstance(o[key], bool) or not isinstance(o[key], (int, float)) or o[key] < 0:
            raise ValueError(f"The '{key}' option of ASD must be a non-negative float. Got {o[key]!r} instead.")
    if not is_int(o["transfer_epochs"]) or o["transfer_epochs"] < 0:
        raise ValueError(f"The 'transfer_epochs' option of ASD must be a non-negative int. Got {o['transfer_epochs']!r} instead.")
    if o["seed_source"] and o["poisoned_seeds"]:
        raise ValueError("ASD's 'poisoned_seeds' slips poisoned samples of D into seeds drawn from D; it cannot be combined with 'seed_source'.")
    if not is_int(o["poisoned_seeds"]) or not 0 <= o["poisoned_seeds"] <= o["seeds_per_class"] * run.num_classes:
        raise ValueError(f"The 'poisoned_seeds' option of ASD must be in [0, {o['seeds_per_class'] * run.num_classes}]. Got {o['poisoned_seeds']!r} instead.")
    return o


def stage_of(epoch: int, o: dict[str, Any], epochs: int) -> int:
    """The stage (1, 2 or 3) that runs at ``epoch``; a skipped stage's epochs go to the next stage that runs."""
    ends = {1: o["t1"], 2: o["t2"], 3: epochs}
    natural = 1 if epoch < ends[1] else 2 if epoch < ends[2] else 3
    running = [s for s in (1, 2, 3) if str(s) in str(o["stages"])]
    later = [s for s in running if s >= natural]
    return later[0] if later else running[-1]


def warmup_step(run, o: dict[str, Any]) -> int:
    """n, the per-class growth of D_C every t epochs: an int, or a fraction of the mean class size."""
    step = o["warmup_step"]
    return step if isinstance(step, int) else int(round(step * len(run.train) / run.num_classes))


def clean_seeds(run, o: dict[str, Any]) -> torch.Tensor:
    """w clean seed samples a class (002 Section 4.1), drawn from non-poisoned samples; k of them swapped for poisoned ones (Table 5)."""
    t = run.train
    seeds = seed_samples(t.observed_label, o["seeds_per_class"], seed=run.config.seed, exclude=t.is_poison)
    k = o["poisoned_seeds"]
    if k:
        g = torch.Generator().manual_seed(run.config.seed + 1)
        poisoned = t.poison_index[torch.randperm(len(t.poison_index), generator=g)[:k]]
        seeds = torch.cat([seeds[torch.randperm(len(seeds), generator=g)[k:]], poisoned])
    return seeds.sort().values


def transfer_seeds(run, o: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
    """w seed images a class and their labels from another data set (002 Section 5.4), resized to D's images."""
    c, (channels, height, _) = run.config, run.train.data.shape
    source = load(o["seed_source"], resolution=height).train
    if source.num_classes != run.num_classes or source.shape[0] != channels:
        raise ValueError(f"ASD's seed_source {o['seed_source']!r} has {source.num_classes} classes of {source.shape[0]}-channel images; "
                         f"the training set has {run.num_classes} classes of {channels}-channel images. Give a set with the same classes, in the same order.")
    index = seed_samples(source.y, o["seeds_per_class"], seed=c.seed)
    return source.x[index], source.y[index]


def transfer_pretrain(run, o: dict[str, Any], mm: MixMatchConfig, x: torch.Tensor, y: torch.Tensor, seeds: torch.Tensor) -> dict[str, float]:
    """Transfer-based initialisation (002 Section 5.4): MixMatch with only the transfer seeds labelled, then the linear head on D.

    ``x``/``y`` hold D followed by the transfer seeds; ``seeds`` is their mask. The pre-training
    uses its own Adam at the config's peak lr (λ_u ramped over these epochs); the head is fitted by
    one epoch of CE on the whole poisoned D with the backbone frozen (its BatchNorm statistics too).
    Returns the ACC and ASR of the initialised model (Table 6's "transfer-based pre-training" row).
    """
    c, model = run.config, run.model
    opt = torch.optim.Adam(model.parameters(), lr=c.lr)
    pre = replace(mm, rampup_epochs=float(max(1, o["transfer_epochs"])))
    for e in range(o["transfer_epochs"]):
        SEMI_METHODS[o["semi"]](model, x, y, seeds, opt, num_classes=run.num_classes, epoch=e, config=pre, normalize=run.normalize,
                                generator=epoch_generator(c.seed, e, stream=3), pad=c.pad, flip=run.train.data.hflip)
    head = last_layers(model, 1)
    in_head = {id(b) for m in head for b in m.buffers()}
    backbone_stats = {name: b.clone() for name, b in model.named_buffers() if id(b) not in in_head}
    train_epoch(model, run.x, run.y, run.all_index, torch.optim.Adam(_train_only(model, head), lr=c.lr), normalize=run.normalize,
                loss_fn=cross_entropy, generator=epoch_generator(c.seed, 0, stream=4), batch_size=c.batch_size, pad=c.pad,
                flip=run.train.data.hflip)
    with torch.no_grad():  # train mode moved the frozen backbone's BatchNorm statistics: put them back
        for name, b in model.named_buffers():
            if name in backbone_stats:
                b.copy_(backbone_stats[name])
    for p in model.parameters():
        p.requires_grad_(True)
    result = run.evaluate()
    return {"transfer_acc": result["acc"], "transfer_asr": result["asr"]}


def _train_only(model: torch.nn.Module, modules: list[torch.nn.Module]) -> list[torch.nn.Parameter]:
    """Freeze every parameter of ``model`` except those of ``modules``; return those."""
    for p in model.parameters():
        p.requires_grad_(False)
    params = [p for m in modules for p in m.parameters()]
    for p in params:
        p.requires_grad_(True)
    return params


def virtual_model_losses(run, o: dict[str, Any], epoch: int, l1) -> torch.Tensor:
    """L1 under the virtual model θ' after ``meta_epochs`` of CE on the whole poisoned set, updating only the last layers (Eq. 3)."""
    c = run.config
    virtual = copy.deepcopy(run.model)
    params = _train_only(virtual, last_layers(virtual, o["meta_layers"]))
    opt = (torch.optim.Adam(params, lr=o["meta_lr"]) if o["meta_optimizer"] == "adam"
           else torch.optim.SGD(params, lr=o["meta_lr"], momentum=0.9))  # 002 B.3's SGD, with the usual momentum 0.9
    for e in range(o["meta_epochs"]):
        train_epoch(virtual, run.x, run.y, run.all_index, opt, normalize=run.normalize, loss_fn=cross_entropy,
                    generator=epoch_generator(c.seed, epoch, stream=2 + e), batch_size=o["meta_batch_size"],
                    pad=c.pad, flip=run.train.data.hflip)
    return score(virtual, run.x, run.y, l1, normalize=run.normalize, batch_size=c.eval_batch_size)


def run_asd(run) -> dict[str, Any]:
    """Algorithm 1 of 002: three stages of pool maintenance, MixMatch as the pool operation."""
    c = run.config
    o = options(run)
    mm = MixMatchConfig(iterations=o["iterations"], batch_size=o["mixmatch_batch_size"], temperature=o["temperature"],
                        alpha=o["mixup_alpha"], lambda_u=o["lambda_u"], rampup_epochs=float(c.epochs))
    l1 = lambda logits, y: sce_loss(logits, y, alpha=o["sce_alpha"], beta=o["sce_beta"])  # noqa: E731
    labels, n, k = run.train.observed_label, len(run.train), run.num_classes
    x, y = run.x, run.y  # what MixMatch trains on: D, followed by the transfer seeds if any
    if o["seed_source"]:
        xs, ys = transfer_seeds(run, o)
        x, y = torch.cat([run.x, xs.to(run.device)]), torch.cat([run.y, ys.to(run.device)])
        seeds, extra = torch.zeros(0, dtype=torch.long), torch.ones(len(xs), dtype=torch.bool)
        run.record.arrays.update(transfer_seed_labels=ys)
    else:
        seeds, extra = clean_seeds(run, o), torch.zeros(0, dtype=torch.bool)
        run.record.arrays["seeds"] = seeds
    if o["weight_average"]:
        run.average = WeightAverage(run.model, o["weight_average"])  # measures ACC/ASR only; splits use f_θ
    run.make_optimizer(steps_per_epoch=o["iterations"])
    step = warmup_step(run, o)
    per_class = lambda e: (e // o["warmup_every"]) * step  # noqa: E731 - T/t × n (Algorithm 1 line 9)
    # Fig. 11 swaps a stage's mode but "will not change the number in D_C" (002 appendix I).
    splits = {
        (1, "class-aware"): lambda e, losses: class_aware_loss_split(losses, labels, seeds=seeds, per_class=per_class(e)),
        (1, "class-agnostic"): lambda e, losses: lowest_count(losses, per_class(e) * k, keep=seeds),
        (2, "class-agnostic"): lambda e, losses: class_agnostic_loss_split(losses, rate=o["alpha"]),
        (2, "class-aware"): lambda e, losses: class_aware_loss_split(losses, labels, seeds=seeds[:0], per_class=round(o["alpha"] * n / k)),
    }
    for epoch in run.epochs():
        stage = stage_of(epoch, o, c.epochs)
        if epoch == 0 and o["seed_source"]:  # the transfer-based initial model (on resume, the checkpoint holds it)
            run.log(**transfer_pretrain(run, o, mm, x, y, torch.cat([torch.zeros(n, dtype=torch.bool), extra])))
            if run.average is not None:
                run.average.model.load_state_dict(run.model.state_dict())
        t0 = time.perf_counter()
        losses = score(run.model, run.x, run.y, l1, normalize=run.normalize, batch_size=c.eval_batch_size)
        arrays = {"l1_loss": losses}
        if stage == 3:
            virtual = virtual_model_losses(run, o, epoch, l1)
            reduction = losses - virtual
            clean = meta_split(reduction, rate=o["gamma"])
            arrays.update(virtual_loss=virtual, loss_reduction=reduction)
        else:
            clean = splits[stage, o[f"stage{stage}_split"]](epoch, losses)
        split_seconds = time.perf_counter() - t0
        stats = SEMI_METHODS[o["semi"]](run.model, x, y, torch.cat([clean, extra]), run.optimizer, num_classes=run.num_classes, epoch=epoch,
                               config=mm, normalize=run.normalize, generator=epoch_generator(c.seed, epoch, stream=1),
                               pad=c.pad, flip=run.train.data.hflip, progress=run.progress, scheduler=run.scheduler,
                               average=run.average)
        run.log_clean_pool(clean, losses, hard_fraction=o["clean_hard_fraction"])
        run.log(arrays=arrays, stage=stage, split_seconds=round(split_seconds, 3), **stats)
        if stage != 3 and epoch + 1 < c.epochs and stage_of(epoch + 1, o, c.epochs) == 3:
            # Fig. 3 (a)-(c) are drawn from the model as it enters stage 3 (the end of stage 2,
            # or of stage 1 when stage 2 is skipped).
            run.save_weights("end_of_stage2", epoch=epoch)
    run.snapshot_losses("final", sce=l1)  # Fig. 3 (d)
    stage_seconds: dict[str, float] = {}
    for m in run.record.metrics:  # Table 3: time per stage
        key = f"seconds_stage{m['stage']}"
        stage_seconds[key] = round(stage_seconds.get(key, 0.0) + m["seconds"], 1)
    return {**run.pool_summary(), **stage_seconds}


def check(run) -> None:
    """Validate ASD's options and seeds against the prepared data before training."""
    o = options(run)
    try:
        transfer_seeds(run, o) if o["seed_source"] else clean_seeds(run, o)
    except ValueError as exc:
        where = f"seed_source {o['seed_source']!r}" if o["seed_source"] else "this training set"
        raise ValueError(f"ASD's seeds_per_class={o['seeds_per_class']} cannot be drawn from {where}: {exc}") from None
    groups = len(getattr(run.model, "layer_groups", ()))
    if o["meta_layers"] > groups:
        raise ValueError(f"The 'meta_layers' option of ASD must be in [1, {groups}] for model {run.config.model!r} "
                         f"(its layer groups: {list(run.model.layer_groups)}). Got {o['meta_layers']} instead.")
    # The polluted pool must never be empty: the largest stage-1 pool (last stage-1 epoch) must leave samples out.
    last_stage1 = max((e for e in range(run.config.epochs) if stage_of(e, o, run.config.epochs) == 1), default=None)
    if last_stage1 is not None:
        per_class = (last_stage1 // o["warmup_every"]) * warmup_step(run, o) + o["seeds_per_class"]
        sizes = torch.bincount(run.train.observed_label, minlength=run.num_classes)
        full = bool((sizes <= per_class).all()) if o["stage1_split"] == "class-aware" else per_class * run.num_classes >= len(run.train)
        if full:
            raise ValueError(f"ASD's warm-up (warmup_step={o['warmup_step']} every {o['warmup_every']} epochs, t1={o['t1']}) would put "
                             f"the whole training set ({len(run.train)}) in the clean pool by epoch {last_stage1}; lower warmup_step or t1.")


SPEC = DefenseSpec(
    name="asd",
    dataset_presets={("paper", "gtsrb"): dict(epochs=100)},  # 002 Section 5.1: T3 = 100 on GTSRB
    run=run_asd,
    check=check,
    summary="ASD: seeds → class-aware → class-agnostic → meta-split pools, MixMatch (002)",
    presets={
        # 002 B.3: Adam 0.002, batch 64, 120 epochs, T1/T2 = 60/90, 1,024 MixMatch iterations an epoch.
        "paper": dict(epochs=120, optimizer="adam", lr=0.002, weight_decay=0.0, schedule="constant", milestones=()),
        # Classroom: 10k training images, 8 epochs of 200 MixMatch steps; stage 1 for 6 epochs growing 15 % of a
        # class (150 images here) an epoch, one epoch each of stages 2 and 3; one-cycle Adam (peak 0.002). Measured
        # on 2 cores (BadNets 10 %, target 0): ACC 83.3 %, ASR 3.0 % (clean twin's floor 2.5 %) vs no defense
        # 89.2 % / 99.9 % on the same 10k, in 283-369 s. Why the ACC gap and the trade-offs (slower warm-up,
        # proportional stages, more stage-3 epochs): the ASD section of the README.
        "classroom": dict(epochs=8, optimizer="adam", lr=0.002, schedule="onecycle", train_size=10000, test_size=5000,
                          defense_args={"t1": 6, "t2": 7, "warmup_every": 1, "warmup_step": 0.15, "iterations": 200}),
        "smoke": dict(epochs=4, optimizer="adam", lr=0.002, schedule="constant",
                      defense_args={"t1": 2, "t2": 3, "warmup_every": 1, "warmup_step": 40, "iterations": 20}),
    },
)
