"""float32 against ``precision=auto``, side by side in one process: the training step, evaluation, and whole runs.

    python benchmarks/precision.py                       # the engine's training step and evaluation (a minute)
    python benchmarks/precision.py --runs none,asd       # also whole classroom runs, seeds 0-2, fp32 and auto alternating
    python benchmarks/precision.py --chunk-runs none     # also whole runs with no-grad passes of 1,024 images (before) and 256

What ``auto`` chose on this machine, and why, is printed first. The step and evaluation rounds
alternate between the variants so that load on a shared machine hits them alike; the medians
are compared. Where ``auto`` chose float32 (no native bfloat16), bfloat16 is measured anyway,
to show what it would cost. ``--runs`` trains every run anew into a temporary store (nothing
is reused) and prints each run's wall time, the ratio of the medians, and the median ACC and
ASR over the seeds of each precision. The no-grad forward passes (scoring, evaluation, features)
take at most ``asdkit.devices.CPU_CHUNK`` images on a CPU; the chunk measurement compares that
with the one pass per 1,024-image eval batch made before, on the same images, and ``--chunk-runs``
whole runs both ways (the same numbers to the last bit, the time ratio).
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import asdkit  # noqa: F401 - sets OpenMP's passive waiting before torch loads, as every asdkit process has it

import torch

from asdkit.data import load
from asdkit.devices import resolve_device
from asdkit.engine import Images, Normalizer, evaluate, stream, train_epoch
from asdkit.models import make_model
from asdkit.precision import resolve_precision


def machine_line() -> str:
    from asdkit.records import machine

    return machine("cpu")


def step_and_eval(args, variants: list[str]) -> None:
    """The engine's supervised epoch over the same images and its evaluation, per variant; medians of alternating rounds."""
    torch.manual_seed(0)
    data = load(args.dataset).train
    n = args.batches * args.batch_size
    x, y = data.x[:n], data.y[:n]
    device = torch.device("cpu")
    normalize = Normalizer(data.mean, data.std, device)
    images = Images(x, y, normalize, data.num_classes, pad=2)
    models = {}
    for v in variants:  # one model and optimiser per variant, the same initial weights
        torch.manual_seed(0)
        m = make_model(args.model, num_classes=data.num_classes, in_channels=data.shape[0]).to(memory_format=torch.channels_last)
        models[v] = (m, torch.optim.Adam(m.parameters(), 2e-3))
    test_x, test_y = x[: args.eval_images], y[: args.eval_images]

    def train(v: str) -> None:
        m, opt = models[v]
        train_epoch(m, images, torch.arange(n), opt, generator=stream(0, "bench", "batches"), batch_size=args.batch_size, precision=v)

    def ev(v: str) -> None:
        evaluate(models[v][0], test_x, test_y, None, None, normalize=normalize, batch_size=1024, precision=v)

    for v in variants:  # warm-up: oneDNN builds its kernels for each precision once
        train(v)
        ev(v)
    times: dict[tuple[str, str], list[float]] = {}
    for _ in range(args.rounds):
        for what, fn in (("train", train), ("eval", ev)):
            for v in variants:
                t = time.perf_counter()
                fn(v)
                times.setdefault((what, v), []).append(time.perf_counter() - t)
    med = {k: statistics.median(t) for k, t in times.items()}
    print(f"{args.model} on {args.dataset}: {args.batches} training steps of {args.batch_size} images and an evaluation of "
          f"{args.eval_images} images, {args.rounds} alternating rounds")
    for v in variants:
        print(f"  {v:<5} training step {1000 * med['train', v] / args.batches:6.1f} ms   evaluation "
              f"{args.eval_images / med['eval', v]:7.0f} images/s")
    for v in variants[1:]:
        print(f"  {v} / fp32 speed: training step {med['train', 'fp32'] / med['train', v]:.2f}x, "
              f"evaluation {med['eval', 'fp32'] / med['eval', v]:.2f}x")


def chunking(args) -> None:
    """Scoring (float32) and evaluation (bf16) of the same images in passes of 1,024 (before) and CPU_CHUNK images (now)."""
    from asdkit import devices
    from asdkit.engine import predict

    now = devices.CPU_CHUNK
    data = load(args.dataset).train
    x = data.x[: args.score_images]
    normalize = Normalizer(data.mean, data.std, torch.device("cpu"))
    torch.manual_seed(0)
    model = make_model(args.model, num_classes=data.num_classes, in_channels=data.shape[0]).to(memory_format=torch.channels_last)
    times: dict[tuple[str, int], list[float]] = {}
    outputs: dict[tuple[str, int], torch.Tensor] = {}
    for _ in range(args.rounds + 1):  # the first round warms up
        for p in ("fp32", "bf16"):
            for chunk in (1024, now):
                devices.CPU_CHUNK = chunk
                t = time.perf_counter()
                outputs[p, chunk] = predict(model, x, normalize=normalize, batch_size=1024, precision=p)
                times.setdefault((p, chunk), []).append(time.perf_counter() - t)
    devices.CPU_CHUNK = now
    print(f"no-grad forward passes of {len(x)} images in eval batches of 1,024: one pass per batch (before) or {now} images a pass")
    for p in ("fp32", "bf16"):
        before, after = (statistics.median(times[p, c][1:]) for c in (1024, now))
        print(f"  {p}: {len(x) / before:6.0f} -> {len(x) / after:6.0f} images/s, {before / after:.2f}x; "
              f"the same bits: {torch.equal(outputs[p, 1024], outputs[p, now])}")


