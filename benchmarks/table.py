"""ACC / ASR of one defense against every attack, as a Markdown table (the issues' closing-note tables).

Usage: ``python benchmarks/table.py [--defense none] [--scale classroom] [--attacks badnets,blend,...]
[--seeds 0] [--set key=value ...]``. Finished runs are reused from their records, so the
table can be rebuilt for free and an interrupted sweep resumes.
"""
from __future__ import annotations

import argparse

from asdkit import make_config, run
from asdkit.attacks import ATTACKS
from asdkit.config import parse_assignment


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--defense", default="none")
    parser.add_argument("--scale", default="classroom")
    parser.add_argument("--attacks", default=",".join(ATTACKS))
    parser.add_argument("--seeds", default="0", help="comma-separated seeds")
    parser.add_argument("--set", dest="assignments", action="append", default=[])
    args = parser.parse_args()
    overrides = dict(parse_assignment(a) for a in args.assignments)
    cols = ["attack", "seed", "ACC", "ASR", "seconds", "max poison in D_C"]
    print("| " + " | ".join(cols) + " |\n|" + "---|" * len(cols))
    for attack in args.attacks.split(","):
        for seed in (int(s) for s in args.seeds.split(",")):
            config = make_config(args.scale, defense=args.defense, overrides={**overrides, "attack": attack, "seed": seed})
            s = run(config, quiet=True)
            pool = s.get("max_poison_in_clean_pool", "")
            print(f"| {attack} | {seed} | {s['acc']:.1%} | {s['asr']:.1%} | {s['seconds']:.0f} | {pool} |", flush=True)


if __name__ == "__main__":
    main()
