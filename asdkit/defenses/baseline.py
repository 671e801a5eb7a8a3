"""No defense: plain supervised training on the whole poisoned set (the papers' "No Defense" column)."""
from __future__ import annotations

from ..engine import epoch_generator, train_epoch
from . import DefenseSpec


def run_none(run) -> dict:
    """Train on every sample with its observed label; record per-sample training losses each epoch."""
    c = run.config
    n = len(run.all_index)
    run.make_optimizer(steps_per_epoch=-(-n // c.batch_size))
    for epoch in run.epochs():
        result = train_epoch(run.model, run.x, run.y, run.all_index, run.optimizer, normalize=run.normalize,
                             generator=epoch_generator(c.seed, epoch), batch_size=c.batch_size, pad=c.pad,
                             flip=run.train.data.hflip, scheduler=run.scheduler, progress=run.progress)
        per_sample = result.sample_loss.new_empty(n)
        per_sample[result.index] = result.sample_loss
        run.log(loss=result.loss, arrays={"train_loss": per_sample})
    run.snapshot_losses("final")
    return {}


SPEC = DefenseSpec(name="none", run=run_none, summary="no defense: supervised training on the poisoned set")
