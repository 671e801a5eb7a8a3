"""Checks and helpers shared by the attack modules (private: the public entry points validate, the rest trusts)."""
from __future__ import annotations

import numbers
from dataclasses import replace

import torch

from ..options import Option
from .base import Attack

#: The named patch positions of BadNets and Trojan.
LOCATIONS = ("upper-left", "upper-right", "lower-left", "lower-right", "center")


def bad_param(param: str, owner: str, allowed: str, got: object) -> ValueError:
    """The one error message of asdkit's validation: parameter, allowed range, value received."""
    return ValueError(f"The {param!r} parameter of {owner} must be {allowed}. Got {got!r} instead.")


def is_int(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_real(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def check_shape(shape: object, owner: str) -> tuple[int, int, int]:
    """``shape`` as a ``(C, H, W)`` tuple of ints, or a ValueError."""
    if isinstance(shape, (tuple, list, torch.Size)) and len(shape) == 3 and all(is_int(s) for s in shape):
        c, h, w = (int(s) for s in shape)
        if c >= 1 and h >= 2 and w >= 2:
            return c, h, w
    raise bad_param("shape", owner, "a (C, H, W) tuple of ints with C >= 1, H >= 2 and W >= 2", shape)


def check_patch_size(size: object, shape: tuple[int, int, int], owner: str, *, minimum: int = 1) -> int:
    """A square patch side in ``[minimum, min(H, W)]``, or a ValueError."""
    side = min(shape[1:])
    if is_int(size) and minimum <= size <= side:
        return int(size)
    raise bad_param("size", owner, f"an int in the range [{minimum}, {side}] for {shape[1]}×{shape[2]} images", size)


def resolve_location(location: object, size: int, shape: tuple[int, int, int], owner: str) -> tuple[int, int]:
    """The (row, col) of the top-left pixel of a ``size``×``size`` patch at ``location``."""
    _, h, w = shape
    named = {
        "upper-left": (0, 0),
        "upper-right": (0, w - size),
        "lower-left": (h - size, 0),
        "lower-right": (h - size, w - size),
        "center": ((h - size) // 2, (w - size) // 2),
    }
    if isinstance(location, str) and location in named:
        return named[location]
    if isinstance(location, (tuple, list)) and len(location) == 2 and all(is_int(v) for v in location):
        row, col = int(location[0]), int(location[1])
        if 0 <= row <= h - size and 0 <= col <= w - size:
            return row, col
    raise bad_param(
        "location",
        owner,
        f"one of {LOCATIONS} or a (row, col) tuple of the patch's top-left pixel with 0 <= row <= {h - size} "
        f"and 0 <= col <= {w - size} (a {size}×{size} patch in {h}×{w} images)",
        location,
    )


def or_none(option: Option) -> Option:
    """``option`` that also accepts None (the attack then picks a value from the image size)."""
    return replace(option, accepts=lambda v: v is None or option.accepts(v), want=f"None or {option.want}")


def _is_location(value: object) -> bool:
    if isinstance(value, str):
        return value in LOCATIONS
    return isinstance(value, (tuple, list)) and len(value) == 2 and all(is_int(v) and v >= 0 for v in value)


def location_option(default: str, doc: str) -> Option:
    """A patch's ``location``: a named corner or the centre, or the (row, col) of its top-left pixel (fit checked when built)."""
    return Option("location", default, _is_location, f"one of {list(LOCATIONS)} or a (row, col) pair of ints >= 0", doc)


def scale_defaults(options: tuple[Option, ...]) -> dict[str, dict]:
    """``Attack.scales`` from a table: scale → {option: default} for the options that scale changes."""
    out: dict[str, dict] = {}
    for opt in options:
        for scale, value in opt.scales.items():
            out.setdefault(scale, {})[opt.name] = value
    return out


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """Float images in [0, 255] units → uint8, rounding to nearest and clipping."""
    return x.round().clamp(0, 255).to(torch.uint8)


class ShapedAttack(Attack):
    """An attack built for one image shape ``(C, H, W)``; calling it checks the batch has that shape."""

    shape: tuple[int, int, int]

    def check_images(self, x: torch.Tensor) -> None:
        if not isinstance(x, torch.Tensor) or x.dtype != torch.uint8 or x.dim() != 4:
            got = f"{x.dtype} {tuple(x.shape)}" if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"{self.name}: images must be a uint8 N×C×H×W tensor, got {got}")
        if tuple(x.shape[1:]) != self.shape:
            raise ValueError(
                f"{self.name}: images must be N×{self.shape[0]}×{self.shape[1]}×{self.shape[2]} "
                f"(the shape this attack was built for), got {tuple(x.shape)}"
            )

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        self.check_images(x)
        return self.apply(x)

    def describe(self) -> str:  # pragma: no cover - every attack overrides it
        return self.name

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.shape}: {self.describe()}>"
