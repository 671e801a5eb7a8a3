"""The hot loop, device-agnostic: batches are index tensors into resident uint8 images.

:func:`train_steps` is the only batch loop of the package: an *objective* turns one batch
into per-row losses and weights, the loop does backward, step, schedule, weight average and
progress. On it: :func:`train_epoch` (one pass of supervised training over an index set),
:func:`evaluate` (clean accuracy and attack success rate) and :func:`score` (per-sample
losses in eval mode, large batches, no autograd — shaped like airbench's ``infer``).
Augmentation (random crop by padding and shifting, optional horizontal flip) runs on whole
batches on the model's device; nothing on the hot path touches PIL or a per-sample loop.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Iterable

import torch
import torch.nn.functional as F
from torch import nn

from .devices import forward_chunk, resolve_device
from .precision import autocast

__all__ = [
    "resolve_device",
    "Normalizer",
    "augment",
    "batches",
    "Images",
    "Terms",
    "train_mode",
    "train_steps",
    "supervised",
    "train_epoch",
    "evaluate",
    "score",
    "predict",
    "EpochResult",
    "stream",
    "WeightAverage", "Diverged"]

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (logits, labels) -> per-sample loss


def stream(seed: int, *names: object) -> torch.Generator:
    """A CPU generator for one named random stream: ``stream(seed, phase, purpose, epoch, ...)``.

    Its state is a hash of the seed and the names, so two purposes never share a stream
    (whatever their epochs) and resuming at an epoch needs no saved RNG state.
    """
    import hashlib

    digest = hashlib.sha256(repr((int(seed),) + tuple(str(n) for n in names)).encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") % (2**63))


class Diverged(ValueError):
    """A training step's loss was not finite (NaN or inf): the run stops before that step changes the weights."""


class Normalizer:
    """uint8 batch → float, normalised by the data set's mean/std, channels-last where it helps."""

    def __init__(self, mean, std, device: torch.device, channels_last: bool = True) -> None:
        self.mean = torch.tensor(mean, device=device).view(1, -1, 1, 1) * 255
        self.std = torch.tensor(std, device=device).view(1, -1, 1, 1) * 255
        self.channels_last = channels_last

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        x = (x.float() - self.mean) / self.std
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x


def augment(x: torch.Tensor, *, pad: int, flip: bool, generator: torch.Generator) -> torch.Tensor:
    """Random crop (zero-pad by ``pad`` then shift) and optional horizontal flip, for a whole uint8 batch.

    Zero padding, as torchvision's ``RandomCrop(padding=p)`` default; the ASD authors pad by
    reflection on CIFAR-10 (a border detail that does not touch a trigger in the image).
    """
    n, _, h, w = x.shape
    if pad > 0:
        xp = F.pad(x, (pad, pad, pad, pad))
        dy = torch.randint(0, 2 * pad + 1, (n,), generator=generator).to(x.device)
        dx = torch.randint(0, 2 * pad + 1, (n,), generator=generator).to(x.device)
        rows = (torch.arange(h, device=x.device)[None, :] + dy[:, None])[:, None, :, None]
        cols = (torch.arange(w, device=x.device)[None, :] + dx[:, None])[:, None, None, :]
        x = xp[torch.arange(n, device=x.device)[:, None, None, None], torch.arange(x.shape[1], device=x.device)[None, :, None, None], rows, cols]
    if flip:
        mask = (torch.rand(n, generator=generator) < 0.5).to(x.device)
        x = torch.where(mask[:, None, None, None], x.flip(3), x)
    return x


def batches(index: torch.Tensor, batch_size: int, *, generator: torch.Generator | None = None, drop_last: bool = False):
    """Yield index batches, shuffled when a generator is given."""
    if generator is not None:
        index = index[torch.randperm(len(index), generator=generator)]
    stop = len(index) - (len(index) % batch_size if drop_last else 0)
    for i in range(0, stop, batch_size):
        yield index[i : i + batch_size]


