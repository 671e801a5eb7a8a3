"""SIG: a clean-label sinusoidal signal (Barni, Kallas & Tondi, 2019)."""
from __future__ import annotations

import math

import torch

from ..options import real
from ._common import ShapedAttack, bad_param, check_shape, is_real, to_uint8


class SIG(ShapedAttack):
    """SIG clean-label trigger (Barni et al., 2019), as used by ABL and PIPD: Δ=20, f=6.

    ``x'[c, i, j] = clip(x[c, i, j] + delta · sin(2π · j · frequency / W), 0, 255)``, rounded:
    vertical stripes, the same in every row and channel. A clean-label attack: only images of
    the target class are triggered and they keep their labels.

    The defaults are ABL's (Li et al., 2021); backdoor-toolbox, whose poisoned sets PIPD
    evaluates on, uses ``delta=30``.

    Parameters
    ----------
    shape : tuple of int
        ``(C, H, W)`` of the images the attack will be applied to.
    delta : float, default=20
        Amplitude of the signal in pixel units, in ``(0, 255]``.
    frequency : float, default=6
        Number of periods across the image width, > 0.
    """

    name = "sig"
    clean_label = True
    options = (
        real("delta", 20, low=0, high=255, closed="right", doc="amplitude of the signal in pixel units (ABL's 20; backdoor-toolbox's 30)"),
        real("frequency", 6, low=0, closed="neither", doc="periods across the image width (ABL's 6)"),
    )

    def __init__(self, shape, *, delta=20, frequency=6):
        self.shape = check_shape(shape, "SIG")
        if not (is_real(delta) and 0 < delta <= 255):
            raise bad_param("delta", "SIG", "a float in the range (0, 255]", delta)
        if not (is_real(frequency) and frequency > 0):
            raise bad_param("frequency", "SIG", "a float > 0", frequency)
        self.delta, self.frequency = float(delta), float(frequency)
        width = self.shape[2]
        columns = torch.arange(width, dtype=torch.float64)
        #: The additive signal along the columns, length W, in pixel units.
        self.signal = (self.delta * torch.sin(2 * math.pi * columns * self.frequency / width)).float()

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        return to_uint8(x.float() + self.signal.to(x.device))

    def describe(self) -> str:
        return f"SIG sinusoid Δ={self.delta:g}, f={self.frequency:g} (clean-label)"
