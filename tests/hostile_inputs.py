"""The committed table of hostile inputs: a command (and the files it is given), and what its one-line error must name.

Each row is run by ``tests/test_hostile.py`` through ``asdkit``'s command line in a fresh store. It must exit 2 with
one line on stderr, no traceback, naming every fragment in ``names`` (the field or file, what is allowed, what was
given); no training may start unless ``trains`` (a run that diverges trains until it does); nothing is left behind
unless ``keeps`` names it. Files are made by ``setup(folder) -> {placeholder: path}``; ``{name}`` in an argument is
replaced by that path.
"""
from __future__ import annotations

import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np


@dataclass(frozen=True)
class Case:
    id: str
    argv: tuple[str, ...]
    names: tuple[str, ...]
    setup: Callable[[Path], dict[str, Path]] | None = None
    env: dict[str, str] = field(default_factory=dict)
    trains: bool = False
    keeps: bool = False  # a folder with the epochs finished before the error (nothing computed is lost)


def _npz(folder: Path, name: str = "data.npz", n: int = 200, labels=None, test: int = 100, **extra) -> Path:
    g = np.random.default_rng(0)
    y = np.arange(n) % 10 if labels is None else labels
    arrays = dict(x_train=g.integers(0, 256, (n, 1, 16, 16), dtype=np.uint8), y_train=y,
                  x_test=g.integers(0, 256, (test, 1, 16, 16), dtype=np.uint8), y_test=np.arange(test) % 10, **extra)
    path = folder / name
    np.savez(path, **arrays)
    return path


def sparse_labels(folder: Path) -> dict[str, Path]:
    y = np.arange(200) % 10
    y[0] = 1000  # labels reach 1000 with ten classes used
    return {"file": _npz(folder, labels=y)}


def no_test_images(folder: Path) -> dict[str, Path]:
    return {"file": _npz(folder, test=0)}


def truncated(folder: Path) -> dict[str, Path]:
    path = _npz(folder)
    path.write_bytes(path.read_bytes()[:300])
    return {"file": path}


def empty(folder: Path) -> dict[str, Path]:
    path = folder / "empty.npz"
    path.write_bytes(b"")
    return {"file": path}


def npy_renamed(folder: Path) -> dict[str, Path]:
    path = folder / "one.npz"
    with open(path, "wb") as f:
        np.save(f, np.zeros((4, 4)))
    return {"file": path}


def text_renamed(folder: Path) -> dict[str, Path]:
    path = folder / "notes.npz"
    path.write_text("these are notes, not an archive\n")
    return {"file": path}


