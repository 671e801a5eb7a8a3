"""Defenses as short schedules of phases over shared split policies and pool operations (DESIGN layer 6).

Each defense registers a :class:`DefenseSpec`: its declared options (one table, checked by
``make_config`` before any data loads), the config fields each scale sets for it, the
trusted seeds it asks the runner for, and ``plan(ctx) -> [Phase, ...]``, the schedule the
runner executes, resumably, one epoch at a time.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

from ..options import Option, Options

if TYPE_CHECKING:  # pragma: no cover
    from ..config import RunConfig
    from ..context import Context
    from ..phases import Phase

__all__ = ["DefenseSpec", "DEFENSES", "PLANNED_DEFENSES"]


@dataclass(frozen=True)
class DefenseSpec:
    """A defense: its phases, its declared options and the config fields each scale sets for it.

    ``plan(ctx)`` returns the phases (it may prepare what they share, in ``ctx``);
    ``seeds(options)`` the trusted seeds it asks for, as (clean seeds a class, poisoned
    seeds slipped among them — 002 Table 5), drawn by the runner; ``constraints(config,
    options)`` checks what spans several fields on the config alone (in ``make_config``);
    ``check(ctx)`` what needs the data or the model, still before any training;
    ``finish(ctx)`` adds to the summary after the last phase.
    """

    name: str
    plan: Callable[["Context"], "list[Phase]"]
    options: tuple[Option, ...] = ()
    presets: dict[str, dict] = field(default_factory=dict)  # scale -> config fields
    dataset_presets: dict[tuple[str, str], dict] = field(default_factory=dict)  # (scale, dataset) -> config fields
    summary: str = ""
    isolated: str = ""  # what TPR/FPR count as "isolated as poisoned", printed beside them
    seeds: Callable[[Options], tuple[int, int]] | None = None
    constraints: Callable[["RunConfig", Options], None] | None = None
    check: Callable[["Context"], None] | None = None
    finish: Callable[["Context"], dict[str, Any]] | None = None


from . import abl, asd, baseline, dbd, pipd  # noqa: E402

DEFENSES: dict[str, DefenseSpec] = {spec.name: spec for spec in (baseline.SPEC, asd.SPEC, abl.SPEC, pipd.SPEC, dbd.SPEC)}
PLANNED_DEFENSES: tuple[str, ...] = ()
