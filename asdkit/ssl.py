"""Self-supervised pool operation: SimCLR on the shared training step (004 Section 4.2, appendix I).

DBD's first stage learns a feature extractor from the label-removed poisoned set with SimCLR
(Chen et al. 2020): two random views of every image, a projection head, and the NT-Xent
loss that pulls the two views of an image together and pushes every other image away.
Everything here is batched tensor work on the device: the views are made from the resident
uint8 images by :func:`simclr_views` (random resized crop and flip as one ``grid_sample``,
colour jitter and grayscale where the data has colour, Gaussian blur as a grouped
convolution), with no PIL and no DataLoader; :func:`simclr_objective` is an objective of
:func:`asdkit.engine.train_steps`, the package's one batch loop.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .engine import Images, Objective, Terms

__all__ = ["ViewConfig", "simclr_views", "nt_xent", "ProjectionHead", "simclr_objective", "linear_probe_accuracy"]


@dataclass(frozen=True)
class ViewConfig:
    """SimCLR's augmentations (the DBD authors' code, 004 appendix I): crop scale, flip, jitter (p 0.8), grayscale (p 0.2), blur (p 0.5)."""

    crop_scale: tuple[float, float] = (0.2, 1.0)
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip: bool = True
    jitter: tuple[float, float, float, float] = (0.4, 0.4, 0.4, 0.1)  # brightness, contrast, saturation, hue
    jitter_p: float = 0.8
    gray_p: float = 0.2
    blur_p: float = 0.5
    blur_sigma: tuple[float, float] = (0.1, 2.0)


def _uniform(n: int, low: float, high: float, g: torch.Generator, device) -> torch.Tensor:
    return (low + (high - low) * torch.rand(n, generator=g)).to(device)


def _gray(x: torch.Tensor) -> torch.Tensor:
    """ITU-R 601 luma, as torchvision's rgb_to_grayscale: N×1×H×W."""
    return (0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]) if x.shape[1] == 3 else x


def _resized_crop(x: torch.Tensor, cfg: ViewConfig, g: torch.Generator) -> torch.Tensor:
    """RandomResizedCrop + horizontal flip for a whole batch: one affine ``grid_sample`` (bilinear) per image."""
    n, dev = x.shape[0], x.device
    area = _uniform(n, *cfg.crop_scale, g, "cpu")
    log_ratio = _uniform(n, math.log(cfg.crop_ratio[0]), math.log(cfg.crop_ratio[1]), g, "cpu")
    ratio = log_ratio.exp()
    w = (area * ratio).sqrt().clamp(max=1.0)  # crop width and height as fractions of the image
    h = (area / ratio).sqrt().clamp(max=1.0)
    cx = (w / 2 + (1 - w) * torch.rand(n, generator=g)) * 2 - 1  # crop centre in [-1, 1]
    cy = (h / 2 + (1 - h) * torch.rand(n, generator=g)) * 2 - 1
    sx = torch.where(torch.rand(n, generator=g) < 0.5, -w, w) if cfg.flip else w
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0], theta[:, 0, 2], theta[:, 1, 1], theta[:, 1, 2] = sx, cx, h, cy
    grid = F.affine_grid(theta.to(dev), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def _jitter(x: torch.Tensor, cfg: ViewConfig, g: torch.Generator) -> torch.Tensor:
    """ColorJitter (brightness, contrast; saturation and hue where there is colour), fixed order, applied with p = jitter_p."""
    n, dev = x.shape[0], x.device
    b, c, s, hue = cfg.jitter
    on = (torch.rand(n, generator=g) < cfg.jitter_p).to(dev)[:, None, None, None]
    y = x * _uniform(n, 1 - b, 1 + b, g, dev)[:, None, None, None]
    y = y.clamp(0, 255)
    mean = _gray(y).mean(dim=(1, 2, 3), keepdim=True)
    y = ((y - mean) * _uniform(n, max(0.0, 1 - c), 1 + c, g, dev)[:, None, None, None] + mean).clamp(0, 255)
    if x.shape[1] == 3:
        gray = _gray(y)
        y = ((y - gray) * _uniform(n, max(0.0, 1 - s), 1 + s, g, dev)[:, None, None, None] + gray).clamp(0, 255)
        # hue: rotate the chroma plane of YIQ by 2π·h
        angle = _uniform(n, -hue, hue, g, dev) * 2 * math.pi
        to_yiq = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]], device=dev)
        yiq = torch.einsum("ij,njhw->nihw", to_yiq, y)
        cos, sin = angle.cos()[:, None, None], angle.sin()[:, None, None]
        i, q = yiq[:, 1], yiq[:, 2]
        yiq = torch.stack([yiq[:, 0], cos * i - sin * q, sin * i + cos * q], dim=1)
        y = torch.einsum("ij,njhw->nihw", torch.linalg.inv(to_yiq), yiq).clamp(0, 255)
    return torch.where(on, y, x)