class WeightAverage:
    """An exponential moving average of a model's weights (MixMatch's evaluation model, Berthelot et al. 2019 §3.5).

    ``update(model)`` after every optimiser step: θ_avg ← d·θ_avg + (1 − d)·θ; buffers
    (BatchNorm statistics) are copied as they are.
    """

    def __init__(self, model: nn.Module, decay: float = 0.999) -> None:
        import copy

        self.model = copy.deepcopy(model)
        self.decay = decay
        for p in self.model.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        for avg, p in zip(self.model.parameters(), model.parameters()):
            avg.lerp_(p.detach(), 1 - self.decay)
        for avg, b in zip(self.model.buffers(), model.buffers()):
            avg.copy_(b)


@dataclass(frozen=True)
class Images:
    """A training set as a model sees it: resident uint8 images, observed labels, and how to augment and normalise them.

    This is all a defense gets of the poisoned set: no ground truth.
    """

    x: torch.Tensor  # uint8 N×C×H×W, on the training device
    y: torch.Tensor  # observed labels, int64 N, on the same device
    normalize: Normalizer
    num_classes: int
    pad: int = 2  # random-crop padding, pixels
    flip: bool = False  # horizontal flips are a valid augmentation for this data

    def __len__(self) -> int:
        return self.x.shape[0]

    @property
    def device(self) -> torch.device:
        return self.x.device

    def view(self, index: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """The images at ``index`` (on the device), randomly cropped and flipped, normalised: one training view."""
        return self.normalize(augment(self.x[index], pad=self.pad, flip=self.flip, generator=generator))

    def extended(self, x: torch.Tensor, y: torch.Tensor) -> "Images":
        """These images followed by ``x`` with labels ``y`` (e.g. transfer seeds from another data set)."""
        return replace(self, x=torch.cat([self.x, x.to(self.device)]), y=torch.cat([self.y, y.to(self.device)]))


@dataclass
class Terms:
    """What an objective returns for one step: per-row losses and their weights (the step descends on Σ weight·loss).

    ``index`` gives each row's sample index when rows are samples of the training set (their
    losses then come back per sample); ``logs`` holds scalars averaged over the epoch.
    """

    loss: torch.Tensor
    weight: torch.Tensor | float
    index: torch.Tensor | None = None
    logs: dict[str, torch.Tensor | float] = field(default_factory=dict)


Objective = Callable[[nn.Module, Any], Terms]  # (model, one batch description) -> Terms


@dataclass
class EpochResult:
    """What a run of steps produced: mean loss (per sample where rows are samples, else per step), per-sample losses (aligned with ``index``), logged means, steps, seconds."""

    loss: float
    index: torch.Tensor
    sample_loss: torch.Tensor
    logs: dict[str, float]
    steps: int
    seconds: float

    def per_sample(self, n: int) -> torch.Tensor:
        """The per-sample losses scattered into an N-vector (NaN where a sample was not seen)."""
        out = torch.full((n,), float("nan"))
        out[self.index] = self.sample_loss
        return out


class JointOptimizer:
    """Several optimisers stepped as one by :func:`train_steps` (IAB trains its classifier with SGD and its generator with Adam on one loss)."""

    def __init__(self, *optimizers: torch.optim.Optimizer) -> None:
        self.optimizers = optimizers

    def zero_grad(self, set_to_none: bool = True) -> None:
        for each in self.optimizers:
            each.zero_grad(set_to_none=set_to_none)

    def step(self) -> None:
        for each in self.optimizers:
            each.step()


def train_mode(model: nn.Module) -> None:
    """``model.train()``, except the normalisation layers frozen by :func:`asdkit.models.train_only`, which stay in eval mode."""
    model.train()
    for m in getattr(model, "frozen_norms", ()):
        m.eval()


def train_steps(model: nn.Module, batches: Iterable[Any], objective: Objective, optimizer: torch.optim.Optimizer, *,
                scheduler=None, average: "WeightAverage | None" = None, progress=None, precision: str = "fp32") -> EpochResult:
    """The one batch loop of asdkit: objective (forward, per-row loss and weight), Σ weight·loss, backward, step.

    Then the lr scheduler, the weight average and the progress bar, once per step. Every way
    of training in the package — supervised epochs, MixMatch, the virtual model, and the
    pool operations to come (SimCLR's two views, unlearning, selective training) — is an
    objective run through this loop. A weight of 1/B descends on a sample's loss, −1/B
    ascends on it, 0 gives it no gradient. Under ``precision="bf16"`` the objective runs in
    bfloat16 autocast (:mod:`asdkit.precision`); the step descends on float32 losses.
    """
    device = next(model.parameters()).device
    train_mode(model)
    start = time.perf_counter()
    total = torch.zeros((), device=device)
    order: list[torch.Tensor] = []
    losses: list[torch.Tensor] = []
    logs: dict[str, torch.Tensor | float] = {}
    steps = 0
    for batch in batches:
        with autocast(device, precision):
            terms = objective(model, batch)
        loss = (terms.loss.float() * terms.weight).sum()
        if not bool(torch.isfinite(loss)):  # stop at once: the step would put NaN into every weight
            lr = optimizer.param_groups[0]["lr"]
            raise Diverged(f"the training loss became {float(loss.detach())} at step {steps + 1} of the epoch (lr {lr:g}); "
                           "the likeliest cause is a learning rate too large for this model")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        if average is not None:
            average.update(model)
        steps += 1
        total += loss.detach()
        for k, v in terms.logs.items():
            logs[k] = logs.get(k, 0.0) + (v.detach().float() if torch.is_tensor(v) else v)
        if terms.index is not None:
            order.append(terms.index.cpu())
            losses.append(terms.loss.detach().float())
        if progress is not None:
            progress.update(1)
    order_t = torch.cat(order) if order else torch.zeros(0, dtype=torch.long)
    loss_t = torch.cat(losses).cpu() if losses else torch.zeros(0)
    means = {k: float(v) / max(1, steps) for k, v in logs.items()}
    # the epoch's loss: the mean per-sample loss where rows are samples, else the mean step loss
    mean = float(loss_t.mean()) if len(loss_t) else float(total) / steps if steps else float("nan")
    return EpochResult(mean, order_t, loss_t, means, steps, time.perf_counter() - start)


def supervised(data: Images, loss_fn: LossFn | None = None, *, generator: torch.Generator,
               weight: torch.Tensor | None = None, reweight: Callable[..., torch.Tensor] | None = None) -> Objective:
    """Supervised training on observed labels: per-sample ``loss_fn(logits, y)`` of an augmented view of each index batch.

    ``weight`` (an N-vector over the training set, default all 1) scales each sample's
    loss: 1 descends, −1 ascends (unlearning), 0 skips; ``reweight(losses, logits, labels,
    index)`` maps the batch's detached per-sample losses and logits to a further factor each
    (LGA's sign, 003 Eq. 2; PIPD's selective training, Eq. 10). The
    batch's terms are divided by the batch size, so all-ones weights give the batch mean.
    """
    loss_fn = loss_fn or (lambda logits, t: F.cross_entropy(logits, t, reduction="none"))
    w_all = None if weight is None else weight.to(data.device, torch.float32)

    def objective(model: nn.Module, index: torch.Tensor) -> Terms:
        idx = index.to(data.device)
        logits = model(data.view(idx, generator))
        per_sample = loss_fn(logits, data.y[idx])
        w = (w_all[idx] if w_all is not None else 1.0) / len(idx)
        if reweight is not None:
            w = w * reweight(per_sample.detach().float(), logits.detach(), data.y[idx], idx)
        return Terms(per_sample, w, index)

    return objective


def train_epoch(model: nn.Module, data: Images, index: torch.Tensor, optimizer: torch.optim.Optimizer, *,
                generator: torch.Generator, batch_size: int = 128, loss_fn: LossFn | None = None,
                weight: torch.Tensor | None = None, reweight=None, scheduler=None, average=None, progress=None,
                precision: str = "fp32") -> EpochResult:
    """One epoch of supervised training over ``data[index]`` in shuffled batches (:func:`supervised` through :func:`train_steps`).

    ``loss_fn`` maps (logits, labels) to per-sample losses (default cross-entropy); the
    per-sample losses of the training pass come back for free in the result.
    """
    return train_steps(model, batches(index, batch_size, generator=generator),
                       supervised(data, loss_fn, generator=generator, weight=weight, reweight=reweight), optimizer,
                       scheduler=scheduler, average=average, progress=progress, precision=precision)


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, *, normalize: Normalizer, batch_size: int = 1024, features: bool = False,
            precision: str = "fp32") -> torch.Tensor:
    """Logits (or backbone features) of every image in ``x``: eval mode, large batches, no autograd, float32 by default.

    Only :func:`evaluate` passes ``bf16`` (an argmax); scoring never does: the meta-split ranks
    L1(θ) − L1(θ'), a small difference of two losses, which bfloat16 logits would blur (the authors score in fp32).
    On a CPU each batch goes through in passes of :data:`asdkit.devices.CPU_CHUNK` images (the same outputs, faster).
    """
    model.eval()
    out = []
    fn = model.features if features else model
    step = forward_chunk(batch_size, x.device)
    with autocast(x.device, precision):
        for i in range(0, len(x), step):
            out.append(fn(normalize(x[i : i + step])).float())
    return torch.cat(out) if out else torch.zeros(0)


