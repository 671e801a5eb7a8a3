"""What a run costs on this machine before it starts: the images its planned phases push through the network, times a
per-image cost measured here on the run's own network, plus the measured time to prepare it (data, poison, network).

An image trained (forward, backward and an optimiser step) is the unit; a forward-only image (scoring, evaluation, MixMatch's
label guess) counts a third of one, the usual ratio of a backward pass to a forward pass.
"""
from __future__ import annotations

import time
import torch

from .config import RunConfig
from .precision import autocast
from .preparation import Prepared, network, prepare

__all__ = ["FORWARD", "image_seconds", "work", "estimate_seconds"]

FORWARD = 1.0 / 3.0  # a forward-only image, in trained images
_MEASURED: dict[tuple, float] = {}


def image_seconds(prepared: Prepared, *, steps: int = 4, batch: int = 64) -> float:
    """Seconds one trained image costs this run's network here (median of ``steps`` timed Adam steps after one warm-up), measured
    once a process for each network, image shape, precision and thread count."""
    c, data = prepared.config, prepared.ctx.data
    shape = tuple(data.x.shape[1:])
    key = (c.model, repr(sorted(c.model_args.items())), shape, data.num_classes, prepared.precision, torch.get_num_threads())
    if key not in _MEASURED:
        model = network(c, prepared.truth.data, "cpu").train()
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        x = torch.randn(batch, *shape).contiguous(memory_format=torch.channels_last)
        y = torch.randint(0, data.num_classes, (batch,))
        times = []
        for i in range(steps + 1):
            start = time.perf_counter()
            with autocast(torch.device("cpu"), prepared.precision):
                loss = torch.nn.functional.cross_entropy(model(x).float(), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if i:
                times.append(time.perf_counter() - start)
        _MEASURED[key] = sorted(times)[len(times) // 2] / batch
    return _MEASURED[key]


def _step_images(prepared: Prepared, phase) -> float:
    """Trained-image equivalents of one optimiser step of ``phase``."""
    o = prepared.ctx.options
    if phase.train == "head":  # the backbone frozen: a forward pass, and a linear layer's backward
        return phase.batch_size * FORWARD
    if phase.samples == 0 and phase.steps > 0 and hasattr(o, "mixmatch_batch_size"):  # MixMatch: B labelled + 2B unlabelled views
        b = o.mixmatch_batch_size
        return 3 * b + 2 * b * FORWARD  # all 3B trained on, mixed; the 2B views also guessed without gradient
    if phase.name == "simclr":
        return 2.0 * phase.batch_size  # two views of each image
    return phase.samples / max(1, phase.steps) if phase.samples else phase.batch_size


def work(prepared: Prepared) -> dict[str, float]:
    """Trained-image equivalents of every phase of a prepared run: its steps, and each epoch's scoring of the training set and
    evaluation on the test and ASR sets."""
    ctx = prepared.ctx
    evaluation = (len(ctx.evaluator.x) + len(ctx.evaluator.asr_x)) * FORWARD
    out = {}
    for phase in prepared.phases:
        per_epoch = phase.steps * _step_images(prepared, phase) + ctx.n * FORWARD  # a per-sample score of the training set
        out[phase.name] = phase.epochs * (per_epoch + (evaluation if phase.evaluate else 0.0))
    return out


def estimate_seconds(config: RunConfig, root=None) -> float:
    """Seconds ``config`` will take here: prepared without training (the time that takes is measured and counted), its planned
    work times the per-image cost of its network measured here."""
    start = time.perf_counter()
    prepared = prepare(config, root=root, quiet=True, preflight=True)
    setup = time.perf_counter() - start
    return setup + sum(work(prepared).values()) * image_seconds(prepared)
