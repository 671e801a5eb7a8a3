"""The figure registry: one entry per paper figure, the runs it reads, and a pure drawing function.

A :class:`PaperFigure` names its runs as :class:`Need` objects (a defense and config overrides,
made into a config at the figure's scale); :func:`plan` turns a set of figures into the unique
configs they read (a declared set of runs, made by :mod:`asdkit.planner`), so a run shared by
two figures is one record; :func:`regenerate` has the planner make what is missing, then draws
every figure from records alone and writes ``<out>/<key>.png`` and ``<out>/README.md``.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from ..config import RunConfig, make_config
from ..records import Record, finished_record, run_folder, runs_dir
from ..style import DPI, theme

__all__ = ["Need", "Drawn", "Check", "PaperFigure", "FIGURES", "register", "plan", "missing", "regenerate", "select"]


@dataclass(frozen=True)
class Need:
    """One run a figure reads: a defense and config overrides, made into a config at the figure's scale."""

    defense: str = "none"
    overrides: Mapping[str, Any] = field(default_factory=dict)

    def config(self, scale: str) -> RunConfig:
        return make_config(scale, defense=self.defense, overrides=dict(self.overrides))


@dataclass
class Drawn:
    """What a drawing function returns: the figure, the phenomenon's number in words, the numbers its verdict reads."""

    figure: Any
    number: str
    values: dict[str, Any] = field(default_factory=dict)
    shows: bool | None = None  # set by :meth:`PaperFigure.judge`; None: nothing to check (a diagram, a grid of examples)
    checks: list["Check"] = field(default_factory=list)


@dataclass(frozen=True)
class Check:
    """One part of a figure's criterion (the FIGURES.md check for one panel or attack): what must hold, whether it does, on what numbers."""

    claim: str
    passed: bool
    measured: str

    def __str__(self) -> str:
        return f"{self.claim}: {'holds' if self.passed else 'does not hold'} ({self.measured})"


@dataclass(frozen=True)
class PaperFigure:
    """One figure of a paper: what it shows, the paper's claim, the runs it reads at a scale, and how it is drawn."""

    key: str  # asd_fig03
    caption: str  # the paper's caption in a few words
    claim: str  # the phenomenon, as the paper states it
    needs: Callable[[str], dict[str, Need]]  # scale -> {label: Need}
    draw: Callable[[dict[str, Record], str], Drawn]  # (records by label, scale) -> Drawn
    reduced: str = ""  # how the grid at classroom/smoke scale differs from the paper's
    kind: str = "figure"  # or "table": drawn as markdown rows (Drawn.values["markdown"]) into the README
    verdict: Callable[[dict], list[Check]] | None = None  # Drawn.values -> the criterion's checks; None: nothing to check

    @property
    def paper(self) -> str:
        return self.key.split("_")[0].upper()

    def judge(self, drawn: Drawn) -> Drawn:
        """Set ``drawn.shows`` and ``drawn.checks`` from the verdict over ``drawn.values``: it shows when every check holds."""
        if self.verdict is None:
            drawn.shows, drawn.checks = None, []
            return drawn
        checks = self.verdict(drawn.values)
        if not checks:
            raise ValueError(f"{self.key}'s verdict checked nothing: a criterion must name what it checks.")
        drawn.shows, drawn.checks = all(c.passed for c in checks), list(checks)
        return drawn


FIGURES: dict[str, PaperFigure] = {}


def register(key: str, *, caption: str, claim: str, needs: Callable[[str], dict[str, Need]] | None = None, reduced: str = "",
             kind: str = "figure", verdict: Callable[[dict], list[Check]] | None = None):
    """Decorator: register ``draw`` as figure (or table) ``key`` (names must be unique), judged by ``verdict``."""
    def wrap(draw):
        if key in FIGURES:
            raise ValueError(f"figure {key!r} is registered twice")
        FIGURES[key] = PaperFigure(key, caption, claim, needs or (lambda scale: {}), draw, reduced, kind, verdict)
        return draw
    return wrap


def draw(fig: PaperFigure, records: dict[str, Record], scale: str) -> Drawn:
    """Draw ``fig`` from its records and judge it by its criterion."""
    return fig.judge(fig.draw(records, scale))


def _order(fig: "PaperFigure") -> tuple[int, int, str]:
    return ("ASD", "PIPD", "DBD").index(fig.paper), fig.kind == "table", fig.key


def select(only: str | list[str] | None = None) -> list[PaperFigure]:
    """The figures named in ``only`` (comma-separated keys; None: all), checked before any work."""
    if not only:
        return sorted(FIGURES.values(), key=_order)
    keys = [k.strip() for k in (only.split(",") if isinstance(only, str) else only) if k.strip()]
    unknown = [k for k in keys if k not in FIGURES]
    if unknown:
        raise ValueError(f"The 'only' field names unknown figures {unknown}; the figures: {', '.join(FIGURES)}.")
    return [FIGURES[k] for k in keys]