@torch.no_grad()
def score(model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss_fn: LossFn, *, normalize: Normalizer, batch_size: int = 1024) -> torch.Tensor:
    """Per-sample loss of every (x, y) under ``model`` in eval mode: the score every split policy reads.

    The images are scored as they are, without augmentation: 002's Algorithm 1 computes
    L1(f_θ) "for the entire D". (The authors' code builds its scoring loader on the training
    set object, so its scored images carry random crops and flips; that is not copied.)
    Returns a float32 CPU tensor aligned with ``x``; a lower loss means the model fits the
    (observed) label better.
    """
    logits = predict(model, x, normalize=normalize, batch_size=batch_size)
    return loss_fn(logits, y.to(logits.device)).float().cpu()


@torch.no_grad()
def evaluate(model: nn.Module, test_x: torch.Tensor, test_y: torch.Tensor, asr_x: torch.Tensor | None, asr_y: torch.Tensor | None, *,
             normalize: Normalizer, batch_size: int = 1024, precision: str = "fp32") -> dict:
    """Clean accuracy (ACC, and per class) on the test set and attack success rate (ASR) on the triggered non-target test set.

    With one target (all2one) also ``clean_target_rate``: the share of the clean non-target test images the model itself
    puts in the target class, the ASR a model reaches with no trigger at all (a collapsed model's 100 % is not a backdoor).
    Under ``precision="bf16"`` the forward passes run in bfloat16 autocast (only an argmax is read).
    """
    pred = predict(model, test_x, normalize=normalize, batch_size=batch_size, precision=precision).argmax(1).cpu()
    labels = test_y.cpu()
    correct = (pred == labels).float()
    counts = torch.bincount(labels).clamp(min=1)
    per_class = torch.bincount(labels, weights=correct) / counts
    result: dict = {"acc": correct.mean().item(), "acc_per_class": [round(v, 4) for v in per_class.tolist()]}
    if asr_x is not None and len(asr_x):
        asr_y = asr_y.cpu()
        asr_pred = predict(model, asr_x, normalize=normalize, batch_size=batch_size, precision=precision).argmax(1).cpu()
        result["asr"] = (asr_pred == asr_y).float().mean().item()
        target = asr_y[0]
        non_target = labels != target
        if bool((asr_y == target).all()) and bool(non_target.any()):
            result["clean_target_rate"] = round((pred[non_target] == target).float().mean().item(), 4)
    return result
