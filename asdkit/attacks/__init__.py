"""Backdoor attacks as pure functions of uint8 image batches, and poisoning.

``make_attack("badnets", (3, 32, 32))`` builds a trigger; ``poison(train, attack, rate=0.05,
target=0, seed=0)`` returns a :class:`PoisonedSet`; ``asr_testset(test, attack, target=0)``
the set the attack success rate is measured on.
"""
from __future__ import annotations

import inspect
from dataclasses import replace

from ..options import check_value
from ._common import LOCATIONS, bad_param
from .adaptive_patch import AdaptivePatch
from .asd_adaptive import ASDAdaptive, ASDAdaptiveFeat
from .badnets import BadNets
from .base import Attack
from .blend import Blend
from .clb import CLB
from .iab import IAB
from .refool import Refool
from .poison import DEFAULT_NOISE_RATE, LABEL_MODES, PoisonedSet, asr_testset, poison
from .sig import SIG
from .trojan import Trojan
from .wanet import WaNet

#: The implemented attacks, by the name configs and records use.
ATTACKS: dict[str, type[Attack]] = {
    "badnets": BadNets,
    "blend": Blend,
    "wanet": WaNet,
    "sig": SIG,
    "trojan": Trojan,
    "clb": CLB,
    "iab": IAB,
    "refool": Refool,
    "adaptive-patch": AdaptivePatch,
    "asd-adaptive-grad": ASDAdaptive,
    "asd-adaptive-feat": ASDAdaptiveFeat,
}

#: Attacks of the papers not implemented yet (none left).
PLANNED: tuple[str, ...] = ()


def attack_options(name: str) -> tuple[str, ...]:
    """The keyword options the attack ``name`` accepts: its declared ones, and ``seed`` where it draws randomness."""
    cls = ATTACKS[name]
    seeded = "seed" in inspect.signature(cls.__init__).parameters
    return tuple(o.name for o in cls.options) + (("seed",) if seeded else ())


def check_attack_options(name: str, args: dict) -> None:
    """Check a config's ``attack_args`` against the declared options of attack ``name``, before any data loads.

    Unknown names and values outside the declared range raise ValueError naming the field, the
    attack, the accepted values and the value given; checks that need the image size (a patch
    that fits) stay with the attack's constructor. ``seed`` is the config's own field, not an option.
    """
    if not (isinstance(name, str) and name in ATTACKS):
        raise bad_param("name", "check_attack_options", f"one of {tuple(ATTACKS)}", name)
    table = {o.name: o for o in ATTACKS[name].options}
    unknown = sorted(set(args) - set(table))
    if unknown:
        raise ValueError(f"The 'attack_args' field has option(s) {unknown} that attack {name!r} does not take; "
                         f"it takes {sorted(table) or 'none'}.")
    for key, value in args.items():  # "The 'attack_args' field's option 'size' of attack 'badnets' must be ..."
        check_value(replace(table[key], name="attack_args"), value, f"field's option {key!r} of attack {name!r}")


def make_attack(name, shape, *, seed=0, **options) -> Attack:
    """Build the attack ``name`` for images of ``shape`` (the registry of ASD App. B.2's attacks).

    Parameters
    ----------
    name : {"badnets", "blend", "wanet", "sig", "trojan", "clb", "iab", "refool", "adaptive-patch", "asd-adaptive-grad", "asd-adaptive-feat"}
        Registry key, see ``ATTACKS``. The prepared ones (CLB, IAB, Refool, ASD's adaptive attacks)
        need :meth:`Attack.build` before they poison; :func:`asdkit.run` does it and caches the result.
    shape : tuple of int
        ``(C, H, W)`` of the images.
    seed : int, default=0
        Seed of the attack's fixed random pattern (Blend noise, WaNet field, Trojan square);
        ignored by the deterministic attacks (BadNets, SIG).
    **options
        The attack's own keyword options, e.g. ``ratio=0.1`` for Blend.

    Returns
    -------
    Attack
        The attack, with ``name`` equal to the registry key.
    """
    if isinstance(name, str) and name in PLANNED:
        raise ValueError(
            f"The 'name' parameter of make_attack is the planned attack {name!r}, which is not implemented yet. "
            f"Implemented: {tuple(ATTACKS)}."
        )
    if not (isinstance(name, str) and name in ATTACKS):
        raise bad_param("name", "make_attack", f"one of {tuple(ATTACKS)} (planned, not implemented yet: {PLANNED})", name)
    valid = attack_options(name)
    unknown = sorted(set(options) - set(valid))
    if unknown:
        shown = tuple(v for v in valid if v != "seed")
        raise ValueError(f"Unknown option(s) {unknown} for make_attack({name!r}, ...); valid options: {shown} and seed.")
    if "seed" in valid:
        options["seed"] = seed
    return ATTACKS[name](shape, **options)


__all__ = [
    "ATTACKS",
    "ASDAdaptive",
    "ASDAdaptiveFeat",
    "AdaptivePatch",
    "DEFAULT_NOISE_RATE",
    "LABEL_MODES",
    "LOCATIONS",
    "PLANNED",
    "run_overrides",
    "Attack",
    "BadNets",
    "Blend",
    "CLB",
    "IAB",
    "PoisonedSet",
    "Refool",
    "SIG",
    "Trojan",
    "WaNet",
    "asr_testset",
    "attack_options",
    "check_attack_options",
    "make_attack",
    "poison",
]


def run_overrides(attack: str) -> dict:
    """What a run of ``attack`` sets beyond its scale's preset: CLB poisons 25 % of the target class (as the figures and
    result sets run it); Refool blends reflections from a second data set available offline (CIFAR-10 if present)."""
    if attack == "clb":
        return {"rate": 0.25}
    if attack == "refool":
        from ..data import DataUnavailableError, second_dataset

        try:
            return {"attack.reflections": second_dataset()}
        except DataUnavailableError:
            return {"attack.reflections": "cifar10"}  # the attack's own check then says how to get it, before any work
    return {}
