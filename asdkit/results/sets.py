"""The declared result sets: which runs a results table reads, each with the no-defense run on the same images it is measured against."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ..attacks import ATTACKS, run_overrides
from ..config import DATA_FIELDS, POISON_FIELDS, RunConfig, make_config

__all__ = ["ResultSet", "SETS", "DEFENSES", "reference", "select", "plan"]

DEFENSES = ("none", "abl", "asd", "dbd", "pipd")
SEEDS = (0, 1, 2)


@dataclass(frozen=True)
class ResultSet:
    """A named set of runs whose rows form one results page: ``configs()`` gives them, each checked before any work."""

    name: str
    about: str
    configs: Callable[[], list[RunConfig]]
    needs: tuple[str, ...] = ()  # shared subsets its runs read (``data.SHARED_SUBSETS``)

    def available(self) -> bool:
        """Whether the data its runs read is here (a set named on the command line says what is missing instead)."""
        from ..data import DataUnavailableError, shared_subset

        try:
            for file in self.needs:
                shared_subset(file)
        except DataUnavailableError:
            return False
        return True


def _grid(scale: str, defenses, attacks, seeds=SEEDS, **overrides) -> list[RunConfig]:
    """Seed by seed (every cell's seed 0 first, so a set cut short still has a row per cell), then attack, then defense."""
    return [make_config(scale, defense=d, overrides={"attack": a, "seed": s, **run_overrides(a), **overrides})
            for s in seeds for a in attacks for d in defenses]


def _gtsrb() -> str:
    """The shared GTSRB subset (002 and 003 report on GTSRB); absent, the set's error says where it looked."""
    from ..data import shared_subset

    return str(shared_subset("gtsrb-mini.npz"))


SETS: dict[str, ResultSet] = {s.name: s for s in (
    ResultSet("classroom", "every defense against every attack at classroom scale, seeds 0-2",
              lambda: _grid("classroom", DEFENSES, tuple(ATTACKS))),
    ResultSet("no-poison", "every defense on clean data (rate 0) at classroom scale, seeds 0-2: its accuracy cost and the share of "
                           "clean samples it sets apart", lambda: _grid("classroom", DEFENSES, ("badnets",), rate=0.0)),
    ResultSet("lab", "the lab scale over seeds 0-2: no defense, ASD and DBD against BadNets and Blend; PIPD and ABL against BadNets",
              lambda: _grid("lab", ("none", "asd", "dbd"), ("badnets", "blend")) + _grid("lab", ("pipd", "abl"), ("badnets",))),
    ResultSet("gtsrb-lab", "the lab scale on the shared GTSRB subset over seeds 0-2, every defense on the same 5,000 training images: "
                           "no defense, ASD and DBD against BadNets and Blend; PIPD and ABL against BadNets",
              lambda: sorted(_grid("lab", ("none", "asd", "dbd"), ("badnets", "blend"), dataset=_gtsrb())
                             + _grid("lab", ("pipd", "abl"), ("badnets",), dataset=_gtsrb()), key=lambda c: c.seed),
              needs=("gtsrb-mini.npz",)),
    ResultSet("pipd", "PIPD against a patch (BadNets), a blend and a warp (WaNet) at classroom and lab scale, seeds 0-2; at classroom, "
                      "against Blend and WaNet, the spatial mean of a channel instead of the authors' max, and ten LGA epochs of "
                      "pre-isolation instead of the three the classroom budget buys",
              lambda: sorted(_grid("classroom", ("pipd",), ("badnets", "blend", "wanet"))
                             + _grid("lab", ("pipd",), ("badnets", "blend", "wanet"))
                             + _grid("classroom", ("pipd",), ("blend", "wanet"), **{"defense.pooling": "mean"})
                             + _grid("classroom", ("pipd",), ("blend", "wanet"), epochs=10), key=lambda c: c.seed)),
)}


def reference(config: RunConfig) -> RunConfig | None:
    """The no-defense run on the same images and poison as ``config`` (DER's baseline), or None for a no-defense run."""
    if config.defense == "none":
        return None
    fields = {k: getattr(config, k) for k in DATA_FIELDS + POISON_FIELDS}
    overrides = {k: v for k, v in fields.items() if k != "attack_args"}
    overrides.update({f"attack.{k}": v for k, v in config.attack_args.items()})
    return make_config(config.scale, defense="none", overrides=overrides)


def select(names: str | list[str] | None = None) -> list[ResultSet]:
    """The sets named (comma list; None: all whose data is here), checked before any work."""
    if not names:
        return [s for s in SETS.values() if s.available()]
    keys = [k.strip() for k in (names.split(",") if isinstance(names, str) else names) if k.strip()]
    unknown = [k for k in keys if k not in SETS]
    if unknown:
        raise ValueError(f"The '--set' option names unknown result sets {unknown}; the sets: {', '.join(SETS)}.")
    return [SETS[k] for k in keys]


def plan(sets: list[ResultSet]) -> dict[str, list[tuple[RunConfig, RunConfig | None]]]:
    """Per set, each run and its no-defense reference (the planner makes both)."""
    return {s.name: [(c, reference(c)) for c in s.configs()] for s in sets}
