"""Where one run's time goes: cProfile of a whole run, the share of the pieces that matter (training steps, scoring, evaluation, ...).

    python benchmarks/profile_run.py asd            # a classroom ASD run at the default precision, trained anew
    python benchmarks/profile_run.py dbd --precision fp32 --scale classroom

Prints the run's wall time and, for each piece (a function of asdkit, torch's backward and Adam's
step), its cumulative seconds, its share of the run and how often it was called. Pieces nest
(``train_steps`` holds ``backward``), so the shares do not add up to 100 %.
"""
from __future__ import annotations

import argparse
import cProfile
import pstats
import tempfile
import time

import asdkit  # noqa: F401 - OpenMP's passive waiting, as every asdkit process has it
from asdkit.config import make_config

PIECES = {"train_steps", "mixmatch_epoch", "objective", "features", "score", "evaluate", "predict", "virtual_model_losses",
          "snapshot_losses", "snapshot_features", "_purification", "channel_activations", "linear_probe_accuracy",
          "simclr_views", "view", "augment", "save", "_checkpoint", "save_atomic", "_finish", "load", "poison"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("defense")
    parser.add_argument("--scale", default="classroom")
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--rows", type=int, default=24)
    args = parser.parse_args()
    config = make_config(args.scale, defense=args.defense, overrides={"precision": args.precision})
    profile = cProfile.Profile()
    with tempfile.TemporaryDirectory(prefix="asdkit-profile-") as root:
        t = time.perf_counter()
        profile.enable()
        summary = asdkit.run(config, root=root, quiet=True)
        profile.disable()
        wall = time.perf_counter() - t
    print(f"{args.defense} at {args.scale}, {config.precision}, {summary['machine']}: wall {wall:.1f} s, "
          f"ACC {summary['acc']:.2%}, ASR {summary['asr']:.2%}")
    rows = []
    for (path, _, name), (_, calls, _, cumulative, _) in pstats.Stats(profile).stats.items():
        mine = "asdkit" in path and name in PIECES
        torch_step = (name == "backward" and path.endswith("_tensor.py")) or (name == "step" and path.endswith("adam.py"))
        if mine or torch_step:
            where = path.split("asdkit/")[-1] if mine else path.split("torch/")[-1]
            rows.append((cumulative, f"{where}:{name}", calls))
    for cumulative, name, calls in sorted(rows, reverse=True)[: args.rows]:
        print(f"  {cumulative:7.1f} s {100 * cumulative / wall:5.1f} %  {calls:6d}x  {name}")


if __name__ == "__main__":
    main()
