"""Plots draw what the records hold: one line per record and epoch, stage boundaries where the stage changes."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from asdkit.plots import epoch_curves, pool_composition  # noqa: E402
from asdkit.records import Record  # noqa: E402


def asd_like(stages=(1, 1, 2, 3), seed=0, classes=10) -> Record:
    g = np.random.default_rng(seed)
    rec = Record({"defense": "asd"})
    for e, stage in enumerate(stages):
        pool = g.integers(0, 100, size=classes).tolist()
        rec.add_epoch({"epoch": e, "stage": stage, "acc": 0.5 + 0.1 * e, "asr": 0.5 - 0.1 * e, "poison_in_pool": e,
                       "pool_per_class": pool, "acc_per_class": g.random(classes).round(3).tolist()})
    return rec


def test_epoch_curves_draws_each_record_per_epoch_and_marks_the_stages():
    a, b = asd_like(), asd_like(seed=1)
    fig = epoch_curves({"a": a, "b": b}, reference={"no defense": asd_like(stages=(1,))})
    acc_ax, asr_ax, pool_ax = fig.axes
    lines = [ln for ln in acc_ax.get_lines() if ln.get_marker() == "o"]
    assert [ln.get_label() for ln in lines] == ["a", "b"]
    assert list(lines[0].get_ydata()) == a.metric("acc") and list(lines[0].get_xdata()) == [1, 2, 3, 4]
    assert list(pool_ax.get_lines()[0].get_ydata()) == [0, 1, 2, 3]
    verticals = [ln for ln in asr_ax.get_lines() if ln.get_linestyle() == ":"]
    assert sorted(ln.get_xdata()[0] for ln in verticals) == [2.5, 3.5]  # stage 1→2 after epoch 2, 2→3 after epoch 3
    with pytest.raises(ValueError, match="at least one"):
        epoch_curves({})


def test_pool_composition_shows_the_pool_counts_and_refuses_records_without_them():
    rec = asd_like()
    fig = pool_composition(rec, class_names=[f"c{k}" for k in range(10)])
    mesh = fig.axes[0].collections[0]
    assert np.array_equal(np.asarray(mesh.get_array()).reshape(10, 4), np.array(rec.metric("pool_per_class")).T)
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()][:2] == ["c0", "c1"]
    with pytest.raises(ValueError, match="per-class pool"):
        pool_composition(Record({"defense": "none"}))


def test_pool_composition_of_43_classes_grows_a_row_each_and_trades_the_cell_numbers_for_colour_bars():
    """GTSRB: 43 rows of numbers would overlap, so the figure is taller and each panel has a colour bar instead."""
    few, many = pool_composition(asd_like()), pool_composition(asd_like(classes=43), class_names=[f"sign {k}" for k in range(43)])
    assert len(few.axes) == 2 and len(few.axes[0].texts) == 40  # a number in every cell, no colour bar
    assert len(many.axes) == 4 and not many.axes[0].texts  # two panels and their two colour bars
    tall = many.get_size_inches()[1]
    assert tall > few.get_size_inches()[1] and tall * 72 / 43 >= 10  # at least 10 pt of height per row


def test_epoch_curves_can_keep_some_phases_and_leaves_gaps_for_unlogged_epochs():
    """DBD-like: SimCLR epochs log no ACC; a run that reused the backbone has none; phases=... lines the two up."""
    trained, reused = Record({"defense": "dbd"}), Record({"defense": "dbd"})
    for e in range(2):
        trained.add_epoch({"phase": "simclr", "loss": 5.0})
    for rec in (trained, reused):
        for e in range(3):
            rec.add_epoch({"phase": "finetune", "acc": 0.7 + 0.01 * e, "asr": 0.05, **({"poison_in_pool": 4 - e} if e else {})})
    fig = epoch_curves({"trained": trained, "reused": reused}, phases=("finetune",))
    acc_ax, _, pool_ax = fig.axes
    a, b = [ln for ln in acc_ax.get_lines() if ln.get_marker() == "o"]
    assert list(a.get_xdata()) == list(b.get_xdata()) == [1, 2, 3] and list(a.get_ydata()) == list(b.get_ydata())
    pool = list(pool_ax.get_lines()[0].get_ydata())
    assert np.isnan(pool[0]) and pool[1:] == [3, 2]  # the first epoch logged no pool: a gap, not a shift
    whole = epoch_curves({"trained": trained})
    assert list(whole.axes[0].get_lines()[0].get_xdata()) == [1, 2, 3, 4, 5]
