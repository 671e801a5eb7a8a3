"""WaNet: an imperceptible warping trigger (Nguyen & Tran, ICLR 2021), in the poisoning setting of DBD/ASD."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..options import integer, real
from ._common import ShapedAttack, bad_param, check_shape, is_int, is_real, to_uint8


class WaNet(ShapedAttack):
    """WaNet warping trigger (Nguyen & Tran, 2021), as set up in ASD App. B.2 / DBD App. B.2: k=4, s=0.5.

    A random ``k``×``k``×2 field ``P`` in [-1, 1] is normalised by its mean absolute value,
    upsampled bicubically (``align_corners=True``) to H×W and added with strength ``s / H`` to
    the identity sampling grid; the grid, times ``grid_rescale``, is clamped to [-1, 1] and
    applied with bilinear ``grid_sample(..., align_corners=True)``. The field is drawn once from
    ``seed``, so the warp is the same for every image.

    DBD and ASD use WaNet as a poisoning attack: the trigger is applied to the training data
    once, and a further ``noise_rate`` ρ_n = 0.2 of the training set are "noise" (cross)
    samples warped by the same grid plus a random per-sample perturbation, keeping their
    labels (see :meth:`noise` and :func:`asdkit.attacks.poison`).

    Parameters
    ----------
    shape : tuple of int
        ``(C, H, W)`` of the images the attack will be applied to.
    k : int, default=4
        Side of the control grid, >= 2 (ASD uses 224 on 224×224 ImageNet).
    s : float, default=0.5
        Warping strength, > 0 (ASD uses 1 on ImageNet).
    grid_rescale : float, default=1.0
        Factor applied to the warped grid before clamping, > 0 (WaNet's ``grid_rescale``).
    seed : int, default=0
        Seed of the random control field.
    """

    name = "wanet"
    options = (
        integer("k", 4, low=2, doc="side of the control grid (ASD App. B.2: 4; 224 on ImageNet)"),
        real("s", 0.5, low=0, closed="neither", doc="warping strength (ASD App. B.2: 0.5; 1 on ImageNet)"),
        real("grid_rescale", 1.0, low=0, closed="neither", doc="factor on the warped grid before clamping (WaNet's grid_rescale)"),
    )

    def __init__(self, shape, *, k=4, s=0.5, grid_rescale=1.0, seed=0):
        self.shape = check_shape(shape, "WaNet")
        _, h, w = self.shape
        if not (is_int(k) and k >= 2):
            raise bad_param("k", "WaNet", "an int >= 2", k)
        if not (is_real(s) and s > 0):
            raise bad_param("s", "WaNet", "a float > 0", s)
        if not (is_real(grid_rescale) and grid_rescale > 0):
            raise bad_param("grid_rescale", "WaNet", "a float > 0", grid_rescale)
        if not is_int(seed):
            raise bad_param("seed", "WaNet", "an int", seed)
        self.k, self.s, self.grid_rescale, self.seed = int(k), float(s), float(grid_rescale), int(seed)

        generator = torch.Generator().manual_seed(self.seed)
        field = torch.rand(1, 2, self.k, self.k, generator=generator) * 2 - 1
        field = field / field.abs().mean()
        flow = F.interpolate(field, size=(h, w), mode="bicubic", align_corners=True).permute(0, 2, 3, 1)  # 1×H×W×2
        rows, cols = torch.meshgrid(torch.linspace(-1, 1, h), torch.linspace(-1, 1, w), indexing="ij")
        identity = torch.stack((cols, rows), dim=-1)[None]  # 1×H×W×2, (x, y) as grid_sample reads it
        #: The backdoor sampling grid, 1×H×W×2 in [-1, 1].
        self.grid = ((identity + self.s * flow / h) * self.grid_rescale).clamp(-1, 1)

    def _warp(self, x: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
        warped = F.grid_sample(x.float(), grid.to(x.device), mode="bilinear", padding_mode="border", align_corners=True)
        return to_uint8(warped)

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] == 0:
            return x.clone()
        return self._warp(x, self.grid.expand(x.shape[0], -1, -1, -1))

    def noise(self, x: torch.Tensor, *, generator: torch.Generator) -> torch.Tensor:
        """WaNet's noise mode: the backdoor grid plus a random perturbation per sample (Nguyen & Tran, 2021).

        Each image gets the grid ``clamp(grid + (U(-1, 1)^{H×W×2}) / H, -1, 1)`` with its own
        uniform draw from ``generator`` (a CPU ``torch.Generator``). These cover samples keep
        their labels; they teach the model that warps other than the trigger's mean nothing.

        Parameters
        ----------
        x : torch.Tensor
            uint8 images, N×C×H×W of this attack's shape. Not modified.
        generator : torch.Generator
            Source of the per-sample perturbations.

        Returns
        -------
        torch.Tensor
            The warped images, uint8, same shape as ``x``.
        """
        self.check_images(x)
        if not isinstance(generator, torch.Generator):
            raise bad_param("generator", "WaNet.noise", "a torch.Generator", generator)
        n, (_, h, w) = x.shape[0], self.shape
        if n == 0:
            return x.clone()
        perturbation = (torch.rand(n, h, w, 2, generator=generator) * 2 - 1) / h
        return self._warp(x, (self.grid + perturbation).clamp(-1, 1))

    def describe(self) -> str:
        rescale = "" if self.grid_rescale == 1 else f", grid rescale {self.grid_rescale:g}"
        return f"WaNet warp k={self.k}, s={self.s:g}{rescale} (seed {self.seed})"
