"""What every attack is: a pure function of a uint8 image batch (DESIGN layer 2)."""
from __future__ import annotations

import torch


class Attack:
    """A backdoor trigger: ``apply(x)`` returns triggered copies of uint8 N×C×H×W images.

    Attacks never mutate their input and are deterministic: any randomness (a blend
    pattern, a warping field) is drawn once from ``seed`` when the attack is built for
    an image shape. ``clean_label`` attacks (SIG, later CLB) poison only samples of the
    target class and keep their labels; poison-label attacks relabel to the target
    (``all2all``: y → (y + 1) mod C).
    """

    name: str = "attack"
    clean_label: bool = False

    def apply(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - interface
        raise NotImplementedError

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype != torch.uint8 or x.dim() != 4:
            raise ValueError(f"{self.name}: images must be uint8 N×C×H×W, got {x.dtype} {tuple(x.shape)}")
        return self.apply(x)
