"""The three pipeline diagrams (002 Fig. 2, 003 Fig. 2, 004 Fig. 2), drawn by code with matplotlib patches."""
from __future__ import annotations

from ..style import FULL, MIN_FONT
from .registry import Drawn, register

PALETTE = {"data": "#dde7f3", "stage": "#fbe3c8", "pool": "#d9efd6", "bad": "#f6d2d2", "train": "#e6dcf2"}


def _canvas(height: float, title: str):
    """A full-width canvas whose data units are inches (13 wide), titled ``title``."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(FULL, height), layout="constrained")
    ax.set(xlim=(0, FULL), ylim=(0, height))
    ax.axis("off")
    fig.suptitle(title)
    return fig, ax


def _box(ax, x: float, y: float, w: float, h: float, text: str, kind: str = "stage", size: float = 9):
    """A rounded box centred at (x, y) with ``text``; returns its (left, right, bottom, top) edges."""
    from matplotlib.patches import FancyBboxPatch

    ax.add_patch(FancyBboxPatch((x - w / 2, y - h / 2), w, h, boxstyle="round,pad=0.04,rounding_size=0.12",
                                fc=PALETTE[kind], ec="0.3", lw=1))
    ax.text(x, y, text, ha="center", va="center", fontsize=size, wrap=True)
    return x - w / 2, x + w / 2, y - h / 2, y + h / 2


def _arrow(ax, start, end, text: str = "", rad: float = 0.0, text_dy: float = 0.12):
    """An arrow from ``start`` to ``end`` (curved by ``rad``), labelled ``text`` above its middle."""
    ax.annotate("", xy=end, xytext=start, arrowprops=dict(arrowstyle="-|>", color="0.25", lw=1.2, shrinkA=2, shrinkB=2,
                                                          connectionstyle=f"arc3,rad={rad}"))
    if text:
        ax.text((start[0] + end[0]) / 2, (start[1] + end[1]) / 2 + text_dy, text, ha="center", va="bottom", fontsize=MIN_FONT, color="0.2")


@register("asd_fig02", caption="ASD's pipeline", claim="seed samples, three splitting stages, two pools, semi-supervised training")
def asd_fig02(records, scale):
    fig, ax = _canvas(4.4, "ASD Fig. 2: adaptively splitting the poisoned data set")
    _box(ax, 1.2, 2.9, 1.9, 1.4, "poisoned\ntraining set D\n+ 10 clean seeds\na class", "data")
    stages = [("stage 1\nclass-aware\nloss-guided split\n(SCE; D_C grows\nby n every t epochs)", 3.9),
              ("stage 2\nclass-agnostic\nloss-guided split\n(the lowest α·|D|)", 6.6),
              ("stage 3\nmeta-split: virtual\nmodel, one epoch;\nthe smallest loss\nreduction → D_C", 9.3)]
    for text, x in stages:
        _box(ax, x, 2.9, 2.2, 1.7, text, "stage")
    _arrow(ax, (2.15, 2.9), (2.8, 2.9))
    _arrow(ax, (5.0, 2.9), (5.5, 2.9), "epoch T1")
    _arrow(ax, (7.7, 2.9), (8.2, 2.9), "epoch T2")
    for _, x in stages:  # every stage's split fills both pools: the three splits join, then feed D_C and D_P
        ax.plot([x, x], [2.05, 1.65], color="0.25", lw=1.2)
    ax.plot([3.9, 9.3], [1.65, 1.65], color="0.25", lw=1.2)
    _arrow(ax, (5.0, 1.65), (5.0, 1.15))
    _arrow(ax, (9.0, 1.65), (9.0, 1.15))
    ax.text(2.6, 1.75, "each epoch's split\nfills both pools", fontsize=MIN_FONT, color="0.3", ha="left", va="bottom")
    _box(ax, 5.0, 0.75, 4.6, 0.75, "clean pool D_C (labels kept)", "pool")
    _box(ax, 9.0, 0.75, 2.9, 0.75, "polluted pool D_P (labels dropped)", "bad")
    _box(ax, 12.0, 2.0, 1.7, 1.6, "MixMatch\non D_C ∪ D_P\n(one model,\nevery epoch)", "train")
    _arrow(ax, (10.45, 0.75), (11.15, 1.3))
    _arrow(ax, (12.0, 2.8), (9.6, 3.75), rad=0.35)
    ax.text(12.2, 3.75, "its losses drive\nthe next split", fontsize=MIN_FONT, color="0.2", ha="left")
    return Drawn(fig, "diagram drawn by code")


@register("pipd_fig02", caption="PIPD's pipeline", claim="pre-isolation, progressive isolation, selective training")
def pipd_fig02(records, scale):
    fig, ax = _canvas(3.4, "PIPD Fig. 2: progressive isolation of poisoned data")
    _box(ax, 1.2, 1.5, 1.9, 1.2, "poisoned\ntraining set D", "data")
    _box(ax, 3.9, 1.5, 2.4, 1.6, "pre-isolation\nLGA training (γ);\nP_p ← lowest p of the loss\nP_b ← highest q", "stage")
    _box(ax, 7.4, 1.5, 3.4, 2.0, "progressive isolation, T rounds\nactivations of P_p and P_b per channel\n→ discrepancy (Eq. 4), top-K channels (Eq. 6)\n"
         "→ score (Eq. 7) → natural breaks\n(Fisher-Jenks) → benign / poisoned;\nP_b grows by the benign (Eq. 9)", "stage")
    _box(ax, 11.6, 1.5, 2.3, 1.6, "selective training\n(Eq. 10): descend on\nthe benign, ascend on\nthe isolated", "train")
    _arrow(ax, (2.15, 1.5), (2.7, 1.5))
    _arrow(ax, (5.1, 1.5), (5.7, 1.5))
    _arrow(ax, (9.1, 1.5), (10.45, 1.5), "after round T")
    _arrow(ax, (8.6, 2.55), (6.2, 2.55), "round t → t + 1", rad=0.5, text_dy=0.35)
    return Drawn(fig, "diagram drawn by code")


@register("dbd_fig02", caption="DBD's pipeline", claim="self-supervised backbone, SCE head, loss filtering, semi-supervised fine-tuning")
def dbd_fig02(records, scale):
    fig, ax = _canvas(2.6, "DBD Fig. 2: decoupling the training process")
    _box(ax, 1.2, 1.2, 1.9, 1.2, "poisoned\ntraining set D\n(stage 1 ignores\nits labels)", "data")
    _box(ax, 3.9, 1.2, 2.3, 1.5, "stage 1\nSimCLR backbone\n(NT-Xent, τ)", "stage")
    _box(ax, 6.7, 1.2, 2.3, 1.5, "stage 2\nfrozen backbone,\nlinear head with SCE\n(the labels)", "stage")
    _box(ax, 9.3, 1.2, 2.0, 1.5, "filter: the lowest-\nSCE α·|D| keep\ntheir labels,\nthe rest lose them", "pool")
    _box(ax, 11.9, 1.2, 1.9, 1.5, "stage 3\nMixMatch\nfine-tuning of\nthe whole model", "train")
    for a, b in ((2.15, 2.75), (5.05, 5.55), (7.85, 8.3), (10.3, 10.95)):
        _arrow(ax, (a, 1.2), (b, 1.2))
    return Drawn(fig, "diagram drawn by code")