def plan(figures: list[PaperFigure], scale: str) -> tuple[dict[str, RunConfig], dict[str, dict[str, str]]]:
    """The unique runs ``figures`` read at ``scale`` (run folder name -> config) and, per figure, label -> run folder name.

    Every config is made (and so checked) here, before anything trains.
    """
    runs: dict[str, RunConfig] = {}
    uses: dict[str, dict[str, str]] = {}
    for fig in figures:
        uses[fig.key] = {}
        for label, need in fig.needs(scale).items():
            cfg = need.config(scale)
            name = run_folder(cfg, Path(".")).name
            runs.setdefault(name, cfg)
            uses[fig.key][label] = name
    return runs, uses


def missing(runs: dict[str, RunConfig], root: Path | None = None) -> dict[str, RunConfig]:
    """The runs of ``runs`` without a finished record under ``root`` (a corrupt one counts as missing: training it says why)."""
    def done(cfg: RunConfig) -> bool:
        try:
            return finished_record(cfg, root) is not None
        except ValueError:  # RecordError: the listing goes on
            return False

    return {name: cfg for name, cfg in runs.items() if not done(cfg)}


def train_missing(todo: dict[str, RunConfig], *, root: Path | None = None, jobs: int = 1, quiet: bool = False,
                  device: str | None = None, launcher: str = "local", launcher_options: dict | None = None) -> None:
    """Have the planner make every run of ``todo`` (dependencies first, every check before the first trains); a failure is raised."""
    from dataclasses import replace

    from ..planner import RunFailed, launch, wait_for

    if not todo:
        return
    root = Path(root or runs_dir())
    configs = [replace(c, device=device) if device else c for c in todo.values()]
    results = launch(configs, launcher=launcher, jobs=jobs, root=root, options=launcher_options or {}, quiet=quiet, keep_going=False)
    failed = [r for r in results if r["state"] == "failed"]
    if failed:
        raise RunFailed(f"{len(failed)} run(s) failed on the {launcher} launcher: " + "; ".join(f"{r['run']}: {r['error']}" for r in failed[:3]))
    wait_for(configs, root)  # a run another process holds is drawn once that process has finished it


class TrainingForbidden(RuntimeError):
    """Raised when figures are drawn with ``train=False`` and a run they read has no finished record."""


def regenerate(scale: str = "classroom", *, only: str | list[str] | None = None, out: Path | str | None = None,
               root: Path | None = None, jobs: int = 1, train: bool = True, quiet: bool = False, device: str | None = None,
               dpi: int = DPI, available: bool = False, launcher: str = "local", launcher_options: dict | None = None) -> dict[str, Any]:
    """Train what the figures need (unless ``train`` is False), draw each, write ``<out>/<key>.png`` and ``<out>/README.md``.

    ``available``: train nothing and draw only the figures whose records all exist (the others are listed as skipped).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    theme()
    from .readme import write_readme

    figures = select(only)
    runs, uses = plan(figures, scale)
    root = Path(root or runs_dir())
    todo = missing(runs, root)
    skipped = []
    if available:
        skipped = [f.key for f in figures if any(n in todo for n in uses[f.key].values())]
        figures = [f for f in figures if f.key not in skipped]
        runs, uses = plan(figures, scale)
        todo = {}
    if todo and not train:
        raise TrainingForbidden(f"{len(todo)} run(s) the figures read have no finished record under {root}: {sorted(todo)[:6]}...")
    t0 = time.perf_counter()
    train_missing(todo, root=root, jobs=jobs, quiet=quiet, device=device, launcher=launcher, launcher_options=launcher_options)
    trained = time.perf_counter() - t0
    out = Path(out or ("figures" if scale == "classroom" else f"figures-{scale}"))
    out.mkdir(parents=True, exist_ok=True)
    results = {}
    for fig in figures:
        t1 = time.perf_counter()
        records = {label: Record.load(run_folder(runs[name], root) / "record.pt") for label, name in uses[fig.key].items()}
        drawn = draw(fig, records, scale)
        path = out / f"{fig.key}.png"
        if drawn.figure is not None:
            drawn.figure.savefig(path, dpi=dpi)  # no bbox_inches="tight": a figure keeps its width (single-column or full)
            plt.close(drawn.figure)
        seconds = {label: r.summary.get("seconds", 0.0) for label, r in records.items()}
        results[fig.key] = {"file": path.name if drawn.figure is not None else "", "kind": fig.kind, "number": drawn.number, "shows": drawn.shows,
                            "checks": [{"claim": c.claim, "passed": c.passed, "measured": c.measured} for c in drawn.checks], "values": drawn.values,
                            "runs": sorted(set(uses[fig.key].values())), "run_seconds": round(sum(seconds.values()), 1),
                            "machines": sorted({r.summary["machine"] for r in records.values() if r.summary.get("machine")}),
                            "draw_seconds": round(time.perf_counter() - t1, 2)}
        if not quiet:
            print(f"{fig.key}: {drawn.number}")
    write_readme(out, scale, {f.key: f for f in figures}, results, order=[f.key for f in select()], runs=len(runs),
                 trained=len(todo), seconds=trained)
    return {"figures": results, "runs": len(runs), "trained": len(todo), "train_seconds": round(trained, 1), "out": str(out),
            "skipped": skipped}
