"""What the figure modules share: the attack grids by scale, the runs every figure names the same way, the criteria's pieces and plot helpers."""
from __future__ import annotations

import numpy as np

from ..attacks import run_overrides
from ..config import make_config
from ..records import Record
from ..style import DEFENSE_COLORS, FULL, MIN_FONT, POOL_COLORS, SINGLE, attack_name, bar_labels, defense_name
from .registry import Check, Need

ATTACKS4 = ("badnets", "blend", "wanet", "clb")  # 002 Figs. 6, 7, 9-13: the four attacks of the ablations
LOW_ASR = 0.05  # "ASR low / near 0": below 5 % (a clean Fashion-MNIST model's ASR is 2-3 %)
NOISE = 0.01  # a single-seed difference counts as "lower" or "higher" when it exceeds one point
COLLAPSED_ACC = 0.5  # a model below 50 % clean accuracy has collapsed: its ASR and losses say little about the defense
CLEAN_HARD_FRACTION = 0.1  # 002 Section 5.2: the 5,000 of 50,000 samples of largest loss


def attacks(scale: str, full: tuple[str, ...] = ATTACKS4) -> tuple[str, ...]:
    """The attacks an ablation sweeps at ``scale``: all four at lab and paper scale, two at classroom, one at smoke."""
    return {"smoke": full[:1], "classroom": full[:2]}.get(scale, full)


def ablation_attacks(scale: str) -> tuple[str, ...]:
    """The attacks of ASD's ablation grids (002 Figs. 6, 7, 11, 13): BadNets alone at classroom and smoke, all four above.

    The classroom grid is reduced so that the whole figure set trains cold in one evening on two cores:
    one attack × the variants is 17 ASD runs instead of 29.
    """
    return ATTACKS4[:1] if scale in ("smoke", "classroom") else ATTACKS4


def extras(attack: str) -> dict:
    """What a run of ``attack`` sets beyond its preset (:func:`asdkit.attacks.run_overrides`), as :func:`run`'s keywords."""
    return {k.replace(".", "__"): v for k, v in run_overrides(attack).items()}


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


def check(claim: str, passed, measured: str) -> Check:
    """One part of a criterion (a numpy bool becomes a bool)."""
    return Check(claim, bool(passed), measured)


def oriented_auroc(score, is_poison) -> tuple[float, str]:
    """The AUROC of ``score`` as a poison detector, oriented: max(A, 1 − A), and which side the poison is on.

    A loss's direction is arbitrary for separation: an AUROC of 0.125 separates as well as 0.875, the other way round.
    """
    from ..analysis import detection_auroc

    a = detection_auroc(score, is_poison)
    return (a, "poison higher") if a >= 0.5 else (1.0 - a, "poison lower")


def clean_hard_reference(reference: Record, others: dict[str, Record] | None = None, fraction: float = CLEAN_HARD_FRACTION) -> np.ndarray:
    """The clean-hard samples, defined once for every defense compared: the ``fraction`` clean samples of largest loss under the
    no-defense model trained on the same images (002 Section 5.2's 5,000 of 50,000), as a bool mask.

    ``others``' records must train on the same images (the same poisoned set), or the mask would name other samples.
    """
    from ..analysis import clean_hard_mask

    poison, _ = truth(reference)
    for label, rec in (others or {}).items():
        p, _ = truth(rec)
        if len(p) != len(poison) or not (p == poison).all() or not (rec.arrays["true_label"] == reference.arrays["true_label"]).all():
            raise ValueError(f"{label} does not train on the images of the no-defense reference ({len(p)} vs {len(poison)} samples): "
                             "clean-hard samples are defined on one training set.")
    return clean_hard_mask(final_loss(reference, "ce"), poison, fraction).numpy()


def caveat(summary: dict) -> str | None:
    """Why a run's ASR or losses mean little: a collapsed model or an ASR that means nothing (a starved target class), else None."""
    from ..analysis import asr_caveat

    if summary.get("acc", 1.0) < COLLAPSED_ACC:
        return f"collapsed: ACC {pct(summary['acc'])}"
    why = asr_caveat(summary)
    return f"ASR not meaningful: {why}" if why else None