def chunk_runs(args) -> None:
    """Whole runs (seed 0, the config's precision) with passes of 1,024 images and of CPU_CHUNK, alternating; wall time and numbers."""
    import asdkit
    from asdkit import devices
    from asdkit.config import make_config

    now, walls, same = devices.CPU_CHUNK, {}, True
    with tempfile.TemporaryDirectory(prefix="asdkit-chunk-") as tmp:
        for d in [d for d in args.chunk_runs.split(",") if d]:
            config = make_config(args.scale, defense=d)
            summaries = {}
            for r in range(args.chunk_repeats):
                for chunk in ((1024, now) if r % 2 == 0 else (now, 1024)):
                    devices.CPU_CHUNK = chunk
                    t = time.perf_counter()
                    s = asdkit.run(config, root=Path(tmp) / f"{d}-{chunk}-{r}", quiet=True)
                    walls.setdefault((d, chunk), []).append(time.perf_counter() - t)
                    summaries.setdefault(chunk, []).append((s["acc"], s["asr"], s["lowest_class_acc"]))
                    print(f"  {d:<5} {config.precision} passes of {chunk:>4}: ACC {s['acc']:.4%}  ASR {s['asr']:.4%}  "
                          f"{walls[d, chunk][-1]:.0f} s", flush=True)
            devices.CPU_CHUNK = now
            same = same and len(set(summaries[1024] + summaries[now])) == 1
            before, after = statistics.median(walls[d, 1024]), statistics.median(walls[d, now])
            print(f"  {d}: {before:.0f} -> {after:.0f} s, {before / after:.2f}x; the same ACC, ASR and lowest class: {same}")


def whole_runs(args, chosen: str) -> None:
    """Classroom runs of each defense, seeds 0-2, fp32 and auto alternating, each trained anew; wall time, ACC, ASR."""
    import asdkit
    from asdkit.config import make_config

    defenses = [d for d in args.runs.split(",") if d]
    variants = ["fp32", chosen] if chosen != "fp32" else ["fp32", "fp32 (auto)"]
    results: dict[tuple[str, str], list[dict]] = {}
    with tempfile.TemporaryDirectory(prefix="asdkit-precision-") as tmp:
        for d in defenses:
            for seed in args.seeds:
                for k, v in enumerate(variants):  # the order alternates with the seed, so neither always goes first
                    v = variants[(k + seed) % len(variants)]
                    precision = "fp32" if v == "fp32" else "auto"
                    config = make_config(args.scale, defense=d, overrides={"seed": seed, "precision": precision})
                    t = time.perf_counter()
                    s = asdkit.run(config, root=Path(tmp) / f"{v}-{d}-{seed}", quiet=True)
                    s["wall"] = time.perf_counter() - t
                    results.setdefault((d, v), []).append(s)
                    print(f"  {d:<5} seed {seed} {v:<5} ACC {s['acc']:.2%}  ASR {s['asr']:.2%}  lowest {s['lowest_class']} "
                          f"{s['lowest_class_acc']:.1%}  {s['wall']:.0f} s", flush=True)
    print(f"{args.scale} runs, seeds {','.join(map(str, args.seeds))} (median over seeds):")
    for d in defenses:
        base = results[d, "fp32"]
        for v in variants:
            rs = results[d, v]
            line = (f"  {d:<5} {v:<11} ACC {statistics.median(r['acc'] for r in rs):.2%}  "
                    f"ASR {statistics.median(r['asr'] for r in rs):.2%}  wall {statistics.median(r['wall'] for r in rs):.0f} s")
            if v != "fp32":
                line += (f"  speed {statistics.median(r['wall'] for r in base) / statistics.median(r['wall'] for r in rs):.2f}x fp32, "
                         f"ACC {100 * (statistics.median(r['acc'] for r in rs) - statistics.median(r['acc'] for r in base)):+.2f} points")
            print(line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="fashion-mnist")
    parser.add_argument("--model", default="compact")
    parser.add_argument("--batches", type=int, default=30, help="optimiser steps per measurement")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--eval-images", type=int, default=4096)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--runs", default="", help="defenses to run whole, comma-separated (e.g. none,asd); none by default")
    parser.add_argument("--scale", default="classroom")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--score-images", type=int, default=8192, help="images of the chunk measurement")
    parser.add_argument("--chunk-runs", default="", help="defenses to run whole with both chunk sizes (seed 0), e.g. none")
    parser.add_argument("--chunk-repeats", type=int, default=2)
    args = parser.parse_args()
    args.seeds = [int(s) for s in args.seeds.split(",")]

    chosen, why = resolve_precision("auto", resolve_device("cpu"))
    print(f"{machine_line()}, torch {torch.__version__}")
    print(f"precision=auto chose {chosen}: {why}")  # the same words every run's summary keeps as 'precision_reason'
    variants = ["fp32", "bf16"]  # bf16 measured even where auto does not choose it: the reason it is not chosen
    step_and_eval(args, variants)
    chunking(args)
    if args.chunk_runs:
        chunk_runs(args)
    if args.runs:
        whole_runs(args, chosen)


if __name__ == "__main__":
    main()
