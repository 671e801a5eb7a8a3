"""Phases: a defense is a short schedule of named phases, declared as data (the fastai ``fine_tune`` shape).

A :class:`Phase` says what one stretch of training is: its name, its epochs, the optimiser
steps an epoch takes, which modules train (all, the head, the last k layer groups), the
optimiser and lr schedule (:class:`Optim`), and the function that runs one epoch. Phases
that name the same ``optimizer`` key share one optimiser and one lr schedule spanning all
their epochs (ASD's three stages); every other phase has its own. The runner resumes at
(phase, epoch) with every optimiser's and scheduler's state.
"""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import nn

from .models import last_layers, train_only, unfreeze

__all__ = ["Optim", "Phase", "Product", "lr_factor", "trainable_modules", "build_optimizers"]


def lr_factor(schedule: str, t: float, epochs: float, milestones: tuple = ()) -> float:
    """Learning-rate multiplier at fractional epoch ``t``: one-cycle (linear up for 20%, down to 0), cosine (to 0 at ``epochs``), multistep (/10 at each milestone) or constant."""
    if epochs <= 0 and schedule in ("cosine", "onecycle"):  # a phase planned with no epochs never steps
        return 1.0
    if schedule == "cosine":  # CosineAnnealingLR(T_max=epochs, eta_min=0), stepped per iteration
        return 0.5 * (1 + math.cos(math.pi * min(t, epochs) / epochs))
    if schedule == "onecycle":
        peak = 0.2 * epochs
        return t / peak if t < peak else max(0.0, (epochs - t) / (epochs - peak))
    if schedule == "multistep":
        return 0.1 ** sum(t >= m for m in milestones)
    return 1.0


@dataclass(frozen=True)
class Optim:
    """An optimiser and its lr schedule: Adam or SGD, peak lr, momentum (SGD), weight decay, schedule, milestones (epochs).

    ``horizon``: the epochs the schedule spans, when not the phases' own (the DBD authors'
    SimCLR backbone is taken at epoch 100 of a 1,000-epoch cosine schedule); 0 = the phases'.
    """

    name: str = "adam"
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 0.0
    schedule: str = "constant"
    milestones: tuple = ()
    horizon: float = 0.0

    @classmethod
    def from_config(cls, config: Any) -> "Optim":
        """The run config's optimiser (``optimizer``, ``lr``, ``momentum``, ``weight_decay``, ``schedule``, ``milestones``)."""
        return cls(config.optimizer, config.lr, config.momentum, config.weight_decay, config.schedule, tuple(config.milestones))

    def build(self, params: list[nn.Parameter]) -> torch.optim.Optimizer:
        if self.name == "sgd":
            return torch.optim.SGD(params, lr=self.lr, momentum=self.momentum, weight_decay=self.weight_decay)
        if self.name == "adam":
            return torch.optim.Adam(params, lr=self.lr, weight_decay=self.weight_decay)
        raise ValueError(f"The 'name' parameter of Optim must be 'adam' or 'sgd'. Got {self.name!r} instead.")

    def __post_init__(self) -> None:
        if self.schedule not in ("onecycle", "cosine", "multistep", "constant"):
            raise ValueError(f"The 'schedule' parameter of Optim must be 'onecycle', 'cosine', 'multistep' or 'constant'. Got {self.schedule!r} instead.")


EpochFn = Callable[[Any, int], "dict[str, Any] | None"]  # (the Context, epoch) -> metrics


@dataclass(frozen=True)
class Product:
    """What a phase leaves that a later run can start from: the model's weights and some ``ctx.state``, cached under a key.

    ``key`` hashes everything the product depends on (:meth:`of`: the poisoned set, the network
    and the options the phase reads); a run whose product is cached skips the phase and loads it
    instead (:meth:`asdkit.context.Context.reuse`; DBD's SimCLR backbone, 004 §4.2).
    """

    name: str
    key: str
    state: tuple[str, ...] = ()  # the ctx.state entries kept with the weights

    @classmethod
    def of(cls, config: Any, name: str, depends: dict[str, Any], *, state: tuple[str, ...] = ()) -> "Product":
        """The product ``name`` of ``config``'s run: keyed by its poisoned set and network (``RunConfig.poisoned_set``) and ``depends``."""
        blob = json.dumps({**config.poisoned_set(), name: depends}, sort_keys=True, default=str)
        return cls(name, hashlib.sha256(blob.encode()).hexdigest()[:12], state)


