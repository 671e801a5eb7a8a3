"""Poisoning a training set and building the ASR test set (ASD App. B.2, DBD Sec. 5.1)."""
from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from ..data.types import ImageSet
from ._common import bad_param, is_int, is_real
from .base import DEFAULT_NOISE_RATE, Attack

LABEL_MODES = ("all2one", "all2all")


@dataclass(frozen=True, eq=False)
class PoisonedSet:
    """A poisoned training set with its ground truth.

    ``data`` holds the images as the victim sees them (triggered where ``is_poison``, warped
    with noise where ``is_cover``) and the *observed* labels as ``data.y``; ``true_label`` are
    the labels before poisoning. ``is_poison`` is the ground truth that TPR/FPR and the
    histograms read; defenses must never look at it.
    """

    data: ImageSet
    true_label: torch.Tensor
    is_poison: torch.Tensor
    is_cover: torch.Tensor
    target: int
    attack: str
    label_mode: str
    rate: float

    @property
    def x(self) -> torch.Tensor:
        return self.data.x

    @property
    def observed_label(self) -> torch.Tensor:
        return self.data.y

    @property
    def poison_index(self) -> torch.Tensor:
        """Indices of the poisoned samples, ascending."""
        return self.is_poison.nonzero().flatten()

    @property
    def cover_index(self) -> torch.Tensor:
        """Indices of the noise (cover) samples, ascending; empty unless the attack has a noise mode."""
        return self.is_cover.nonzero().flatten()

    def __len__(self) -> int:
        return len(self.data)


def _check_common(owner: str, data: object, attack: object, target: object, label_mode: object) -> None:
    if not isinstance(data, ImageSet):
        raise bad_param("data" if owner == "poison" else "test", owner, "an ImageSet", type(data).__name__)
    if not isinstance(attack, Attack):
        raise bad_param("attack", owner, "an Attack (see asdkit.attacks.make_attack)", attack)
    shape = getattr(attack, "shape", None)
    if shape is not None and tuple(shape) != data.shape:
        allowed = f"an attack built for the data's image shape {data.shape}"
        raise bad_param("attack", owner, allowed, f"{attack.name} built for {tuple(shape)}")
    classes = data.num_classes
    if not (is_int(target) and 0 <= target < classes):
        raise bad_param("target", owner, f"an int in the range [0, {classes})", target)
    if label_mode not in LABEL_MODES:
        raise bad_param("label_mode", owner, f"one of {LABEL_MODES}", label_mode)
    if attack.clean_label and label_mode != "all2one":
        raise bad_param("label_mode", owner, f"'all2one' for the clean-label attack {attack.name!r}", label_mode)


def _relabel(y: torch.Tensor, target: int, label_mode: str, num_classes: int) -> torch.Tensor:
    if label_mode == "all2all":
        return (y + 1) % num_classes
    return torch.full_like(y, target)


