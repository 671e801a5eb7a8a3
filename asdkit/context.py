"""What a defense sees: the training set without ground truth, trusted seeds, the model, the engine's verbs.

A :class:`Context` is handed to every phase of a defense. It holds the poisoned training
set only as :class:`~asdkit.engine.Images` (images and *observed* labels), the clean seed
samples the runner drew for it (the defender's trusted data, 002 Section 4.1), the model,
the current phase's optimiser, scheduler and progress bar, a ``state`` dict that survives a
resume, and verbs: score, train an epoch or a semi-supervised epoch, evaluate, log, named random
streams, snapshots, products a later run reuses. What one epoch logs is one :class:`EpochLog`,
which the runner takes after the epoch (:meth:`Context.take_log`).
It never holds the runner, the record or the :class:`~asdkit.attacks.PoisonedSet`: which
samples are poisoned, and their true labels, are out of a defense's reach (tested). Pool
statistics that need the ground truth (poisoned samples in D_C, TPR, FPR) are computed by
the runner from the pool mask a defense logs with :meth:`Context.log_pool`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from .config import RunConfig
from .engine import EpochResult, Images, WeightAverage, evaluate, predict, score, stream, train_epoch, train_steps
from .options import Options
from .phases import Product
from .records import load_checked

__all__ = ["Context", "Evaluator", "EpochLog", "Products"]


@dataclass
class EpochLog:
    """What a defense logged during one epoch (or before its first): metrics, per-sample arrays, snapshots, its pool, faults."""

    metrics: dict[str, Any] = field(default_factory=dict)
    arrays: dict[str, torch.Tensor] = field(default_factory=dict)
    snapshots: dict[str, dict[str, Any]] = field(default_factory=dict)
    pool_score: torch.Tensor | None = None  # the score clean-hard samples are ranked by (with the logged clean_pool)
    hard_fraction: float = 0.1
    faults: dict[str, float] = field(default_factory=dict)  # state key -> share to swap (003 Table 3)


@dataclass(frozen=True)
class Products:
    """Where phase products are cached (``<runs>/cache/products``), and which this run may read: all (``only`` None), or, when
    it resumes, the ones it had read before it stopped (a run that made its own keeps its own)."""

    folder: Path
    only: frozenset[str] | None = None

    def path(self, product: Product) -> Path:
        return self.folder / f"{product.name}-{product.key}.pt"

    def readable(self, product: Product) -> bool:
        return (self.only is None or product.name in self.only) and self.path(product).exists()


@dataclass(frozen=True)
class Evaluator:
    """The test side of a run: clean test images and the triggered non-target test set (ACC and ASR)."""

    x: torch.Tensor
    y: torch.Tensor
    asr_x: torch.Tensor
    asr_y: torch.Tensor
    normalize: Any
    batch_size: int
    precision: str = "fp32"  # bf16: the forward passes in bfloat16 autocast (an argmax is all that is read)

    def __call__(self, model: nn.Module) -> dict[str, Any]:
        return evaluate(model, self.x, self.y, self.asr_x, self.asr_y, normalize=self.normalize, batch_size=self.batch_size,
                        precision=self.precision)


@dataclass
class Context:
    """The narrow, typed view of a run that a defense's phases receive (see the module docstring)."""

    config: RunConfig
    options: Options
    data: Images  # the poisoned training set: images and observed labels, resident on the device
    seeds: torch.Tensor  # indices of the trusted seed samples the runner drew (empty when the defense asks for none)
    model: nn.Module
    epochs: int  # epochs of supervised training this run resolved (config.epochs, or what the budget buys)
    evaluator: Evaluator
    folder: Path
    precision: str = "fp32"  # of training steps (fp32 | bf16, resolved by the runner); scoring is always float32
    products: Products | None = None  # the cache of phase products (None: none is read or written)
    state: dict[str, Any] = field(default_factory=dict)  # defense state that must survive a resume (tensors, numbers)
    scratch: dict[str, Any] = field(default_factory=dict)  # what a defense recomputes after a resume (not saved)
    average: WeightAverage | None = None  # an evaluation copy (ACC/ASR are measured on it when set)
    # the phase being run (:meth:`enter`)
    phase: str = ""
    optimizer: torch.optim.Optimizer | None = None
    scheduler: Any = None
    progress: Any = None
    epoch_log: EpochLog = field(default_factory=EpochLog)  # what is being logged, taken by the runner after each epoch

    # -- facts about the data --------------------------------------------------------------
    @property
    def n(self) -> int:
        return len(self.data)

    @property
    def num_classes(self) -> int:
        return self.data.num_classes

    @property
    def labels(self) -> torch.Tensor:
        """Observed labels of the training set, on the CPU."""
        return self.data.y.cpu()

    @property
    def device(self) -> torch.device:
        return self.data.device

    # -- the runner's side ------------------------------------------------------------------
    def enter(self, phase: str, optimizer: torch.optim.Optimizer | None, scheduler: Any, progress: Any = None) -> None:
        """Start phase ``phase`` with its optimiser, lr scheduler and progress bar."""
        self.phase, self.optimizer, self.scheduler, self.progress = phase, optimizer, scheduler, progress

    def take_log(self) -> EpochLog:
        """What was logged since the last call; the next epoch logs into a fresh :class:`EpochLog`."""
        log, self.epoch_log = self.epoch_log, EpochLog()
        return log

    # -- randomness -----------------------------------------------------------------------
    def stream(self, purpose: str, *parts: object) -> torch.Generator:
        """The random stream (seed, phase, purpose, parts...): e.g. ``ctx.stream("batches", epoch)``."""
        return stream(self.config.seed, self.phase, purpose, *parts)

    # -- engine verbs ----------------------------------------------------------------------
    def score(self, loss_fn, model: nn.Module | None = None) -> torch.Tensor:
        """Per-sample loss of every training sample (observed label) under ``model`` (default the trained one), eval mode."""
        d = self.data
        return score(model or self.model, d.x, d.y, loss_fn, normalize=d.normalize, batch_size=self.config.eval_batch_size)

    def predict(self, model: nn.Module | None = None) -> torch.Tensor:
        """Logits of every training image, eval mode."""
        return predict(model or self.model, self.data.x, normalize=self.data.normalize, batch_size=self.config.eval_batch_size)

    def features(self, x: torch.Tensor | None = None, model: nn.Module | None = None) -> torch.Tensor:
        """Backbone features (``model.features``) of uint8 images ``x`` (default the training images), eval mode."""
        return predict(model or self.model, self.data.x if x is None else x, normalize=self.data.normalize,
                       batch_size=self.config.eval_batch_size, features=True)

    def train_epoch(self, index: torch.Tensor | None = None, *, loss_fn=None, weight: torch.Tensor | None = None, reweight=None,
                    generator: torch.Generator | None = None, batch_size: int | None = None, model: nn.Module | None = None,
                    optimizer: torch.optim.Optimizer | None = None, epoch: int = 0) -> EpochResult:
        """One supervised epoch over ``index`` (default all) with this phase's optimiser, scheduler and progress bar.

        Given another ``model`` and ``optimizer`` (the virtual model), it trains those,
        without the phase's scheduler and progress bar.
        """
        own = model is None
        return train_epoch(model or self.model, self.data, torch.arange(self.n) if index is None else index,
                           optimizer or self.optimizer, generator=generator or self.stream("batches", epoch),
                           batch_size=batch_size or self.config.batch_size, loss_fn=loss_fn, weight=weight, reweight=reweight,
                           scheduler=self.scheduler if own else None, average=self.average if own else None,
                           progress=self.progress if own else None, precision=self.precision)

    def train_steps(self, steps, objective) -> EpochResult:
        """Run ``objective`` over the batch descriptions ``steps`` with this phase's optimiser, scheduler, weight average and progress bar."""
        return train_steps(self.model, steps, objective, self.optimizer, scheduler=self.scheduler, average=self.average,
                           progress=self.progress, precision=self.precision)

    def semi(self, method, data: Images, labelled: torch.Tensor, *, epoch: int, config, average: bool = True) -> dict[str, Any]:
        """One epoch of a semi-supervised pool operation (``semi.SEMI_METHODS``) on ``data``, ``labelled`` the clean pool, with this phase's optimiser."""
        return method(self.model, data, labelled, self.optimizer, epoch=epoch, config=config, generator=self.stream("mixmatch", epoch),
                      scheduler=self.scheduler, average=self.average if average else None, progress=self.progress,
                      precision=self.precision)

    def evaluate(self, model: nn.Module | None = None) -> dict[str, Any]:
        """ACC and ASR now, of ``model`` (default: the weight average if kept, else the trained model)."""
        return self.evaluator(model or (self.average.model if self.average is not None else self.model))

    # -- what a defense writes -------------------------------------------------------------
    def log(self, arrays: dict[str, torch.Tensor] | None = None, **metrics: Any) -> None:
        """Add scalar metrics and per-sample arrays to the epoch being run."""
        self.epoch_log.metrics.update(metrics)
        self.epoch_log.arrays.update(arrays or {})

    def log_pool(self, clean_pool: torch.Tensor, *, score: torch.Tensor | None = None, hard_fraction: float = 0.1) -> None:
        """Record this epoch's clean pool D_C (a bool mask over the training set).

        The runner adds what the ground truth says of it (poisoned samples in D_C, clean-hard
        samples in D_C, where clean-hard are the ``hard_fraction``·N clean samples of largest
        ``score``: 002 Section 5.2, 5,000 of 50,000).
        """
        self.epoch_log.pool_score = None if score is None else score.detach().float().cpu()
        self.epoch_log.hard_fraction = hard_fraction
        self.log(arrays={"clean_pool": clean_pool.detach().cpu().clone()}, pool_size=int(clean_pool.sum()),
                 pool_per_class=torch.bincount(self.labels[clean_pool.cpu()], minlength=self.num_classes).tolist())

    def request_faults(self, key: str, ratio: float) -> None:
        """Ask the runner to swap ``ratio`` of the samples in the mask ``state[key]`` for random benign ones after this epoch (003 Table 3).

        The fault-ratio experiment needs the ground truth, so the runner does it, as the
        paper's authors did by hand: the defense only learns that its mask was changed.
        """
        if ratio > 0:
            self.epoch_log.faults[key] = float(ratio)

    def snapshot(self, name: str, **values: Any) -> None:
        """Store tensors or numbers under the record's snapshot ``name`` (what a figure needs at a named moment)."""
        self.epoch_log.snapshots.setdefault(name, {}).update(values)

    def save_weights(self, name: str, *, model: nn.Module | None = None, file: str | None = None, **info: Any) -> None:
        """Save weights (default the trained model's) once as ``<name>.pt``; the snapshot ``name`` points to the file."""
        from ._io import save_atomic

        file = file or f"{name}.pt"
        save_atomic((model or self.model).state_dict(), self.folder / file)
        self.snapshot(name, weights=file, **{k: torch.tensor(v) for k, v in info.items()})

    def snapshot_losses(self, name: str, *, sce=None) -> None:
        """Store CE and SCE losses (``sce``: the defense's own L1, default SCE α 0.1, β 1) of every training sample as snapshot ``name``."""
        from .losses import cross_entropy, sce_loss

        logits = self.predict()
        y = self.data.y.to(logits.device)
        self.snapshot(name, ce=cross_entropy(logits, y).half().cpu(), sce=(sce or sce_loss)(logits, y).half().cpu())

    def feature_sample(self, count: int) -> torch.Tensor:
        """A fixed random sample of ``count`` training indices (the same for every run of one seed and data set), sorted."""
        g = stream(self.config.seed, "feature sample")
        return torch.randperm(self.n, generator=g)[: min(count, self.n)].sort().values

    def snapshot_features(self, name: str, count: int, *, model: nn.Module | None = None) -> None:
        """Store the backbone features (``model.features``) of :meth:`feature_sample` as snapshot ``name`` (004 Fig. 1's t-SNE)."""
        index = self.feature_sample(count)
        feats = self.features(self.data.x[index.to(self.device)], model)
        self.snapshot(name, index=index, features=feats.half().cpu())

    def keep_average(self, decay: float) -> None:
        """Keep an exponential moving average of the weights (MixMatch's evaluation model); ACC/ASR are then measured on it."""
        self.average = WeightAverage(self.model, decay)

    # -- modules and products ------------------------------------------------------------
    def attach(self, name: str, factory: Callable[[], nn.Module]) -> None:
        """Add a module (a projection head) to the model, initialised from the run's seed as the model is; global RNG state kept."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.config.seed)
            module = factory()
        setattr(self.model, name, module.to(self.device))

    def reuse(self, product: Product) -> bool:
        """Load ``product`` if a run cached it (weights into the model, its state into ``state``); whether it was there."""
        if self.products is None or not self.products.readable(product):
            return False
        cached = load_checked(self.products.path(product), required=("model", "state"))
        self.model.load_state_dict(cached["model"])
        self.state.update(cached["state"])
        self.state["reused_products"] = sorted({*self.state.get("reused_products", ()), product.name})  # a resume reads it again
        return True

    def keep(self, product: Product) -> None:
        """Cache ``product`` now: the model's weights and the ``state`` entries it names (the runner calls it when its phase ends)."""
        if self.products is not None:
            from ._io import save_atomic

            save_atomic({"model": self.model.state_dict(), "state": {k: self.state[k] for k in product.state}, "key": product.key},
                        self.products.path(product))