def data_note(records: dict[str, Record]) -> str | None:
    """None when every run of a figure trains and tests on the same images, else which runs differ (said in the figure)."""
    sizes: dict[tuple, list[str]] = {}
    for label, rec in records.items():
        c = rec.config
        key = (len(rec.arrays["is_poison"]), c.get("test_size", 0), c.get("dataset"))
        if label not in sizes.setdefault(key, []):
            sizes[key].append(label)
    if len(sizes) <= 1:
        return None
    return "the runs train on different images: " + "; ".join(f"{n:,} training images: {', '.join(labels)}" for (n, _, _), labels in sizes.items())


def title(fig, paper_figure: str, text: str, *, note: str | None = None) -> None:
    """A figure's title, citing the paper's figure ("ASD Fig. 3: ..."), with a note line below it when the runs differ."""
    fig.suptitle(f"{paper_figure}: {text}" + (f"\n{note}" if note else ""))


def figure(width: str, rows: int = 1, cols: int = 1, *, height: float = 3.4, **kw):
    """A figure of the house widths: ``width`` is "single" (one column) or "full" (the page)."""
    import matplotlib.pyplot as plt

    w = {"single": SINGLE, "full": FULL}[width]
    return plt.subplots(rows, cols, figsize=(w, height * rows), layout="constrained", squeeze=False, **kw)


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
                         color=POOL_COLORS.get(name), label=f"{name} ({int(mask.sum())})")
            h = np.sort(np.histogram(v[mask], bins=edges, density=True)[0])
            tallest, second = max(tallest, h[-1]), max(second, h[-2] if len(h) > 1 else h[-1])
    if second > 0 and tallest > 3 * second:  # one spike (a loss saturating at its bound) would flatten the rest
        ax.set_ylim(0, 1.4 * second)
        ax.annotate("a spike is clipped", (0.02, 0.97), xycoords="axes fraction", va="top", fontsize=MIN_FONT, color="0.35")
    ax.set(xlabel=f"log10 {xlabel}" if log else xlabel, ylabel="density")
    ax.legend()


def bars(ax, labels: list[str], series: dict[str, list[float]], *, ylabel: str, colors: list | None = None, percent: bool = True,
         hatched: dict[str, list[bool]] | None = None):
    """Grouped bars, each labelled to one decimal: one group per label, one bar per series; ``percent``: values in [0, 1] on a 0-100 axis.

    ``hatched[series][i]`` marks a bar whose value means little (a collapsed model, an ASR that means nothing).
    """
    x = np.arange(len(labels))
    w = 0.8 / max(1, len(series))
    k = 100.0 if percent else 1.0
    for i, (name, values) in enumerate(series.items()):
        vals = [np.nan if v is None else k * v for v in values]
        rects = ax.bar(x + (i - (len(series) - 1) / 2) * w, vals, w, label=name, color=None if colors is None else colors[i])
        for r, bad in zip(rects, (hatched or {}).get(name, [])):
            if bad:
                r.set_hatch("xx")
                r.set_edgecolor("0.2")
        bar_labels(ax, rects)
    ax.set_xticks(x, labels)
    if percent:
        ax.set_ylim(0, 112)  # 0-100, with room for the labels above a bar at 100
        ax.set_yticks(range(0, 101, 20))
    ax.set_ylabel(ylabel)
    ax.grid(axis="x", visible=False)


def names(keys) -> list[str]:
    """Attack keys as the papers name them."""
    return [attack_name(k) for k in keys]


__all__ = ["ATTACKS4", "LOW_ASR", "NOISE", "COLLAPSED_ACC", "CLEAN_HARD_FRACTION", "attacks", "ablation_attacks", "run", "same_data",
           "pct", "check", "oriented_auroc", "clean_hard_reference", "caveat", "data_note", "title", "figure", "final", "truth",
           "final_loss", "hist_groups", "bars", "names", "DEFENSE_COLORS", "POOL_COLORS", "defense_name", "attack_name"]
