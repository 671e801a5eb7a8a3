"""What every attack is: a pure function of a uint8 image batch."""
from __future__ import annotations

import torch

from ..options import Option

#: WaNet's noise rate ρ_n: the fraction of the whole training set turned into noise (cover)
#: samples (Nguyen & Tran, 2021; ASD App. B.2 and DBD App. B.2 use 0.2).
DEFAULT_NOISE_RATE = 0.2


class Attack:
    """A backdoor trigger: ``apply(x)`` returns triggered copies of uint8 N×C×H×W images.

    Attacks never mutate their input and are deterministic: any randomness (a blend
    pattern, a warping field) is drawn once from ``seed`` when the attack is built for
    an image shape. ``clean_label`` attacks (SIG, CLB) poison only samples of the
    target class and keep their labels; poison-label attacks relabel to the target
    (``all2all``: y → (y + 1) mod C).

    *Prepared* attacks need an optimisation before they can poison (``prepared`` is
    ``"surrogate"``: against a clean model, the run's clean twin; ``"own"``: they train their
    own networks, IAB's generator). :mod:`asdkit.prepared` calls :meth:`build` once, caches what
    it returns, and hands it back through :meth:`load_state` on every later run.
    """

    name: str = "attack"
    clean_label: bool = False
    prepared: str | None = None
    build_version: int = 1  # raise it when a build's result changes, so a cached poison of the old build is not reused
    #: The declared keyword options (all but ``seed``): default, accepted values, doc; checked by
    #: :func:`asdkit.attacks.check_attack_options` before any data loads.
    options: tuple[Option, ...] = ()
    #: Per-scale defaults of the attack's options (the scale a run names picks them; lab inherits classroom).
    scales: dict[str, dict] = {}

    def apply(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - interface
        raise NotImplementedError

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype != torch.uint8 or x.dim() != 4:
            raise ValueError(f"{self.name}: images must be uint8 N×C×H×W, got {x.dtype} {tuple(x.shape)}")
        return self.apply(x)

    def train_trigger(self, x: torch.Tensor, *, generator: torch.Generator) -> torch.Tensor:
        """The trigger stamped on the training poison, in poisoning order; the test trigger unless the attack differs (adaptive-patch, Refool)."""
        return self(x)

    def default_noise_rate(self, rate: float) -> float:
        """The share of the whole set made noise (cover) samples at poison ``rate``, for attacks with a ``noise`` mode."""
        return DEFAULT_NOISE_RATE

    # -- prepared attacks ----------------------------------------------------------------------
    @classmethod
    def needs_build(cls, rate: float) -> bool:
        """Whether a run at poison ``rate`` needs :meth:`build` first (always, for a prepared attack whose trigger is learned)."""
        return cls.prepared is not None

    def build(self, inputs) -> dict:  # pragma: no cover - interface of prepared attacks
        """The built state (a dict of tensors) from :class:`asdkit.attacks.build.BuildInputs`."""
        raise NotImplementedError

    def check_build(self) -> None:
        """What :meth:`build` will read, checked without building (:func:`asdkit.preparation.preflight`); most builds read only the run's data."""

    def build_size(self, inputs) -> int:  # pragma: no cover - interface of prepared attacks
        """How many units :meth:`build` reports to its progress bar."""
        raise NotImplementedError

    def load_state(self, state: dict, data) -> torch.Tensor | None:  # pragma: no cover - interface of prepared attacks
        """Take a built state (ValueError if it does not fit ``data``); return source images for :func:`poison`, or None."""
        raise NotImplementedError
