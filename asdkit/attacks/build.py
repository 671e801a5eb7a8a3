"""What a prepared attack's build sees: the clean set, the target, a normaliser, a device, the seed, models."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from ..data.types import ImageSet


@dataclass
class BuildInputs:
    """Inputs of :meth:`Attack.build`: everything an attacker with the whole training set and the victim's architecture has.

    ``data`` is the clean training set (CPU), ``normalize`` maps pixel units to the network's
    input on ``device``, ``seed`` names the build's random streams (:func:`asdkit.engine.stream`),
    ``new_model()`` a freshly initialised network of the victim's architecture on ``device``,
    ``surrogate`` the trained clean twin (attacks with ``prepared == "surrogate"``), ``progress(n)``
    advances the progress bar by ``n`` units of :meth:`Attack.build_size`.
    """

    data: ImageSet
    target: int
    label_mode: str
    normalize: Callable[[torch.Tensor], torch.Tensor]
    device: torch.device
    seed: int
    new_model: Callable[[], torch.nn.Module]
    surrogate: torch.nn.Module | None = None
    progress: Callable[[int], object] = lambda n: None
    batch_size: int = 128
    pad: int = 2

    def relabel(self, y: torch.Tensor) -> torch.Tensor:
        """The labels the attacker gives triggered samples: the target (all2one) or y + 1 mod C (all2all)."""
        return (y + 1) % self.data.num_classes if self.label_mode == "all2all" else torch.full_like(y, self.target)
