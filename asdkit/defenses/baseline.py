"""No defense: plain supervised training on the whole poisoned set (the papers' "No Defense" column)."""
from __future__ import annotations

from ..phases import Optim, Phase
from .spec import DefenseSpec


def train(ctx, epoch: int) -> dict:
    """One epoch on every sample with its observed label; per-sample training losses go to the record."""
    result = ctx.train_epoch(epoch=epoch)
    ctx.log(arrays={"train_loss": result.per_sample(ctx.n)})
    return {"loss": result.loss}


def plan_none(ctx) -> list[Phase]:
    """One phase: the run's epochs (what the budget buys on this data set) of the config's optimiser and schedule."""
    return [Phase("train", ctx.epochs, train, Optim.from_config(ctx.config), samples=ctx.n, batch_size=ctx.config.batch_size)]


def finish(ctx) -> dict:
    """The final losses, and the backbone features of the fixed feature sample (the supervised side of 004 Fig. 1)."""
    ctx.snapshot_losses("final")
    ctx.snapshot_features("features", FEATURE_SAMPLE)
    return {}


FEATURE_SAMPLE = 2000  # points of 004 Fig. 1's t-SNE (the same indices in a DBD run of the same seed)


SPEC = DefenseSpec(name="none", plan=plan_none, finish=finish, summary="no defense: supervised training on the poisoned set")
