"""Defenses as short schedules over shared split policies and pool operations (DESIGN layer 6).

Each defense registers a :class:`DefenseSpec`: its ``run(run) -> extra summary`` function
and the config each scale needs. Planned: ``abl``, ``dbd``, ``pipd``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

__all__ = ["DefenseSpec", "DEFENSES", "PLANNED_DEFENSES"]


@dataclass(frozen=True)
class DefenseSpec:
    """A defense: what it runs, and the config fields each scale sets for it."""

    name: str
    run: Callable[[Any], dict]
    presets: dict[str, dict] = field(default_factory=dict)
    dataset_presets: dict[tuple[str, str], dict] = field(default_factory=dict)  # (scale, dataset) -> fields
    summary: str = ""
    check: Callable[[Any], None] | None = None  # validates defense options on a prepared Run


from . import asd, baseline  # noqa: E402

DEFENSES: dict[str, DefenseSpec] = {spec.name: spec for spec in (baseline.SPEC, asd.SPEC)}
PLANNED_DEFENSES = ("abl", "dbd", "pipd")
