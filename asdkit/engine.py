"""The hot loop, device-agnostic (DESIGN layer 4): batches are index tensors into resident uint8 images.

Three verbs: :func:`train_epoch` (one pass of supervised training over an index set),
:func:`evaluate` (clean accuracy and attack success rate) and :func:`score` (per-sample
losses in eval mode, large batches, no autograd — shaped like airbench's ``infer``).
Augmentation (random crop by padding and shifting, optional horizontal flip) runs on whole
batches on the model's device; nothing on the hot path touches PIL or a per-sample loop.
"""
from __future__ import annotations

import time
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "resolve_device",
    "Normalizer",
    "augment",
    "batches",
    "train_epoch",
    "evaluate",
    "score",
    "predict",
    "EpochResult",
    "epoch_generator",
    "WeightAverage",
]

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (logits, labels) -> per-sample loss


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` picks CUDA, then Apple's MPS, then the CPU; an explicit name must be usable here."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise ValueError(f"The 'device' parameter must be 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'. Got {name!r} instead.") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {name} was asked for but this PyTorch sees no CUDA GPU; use --device auto or cpu.")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ValueError(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s) here.")
    if dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ValueError(f"--device {name} was asked for but Apple's MPS backend is not available; use --device auto or cpu.")
    if dev.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"The 'device' parameter must be 'auto', 'cpu', 'cuda' or 'mps'. Got {name!r} instead.")
    return dev


def epoch_generator(seed: int, epoch: int, stream: int = 0) -> torch.Generator:
    """A CPU generator for one epoch of one random stream: resuming at an epoch needs no saved RNG state."""
    return torch.Generator().manual_seed((seed * 1_000_003 + epoch * 7_919 + stream * 104_729) % (2**63))


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


def autocast(device: torch.device):
    """Mixed precision on CUDA (bfloat16), full precision elsewhere."""
    return torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else nullcontext()


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


@dataclass
class EpochResult:
    """What one training epoch produced: mean loss, per-sample training losses (aligned with its index), seconds."""

    loss: float
    index: torch.Tensor
    sample_loss: torch.Tensor
    seconds: float


def train_epoch(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    index: torch.Tensor,
    optimizer: torch.optim.Optimizer,
    *,
    normalize: Normalizer,
    generator: torch.Generator,
    batch_size: int = 128,
    pad: int = 2,
    flip: bool = False,
    loss_fn: LossFn | None = None,
    scheduler=None,
    progress=None,
) -> EpochResult:
    """One epoch of supervised training over ``x[index]`` (resident on the model's device).

    ``loss_fn`` maps (logits, labels) to per-sample losses (default cross-entropy); the
    per-sample losses of the training pass come back for free in the result.
    ``scheduler`` (if any) is stepped after every batch.
    """
    loss_fn = loss_fn or (lambda logits, t: F.cross_entropy(logits, t, reduction="none"))
    device = x.device
    model.train()
    start = time.perf_counter()
    order, losses = [], []
    for idx in batches(index, batch_size, generator=generator):
        idx_dev = idx.to(device)
        xb = normalize(augment(x[idx_dev], pad=pad, flip=flip, generator=generator))
        with autocast(device):
            per_sample = loss_fn(model(xb), y[idx_dev])
        loss = per_sample.float().mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        order.append(idx)
        losses.append(per_sample.detach().float())
        if progress is not None:
            progress.update(1)
    order_t = torch.cat(order) if order else index[:0]
    loss_t = torch.cat(losses).cpu() if losses else torch.zeros(0)
    return EpochResult(float(loss_t.mean()) if len(loss_t) else float("nan"), order_t, loss_t, time.perf_counter() - start)


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, *, normalize: Normalizer, batch_size: int = 1024, features: bool = False) -> torch.Tensor:
    """Logits (or backbone features) of every image in ``x``: eval mode, large batches, no autograd, full precision.

    No autocast here even on CUDA: the meta-split ranks L1(θ) − L1(θ'), a small difference
    of two losses, which bfloat16 logits would blur (the authors score in fp32).
    """
    model.eval()
    out = []
    fn = model.features if features else model
    for i in range(0, len(x), batch_size):
        out.append(fn(normalize(x[i : i + batch_size])).float())
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
def evaluate(model: nn.Module, test_x: torch.Tensor, test_y: torch.Tensor, asr_x: torch.Tensor | None, asr_y: torch.Tensor | None, *, normalize: Normalizer, batch_size: int = 1024) -> dict:
    """Clean accuracy (ACC, and per class) on the test set and attack success rate (ASR) on the triggered non-target test set."""
    correct = (predict(model, test_x, normalize=normalize, batch_size=batch_size).argmax(1).cpu() == test_y.cpu()).float()
    labels = test_y.cpu()
    counts = torch.bincount(labels).clamp(min=1)
    per_class = torch.bincount(labels, weights=correct) / counts
    result: dict = {"acc": correct.mean().item(), "acc_per_class": [round(v, 4) for v in per_class.tolist()]}
    if asr_x is not None and len(asr_x):
        result["asr"] = (predict(model, asr_x, normalize=normalize, batch_size=batch_size).argmax(1).cpu() == asr_y.cpu()).float().mean().item()
    return result
