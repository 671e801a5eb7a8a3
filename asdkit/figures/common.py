"""What the figure modules share: the attack grids by scale, the runs every figure names the same way, and plot helpers."""
from __future__ import annotations

import numpy as np

from ..config import make_config
from ..records import Record
from .registry import Need

ATTACKS4 = ("badnets", "blend", "wanet", "clb")  # 002 Figs. 6, 7, 9-13: the four attacks of the ablations
COLORS = {"clean": "#4c72b0", "clean-hard": "#dd8452", "poisoned": "#c44e52"}


def attacks(scale: str, full: tuple[str, ...] = ATTACKS4) -> tuple[str, ...]:
    """The attacks an ablation sweeps at ``scale``: all four at lab and paper scale, two at classroom, one at smoke."""
    return {"smoke": full[:1], "classroom": full[:2]}.get(scale, full)


def ablation_attacks(scale: str) -> tuple[str, ...]:
    """The attacks of ASD's ablation grids (002 Figs. 6, 7, 11, 13): BadNets alone at classroom and smoke, all four above.

    The classroom grid is reduced so that the whole figure set trains cold in one evening on two cores:
    one attack × the variants is 17 ASD runs instead of 29.
    """
    return ATTACKS4[:1] if scale in ("smoke", "classroom") else ATTACKS4


def run(defense: str = "none", attack: str = "badnets", **overrides) -> Need:
    """A run of ``defense`` against ``attack`` (``defense__NAME=v`` sets a defense option, ``attack__NAME=v`` an attack option)."""
    values = {"attack": attack}
    for k, v in overrides.items():
        if k.startswith("defense__"):
            values[f"defense.{k[9:]}"] = v
        elif k.startswith("attack__"):
            values[f"attack.{k[8:]}"] = v
        else:
            values[k] = v
    return Need(defense, values)


def same_data(scale: str, defense: str) -> dict:
    """The train/test sizes of ``defense``'s preset at ``scale`` (a no-defense run compared with it sees the same images)."""
    c = make_config(scale, defense=defense)
    return {"train_size": c.train_size, "test_size": c.test_size}


def pct(x) -> str:
    return "n/a" if x is None else f"{100 * float(x):.1f} %"


def final(rec: Record, key: str):
    """The last logged value of metric ``key``."""
    values = [v for v in rec.metric(key) if v is not None]
    if not values:
        raise ValueError(f"{rec!r} never logged {key!r}.")
    return values[-1]


def truth(rec: Record) -> tuple[np.ndarray, np.ndarray]:
    """(is_poison, is_cover) of a record's training set."""
    a = rec.arrays
    return a["is_poison"].numpy().astype(bool), a.get("is_cover", a["is_poison"] * 0).numpy().astype(bool)


def final_loss(rec: Record, name: str = "ce") -> np.ndarray:
    """The per-sample loss of the final model (the runner's ``final`` snapshot)."""
    snap = rec.snapshots.get("final", {})
    if name not in snap:
        raise ValueError(f"{rec!r} has no final {name} losses (a record from before they were kept: run it again with --force).")
    return snap[name].float().numpy()


def hist_groups(ax, values: np.ndarray, groups: dict[str, np.ndarray], *, bins: int = 50, log: bool = False, xlabel: str = "loss"):
    """Overlaid density histograms of ``values`` for each named boolean group (seaborn)."""
    import seaborn as sns

    v = np.log10(np.maximum(values, 1e-6)) if log else values
    edges = np.histogram_bin_edges(v[np.isfinite(v)], bins=bins)
    tallest, second = 0.0, 0.0
    for name, mask in groups.items():
        if mask.any():
            sns.histplot(v[mask], bins=edges, stat="density", element="step", fill=True, alpha=0.35, ax=ax,
                         color=COLORS.get(name), label=f"{name} ({int(mask.sum())})")
            h = np.sort(np.histogram(v[mask], bins=edges, density=True)[0])
            tallest, second = max(tallest, h[-1]), max(second, h[-2] if len(h) > 1 else h[-1])
    if second > 0 and tallest > 3 * second:  # one spike (a loss saturating at its bound) would flatten the rest
        ax.set_ylim(0, 1.4 * second)
        ax.annotate("a spike is clipped", (0.02, 0.97), xycoords="axes fraction", va="top", fontsize=7, color="0.35")
    ax.set(xlabel=f"log10 {xlabel}" if log else xlabel, ylabel="density")
    ax.legend(fontsize=7)


def bars(ax, labels: list[str], series: dict[str, list[float]], *, ylabel: str = "%", scale: float = 100.0):
    """Grouped bars: one group per label, one bar per series."""
    x = np.arange(len(labels))
    w = 0.8 / max(1, len(series))
    top = max((scale * v for vs in series.values() for v in vs if v is not None), default=0.0)
    fmt = "%.1f" if top < 10 else "%.0f"  # small values (an ASR near its floor) keep a decimal
    for i, (name, values) in enumerate(series.items()):
        vals = [np.nan if v is None else scale * v for v in values]
        rects = ax.bar(x + (i - (len(series) - 1) / 2) * w, vals, w, label=name)
        ax.bar_label(rects, fmt=fmt, fontsize=6, padding=1)
    ax.set_xticks(x, labels, fontsize=8)
    lo, hi = ax.get_ylim()
    ax.set_ylim(lo, hi + 0.18 * (hi - lo))  # headroom for the bar labels and a legend above the bars
    ax.set_ylabel(ylabel)
    ax.grid(axis="y", alpha=0.3)