@dataclass(frozen=True)
class Phase:
    """One named stretch of a defense's schedule.

    ``run(ctx, epoch)`` trains one epoch (with ``ctx.optimizer``, ``ctx.scheduler``,
    ``ctx.progress``) and may return metrics; ``epoch`` counts from ``first_epoch``.
    An epoch's optimiser steps (the progress bar and the lr schedule) are ``steps`` when
    given (MixMatch's iterations), else derived from the ``samples`` an epoch visits in
    batches of ``batch_size`` (the last one partial unless ``drop_last``). ``train`` says which
    modules the optimiser holds: ``"all"``, ``"head"`` (the linear layer; the rest frozen with
    its BatchNorm statistics) or ``"last:K"`` (the last K layer groups). ``evaluate``: measure
    ACC/ASR after every epoch (the record's curves). ``product``: the phase's result is cached
    and reused (:class:`Product`).
    """

    name: str
    epochs: int
    run: EpochFn
    optim: Optim
    steps: int = -1
    samples: int = 0
    batch_size: int = 1
    drop_last: bool = False
    optimizer: str = ""  # key of a shared optimiser; "" = this phase's own
    train: str = "all"
    first_epoch: int = 0
    evaluate: bool = True
    product: Product | None = None

    def __post_init__(self) -> None:
        if self.steps < 0:  # one step per batch of the samples an epoch visits
            steps = self.samples // self.batch_size if self.drop_last else -(-self.samples // self.batch_size)
            object.__setattr__(self, "steps", steps)

    @property
    def key(self) -> str:
        return self.optimizer or f"phase:{self.name}"


def trainable_modules(model: nn.Module, train: str) -> list[nn.Module] | None:
    """The modules a phase trains: None for all, ``[model.linear]`` for "head", the last K groups for "last:K"."""
    if train == "all":
        return None
    if train == "head":
        return [model.linear]
    if train.startswith("last:") and train[5:].isdigit():
        return last_layers(model, int(train[5:]))
    raise ValueError(f"The 'train' parameter of Phase must be 'all', 'head' or 'last:K'. Got {train!r} instead.")


def select(model: nn.Module, train: str) -> list[nn.Parameter]:
    """Make ``model`` train only what ``train`` names (BatchNorm statistics of the rest frozen); return those parameters."""
    modules = trainable_modules(model, train)
    return unfreeze(model) if modules is None else train_only(model, modules)


def build_optimizers(model: nn.Module, phases: list[Phase]) -> dict[str, tuple[torch.optim.Optimizer, Any]]:
    """One optimiser and lr scheduler per key; a shared key's schedule spans all its phases' epochs."""
    groups: dict[str, list[Phase]] = {}
    for p in phases:
        groups.setdefault(p.key, []).append(p)
    out = {}
    for key, members in groups.items():
        first = members[0]
        if any(m.optim != first.optim or m.train != first.train for m in members):
            raise ValueError(f"Phases sharing the optimiser {key!r} must declare the same Optim and train; got {[m.name for m in members]}.")
        params = select(model, first.train)
        opt = first.optim.build(params)
        segments = [(m.steps, m.epochs) for m in members]
        o = first.optim
        total = float(o.horizon or sum(e for _, e in segments))

        def factor(step: int, segments=segments, total=total, o=o) -> float:
            t, left = 0.0, step + 1  # the factor after this step: the schedule at the step's end
            for steps, epochs in segments:
                span = max(1, steps) * epochs
                if left <= span:
                    return lr_factor(o.schedule, t + left / max(1, steps), total, o.milestones)
                t, left = t + epochs, left - span
            return lr_factor(o.schedule, total, total, o.milestones)

        out[key] = (opt, torch.optim.lr_scheduler.LambdaLR(opt, factor))
    unfreeze(model)
    return out
