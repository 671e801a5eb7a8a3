"""Sweeps: a declared set of configs, a grid of config values or the runs of some figures; the planner makes them.

:func:`grid` is every combination of the axes' values (``--set key=v1,v2``, comma lists of
``--defense``, ``--attack``, ``--seed``, ``--rate``), :func:`from_figures` the runs figures read.
What is done, what is missing and who trains it is :mod:`asdkit.planner`'s.
"""
from __future__ import annotations

import ast
import itertools
from typing import Any

from .config import RunConfig, make_config, parse_seeds

__all__ = ["grid", "parse_axes", "from_figures"]


def _values(raw: str) -> list[Any]:
    """``0.3,0.5,0.7`` → [0.3, 0.5, 0.7]; a bracketed literal stays one value."""
    raw = raw.strip()
    if raw.startswith(("[", "(", "{")):
        return [ast.literal_eval(raw)]
    out = []
    for part in raw.split(","):
        try:
            out.append(ast.literal_eval(part.strip()))
        except (ValueError, SyntaxError):
            out.append(part.strip())
    return out


def parse_axes(assignments: list[str] = (), **flags: str | None) -> dict[str, list[Any]]:
    """The sweep's axes: ``--set key=v1,v2`` and the comma lists of ``--defense``, ``--attack``, ``--seed``, ``--rate``."""
    axes: dict[str, list[Any]] = {}
    for name, raw in flags.items():
        if raw is not None:
            if name == "seed":
                axes["seed"] = parse_seeds(str(raw))
            else:
                axes[name] = _values(str(raw))
    for text in assignments:
        if "=" not in text:
            raise ValueError(f"--set expects key=value[,value...], got {text!r}")
        key, raw = text.split("=", 1)
        if key.strip() in axes:
            raise ValueError(f"The {key.strip()!r} axis is given twice (--set {text} and an earlier --set or flag); give it once.")
        axes[key.strip()] = _values(raw)
    return axes


def grid(scale: str, axes: dict[str, list[Any]]) -> list[RunConfig]:
    """Every combination of the axes' values as a config at ``scale`` (each checked before anything runs)."""
    axes = dict(axes)
    defenses = axes.pop("defense", ["none"])
    keys = list(axes)
    configs = []
    for defense in defenses:
        for combo in itertools.product(*(axes[k] for k in keys)):
            configs.append(make_config(scale, defense=str(defense), overrides=dict(zip(keys, combo))))
    return configs


def from_figures(only: str | None, scale: str) -> list[RunConfig]:
    """The distinct runs the figures ``only`` (None: all) read at ``scale``."""
    from .figures import plan, select

    runs, _ = plan(select(only), scale)
    return list(runs.values())