def poison(data, attack, *, rate, target, seed, label_mode="all2one", noise_rate=None, source=None) -> PoisonedSet:
    """Poison a training set with a backdoor attack, with the poisoning-rate semantics of ASD App. B.2 and DBD Sec. 5.1.

    Poison-label attacks: ``round(rate · N)`` samples are drawn without replacement from those
    whose true label is not ``target`` (``all2one``; from all samples for ``all2all``),
    triggered, and relabelled to ``target`` (``all2one``) or ``(y + 1) mod C`` (``all2all``).
    Clean-label attacks (``attack.clean_label``, e.g. SIG): ``round(rate · n_target)`` samples of
    the target class are triggered and keep their labels. Attacks with a noise mode (WaNet)
    also turn ``round(noise_rate · N)`` other samples into noise (cover) samples that keep
    their labels. ``round`` is Python's (halves to even). All draws come from one CPU
    ``torch.Generator`` seeded with ``seed``. The input tensors are not modified.

    Parameters
    ----------
    data : ImageSet
        The clean training set.
    attack : Attack
        The trigger, built for ``data.shape`` (see :func:`asdkit.attacks.make_attack`).
    rate : float
        Poisoning rate in ``[0, 1)``: of the whole set for poison-label attacks, of the target
        class for clean-label ones. 0 gives the *clean twin*: nothing poisoned (and no cover
        samples unless ``noise_rate`` asks), so the ASR measured on it is the floor, the share of
        triggered test images a model that never saw the backdoor puts in the target class.
    target : int
        Target class in ``[0, C)``; recorded but not used for relabelling under ``all2all``.
    seed : int
        Seed of the sample selection (and of WaNet's noise perturbations).
    label_mode : {"all2one", "all2all"}, default="all2one"
        How poisoned samples are relabelled; clean-label attacks allow only ``"all2one"``.
    noise_rate : float or None, default=None
        Fraction of the whole set made noise samples, in ``[0, 1)``; ``None`` means the attack's
        ``default_noise_rate(rate)`` (``DEFAULT_NOISE_RATE``, 0.2, unless the attack says otherwise)
        for attacks with a noise mode (at ``rate > 0``) and 0 otherwise.
    source : torch.Tensor or None, default=None
        Images aligned with ``data.x`` that the trigger is stamped on instead of ``data.x``: a
        prepared attack's perturbed images (CLB's PGD images, :mod:`asdkit.prepared`).

    Returns
    -------
    PoisonedSet
        Triggered images and observed labels in ``data``, with ``true_label``, ``is_poison``
        (True = poisoned) and ``is_cover`` (True = noise / cross / cover sample, label kept, not poisoned).
    """
    _check_poison_args(data, attack, rate=rate, target=target, seed=seed, label_mode=label_mode)
    noise_rate = _noise_rate(attack, rate, noise_rate)
    eligible, base, base_name = _eligible(data.y, attack, target, label_mode)
    count, n_cover = _counts(int(eligible.sum()), base, base_name, len(data), rate, noise_rate)
    _check_source(source, data)
    generator = torch.Generator().manual_seed(int(seed))  # every draw below comes from it, in this order
    is_poison = _draw_poison(eligible, count, generator)
    x, observed = _triggered(data, attack, is_poison, int(target), label_mode, source, generator)
    is_cover = _add_cover(x, data.x, attack, is_poison, n_cover, generator)
    return PoisonedSet(
        data=replace(data, x=x, y=observed, name=f"{data.name}+{attack.name}"),
        true_label=data.y.clone(),
        is_poison=is_poison,
        is_cover=is_cover,
        target=int(target),
        attack=attack.name,
        label_mode=label_mode,
        rate=float(rate),
    )


def _check_poison_args(data, attack, *, rate, target, seed, label_mode) -> None:
    """The checks of :func:`poison`'s arguments that need no counting: data, attack, target, label mode, rate, seed."""
    _check_common("poison", data, attack, target, label_mode)
    if not (is_real(rate) and 0 <= rate < 1):
        raise bad_param("rate", "poison", "a float in the range [0, 1)", rate)
    if not is_int(seed):
        raise bad_param("seed", "poison", "an int", seed)


def _noise_rate(attack: Attack, rate, noise_rate):
    """The share of the set made noise (cover) samples: as given, or the attack's default (WaNet's ρ_n = 0.2, DBD App. B.2)."""
    has_noise_mode = callable(getattr(attack, "noise", None))
    if noise_rate is None:
        return attack.default_noise_rate(rate) if has_noise_mode and rate > 0 else 0.0
    if not (is_real(noise_rate) and 0 <= noise_rate < 1):
        raise bad_param("noise_rate", "poison", "None or a float in the range [0, 1)", noise_rate)
    if noise_rate > 0 and not has_noise_mode:
        raise bad_param("noise_rate", "poison", f"None or 0 for {attack.name!r}, which has no noise mode", noise_rate)
    return noise_rate


def _eligible(y: torch.Tensor, attack: Attack, target: int, label_mode: str) -> tuple[torch.Tensor, int, str]:
    """The samples that may be poisoned, and the count the rate is a share of (ASD App. B.2, DBD Sec. 5.1), with its words.

    Clean-label attacks: the target class, of itself. Poison-label ones: the non-target samples
    (``all2one``) or all (``all2all``), of the whole set.
    """
    if attack.clean_label:
        eligible = y == target
        base = int(eligible.sum())
        return eligible, base, f"the {base} target-class samples"
    eligible = y != target if label_mode == "all2one" else torch.ones_like(y, dtype=torch.bool)
    return eligible, len(y), f"the {len(y)} samples"