def _blur(x: torch.Tensor, cfg: ViewConfig, g: torch.Generator) -> torch.Tensor:
    """Gaussian blur with σ ~ U(blur_sigma) per image, applied with p = blur_p: a separable grouped convolution."""
    n, ch, hgt, wid = x.shape
    dev = x.device
    sigma = _uniform(n, *cfg.blur_sigma, g, dev)
    on = (torch.rand(n, generator=g) < cfg.blur_p).to(dev)
    radius = min(int(math.ceil(2 * cfg.blur_sigma[1])), (min(hgt, wid) - 1) // 2)
    t = torch.arange(-radius, radius + 1, device=dev, dtype=x.dtype)
    k = torch.exp(-(t[None, :] ** 2) / (2 * sigma[:, None] ** 2))
    k = k / k.sum(dim=1, keepdim=True)
    k = k.repeat_interleave(ch, dim=0)  # (N·C) × (2r+1)
    y = F.pad(x.reshape(1, n * ch, hgt, wid), (radius, radius, radius, radius), mode="reflect")
    y = F.conv2d(y, k[:, None, None, :], groups=n * ch)
    y = F.conv2d(y, k[:, None, :, None], groups=n * ch).reshape(n, ch, hgt, wid)
    return torch.where(on[:, None, None, None], y, x)


def simclr_views(x: torch.Tensor, generator: torch.Generator, cfg: ViewConfig = ViewConfig()) -> torch.Tensor:
    """One random SimCLR view of every uint8 image in ``x``: crop + flip → jitter → grayscale → blur; float in [0, 255].

    The order and probabilities are the DBD authors' (004 appendix I); colour jitter's
    saturation and hue, and grayscale, apply only to 3-channel images. Random numbers come
    from the CPU ``generator`` (reproducible on every device); the pixels stay on ``x``'s device.
    """
    v = _resized_crop(x.float(), cfg, generator)
    v = _jitter(v, cfg, generator)
    if v.shape[1] == 3:
        gray = (torch.rand(len(v), generator=generator) < cfg.gray_p).to(v.device)[:, None, None, None]
        v = torch.where(gray, _gray(v).expand_as(v), v)
    return _blur(v, cfg, generator).clamp(0, 255)


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, *, temperature: float = 0.5, anchors: str = "both") -> torch.Tensor:
    """NT-Xent (SimCLR Eq. 1) per anchor row: −log exp(s_ii'/τ) / Σ_{k≠i} exp(s_ik/τ) over the 2b projections.

    ``z1``/``z2`` are the L2-normalised projections of the two views (b × d each); s is the
    cosine similarity. ``anchors="both"``: the symmetric loss over all 2b rows (SimCLR);
    ``"view1"``: only the b view-1 rows are anchors (the DBD authors' SCAN-style loss), the
    denominators still over the other 2b − 1 samples. Returns the per-anchor losses.
    """
    if anchors not in ("both", "view1"):
        raise ValueError(f"The 'anchors' parameter of nt_xent must be 'both' or 'view1'. Got {anchors!r} instead.")
    b = len(z1)
    z = torch.cat([z1, z2]).float()
    sim = z @ z.T / temperature
    sim = sim.masked_fill(torch.eye(2 * b, dtype=torch.bool, device=z.device), float("-inf"))
    positive = torch.cat([torch.arange(b, 2 * b), torch.arange(b)]).to(z.device)
    rows = torch.arange(2 * b, device=z.device)
    loss = torch.logsumexp(sim, dim=1) - sim[rows, positive]
    return loss if anchors == "both" else loss[:b]


class ProjectionHead(nn.Module):
    """SimCLR's projection g(·): Linear → BatchNorm → ReLU → Linear to ``out`` dims, L2-normalised (the DBD authors' "mlp")."""

    def __init__(self, dim: int, out: int = 128, hidden: int | None = None) -> None:
        super().__init__()
        hidden = hidden or dim
        self.net = nn.Sequential(nn.Linear(dim, hidden), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True), nn.Linear(hidden, out))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.net(h), dim=1)


def simclr_objective(data: Images, *, generator: torch.Generator, temperature: float = 0.5, anchors: str = "both",
                     views: ViewConfig = ViewConfig()) -> Objective:
    """SimCLR's step as an objective of the one loop: a batch is an index tensor; labels are never read.

    Both views of the batch go through ``model.features`` and ``model.projection`` in one
    forward pass (BatchNorm sees all 2b images, as in SimCLR); the rows are the anchors'
    NT-Xent losses, weighted 1/rows, so the step descends on their mean.
    """

    def objective(model: nn.Module, index: torch.Tensor) -> Terms:
        x = data.x[index.to(data.device)]
        v = torch.cat([simclr_views(x, generator, views), simclr_views(x, generator, views)])
        z = model.projection(model.features(data.normalize(v)))
        rows = nt_xent(z[: len(x)], z[len(x):], temperature=temperature, anchors=anchors)
        return Terms(rows, 1.0 / len(rows))

    return objective


@torch.no_grad()
def linear_probe_accuracy(features: torch.Tensor, labels: torch.Tensor, *, ridge: float = 1e-2) -> float:
    """Accuracy of a closed-form ridge-regression linear classifier fitted on the first half of (features, labels), tested on the second.

    A cheap linear probe of a backbone (SimCLR's linear evaluation protocol, without SGD):
    one-hot targets, standardised features, the solve in float64.
    """
    f, y = features.double().cpu(), labels.cpu()
    half = len(f) // 2
    mean, std = f[:half].mean(0), f[:half].std(0).clamp(min=1e-8)
    f = torch.cat([(f - mean) / std, torch.ones(len(f), 1, dtype=f.dtype)], dim=1)
    a, t = f[:half], F.one_hot(y[:half], int(y.max()) + 1).double()
    w = torch.linalg.solve(a.T @ a + ridge * half * torch.eye(a.shape[1], dtype=f.dtype), a.T @ t)
    return float(((f[half:] @ w).argmax(1) == y[half:]).double().mean())
