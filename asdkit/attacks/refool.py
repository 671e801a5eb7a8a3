"""Refool: reflection backdoors (Liu, Ma, Bailey & Lu, ECCV 2020), as set up in 002 B.2 and the PIPD authors' toolbox."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..engine import stream
from ..options import Option, integer
from ._common import ShapedAttack, bad_param, check_shape, is_int, to_uint8

#: The three reflection types of Liu et al. (Sec. 3.1): both layers in focus, the reflection out of focus, ghosting.
TYPES = ("focus", "blur", "ghost")
GAMMA = 2.2  # images are blended in linear light, as Refool's generator does


def vignette(h: int, w: int, nsig: float = 3.0) -> torch.Tensor:
    """Refool's Gaussian weighting of the reflection (strongest at the centre, max 1), ``h`` × ``w``."""
    def profile(n: int) -> torch.Tensor:
        step = (2 * nsig + 1.0) / n
        edges = torch.linspace(-nsig - step / 2, nsig + step / 2, n + 1, dtype=torch.float64)
        return torch.special.ndtr(edges).diff()

    kernel = torch.outer(profile(h), profile(w)).sqrt()
    return (kernel / kernel.max()).float()


def gaussian_blur(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Each image of ``x`` (N×C×H×W float) blurred with its own σ (0 = unchanged); kernel radius ⌈2σ⌉, reflected borders."""
    n, c, h, w = x.shape
    radius = int(math.ceil(2 * float(sigma.max()))) if len(sigma) else 0
    radius = min(radius, h - 1, w - 1)
    if radius == 0:
        return x.clone()
    t = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    s = sigma.to(x.dtype).clamp(min=1e-6)[:, None]
    g = torch.exp(-0.5 * (t[None, :] / s) ** 2) * (t[None, :].abs() <= torch.ceil(2 * s))
    g = torch.where(sigma[:, None] > 0, g, (t[None, :] == 0).to(x.dtype))
    g = g / g.sum(1, keepdim=True)  # N × (2r + 1), separable
    k = (g[:, :, None] * g[:, None, :]).repeat_interleave(c, 0)[:, None]  # (N·C) × 1 × K × K
    padded = F.pad(x.reshape(1, n * c, h, w), (radius,) * 4, mode="reflect")
    return F.conv2d(padded, k, groups=n * c).reshape(n, c, h, w)


def shift(x: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor) -> torch.Tensor:
    """Each image moved down by ``dy`` and right by ``dx`` pixels, zeros coming in (the ghost copy)."""
    n, c, h, w = x.shape
    rows = torch.arange(h)[None, :] - dy[:, None]
    cols = torch.arange(w)[None, :] - dx[:, None]
    valid = (rows >= 0)[:, None, :, None] & (cols >= 0)[:, None, None, :]
    out = x[torch.arange(n)[:, None, None, None], torch.arange(c)[None, :, None, None],
            rows.clamp(min=0)[:, None, :, None], cols.clamp(min=0)[:, None, None, :]]
    return out * valid


class Refool(ShapedAttack):
    """Reflection triggers: a reflection image from a candidate set blended into the image, by one of three reflection types.

    Each triggered image gets a random candidate reflection R and a random type (002 B.2), in
    linear light (t = x^2.2, r = R^2.2) with transmission α_t ~ 1 − U(0.05, 0.45): *focus*
    (both layers sharp) and *blur* (R blurred, σ ~ U(1, 5)) add r, weighted by a centred Gaussian
    vignette × (1 − α_t/2) after taking back any overflow (Refool's "proper range" step); *ghost*
    adds (1 − α_t)(α_g r + (1 − α_g) shift(r)), the reflection doubled at an offset of 3-8
    pixels (per 32). The candidates are ``candidates`` images drawn from another data set's
    training part (``reflections``: a data set name or an ``.npz`` / folder path, as
    ``--dataset`` takes), converted to the victim's channels and size: the build step, cached.
    Poison-label, as 002 and the PIPD authors' toolbox use it; the adversarial selection of
    reflection images in Liu et al. is not done (neither does the toolbox).

    Parameters
    ----------
    shape : tuple of int
        ``(C, H, W)`` of the images.
    reflections : str, default="cifar10"
        Where the candidate reflections come from (002 uses PascalVOC; any offline image set works).
    candidates : int, default=5000
        Candidate reflection images (002: 5,000), >= 1; all of the set when it has fewer.
    seed : int, default=0
        Seed of the candidate draw and of the test-time reflections.
    """

    name = "refool"
    prepared = "own"
    options = (
        Option("reflections", "cifar10", lambda v: isinstance(v, str) and bool(v), "a data set name or a path (as --dataset takes)",
               "where the candidate reflections come from (002 B.2 uses PascalVOC); existence checked when built"),
        integer("candidates", 5000, low=1, doc="candidate reflection images (002 B.2: 5,000); all of the set when it has fewer"),
    )

    def __init__(self, shape, *, reflections="cifar10", candidates=5000, seed=0):
        self.shape = check_shape(shape, "Refool")
        if not isinstance(reflections, str) or not reflections:
            raise bad_param("reflections", "Refool", "a data set name or a path (as --dataset takes)", reflections)
        if not (is_int(candidates) and candidates >= 1):
            raise bad_param("candidates", "Refool", "an int >= 1", candidates)
        from ..data.loaders import _resolve, data_dir

        try:  # a missing file or an unknown name is an error now, before any work
            _resolve(reflections, data_dir())
        except ValueError as err:
            raise bad_param("reflections", "Refool", "a data set name or an existing .npz / image folder path (as --dataset takes: "
                            + str(err).split(": ", 1)[-1].rstrip(".") + ")", reflections) from None
        self.reflections, self.candidates, self.seed = reflections, int(candidates), int(seed)
        self.bank: torch.Tensor | None = None
        self._vignette = vignette(*self.shape[1:])

    # -- the candidate set (the build) ---------------------------------------------------------------
    def build_size(self, inputs) -> int:
        return 1

    def check_build(self) -> None:
        """The reflection set loads (the constructor checks only that it exists)."""
        from ..data import load

        load(self.reflections)

    def build(self, inputs) -> dict:
        """``candidates`` images of the reflection set's training part, in the victim's channels and size (uint8)."""
        from ..data import load

        source = load(self.reflections).train.x
        picked = torch.randperm(len(source), generator=stream(self.seed, "refool", "candidates"))[: self.candidates]
        bank = self.to_victim(source[picked])
        inputs.progress(1)
        return {"reflections": bank}

    def to_victim(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 images of any channels and size → the victim's: luminance for grey victims, bilinear (antialiased) resize."""
        c, h, w = self.shape
        x = images.float()
        if x.shape[1] == 3 and c == 1:
            x = (x * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, keepdim=True)
        elif x.shape[1] != c:
            x = x.mean(1, keepdim=True).expand(-1, c, -1, -1)
        if tuple(x.shape[-2:]) != (h, w):
            x = F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False, antialias=True)
        return to_uint8(x)

    def load_state(self, state: dict, data=None) -> None:
        bank = state["reflections"]
        if not (isinstance(bank, torch.Tensor) and bank.dtype == torch.uint8 and bank.dim() == 4 and tuple(bank.shape[1:]) == self.shape
                and len(bank) >= 1):
            raise ValueError(f"its reflections are not uint8 N×{'×'.join(map(str, self.shape))} images")
        self.bank = bank
        return None

    # -- the trigger ------------------------------------------------------------------------------------
    def reflect(self, x: torch.Tensor, *, generator: torch.Generator) -> torch.Tensor:
        """Refool's blend of a random candidate into each image of ``x``, one random type each."""
        if self.bank is None:
            raise RuntimeError("Refool has no reflection candidates yet: asdkit.run builds them (asdkit.prepared.prepare_attack), "
                               "or call load_state with a built state.")
        n, (c, h, w) = len(x), self.shape
        if n == 0:
            return x.clone()
        pick = torch.randint(0, len(self.bank), (n,), generator=generator)
        kind = torch.randint(0, len(TYPES), (n,), generator=generator)
        alpha_t = 1 - (0.05 + 0.40 * torch.rand(n, generator=generator))
        sigma = 1 + 4 * torch.rand(n, generator=generator)
        att = 1.08 + 0.1 * torch.rand(n, generator=generator)
        scale = h / 32
        dy = (torch.randint(3, 9, (n,), generator=generator) * scale).round().long().clamp(min=1)
        dx = (torch.randint(3, 9, (n,), generator=generator) * scale).round().long().clamp(min=1)
        flip = torch.rand(n, generator=generator) > 0.5
        alpha_g = (flip.float() - (0.15 + 0.35 * torch.rand(n, generator=generator))).abs()

        t = (x.float() / 255) ** GAMMA
        r = (self.bank[pick].float() / 255) ** GAMMA
        a_t = alpha_t.view(n, 1, 1, 1)
        # focus and blur: the reflection (blurred for "blur") weighted by the vignette, its overflow taken back
        r_b = gaussian_blur(r, torch.where(kind == 1, sigma, torch.zeros(n)))
        over = (r_b + t) > 1
        mean = ((r_b + t) * over).sum((2, 3)) / (over.sum((2, 3)) + 1e-6)
        r_b = (r_b - ((mean.clamp(min=1) - 1) * att[:, None])[:, :, None, None]).clamp(0, 1)
        lens = r_b * self._vignette * (1 - a_t / 2) + t * a_t
        # ghost: the reflection and a shifted copy
        ghost = (alpha_g.view(n, 1, 1, 1) * r + (1 - alpha_g.view(n, 1, 1, 1)) * shift(r, dy, dx)) * (1 - a_t) + t * a_t
        out = torch.where((kind == 2).view(n, 1, 1, 1), ghost, lens)
        return to_uint8(out.clamp(0, 1) ** (1 / GAMMA) * 255)

    def train_trigger(self, x: torch.Tensor, *, generator: torch.Generator) -> torch.Tensor:
        self.check_images(x)
        return self.reflect(x, generator=generator)

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        """The test trigger: reflections from the same candidates, drawn from the attack's own test stream."""
        return self.reflect(x, generator=stream(self.seed, "refool", "test", len(x)))

    def describe(self) -> str:
        return f"Refool: reflections of {self.candidates} images of {self.reflections} ({'/'.join(TYPES)}, one at random each)"
