"""Results from records: declared result sets, one CSV row per run, and pages rendered from the CSV alone.

``asdkit results`` has the planner make what a set is missing (``--no-train``: only what exists),
reads every record into ``results/results.csv`` and renders the pages and the README's headline
table from it; ``--render`` re-renders them from the committed CSV, byte for byte.
"""
from __future__ import annotations

from pathlib import Path

from .._io import save_atomic_text
from ..records import finished_record, run_folder, runs_dir
from .pages import read_csv, render, with_headline, write_csv_text
from .rows import COLUMNS, der, row
from .sets import SETS, plan, reference, select

__all__ = ["SETS", "COLUMNS", "der", "row", "reference", "select", "plan", "build", "render_files", "configs"]

CSV = "results.csv"


def configs(names=None) -> list:
    """Every run the named sets read, their no-defense references included, each once."""
    out = {}
    for pairs in plan(select(names)).values():
        for c, ref in pairs:
            for x in (c, ref):
                if x is not None:
                    out.setdefault(run_folder(x, Path(".")).name, x)
    return list(out.values())


def _load(config, root: Path):
    try:
        return finished_record(config, root)
    except ValueError:  # a corrupt record: its run is listed as missing, not read
        return None


def build(names=None, *, root: Path | None = None, out: Path | str = "results", readme: Path | str | None = "README.md") -> dict:
    """Read every finished record of the named sets into ``out/results.csv`` (rows of runs whose records are gone are kept, in this
    asdkit's columns), render."""
    root = Path(root or runs_dir())
    out = Path(out)
    chosen = select(names)
    declared = {s: {run_folder(c, Path(".")).name for c, _ in pairs} for s, pairs in plan(select()).items()}
    fresh: dict[tuple[str, str], dict] = {}
    for name, pairs in plan(chosen).items():
        for c, ref in pairs:
            rec = _load(c, root)
            if rec is not None:
                r = row(name, c, rec, _load(ref, root) if ref is not None else None)
                fresh[(name, r["run"])] = r
    kept = [r for r in read_csv(out / CSV, strict=False) if (r["set"], r["run"]) not in fresh  # a set whose data is not here: kept whole
            and (r["run"] in declared[r["set"]] if r["set"] in declared else r["set"] in SETS)]
    rows = kept + list(fresh.values())
    out.mkdir(parents=True, exist_ok=True)
    save_atomic_text(write_csv_text(rows), out / CSV)
    render_files(out, readme)
    return {"rows": len(rows), "read": len(fresh), "kept": len(kept), "out": str(out)}


def render_files(out: Path | str = "results", readme: Path | str | None = "README.md") -> list[Path]:
    """Render the pages (and the README's headline table, between its markers) from ``out/results.csv`` alone."""
    out = Path(out)
    rows = read_csv(out / CSV)
    written = []
    for name, text in render(rows).items():
        save_atomic_text(text, out / name)
        written.append(out / name)
    if readme is not None and Path(readme).exists():
        text = Path(readme).read_text()
        new = with_headline(text, rows)
        if new != text:
            save_atomic_text(new, Path(readme))
        written.append(Path(readme))
    return written
