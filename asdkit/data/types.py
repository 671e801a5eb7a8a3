"""The one data type of asdkit: a labelled image set held as in-memory tensors."""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch


@dataclass(frozen=True)
class ImageSet:
    """Images ``x`` (uint8, N×C×H×W) and labels ``y`` (int64, N) with their class names.

    ``mean``/``std`` are the per-channel normalisation (in [0, 1] units) the models use;
    ``hflip`` says whether horizontal flips are a valid augmentation for this data
    (natural images yes, digits, clothing items and traffic signs no).
    """

    x: torch.Tensor
    y: torch.Tensor
    classes: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    hflip: bool = False
    name: str = "images"

    def __post_init__(self) -> None:
        if self.x.dtype != torch.uint8 or self.x.dim() != 4:
            raise ValueError(f"ImageSet.x must be a uint8 N×C×H×W tensor, got {self.x.dtype} {tuple(self.x.shape)}")
        if self.y.dtype != torch.int64 or self.y.shape != (self.x.shape[0],):
            raise ValueError(f"ImageSet.y must be int64 of shape ({self.x.shape[0]},), got {self.y.dtype} {tuple(self.y.shape)}")
        if len(self.mean) != self.x.shape[1] or len(self.std) != self.x.shape[1]:
            raise ValueError(f"mean/std need one value per channel ({self.x.shape[1]}), got {self.mean} / {self.std}")

    def __len__(self) -> int:
        return self.x.shape[0]

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def shape(self) -> tuple[int, int, int]:
        """C, H, W of one image."""
        return tuple(self.x.shape[1:])  # type: ignore[return-value]

    def subset(self, index: torch.Tensor) -> "ImageSet":
        """The samples at ``index`` (an index or boolean tensor), same metadata."""
        return replace(self, x=self.x[index], y=self.y[index])

    def with_images(self, x: torch.Tensor, y: torch.Tensor | None = None) -> "ImageSet":
        """The same metadata around new images (and optionally new labels)."""
        return replace(self, x=x, y=self.y if y is None else y)


@dataclass(frozen=True)
class DataSplits:
    """A data set's training and test parts, as loaded."""

    train: ImageSet
    test: ImageSet
    source: str = field(default="", compare=False)  # where it was read from, for `asdkit data`