def _counts(n_eligible: int, base: int, base_name: str, n: int, rate, noise_rate) -> tuple[int, int]:
    """The poisoned count ``round(rate · base)`` and the cover count ``round(noise_rate · N)`` (Python's round), checked."""
    count = round(rate * base)
    if count == 0 and rate > 0:
        raise bad_param("rate", "poison", f"large enough to poison at least one of {base_name} (rate × {base} > 0.5)", rate)
    if count > n_eligible:
        raise bad_param(
            "rate", "poison", f"at most {n_eligible / base:.4g}: {count} poisoned samples asked for, {n_eligible} eligible", rate
        )
    n_cover = round(noise_rate * n)
    if n_cover > n - count:
        allowed = f"at most {(n - count) / n:.4g}: only {n - count} samples are not poisoned"
        raise bad_param("noise_rate", "poison", allowed, noise_rate)
    return count, n_cover


def _check_source(source, data: ImageSet) -> None:
    """``source`` is None or uint8 images of ``data.x``'s shape (a prepared attack's perturbed images)."""
    if source is not None and (not isinstance(source, torch.Tensor) or source.shape != data.x.shape or source.dtype != torch.uint8):
        raise bad_param("source", "poison", f"None or a uint8 tensor of the data's shape {tuple(data.x.shape)}",
                        tuple(source.shape) if isinstance(source, torch.Tensor) else source)


def _draw_poison(eligible: torch.Tensor, count: int, generator: torch.Generator) -> torch.Tensor:
    """The poisoned samples as a mask: the first ``count`` of one permutation of the eligible ones (the generator's first draw)."""
    candidates = eligible.nonzero().flatten()
    chosen = candidates[torch.randperm(len(candidates), generator=generator)[:count].to(candidates.device)]
    is_poison = torch.zeros_like(eligible, dtype=torch.bool)
    is_poison[chosen] = True
    return is_poison


def _triggered(data: ImageSet, attack: Attack, is_poison: torch.Tensor, target: int, label_mode: str, source,
               generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Copies of the images and labels with the poisoned samples triggered (in index order) and relabelled."""
    index = is_poison.nonzero().flatten()
    x = data.x.clone()
    x[index] = attack.train_trigger((data.x if source is None else source)[index], generator=generator)
    observed = data.y.clone()
    observed[index] = _relabel(data.y[index], target, label_mode, data.num_classes)
    return x, observed


def _add_cover(x: torch.Tensor, clean: torch.Tensor, attack: Attack, is_poison: torch.Tensor, n_cover: int,
               generator: torch.Generator) -> torch.Tensor:
    """Draw ``n_cover`` unpoisoned samples, write their noise images (WaNet's noise mode) into ``x``; return the cover mask."""
    is_cover = torch.zeros_like(is_poison)
    if n_cover:
        rest = (~is_poison).nonzero().flatten()
        is_cover[rest[torch.randperm(len(rest), generator=generator)[:n_cover].to(rest.device)]] = True
        cover = is_cover.nonzero().flatten()
        x[cover] = attack.noise(clean[cover], generator=generator)
    return is_cover


def asr_testset(test, attack, *, target, label_mode="all2one") -> ImageSet:
    """The attack-success-rate test set of DBD Sec. 5.1: triggered test images whose true class is not the target.

    ``all2one``: every test image of a class other than ``target``, triggered and labelled
    ``target``. ``all2all``: every test image, triggered and labelled ``(y + 1) mod C``. The
    ASR is the accuracy on this set (higher = stronger backdoor). The input is not modified.

    Parameters
    ----------
    test : ImageSet
        The clean test set.
    attack : Attack
        The trigger, built for ``test.shape``.
    target : int
        Target class in ``[0, C)``.
    label_mode : {"all2one", "all2all"}, default="all2one"
        As in :func:`poison`.

    Returns
    -------
    ImageSet
        The triggered images with the labels the attacker wants.
    """
    _check_common("asr_testset", test, attack, target, label_mode)
    keep = test.y != target if label_mode == "all2one" else torch.ones_like(test.y, dtype=torch.bool)
    index = keep.nonzero().flatten()
    x = attack(test.x[index])
    y = _relabel(test.y[index], int(target), label_mode, test.num_classes)
    return replace(test, x=x, y=y, name=f"{test.name}+{attack.name} (ASR)")
