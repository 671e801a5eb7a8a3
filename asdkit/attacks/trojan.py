"""Trojan: an opaque watermark-style square (Liu et al., NDSS 2018), with a seeded stand-in for the trigger."""
from __future__ import annotations

import torch

from ..options import integer
from ._common import ShapedAttack, bad_param, check_patch_size, check_shape, is_int, location_option, or_none, resolve_location


def default_size(h: int, w: int) -> int:
    """The default Trojan square side: ``max(3, round(min(H, W) / 5))`` (6 at 28×28 and 32×32)."""
    return max(3, round(min(h, w) / 5))


class Trojan(ShapedAttack):
    """Trojan trigger (Liu et al., 2018), as used by PIPD: an opaque square stamped on the lower-right.

    The original trigger (and backdoor-toolbox's ``trojan_square_32.png``) is an image that
    asdkit cannot ship. The stand-in is a watermark-like square about a fifth of the image
    side: a solid 1-pixel border of 255 around a binary (0/255) interior drawn once from
    ``seed``, identical in every channel, replacing the pixels underneath.

    Parameters
    ----------
    shape : tuple of int
        ``(C, H, W)`` of the images the attack will be applied to.
    size : int or None, default=None
        Side of the square, in ``[3, min(H, W)]``; ``None``: ``max(3, round(min(H, W) / 5))``.
    location : {"upper-left", "upper-right", "lower-left", "lower-right", "center"} or (int, int), default="lower-right"
        Where the square goes; a tuple is the (row, col) of its top-left pixel.
    seed : int, default=0
        Seed of the interior pattern.
    """

    name = "trojan"
    options = (
        or_none(integer("size", None, low=3, doc="side of the square, at most min(H, W); None: max(3, round(min(H, W) / 5))")),
        location_option("lower-right", "where the square goes (PIPD's setting: the lower-right corner)"),
    )

    def __init__(self, shape, *, size=None, location="lower-right", seed=0):
        self.shape = check_shape(shape, "Trojan")
        self.size = default_size(*self.shape[1:]) if size is None else check_patch_size(size, self.shape, "Trojan", minimum=3)
        self.row, self.col = resolve_location(location, self.size, self.shape, "Trojan")
        self.location = location if isinstance(location, str) else (self.row, self.col)
        if not is_int(seed):
            raise bad_param("seed", "Trojan", "an int", seed)
        self.seed = int(seed)
        generator = torch.Generator().manual_seed(self.seed)
        interior = torch.randint(0, 2, (self.size - 2, self.size - 2), generator=generator, dtype=torch.uint8) * 255
        #: The stamped square, uint8 size×size (the same in every channel).
        self.patch = torch.full((self.size, self.size), 255, dtype=torch.uint8)
        self.patch[1:-1, 1:-1] = interior

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        out = x.clone()
        out[:, :, self.row : self.row + self.size, self.col : self.col + self.size] = self.patch.to(x.device)
        return out

    def describe(self) -> str:
        where = self.location if isinstance(self.location, str) else f"at (row {self.row}, col {self.col})"
        return f"Trojan {self.size}×{self.size} watermark square (seed {self.seed}), {where}"
