"""Blended: alpha-blend a fixed pattern into the image (Chen et al., 2017)."""
from __future__ import annotations

import os
from pathlib import Path

import torch

from ..options import Option, real
from ._common import ShapedAttack, bad_param, check_shape, is_int, is_real, to_uint8


def load_pattern(path: str | os.PathLike, shape: tuple[int, int, int]) -> torch.Tensor:
    """An image file as a uint8 C×H×W pattern: RGB (C=3) or grey (C=1), resized bilinearly to H×W."""
    import numpy as np
    from PIL import Image

    c, h, w = shape
    with Image.open(path) as image:
        image = image.convert("RGB" if c == 3 else "L").resize((w, h), Image.Resampling.BILINEAR)
        array = np.array(image, dtype=np.uint8)  # H×W×3 or H×W
    pattern = torch.from_numpy(array)
    return pattern.permute(2, 0, 1).contiguous() if c == 3 else pattern.unsqueeze(0)


class Blend(ShapedAttack):
    """Blended trigger (Chen et al., 2017), as set up in ASD App. B.2 and DBD Sec. 5.1: ratio 0.1.

    ``x' = round((1 - ratio) · x + ratio · pattern)``, per pixel and channel.

    The papers blend a "Hello Kitty" image on CIFAR-10/GTSRB, which asdkit cannot ship, and a
    random-noise pattern on ImageNet/VGGFace2; the default here is that random-noise pattern
    (uniform uint8 noise of the image's full shape, drawn once from ``seed``). Pass your own
    image file as ``pattern`` to reproduce the Hello Kitty setting.

    Parameters
    ----------
    shape : tuple of int
        ``(C, H, W)`` of the images the attack will be applied to.
    ratio : float, default=0.1
        The blend ratio λ, in ``(0, 1]``.
    pattern : None, str, path-like or torch.Tensor, default=None
        ``None``: uniform noise from ``seed``. A path: an image file, converted to RGB (C=3)
        or grey (C=1) and resized to H×W bilinearly. A tensor: uint8 of shape ``(C, H, W)``.
    seed : int, default=0
        Seed of the noise pattern; unused when ``pattern`` is given.
    """

    name = "blend"
    options = (
        real("ratio", 0.1, low=0, high=1, closed="right", doc="the blend ratio λ (ASD App. B.2, DBD Sec. 5.1: 0.1)"),
        Option("pattern", None, lambda v: v is None or isinstance(v, (str, os.PathLike, torch.Tensor)),
               "None, an image file path or a uint8 tensor of the images' shape",
               "the blended pattern; None: uniform noise drawn from seed (the papers' ImageNet setting)"),
    )

    def __init__(self, shape, *, ratio=0.1, pattern=None, seed=0):
        self.shape = check_shape(shape, "Blend")
        c, h, w = self.shape
        if not (is_real(ratio) and 0 < ratio <= 1):
            raise bad_param("ratio", "Blend", "a float in the range (0, 1]", ratio)
        if not is_int(seed):
            raise bad_param("seed", "Blend", "an int", seed)
        self.ratio = float(ratio)
        self.seed = int(seed)
        if pattern is None:
            generator = torch.Generator().manual_seed(self.seed)
            self.pattern = torch.randint(0, 256, self.shape, generator=generator, dtype=torch.uint8)
            self.source = f"uniform-noise pattern (seed {self.seed})"
        elif isinstance(pattern, (str, os.PathLike)):
            if c not in (1, 3) or not Path(pattern).is_file():
                allowed = "an existing image file" if c in (1, 3) else "None or a tensor for images with C not in {1, 3}"
                raise bad_param("pattern", "Blend", allowed, pattern)
            self.pattern = load_pattern(pattern, self.shape)
            self.source = f"pattern {Path(pattern).name}"
        elif isinstance(pattern, torch.Tensor) and pattern.dtype == torch.uint8 and tuple(pattern.shape) == self.shape:
            self.pattern = pattern.detach().cpu().clone()
            self.source = "given pattern"
        else:
            got = f"{pattern.dtype} tensor of shape {tuple(pattern.shape)}" if isinstance(pattern, torch.Tensor) else pattern
            raise bad_param("pattern", "Blend", f"None, an image file path or a uint8 tensor of shape {self.shape}", got)

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        pattern = self.pattern.to(device=x.device, dtype=torch.float32)
        return to_uint8((1 - self.ratio) * x.float() + self.ratio * pattern)

    def describe(self) -> str:
        return f"Blend ratio {self.ratio:g}, {self.source}"