def object_array(folder: Path) -> dict[str, Path]:
    path = _npz(folder)
    with zipfile.ZipFile(path, "a") as z:  # an object array member, as np.savez(allow_pickle=True) writes it
        with z.open("classes.npy", "w") as f:
            np.lib.format.write_array(f, np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    return {"file": path}


def corrupt_png(folder: Path) -> dict[str, Path]:
    from PIL import Image

    for split in ("train", "val"):
        for c in ("cat", "dog"):
            d = folder / "imgs" / split / c
            d.mkdir(parents=True)
            for i in range(12):
                Image.fromarray(np.full((20, 20, 3), 20 * i, dtype=np.uint8)).save(d / f"{i}.png")
    bad = folder / "imgs" / "train" / "dog" / "5.png"
    bad.write_bytes(bad.read_bytes()[:40])  # a truncated PNG
    return {"folder": folder / "imgs", "bad": bad}


def corrupt_twin(folder: Path) -> dict[str, Path]:
    """The clean twin CLB's poison is built against, trained, then its weights file damaged."""
    from asdkit.config import make_config
    from asdkit.planner import train
    from asdkit.prepared import surrogate_config

    twin = train(surrogate_config(make_config("smoke", overrides={"attack": "clb", **TINY})), quiet=True)
    weights = Path(twin["record"]) / "model.pt"
    weights.write_bytes(weights.read_bytes()[:200])
    return {"weights": weights}


TINY = {"train_size": 600, "test_size": 300}


def a_file(folder: Path) -> dict[str, Path]:
    path = folder / "not-a-folder"
    path.write_text("x")
    return {"file": path}


SMOKE = ("run", "--scale", "smoke", "--quiet")
NPZ = (*SMOKE, "--dataset", "{file}", "--set", "train_size=0", "--set", "test_size=0")

CASES = [
    Case("huge MixMatch batch", (*SMOKE, "--defense", "asd", "--set", "defense.mixmatch_batch_size=100000"),
         ("'mixmatch_batch_size'", "100000", "GiB", "at most")),
    Case("huge SimCLR batch", (*SMOKE, "--defense", "dbd", "--set", "defense.simclr_batch_size=10000000"), ("'simclr_batch_size'", "10000000")),
    Case("pad larger than the image", (*SMOKE, "--set", "pad=2000"), ("'pad'", "[0, 28]", "2000")),
    Case("resolution too large for memory", (*SMOKE, "--set", "resolution=1024"), ("'resolution'", "1024", "GiB")),
    Case("resolution past the loader's range", (*SMOKE, "--set", "resolution=5000"), ("resolution", "5000")),
    Case("npz labels reaching 1000, a target among them", (*NPZ, "--target", "500"), ("{file}", "y_train", "0..K-1"), setup=sparse_labels),
    Case("npz labels reaching 1000", NPZ, ("{file}", "y_train", "no training image"), setup=sparse_labels),
    Case("npz without test images", NPZ, ("{file}", "x_test is empty"), setup=no_test_images),
    Case("truncated npz", NPZ, ("{file}", "not a readable .npz"), setup=truncated),
    Case("empty npz", NPZ, ("{file}", "not a readable .npz"), setup=empty),
    Case("a .npy renamed .npz", NPZ, ("{file}", "one array"), setup=npy_renamed),
    Case("a text file renamed .npz", NPZ, ("{file}", "not a readable .npz"), setup=text_renamed),
    Case("an object array in an npz", NPZ, ("{file}", "'classes'", "Python objects"), setup=object_array),
    Case("a truncated PNG in an image folder", (*SMOKE, "--dataset", "{folder}", "--set", "train_size=0", "--set", "test_size=0"),
         ("{bad}", "not a readable image"), setup=corrupt_png),
    Case("a learning rate that diverges", (*SMOKE, "--set", "lr=1e30"), ("diverged", "'train'", "epoch 1", "lr"), trains=True),
    Case("a virtual-model lr that overflows in stage 3", (*SMOKE, "--defense", "asd", "--set", "defense.meta_lr=1e308"),
         ("asd diverged", "'stage3'", "1e+308", "finished epoch(s) are kept"), trains=True, keeps=True),
    Case("a damaged clean twin under a rebuilt CLB poison", (*SMOKE, "--attack", "clb", "--rebuild-poison", "--set", "train_size=600",
                                                             "--set", "test_size=300"),
         ("{weights}", "corrupt or not an asdkit file"), setup=corrupt_twin, keeps=True),
    Case("a test set of 5 images", (*SMOKE, "--set", "test_size=5"), ("test_size=5", "no image of class")),
    Case("a seed past 2^63", (*SMOKE, "--seed", "99999999999999999999"), ("'seed'", "99999999999999999999")),
    Case("a trillion seeds", (*SMOKE, "--seed", "0-999999999999"), ("'seed'", "at most 1000")),
    Case("widths of one stage", (*SMOKE, "--set", "model_args={'widths': (4,)}"), ("'widths'", "three ints", "(4,)")),
    Case("widths as text", (*SMOKE, "--set", "model_args={'widths': 'x'}"), ("'widths'", "'x'")),
    Case("ASDKIT_RUNS a file", SMOKE, ("{file}", "is a file"), setup=a_file, env={"ASDKIT_RUNS": "{file}"}),
    Case("ASDKIT_RUNS under a file", SMOKE, ("{file}", "is a file"), setup=a_file, env={"ASDKIT_RUNS": "{file}/runs"}),
    Case("ASDKIT_RUNS empty", SMOKE, ("ASDKIT_RUNS", "empty"), env={"ASDKIT_RUNS": ""}),
    Case("SLURM where there is none", ("sweep", "--scale", "smoke", "--launcher", "slurm"), ("--launcher slurm", "sbatch")),
    Case("one option set twice under two names", (*SMOKE, "--defense", "asd", "--set", "asd.gamma=0.3", "--set", "defense.gamma=0.4"),
         ("'defense.gamma'", "given twice", "asd.gamma=0.3", "defense.gamma=0.4")),
    Case("a flag and --set on one field", (*SMOKE, "--attack", "blend", "--set", "attack=sig"), ("'attack'", "given twice")),
    Case("a sweep axis given twice", ("sweep", "--scale", "smoke", "--seed", "0", "--set", "seed=1,2"), ("'seed' axis", "given twice")),
    Case("a milestone never reached", (*SMOKE, "--set", "epochs=2", "--set", "milestones=[100]"), ("'milestones'", "[100]")),
    Case("a milestone past the budget's epochs", (*SMOKE, "--set", "schedule=multistep", "--set", "milestones=[50]"),
         ("'milestones'", "the budget buys", "[50]")),
    Case("an unknown attack option", (*SMOKE, "--set", "attack.sizee=3"), ("'attack_args'", "sizee")),
    Case("an attack option out of range", (*SMOKE, "--set", "attack.size=0"), ("'size'", "badnets", "Got 0")),
    Case("a NaN learning rate", (*SMOKE, "--set", "lr=nan"), ("'lr'", "'nan'")),
    Case("an infinite poison rate", (*SMOKE, "--set", "rate=inf"), ("'rate'", "'inf'")),
    Case("a precision this CPU cannot give", (*SMOKE, "--set", "precision=fp16"), ("'precision'", "fp16")),
    Case("a device this machine lacks", (*SMOKE, "--device", "cuda:7"), ("cuda:7",)),
    Case("an unknown result set", ("results", "--set", "classroom,nope", "--status"), ("'--set'", "['nope']", "classroom, no-poison, lab")),
    Case("a results CSV of other columns", ("results", "--render", "--out", "{out}"), ("results.csv", "columns", "asdkit results"),
         setup=lambda folder: _foreign_csv(folder)),
]


def _foreign_csv(folder: Path) -> dict[str, Path]:
    out = folder / "res"
    out.mkdir()
    (out / "results.csv").write_text("a,b\n1,2\n")
    return {"out": out}
