"""PIPD — Progressive Isolation of Poisoned Data (003, Algorithm in appendix A), as three phases on the shared core.

    pre_isolation:  train on D with the LGA loss (003 Eq. 2) for the run's epochs (003: 200)
                    P_p ← the p lowest-loss samples, P_b ← the q highest-loss samples
    isolation:      T rounds (003 Eq. 9), each a one-step isolation with the pre-isolation model:
                    channels of largest discrepancy between P_p and P_b (Eq. 4-6), sample scores (Eq. 7),
                    two natural classes of the scores (Eq. 8): D̂_p high (less P_b, as the authors' code reports it),
                    D̂_b the rest;  P_b ← P_b ∪ (the low class)
    training:       selective training (Eq. 10): CE descent on D̂_b; on D̂_p gradient ascent (−λ·CE) only
                    for the samples the model still maps to their observed label; or ABL's unlearning

The printed Eq. 10 swaps the two sets' subscripts; the text around it is implemented. The
authors' code never retrains between rounds either (the same model every round); it grows P_b
with the complement of the previous round's output, which is Eq. 9 written another way, and
reports the high class less the round's P_b (``output="high-minus-pb"``, the default), so a
sample once taken as benign is never isolated again; ``output="high"`` isolates the whole high
class. Each round's isolated set, chosen channels, their discrepancies, the scores and the break
are in the record.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any

import torch

from ..losses import cross_entropy
from ..models import channel_activations, channel_layers
from ..options import choice, integer, real
from ..phases import Optim, Phase
from .spec import DefenseSpec
from .discrepancy import discrepancy_scores
from .pieces import lga_reweight
from .policies import lowest_fraction, natural_breaks_split

OPTIONS = (
    real("gamma", 0.5, low=0, doc="LGA threshold γ of the pre-isolation (003 Eq. 2)"),
    choice("lga_form", "batch", ("batch", "sample"), doc="LGA's sign of the batch mean (ABL's code) or of each sample"),
    real("p", 0.01, low=0, high=1, closed="neither", doc="P_p: the lowest-loss fraction after pre-isolation (003 §3.1)"),
    real("q", 0.2, low=0, high=1, closed="neither", doc="P_b: the highest-loss fraction after pre-isolation (003 §3.1)"),
    integer("rounds", 8, low=1, doc="T, rounds of progressive isolation (003 implementation details)"),
    real("beta", 3.0, low=0, doc="β of the discrepancy (003 Eq. 4)"),
    real("top_fraction", 0.04, low=0, high=1, closed="right", doc="K as a fraction of a layer's channels (the authors' code: 0.04)"),
    integer("layers", 0, low=0, doc="0: every channel layer; K: only the last K (the authors' SIG driver: 1, Refool: 3)"),
    choice("pooling", "max", ("max", "mean"), doc="spatial pooling of a channel (the authors' code: max)"),
    choice("breaks", "jenks", ("jenks", "exact"), doc="natural breaks by jenkspy, or the exact sort-and-prefix-sum split"),
    choice("output", "high-minus-pb", ("high-minus-pb", "high"),
           doc="D̂_p of a round: the high natural class less that round's P_b (the authors' code), or the whole high class (Eq. 8)"),
    integer("train_epochs", 20, low=0, scales={"classroom": 2, "lab": 20, "smoke": 2}, doc="epochs of selective training (003: 20)"),
    real("train_lr", 0.01, low=0, closed="neither", scales={"classroom": 1e-3, "smoke": 1e-3},
         doc="lr of the selective training (the run's optimiser, constant; 003 does not print it)"),
    real("lambda_", 1.0, low=0, doc="λ of the ascent term of Eq. 10 (003 does not print it)"),
    choice("operation", "selective", ("selective", "unlearn"), doc="Eq. 10's selective training, or ABL's unlearning of D̂_p (003 Fig. 5)"),
    real("fault_ratio", 0.0, low=0, high=1, closed="left",
         doc="share of P_p the runner swaps for random benign samples (003 Table 3; uses the ground truth)"),
)


def selective_weights(benign: torch.Tensor, lam: float, operation: str):
    """Eq. 10 as the one step's reweight: E over D̂_b of CE, minus λ·E over D̂_p of 1(f(x) = y)·CE (each set's batch mean)."""

    def reweight(losses, logits, labels, index):
        b = benign.to(index.device)[index]
        n_b, n_p = int(b.sum()), int((~b).sum())
        scale = torch.zeros_like(losses)
        if n_b:
            scale[b] = len(index) / n_b
        if n_p:
            hit = (logits.argmax(1) == labels) if operation == "selective" else torch.ones_like(b)
            scale[~b] = -lam * len(index) / n_p * hit[~b].float()
        return scale

    return reweight


def pre_isolate(ctx) -> None:
    """003 §3.1: P_p ← the p lowest, P_b ← the q highest losses of the LGA model (the runner may then add Table 3's faults)."""
    o, losses = ctx.options, ctx.score(cross_entropy)
    ctx.state["p_p"], ctx.state["p_b"] = lowest_fraction(losses, o.p), lowest_fraction(-losses, o.q)
    ctx.request_faults("p_p", o.fault_ratio)


def channel_features(ctx) -> dict[str, torch.Tensor]:
    """Every sample's pooled channel activations (003 Eq. 4-6's inputs) under the pre-isolation model, computed once."""
    if "acts" not in ctx.scratch:  # the same feature extractor every round: one forward pass
        o = ctx.options
        layers = list(channel_layers(ctx.model))[-o.layers:] if o.layers else None
        ctx.scratch["acts"] = channel_activations(ctx.model, ctx.data.x, layers, pooling=o.pooling, normalize=ctx.data.normalize,
                                                  batch_size=ctx.config.eval_batch_size)
    return ctx.scratch["acts"]


def plan_pipd(ctx) -> list[Phase]:
    """Pre-isolation (LGA) → T rounds of progressive isolation → selective training."""
    o, c, n = ctx.options, ctx.config, ctx.n

    def pre_isolation(ctx, epoch: int) -> dict[str, Any]:
        result = ctx.train_epoch(reweight=lga_reweight(o.gamma, o.lga_form), epoch=epoch)
        ctx.log(arrays={"lga_loss": result.per_sample(n)})
        if epoch == ctx.epochs - 1:
            pre_isolate(ctx)
            ctx.log(arrays={"p_b": ctx.state["p_b"].clone()})  # P_b^1, the q highest losses (each round logs P_b after its update)
        return {"loss": result.loss}

    def isolation_round(ctx, t: int) -> dict[str, Any]:
        s = ctx.state
        scores, chosen, disc = discrepancy_scores(channel_features(ctx), s["p_p"], s["p_b"], beta=o.beta, fraction=o.top_fraction)
        low, cut = natural_breaks_split(scores, method=o.breaks)
        benign = low | s["p_b"] if o.output == "high-minus-pb" else low  # D̂_p = high class \ P_b^t (the authors' code)
        s["benign"] = benign
        s["p_b"] = s["p_b"] | low  # Eq. 9: P_b grows by this round's low class; P_p stays
        ctx.log_pool(benign)
        ctx.log(arrays={"pipd_score": scores, "p_p": s["p_p"].clone(), "p_b": s["p_b"].clone(), **{f"channels/{k}": v for k, v in chosen.items()},
                        **{f"discrepancy/{k}": v for k, v in disc.items()}}, round=t + 1, jenks_break=cut, high=int((~low).sum()),
                isolated=int((~benign).sum()))
        return {}

    def training(ctx, epoch: int) -> dict[str, Any]:
        ctx.log_pool(ctx.state["benign"])
        return {"loss": ctx.train_epoch(reweight=selective_weights(ctx.state["benign"], o.lambda_, o.operation), epoch=epoch).loss}

    selective = replace(Optim.from_config(c), lr=o.train_lr, schedule="constant", milestones=())
    return [
        Phase("pre_isolation", ctx.epochs, pre_isolation, Optim.from_config(c), samples=n, batch_size=c.batch_size),
        Phase("isolation", o.rounds, isolation_round, Optim.from_config(c), steps=0, evaluate=False),
        Phase("training", o.train_epochs, training, selective, samples=n, batch_size=c.batch_size),
    ]


def check_pipd(ctx) -> None:
    """Checks that need the model and the resolved epochs, before any training."""
    o, layers = ctx.options, list(channel_layers(ctx.model))
    if o.layers > len(layers):
        raise ValueError(f"The 'layers' option of pipd must be an int in [0, {len(layers)}] for this model "
                         f"(its channel layers: {layers}). Got {o.layers} instead.")


SPEC = DefenseSpec(
    name="pipd",
    plan=plan_pipd,
    check=check_pipd,
    options=OPTIONS,
    summary="PIPD: LGA pre-isolation, progressive channel-discrepancy isolation with natural breaks, selective training (003)",
    presets={
        # 003 implementation details: 200 pre-isolation epochs (SGD 0.1 of the paper preset), T = 8, 20 of selective training.
        "paper": dict(epochs=200),
        # Smoke: as ABL's, enough images for the LGA model to learn the trigger within seconds.
        "smoke": dict(train_size=10000, budget=20000),
    },
)
