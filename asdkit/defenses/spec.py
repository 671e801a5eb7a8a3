"""What a defense is: declared options, per-scale presets, trusted seeds, and ``plan(ctx) -> [Phase, ...]``."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from ..options import Option, Options

__all__ = ["DefenseSpec"]

Plan = Callable[[Any], list]  # (the Context) -> [Phase, ...]


@dataclass(frozen=True)
class DefenseSpec:
    """A defense: its phases, its declared options and the config fields each scale sets for it.

    ``plan(ctx)`` returns the phases (it may prepare what they share, in ``ctx``);
    ``seeds(options)`` the trusted seeds it asks for, as (clean seeds a class, poisoned
    seeds slipped among them — 002 Table 5), drawn by the runner; ``constraints(config,
    options)`` checks what spans several fields on the config alone (in ``make_config``);
    ``check(ctx)`` what needs the data or the model, still before any training;
    ``finish(ctx)`` adds to the summary after the last phase; ``products(config, options)``
    names the phase products (:class:`~asdkit.phases.Product`) runs of the defense share, so the
    planner sends those runs to one worker.
    """

    name: str
    plan: Plan
    options: tuple[Option, ...] = ()
    presets: dict[str, dict] = field(default_factory=dict)  # scale -> config fields
    dataset_presets: dict[tuple[str, str], dict] = field(default_factory=dict)  # (scale, dataset) -> config fields
    summary: str = ""
    isolated: str = ""  # what TPR/FPR count as "isolated as poisoned", printed beside them
    seeds: Callable[[Options], tuple[int, int]] | None = None
    constraints: Callable[[Any, Options], None] | None = None  # (RunConfig, options)
    check: Callable[[Any], None] | None = None  # (Context)
    finish: Callable[[Any], dict[str, Any]] | None = None  # (Context)
    products: Callable[[Any, Options], list] | None = None  # (RunConfig, options) -> the phase products its runs share
