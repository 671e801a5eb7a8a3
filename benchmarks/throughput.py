"""Training throughput, side by side in one process: asdkit's engine vs the raw model step vs a DataLoader.

Three ways to run the same optimiser steps on the same model and the same images:

1. ``engine``     — :func:`asdkit.engine.train_epoch`: uint8 images resident in memory,
                    index batches, batched crop augmentation, normalisation per batch;
2. ``raw step``   — pre-made, pre-normalised float batches, no augmentation: the ceiling;
3. ``dataloader`` — a ``torch.utils.data.Dataset`` returning PIL images through per-sample
                    torchvision transforms (RandomCrop, ToTensor, Normalize), batched by a
                    ``DataLoader``: the pipeline the official repositories use.

Rounds alternate between the three so that load on a shared machine hits all of them
alike; the median of the rounds is reported, with the two ratios the foundation issue asks
for. Usage: ``python benchmarks/throughput.py [--batches 40] [--rounds 3] [--workers 0]``.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F
from PIL import Image
from torchvision import transforms

from asdkit.data import load
from asdkit.engine import Images, Normalizer, augment, stream, train_epoch
from asdkit.models import make_model


class PILDataset(torch.utils.data.Dataset):
    """The official repos' pattern: one PIL image per ``__getitem__``, per-sample transforms."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, transform) -> None:
        self.x = x.squeeze(1).numpy() if x.shape[1] == 1 else x.permute(0, 2, 3, 1).numpy()
        self.y = y.tolist()
        self.transform = transform

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i):
        return self.transform(Image.fromarray(self.x[i])), self.y[i]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="fashion-mnist")
    parser.add_argument("--model", default="compact")
    parser.add_argument("--batches", type=int, default=40, help="optimiser steps per measurement")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=0, help="DataLoader worker processes (the machine has few cores)")
    args = parser.parse_args()

    torch.manual_seed(0)
    data = load(args.dataset).train
    n = args.batches * args.batch_size
    x, y = data.x[:n], data.y[:n]
    device = torch.device("cpu")
    normalize = Normalizer(data.mean, data.std, device)
    model = make_model(args.model, num_classes=data.num_classes, in_channels=data.shape[0]).to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    pad = 2 if data.shape[1] <= 28 else 4
    images = Images(x, y, normalize, data.num_classes, pad=pad)

    # Pre-made batches for the raw step: normalised float tensors, channels-last, no augmentation.
    raw = [(normalize(x[i:i + args.batch_size]), y[i:i + args.batch_size]) for i in range(0, n, args.batch_size)]
    loader = torch.utils.data.DataLoader(
        PILDataset(x, y, transforms.Compose([transforms.RandomCrop(data.shape[1], padding=pad), transforms.ToTensor(),
                                             transforms.Normalize(data.mean, data.std)])),
        batch_size=args.batch_size, shuffle=True, num_workers=args.workers, persistent_workers=args.workers > 0)

    def step(xb, yb):
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(xb), yb).backward()
        opt.step()

    def run_engine():
        train_epoch(model, images, torch.arange(n), opt, generator=stream(0, "bench", "batches"), batch_size=args.batch_size)

    def run_raw():
        model.train()
        for xb, yb in raw:
            step(xb, yb)

    def run_loader():
        model.train()
        for xb, yb in loader:
            step(xb.contiguous(memory_format=torch.channels_last), yb)

    def data_engine():  # the engine's input path alone: index, gather, crop, normalise
        g = stream(0, "bench", "data path")
        for idx in torch.randperm(n, generator=g).split(args.batch_size):
            normalize(augment(x[idx], pad=pad, flip=False, generator=g))

    def data_loader():  # the DataLoader's input path alone
        for _ in loader:
            pass

    ways = {"engine": run_engine, "raw step": run_raw, "dataloader": run_loader,
            "engine data path only": data_engine, "dataloader data path only": data_loader}
    for fn in ways.values():  # warm-up
        fn()
    times: dict[str, list[float]] = {k: [] for k in ways}
    for _ in range(args.rounds):
        for name, fn in ways.items():
            t = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t)
    rate = {k: n / statistics.median(v) for k, v in times.items()}
    print(f"{args.model} on {args.dataset}, {n} images x {args.rounds} rounds, batch {args.batch_size}, "
          f"{torch.get_num_threads()} threads, DataLoader workers {args.workers}")
    for k, v in rate.items():
        print(f"  {k:<26} {v:9.0f} images/s")
    print(f"  engine / raw step   = {rate['engine'] / rate['raw step']:.2f}   (target >= 0.9)")
    print(f"  engine / dataloader = {rate['engine'] / rate['dataloader']:.2f}   (target >= 3)")
    print(f"  data paths alone: engine / dataloader = {rate['engine data path only'] / rate['dataloader data path only']:.1f}"
          f"   (on a CPU the model step dominates both pipelines; the ratio above is capped near"
          f" 1 + (dataloader data time) / (model step time))")


if __name__ == "__main__":
    main()
