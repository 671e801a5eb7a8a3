"""BadNets: a solid square patch (Gu et al., 2017)."""
from __future__ import annotations

import torch

from ..options import integer
from ._common import ShapedAttack, bad_param, check_patch_size, check_shape, is_int, location_option, or_none, resolve_location

#: Default patch side by image side: 2×2 at 32×32 (ASD App. B.2 and DBD Sec. 5.1 on CIFAR-10/GTSRB),
#: 3×3 at 28×28 (the usual MNIST-sized BadNets square), 32×32 at 224×224 (the size of the
#: apple logo ASD and DBD stamp on ImageNet; here a solid square stands in for the logo).
DEFAULT_SIZE = {28: 3, 32: 2, 224: 32}


def default_size(h: int, w: int) -> int:
    """The default BadNets patch side for ``h``×``w`` images.

    ``DEFAULT_SIZE`` where the shorter side is listed there, otherwise ``max(2, round(side / 14))``
    (about 7 % of the side, so 2 for 32 and 3 for 42).
    """
    side = min(h, w)
    return DEFAULT_SIZE.get(side, max(2, round(side / 14)))


class BadNets(ShapedAttack):
    """BadNets square trigger (Gu et al., 2017), as set up in ASD App. B.2: a 2×2 square, upper-left corner.

    Every pixel of a ``size``×``size`` square, in every channel, is set to ``value``; the rest
    of the image is untouched.

    Parameters
    ----------
    shape : tuple of int
        ``(C, H, W)`` of the images the attack will be applied to.
    size : int or None, default=None
        Side of the square in pixels, in ``[1, min(H, W)]``. ``None`` picks
        :func:`default_size`: 2 at 32×32, 3 at 28×28, 32 at 224×224, else ``max(2, round(min(H, W) / 14))``.
    location : {"upper-left", "upper-right", "lower-left", "lower-right", "center"} or (int, int), default="upper-left"
        Where the square goes; a tuple is the (row, col) of its top-left pixel and the square
        must fit inside the image.
    value : int, default=255
        The patch intensity in ``[0, 255]`` (255: a white square).
    """

    name = "badnets"
    options = (
        or_none(integer("size", None, low=1, doc="side of the square in pixels, at most min(H, W); None: 2 at 32×32 (ASD App. B.2)")),
        location_option("upper-left", "where the square goes (ASD App. B.2: the upper-left corner)"),
        integer("value", 255, low=0, high=255, doc="the patch intensity (255: a white square)"),
    )

    def __init__(self, shape, *, size=None, location="upper-left", value=255):
        self.shape = check_shape(shape, "BadNets")
        self.size = default_size(*self.shape[1:]) if size is None else check_patch_size(size, self.shape, "BadNets")
        self.row, self.col = resolve_location(location, self.size, self.shape, "BadNets")
        self.location = location if isinstance(location, str) else (self.row, self.col)
        if not (is_int(value) and 0 <= value <= 255):
            raise bad_param("value", "BadNets", "an int in the range [0, 255]", value)
        self.value = int(value)

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        out = x.clone()
        out[:, :, self.row : self.row + self.size, self.col : self.col + self.size] = self.value
        return out

    def describe(self) -> str:
        where = self.location if isinstance(self.location, str) else f"at (row {self.row}, col {self.col})"
        return f"BadNets {self.size}×{self.size} square of {self.value}, {where}"
