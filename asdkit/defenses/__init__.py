"""Defenses as short schedules of phases over shared split policies and pool operations.

Each defense registers a :class:`DefenseSpec`: its declared options (one table, checked by
``make_config`` before any data loads), the config fields each scale sets for it, the
trusted seeds it asks the runner for, and ``plan(ctx) -> [Phase, ...]``, the schedule the
runner executes, resumably, one epoch at a time. The pieces two defenses share live in
:mod:`asdkit.defenses.pieces`; no defense imports another.
"""
from __future__ import annotations

from . import abl, asd, baseline, dbd, pipd
from .spec import DefenseSpec

__all__ = ["DefenseSpec", "DEFENSES", "PLANNED_DEFENSES"]

DEFENSES: dict[str, DefenseSpec] = {spec.name: spec for spec in (baseline.SPEC, asd.SPEC, abl.SPEC, pipd.SPEC, dbd.SPEC)}
PLANNED_DEFENSES: tuple[str, ...] = ()
