"""The house style of every figure, notebook plot and explorer: names, colours, widths, fonts and one seaborn theme.

One colour means one thing everywhere: a defense has its colour (no defense grey, ABL, DBD,
PIPD, ASD each their own), a pool kind has its colour (clean, clean-hard, poisoned), and the
variants of an ablation are shades of the defense they vary, darkest for its preset.
"""
from __future__ import annotations

__all__ = ["ATTACK_NAMES", "DEFENSE_NAMES", "DEFENSE_COLORS", "POOL_COLORS", "ATTACK_MARKERS", "SINGLE", "FULL", "DPI", "MIN_FONT",
           "attack_name", "defense_name", "defense_color", "shades", "theme", "percent_axis", "bar_labels", "panel", "rate"]

ATTACK_NAMES = {"badnets": "BadNets", "blend": "Blend", "wanet": "WaNet", "sig": "SIG", "trojan": "Trojan", "clb": "CLB",
                "iab": "IAB", "refool": "Refool", "adaptive-patch": "Adaptive-Patch", "asd-adaptive-grad": "ASD-adaptive (grad.)",
                "asd-adaptive-feat": "ASD-adaptive (feat.)"}
DEFENSE_NAMES = {"none": "no defense", "abl": "ABL", "dbd": "DBD", "pipd": "PIPD", "asd": "ASD", "dbd+meta": "DBD + meta-split"}
# seaborn's "deep" palette, one hue per defense; grey for no defense
DEFENSE_COLORS = {"none": "#7f7f7f", "abl": "#8172b3", "dbd": "#55a868", "pipd": "#ccb974", "asd": "#4c72b0",
                  "dbd+meta": "#1b5e2b"}
POOL_COLORS = {"clean": "#64b5cd", "clean-hard": "#dd8452", "poisoned": "#c44e52"}
ATTACK_MARKERS = {"badnets": "o", "blend": "s", "wanet": "^", "clb": "D"}  # one defense, several attacks: a marker each

SINGLE = 6.5  # inches: a single-column figure
FULL = 13.0  # inches: a full-width figure
DPI = 130  # the PNGs' resolution: 845 and 1,690 pixels wide
MIN_FONT = 8.0  # points, at the printed size


def attack_name(key: str) -> str:
    """An attack as the papers name it (BadNets, not badnets)."""
    return ATTACK_NAMES.get(key, key)


def defense_name(key: str) -> str:
    """A defense as the papers name it."""
    return DEFENSE_NAMES.get(key, key)


def defense_color(key: str) -> str:
    """The one colour of a defense in every figure."""
    return DEFENSE_COLORS[key]


def shades(key: str, n: int) -> list:
    """``n`` shades of defense ``key``'s colour: its own for the preset, then darker ones for its ablation variants."""
    import seaborn as sns

    return sns.dark_palette(DEFENSE_COLORS[key], n_colors=n + 1, reverse=True)[:n] if n > 1 else [DEFENSE_COLORS[key]]


def theme() -> None:
    """Set seaborn's theme and the house fonts once (every text ≥ 8 pt at the printed size)."""
    import matplotlib as mpl
    import seaborn as sns

    sns.set_theme(context="paper", style="whitegrid", font_scale=1.0,
                  rc={"font.size": 9, "axes.titlesize": 9.5, "axes.labelsize": 9, "xtick.labelsize": 8.5, "ytick.labelsize": 8.5,
                      "legend.fontsize": 8, "legend.title_fontsize": 8, "figure.titlesize": 10.5, "figure.dpi": DPI,
                      "savefig.dpi": DPI, "axes.titleweight": "normal", "grid.alpha": 0.4})
    mpl.rcParams["figure.constrained_layout.use"] = True


def percent_axis(ax, label: str, *, axis: str = "y") -> None:
    """A percentage axis from 0 to 100, labelled ``label (%)``."""
    (ax.set_ylim if axis == "y" else ax.set_xlim)(0, 100)
    (ax.set_ylabel if axis == "y" else ax.set_xlabel)(f"{label} (%)")


def rate(x, decimals: int = 1) -> str:
    """A share as a percentage, or "—" where it is undefined (a class without poisoned samples has no TPR)."""
    import math

    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * float(x):.{decimals}f} %"


def bar_labels(ax, rects, *, decimals: int = 1) -> None:
    """Each bar's value to one decimal above it."""
    ax.bar_label(rects, fmt=f"%.{decimals}f", fontsize=MIN_FONT, padding=1)


def panel(ax, letter: str | None, title: str) -> None:
    """A panel's title with the paper's panel letter: "(a) ..."."""
    ax.set_title(f"({letter}) {title}" if letter else title)
