"""Pure functions from records to matplotlib figures: nothing here trains.

Each function takes finished (or partial) :class:`~asdkit.records.Record` objects and returns
a ``matplotlib.figure.Figure``; saving and showing are the caller's business.
"""
from __future__ import annotations

from typing import Mapping

import numpy as np

from .records import Record
from .style import FULL, MIN_FONT, theme

__all__ = ["epoch_curves", "pool_composition"]


def _stage_bounds(record: Record) -> list[int]:
    """Epochs at which a new ASD stage starts (empty for records without stages)."""
    stages = record.metric("stage") if record.metrics and "stage" in record.metrics[0] else []
    return [e for e in range(1, len(stages)) if stages[e] != stages[e - 1]]


def epoch_curves(records: Mapping[str, Record], *, reference: Mapping[str, Record] | None = None, phases: tuple[str, ...] | None = None):
    """ACC, ASR and poisoned samples in D_C per epoch, one line per record (002 Fig. 4 / Fig. 7 style).

    ``records`` maps a legend label to a defended run; ``reference`` (optional) maps labels to
    runs drawn dashed, e.g. the no-defense run and the clean twin. Dotted verticals mark where
    the first record's ASD stages change. ``phases`` keeps only the epochs of those phases,
    counted from 1 (e.g. DBD's ``("head", "finetune")``, so a run that reused its SimCLR
    backbone lines up with one that trained it).
    """
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    if not records:
        raise ValueError("epoch_curves needs at least one record")
    theme()
    fig, axes = plt.subplots(1, 3, figsize=(FULL, 3.6), layout="constrained")
    panels = [("acc", "clean accuracy (ACC)"), ("asr", "attack success rate (ASR)"), ("poison_in_pool", "poisoned samples in $D_C$")]
    for label, rec in records.items():
        metrics = [m for m in rec.metrics if phases is None or m.get("phase") in phases]
        epochs = np.arange(1, len(metrics) + 1)
        for ax, (key, _) in zip(axes, panels):
            if any(key in m for m in metrics):  # an epoch without it (e.g. PIPD's isolation rounds) is a gap
                ax.plot(epochs, [m.get(key, np.nan) for m in metrics], marker="o", ms=3, label=label)
    for i, (label, rec) in enumerate((reference or {}).items()):
        for ax, (key, _) in zip(axes[:2], panels[:2]):
            ax.axhline(rec.metric(key)[-1], ls="--", lw=1, color="0.4")
            ax.annotate(label, (1 + 2.5 * i, rec.metric(key)[-1]), textcoords="offset points", xytext=(2, 3), fontsize=8, color="0.3")
    first = next(iter(records.values()))
    for ax, (_, title) in zip(axes, panels):
        for b in _stage_bounds(first):
            ax.axvline(b + 0.5, ls=":", color="0.6")
        ax.set(title=title, xlabel="epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    return fig


def pool_composition(record: Record, *, class_names: list[str] | None = None):
    """Heat map of D_C's size per observed class and epoch, beside the per-class test accuracy.

    The teaching point of ASD at small scale: a class-agnostic or meta-split pool can starve
    a confusable class, and that class's accuracy follows its pool.
    """
    import matplotlib.pyplot as plt
    import seaborn as sns

    if not record.metrics or "pool_per_class" not in record.metrics[0]:
        raise ValueError(f"{record!r} has no per-class pool counts (not an ASD record?)")
    pools = np.array(record.metric("pool_per_class")).T
    accs = np.array(record.metric("acc_per_class")).T * 100
    names = class_names or [str(k) for k in range(pools.shape[0])]
    epochs = [str(e + 1) for e in range(pools.shape[1])]
    theme()
    many = len(names) > 20  # a row per class stays readable: above 20 classes the cells lose their numbers to colour bars
    fig, axes = plt.subplots(1, 2, figsize=(FULL, max(4.2, 0.2 * len(names) + 1.0)), layout="constrained")
    sns.heatmap(pools, ax=axes[0], annot=not many, fmt="d", cmap="viridis", xticklabels=epochs, yticklabels=names, cbar=many,
                annot_kws={"fontsize": MIN_FONT})
    sns.heatmap(accs, ax=axes[1], annot=not many, fmt=".0f", cmap="magma", vmin=0, vmax=100, xticklabels=epochs, yticklabels=names,
                cbar=many, annot_kws={"fontsize": MIN_FONT})
    axes[0].set(title="$D_C$ size per class", xlabel="epoch")
    axes[1].set(title="test accuracy per class (%)", xlabel="epoch")
    for ax in axes:
        for b in _stage_bounds(record):
            ax.axvline(b, color="white", lw=2)
    return fig
