"""Whether a change keeps behaviour: the same commands give the same summaries to the last digit (float32, one machine).

    python benchmarks/bit_identity.py run OUT                 # the set, with the asdkit on PYTHONPATH (or installed)
    python benchmarks/bit_identity.py compare BEFORE AFTER    # one row a run: identical, or the keys that differ

The set: no defense, ASD, ABL, PIPD and DBD at smoke scale (seeds 0 and 1) and at classroom scale (seed 0),
and a CLB and an IAB run at smoke scale (built poisons). Each run trains into a fresh store ``OUT/runs`` in
float32; its summary is kept as ``OUT/NAME.json``. To compare with an older commit, run the set from a
checkout of it: ``git worktree add ../base REV`` and ``PYTHONPATH=../base python benchmarks/bit_identity.py run OUT``.
Seconds, the record's path and time per phase are left out of the comparison (they are measured, not computed).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

SET = ([(f"smoke-{d}-{s}", ["--defense", d, "--scale", "smoke", "--seed", str(s)]) for d in ("none", "asd", "abl", "pipd", "dbd") for s in (0, 1)]
       + [(f"smoke-{a}-0", ["--attack", a, "--scale", "smoke", "--seed", "0"]) for a in ("clb", "iab")]
       + [(f"classroom-{d}-0", ["--defense", d, "--scale", "classroom", "--seed", "0"]) for d in ("none", "asd", "abl", "pipd", "dbd")])


def measured(key: str) -> bool:
    return key in ("record", "seconds", "simclr_seconds", "reused") or key.startswith("seconds_")


def run(out: Path, only: str | None) -> None:
    out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "ASDKIT_RUNS": str(out / "runs"), "ASDKIT_PRECISION": "fp32"}
    for name, argv in SET:
        if only and only not in name:
            continue
        cmd = [sys.executable, "-c", "import sys; from asdkit.cli import main; sys.exit(main(sys.argv[1:]))", "run", *argv, "--quiet", "--json"]
        done = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if done.returncode:
            raise SystemExit(f"{name} failed:\n{done.stderr[-2000:]}")
        (out / f"{name}.json").write_text(done.stdout.strip().splitlines()[-1] + "\n")
        print(name, "done", flush=True)


def compare(before: Path, after: Path) -> int:
    print("| run | ACC before | ACC after | ASR before | ASR after | summary keys compared | same? |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    differ = 0
    for name, _ in SET:
        a, b = before / f"{name}.json", after / f"{name}.json"
        if not all(f.exists() and f.stat().st_size for f in (a, b)):  # not run, or still running
            print(f"| {name} | | | | | | missing |")
            differ += 1
            continue
        x, y = (json.loads(f.read_text().strip().splitlines()[-1]) for f in (a, b))  # the last line: the summary
        keys = sorted(k for k in set(x) | set(y) if not measured(k))
        diff = [k for k in keys if x.get(k) != y.get(k)]
        differ += bool(diff)
        asr = lambda d: "n/a" if d.get("asr") is None else repr(d["asr"])  # noqa: E731
        print(f"| {name} | {x.get('acc')!r} | {y.get('acc')!r} | {asr(x)} | {asr(y)} | {len(keys)} | "
              + ("identical" if not diff else "differ: " + ", ".join(diff)) + " |")
    return 1 if differ else 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run")
    r.add_argument("out", type=Path)
    r.add_argument("--only", help="only the runs whose name contains this (e.g. smoke)")
    c = sub.add_parser("compare")
    c.add_argument("before", type=Path)
    c.add_argument("after", type=Path)
    args = p.parse_args()
    if args.command == "run":
        run(args.out, args.only)
        return 0
    return compare(args.before, args.after)


if __name__ == "__main__":
    sys.exit(main())
