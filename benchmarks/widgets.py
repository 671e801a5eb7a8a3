"""How long each explorer's callback takes on the course's records (``python benchmarks/widgets.py [SCALE]``).

A callback is one control change: it slices cached arrays and redraws the figure to PNG.
Each explorer is built once (its first draw fills the caches), then every control value
is visited once to warm them, then visited again and timed; the median and the slowest
are printed. Run it on a machine with nothing else running; compare explorers to each
other rather than to a fixed number.
"""
from __future__ import annotations

import statistics
import sys
import time

from asdkit import course
from asdkit.widgets import LossExplorer, MetaSplitExplorer, PIPDExplorer, SplitExplorer


def moves(control, values):
    """Set ``control`` to each value twice (warm, then timed); the timed seconds."""
    for v in values:
        control.value = v
    out = []
    for v in values:
        if control.value == v:
            continue
        t0 = time.perf_counter()
        control.value = v
        out.append(time.perf_counter() - t0)
    return out


def main(scale: str = "classroom") -> None:
    none, abl, asd, pipd = (course.record(n, scale) for n in ("none-badnets", "abl-badnets", "asd-badnets", "pipd-badnets"))
    loss = LossExplorer({"no defense": none, "ABL": abl, "ASD": asd})
    big = LossExplorer({"no defense": none})
    split = SplitExplorer(asd, epoch=asd.metric("stage").index(2))
    meta = MetaSplitExplorer(asd)
    pipd_x = PIPDExplorer(pipd)
    loss.run.value = "ASD"
    n = len(asd.arrays["is_poison"])
    results = {
        f"LossExplorer epoch slider (no defense, {len(none.arrays['is_poison']):,} samples)": moves(big.epoch, list(range(1, big.epoch.max + 1)) + [1]),
        f"LossExplorer epoch slider (ASD, {n:,} samples)": moves(loss.epoch, list(range(1, loss.epoch.max + 1)) + [1]),
        "LossExplorer colour": moves(loss.colour, ["clean-hard", "in D_C", "poisoned / clean"] * 2),
        "SplitExplorer rate slider": moves(split.rate, [0.1, 0.3, 0.5, 0.7, 0.9, 0.2]),
        "SplitExplorer mode": moves(split.mode, ["class-aware", "class-agnostic"] * 2),
        "MetaSplitExplorer γ slider": moves(meta.gamma, [0.1, 0.3, 0.5, 0.7, 0.9, 0.2]),
        "PIPDExplorer round slider": moves(pipd_x.round, list(range(1, pipd_x.round.max + 1)) + [1]),
        "PIPDExplorer layer": moves(pipd_x.layer, list(pipd_x.layer.options) + [pipd_x.layer.options[0]]),
    }
    print(f"explorer callbacks at {scale} scale (seconds: median / slowest of the timed moves)")
    for name, times in results.items():
        print(f"  {name:<48} {statistics.median(times):.3f} / {max(times):.3f}  ({len(times)} moves)")
    print(f"slowest callback: {max(max(t) for t in results.values()):.3f} s")


if __name__ == "__main__":
    main(*sys.argv[1:])
