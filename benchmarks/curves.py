"""Draw ASD's per-epoch curves and pool composition from run records into PNG files.

Usage: ``python benchmarks/curves.py OUT.png LABEL=RECORD_DIR [LABEL=RECORD_DIR ...]
[--reference LABEL=RECORD_DIR ...] [--composition OUT2.png]``. The first record's pool
composition (D_C per class and epoch, beside per-class accuracy) goes to ``--composition``.
Nothing is trained: the figures are read off the records.
"""
from __future__ import annotations

import argparse

import matplotlib

matplotlib.use("Agg")

from asdkit.data import class_names  # noqa: E402
from asdkit.plots import epoch_curves, pool_composition  # noqa: E402
from asdkit.records import Record  # noqa: E402


def labelled(items: list[str]) -> dict[str, Record]:
    out = {}
    for item in items:
        label, sep, folder = item.partition("=")
        if not sep:
            raise SystemExit(f"curves.py: error: expected LABEL=RECORD_DIR, got {item!r}")
        out[label] = Record.load(folder)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out")
    parser.add_argument("records", nargs="+")
    parser.add_argument("--reference", action="append", default=[])
    parser.add_argument("--composition")
    args = parser.parse_args()
    records = labelled(args.records)
    epoch_curves(records, reference=labelled(args.reference)).savefig(args.out, dpi=120)
    if args.composition:
        first = next(iter(records.values()))
        names = class_names(first.config["dataset"])
        pool_composition(first, class_names=list(names) if names else None).savefig(args.composition, dpi=120)


if __name__ == "__main__":
    main()
