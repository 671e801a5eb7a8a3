"""What a run costs on this machine before it starts: the images its planned phases push through the network, times a
per-image cost measured here on the run's own network, plus the measured time to prepare it (data, poison, network).

An image trained (forward, backward and an optimiser step) is the unit; a forward-only image (scoring, evaluation, MixMatch's
label guess) counts a third of one, the usual ratio of a backward pass to a forward pass.
"""
from __future__ import annotations

import time

import torch

from .config import RunConfig
from .engine import supervised, train_steps
from .preparation import Prepared, network, prepare

__all__ = ["FORWARD", "image_seconds", "work", "estimate_seconds"]

FORWARD = 1.0 / 3.0  # a forward-only image, in trained images
_MEASURED: dict[tuple, float] = {}


def image_seconds(prepared: Prepared, *, batch: int = 128, steps: int = 4) -> float:
    """Seconds one trained image costs this run's network here in batches of ``batch``: ``steps`` steps of the engine's own
    batch loop (augmentation, forward, backward, Adam) on the run's images after one warm-up step, measured once a process
    for each network, image shape, batch, precision and thread count."""
    c, data = prepared.config, prepared.ctx.data
    shape = tuple(data.x.shape[1:])
    key = (c.model, repr(sorted(c.model_args.items())), shape, data.num_classes, batch, prepared.precision, torch.get_num_threads())
    if key not in _MEASURED:
        model = network(c, prepared.truth.data, data.device)
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        generator = torch.Generator().manual_seed(0)
        index = torch.randint(0, len(data.x), (batch,), generator=generator)
        objective = supervised(data, generator=generator)
        train_steps(model, [index], objective, opt, precision=prepared.precision)  # warm-up: allocations, kernels chosen
        done = train_steps(model, [index] * steps, objective, opt, precision=prepared.precision)
        _MEASURED[key] = done.seconds / (steps * batch)
    return _MEASURED[key]


SCORING_BATCH = 256  # the batch a forward-only image is costed at (scoring and evaluation run in large batches)


def _step(prepared: Prepared, phase) -> tuple[float, int]:
    """(trained-image equivalents of one optimiser step of ``phase``, the batch the network trains on in that step)."""
    o = prepared.ctx.options
    if phase.train == "head":  # the backbone frozen: a forward pass, and a linear layer's backward
        return phase.batch_size * FORWARD, SCORING_BATCH
    if phase.samples == 0 and phase.steps > 0 and hasattr(o, "mixmatch_batch_size"):  # MixMatch: B labelled + 2B unlabelled views
        b = o.mixmatch_batch_size
        return 3 * b + 2 * b * FORWARD, 3 * b  # all 3B trained on, mixed; the 2B views also guessed without gradient
    if phase.name == "simclr":
        return 2.0 * phase.batch_size, 2 * phase.batch_size  # two views of each image
    return (phase.samples / max(1, phase.steps) if phase.samples else phase.batch_size), phase.batch_size


# Passes over the training set a phase makes beyond its steps, in trained-image equivalents per sample, as each defense's
# epoch function makes them: ASD scores every sample each epoch (ctx.score) and, in stage 3, trains a virtual model one CE epoch
# and scores under it; DBD re-filters on a score each fine-tuning epoch; ABL and PIPD score once after their LGA epochs; PIPD's
# rounds share one pass of channel activations; the head's last epoch snapshots its losses. (epochs: spread over the phase)
EXTRA = {("asd", "stage1"): lambda o, e: FORWARD, ("asd", "stage2"): lambda o, e: FORWARD,
         ("asd", "stage3"): lambda o, e: 2 * FORWARD + o.meta_epochs,
         ("dbd", "finetune"): lambda o, e: FORWARD * (2 if o.split == "meta" else 1) + (o.meta_epochs if o.split == "meta" else 0),
         ("dbd", "head"): lambda o, e: FORWARD / e, ("abl", "isolation"): lambda o, e: FORWARD / e,
         ("pipd", "pre_isolation"): lambda o, e: FORWARD / e, ("pipd", "isolation"): lambda o, e: FORWARD / e}
FINAL = 2 * FORWARD  # every run's final per-sample CE and SCE (the record's "final" snapshot)


def work(prepared: Prepared) -> dict[str, tuple[float, int]]:
    """Per phase of a prepared run, (trained-image equivalents, the batch they train in): its steps, and its passes over the
    training set (:data:`EXTRA`) with each epoch's evaluation on the test and ASR sets, costed at :data:`SCORING_BATCH`;
    "final": the last per-sample losses."""
    ctx, defense = prepared.ctx, prepared.config.defense
    evaluation = (len(ctx.evaluator.x) + len(ctx.evaluator.asr_x)) * FORWARD
    out = {}
    for phase in prepared.phases:
        extra = EXTRA.get((defense, phase.name), lambda o, e: 0.0)(ctx.options, max(1, phase.epochs)) * ctx.n
        images, batch = _step(prepared, phase)
        out[phase.name] = (phase.epochs * phase.steps * images, batch)
        out[f"{phase.name} passes"] = (phase.epochs * (extra + (evaluation if phase.evaluate else 0.0)), SCORING_BATCH)
    out["final"] = (FINAL * ctx.n, SCORING_BATCH)
    return out


def estimate_seconds(config: RunConfig, root=None) -> float:
    """Seconds ``config`` will take here: prepared without training (the time that takes is measured and counted), its planned
    work times the per-image cost of its network measured here."""
    start = time.perf_counter()
    prepared = prepare(config, root=root, quiet=True, preflight=True)
    setup = time.perf_counter() - start
    return setup + sum(images * image_seconds(prepared, batch=batch) for images, batch in work(prepared).values() if images)
