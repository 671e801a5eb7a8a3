"""Loading a data set by name or path into in-memory uint8 tensors.

Named data sets are looked for in the data dir (``$ASDKIT_DATA``, else ``./data``):

1. the cache ``<data_dir>/<name>.pt``, written on first use (loads in well under a second);
2. the original files, in asdkit's or torchvision's layout (and, for Fashion-MNIST, Debian's
   package ``dataset-fashion-mnist`` in /usr/share/datasets/fashion-mnist);
3. torchvision's download into the data dir (needs internet), unless ``download=False``.

Anything else is a path: an ``.npz`` archive or an ImageNet-style image folder.
"""
from __future__ import annotations

import functools
import logging
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from . import idx as _idx
from .cache import read_cache, write_cache
from .catalog import CIFAR10_CLASSES, GTSRB_CLASSES
from .files import images_to_tensor, load_folder, load_npz, resize_images
from .types import DataSplits, ImageSet

log = logging.getLogger(__name__)

DATASETS = ("fashion-mnist", "mnist", "cifar10", "gtsrb")
"""The data sets :func:`load` knows by name; the first is the default."""

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
"""Where Debian's ``dataset-fashion-mnist`` package puts its four gzipped IDX files."""

GTSRB_RESOLUTION = 32  # every GTSRB image is resized to 32×32 (bilinear), as in the papers



class DataUnavailableError(ValueError):
    """A data set that is neither in the data dir nor downloadable; the message says how to get it."""


@dataclass(frozen=True)
class _Spec:
    title: str
    classes: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    hflip: bool


_SPECS = {
    "fashion-mnist": _Spec(
        "Fashion-MNIST",
        ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
        (0.2860,), (0.3530,), False,
    ),
    "mnist": _Spec("MNIST", tuple(str(d) for d in range(10)), (0.1307,), (0.3081,), False),
    # mean/std as in the ASD authors' code (the std values are the widely copied 0.2023, …)
    "cifar10": _Spec("CIFAR-10", CIFAR10_CLASSES, (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010), True),
    "gtsrb": _Spec("GTSRB", GTSRB_CLASSES, (0.3403, 0.3121, 0.3214), (0.2724, 0.2608, 0.2669), False),
}  # fmt: skip

_ALIASES = {n.replace("-", ""): n for n in DATASETS}  # "fashion_mnist", "FashionMNIST", "CIFAR-10" …


def class_names(name: str) -> tuple[str, ...] | None:
    """The class names of a named data set (``None`` for files and folders, whose names come with their data)."""
    key = _ALIASES.get(str(name).lower().replace("-", "").replace("_", ""), str(name))
    return _SPECS[key].classes if key in _SPECS else None


def classes_of(name: str | os.PathLike) -> tuple[str, ...]:
    """The class names of any data set: a named set's own, else those its ``.npz`` file or folder carries (read from it)."""
    named = class_names(str(name))
    if named:
        return named
    kind, what = _resolve(name, data_dir())  # a path as given, else inside the data dir, as load finds it
    if kind == "named":
        return load(name, download=False, resize=False).train.classes
    return _classes_read(str(Path(what).absolute()), Path(what).stat().st_mtime_ns)


@functools.lru_cache(maxsize=16)
def _classes_read(path: str, stamp: int) -> tuple[str, ...]:
    """A file's or folder's class names, read once for each modification time."""
    return load(path, download=False, resize=False).train.classes


def data_dir() -> Path:
    """The folder where data sets and their caches live: ``$ASDKIT_DATA`` if set, else ``./data``.

    Returns
    -------
    Path
        An absolute path (``./data`` is taken relative to the current working directory).
    """
    env = os.environ.get("ASDKIT_DATA", "").strip()
    return (Path(env).expanduser() if env else Path("data")).absolute()


def second_dataset() -> str:
    """A colour data set available offline, beside Fashion-MNIST: CIFAR-10, else GTSRB, else the shared subsets of either."""
    for name in ("cifar10", "gtsrb"):
        try:
            load(name, download=False)
            return name
        except (FileNotFoundError, OSError, ValueError, RuntimeError):
            pass
    for file in ("cifar10-mini.npz", "gtsrb-mini.npz"):
        try:
            return str(shared_subset(file))
        except DataUnavailableError:
            pass
    raise DataUnavailableError("No second data set offline: CIFAR-10 or GTSRB (`asdkit data` says how to get them), "
                               "or the shared subsets under $ASDKIT_SHARED_DATA.")


def display_name(dataset: str) -> str:
    """A data set as a reader names it: a named one by its title; the shared subsets as subsets of CIFAR-10 and GTSRB; a file by its stem."""
    stem = Path(str(dataset)).stem
    key = _ALIASES.get(stem.lower().replace("-", "").replace("_", ""), stem)
    if key in _SPECS:
        return _SPECS[key].title
    return {"cifar10-mini": "a CIFAR-10 subset", "gtsrb-mini": "a GTSRB subset"}.get(stem, stem)


SHARED_SUBSETS = ("gtsrb-mini.npz", "cifar10-mini.npz")


def shared_folder() -> Path:
    """Where the shared subsets are: ``$ASDKIT_SHARED_DATA``, else ``../shared/data`` beside the package's repository."""
    env = os.environ.get("ASDKIT_SHARED_DATA", "").strip()
    return (Path(env).expanduser() if env else Path(__file__).resolve().parents[3] / "shared" / "data").absolute()


def shared_subset(file: str) -> Path:
    """A shared subset (``gtsrb-mini.npz``, ``cifar10-mini.npz``) in :func:`shared_folder`."""
    if file not in SHARED_SUBSETS:
        raise ValueError(f"The shared subset must be one of {list(SHARED_SUBSETS)}. Got {file!r} instead.")
    folder = shared_folder()
    path = folder / file
    if not path.is_file():
        raise DataUnavailableError(f"The shared subset {file} is not in {folder}; set ASDKIT_SHARED_DATA to the folder that holds it.")
    return path.absolute()


# ---------------------------------------------------------------------------- where files are


def _raw_folders(name: str, root: Path) -> list[Path]:
    """The folders searched for a named set's original files, in order."""
    return {
        "fashion-mnist": [root / "fashion-mnist", root / "FashionMNIST" / "raw", DEBIAN_FASHION_MNIST],
        "mnist": [root / "mnist", root / "MNIST" / "raw"],
        "cifar10": [root / "cifar-10-batches-py"],
        "gtsrb": [root / "gtsrb"],
    }[name]


_CIFAR_FILES = tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch", "batches.meta")


def _has_files(name: str, folder: Path) -> bool:
    if name in ("fashion-mnist", "mnist"):
        return _idx.find_idx_files(folder) is not None
    if name == "cifar10":
        return all((folder / f).is_file() for f in _CIFAR_FILES)
    return (  # gtsrb, torchvision's layout
        (folder / "GTSRB" / "Training").is_dir()
        and (folder / "GTSRB" / "Final_Test" / "Images").is_dir()
        and (folder / "GT-final_test.csv").is_file()
    )


def _find_raw(name: str, root: Path) -> Path | None:
    return next((f for f in _raw_folders(name, root) if _has_files(name, f)), None)


# ---------------------------------------------------------------------------- readers


class _Unreadable(Exception):
    """Files were found, but torchvision rejects them (checksum, missing part)."""


def _splits(name: str, x_train, y_train, x_test, y_test, source: Path) -> DataSplits:
    spec = _SPECS[name]
    meta = dict(classes=spec.classes, mean=spec.mean, std=spec.std, hflip=spec.hflip, name=name)
    for part, y in (("train", y_train), ("test", y_test)):
        if len(y) and not 0 <= int(y.min()) <= int(y.max()) < len(spec.classes):
            raise ValueError(f"{source}: the {part} labels lie outside 0..{len(spec.classes) - 1}")
    return DataSplits(ImageSet(x_train, y_train, **meta), ImageSet(x_test, y_test, **meta), source=str(source))


def _read_idx_set(name: str, folder: Path, root: Path) -> DataSplits:
    files = _idx.find_idx_files(folder)
    arrays = {key: _idx.read_idx(path) for key, path in files.items()}
    for part in ("train", "test"):
        x, y = arrays[f"x_{part}"], arrays[f"y_{part}"]
        if x.ndim != 3 or y.ndim != 1 or x.shape[0] != y.shape[0] or x.dtype != "uint8":
            raise ValueError(f"{folder}: the {part} IDX files hold images {x.dtype} {x.shape} and labels {y.shape}; "
                             f"expected uint8 N×H×W images and N labels")  # fmt: skip
    t = {k: torch.from_numpy(a) for k, a in arrays.items()}
    return _splits(name, t["x_train"].unsqueeze(1), t["y_train"].long(), t["x_test"].unsqueeze(1), t["y_test"].long(), folder)


def _read_cifar10(name: str, folder: Path, root: Path) -> DataSplits:
    from torchvision.datasets import CIFAR10

    parts = []
    for train in (True, False):
        try:
            ds = CIFAR10(str(root), train=train, download=False)
        except RuntimeError as err:
            raise _Unreadable(f"{folder} exists but torchvision cannot read it ({err})") from err
        x = torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous()  # N×H×W×C → N×C×H×W
        parts += [x, torch.tensor(ds.targets, dtype=torch.int64)]
    return _splits(name, *parts, source=folder)


def _read_gtsrb(name: str, folder: Path, root: Path) -> DataSplits:
    from torchvision.datasets import GTSRB

    parts = []
    for split in ("train", "test"):
        try:
            ds = GTSRB(str(root), split=split, download=False)
        except (RuntimeError, OSError) as err:
            raise _Unreadable(f"{folder} exists but torchvision cannot read its {split} part ({err})") from err
        log.info("converting GTSRB %s (%d images) to %d×%d once", split, len(ds), GTSRB_RESOLUTION, GTSRB_RESOLUTION)
        labels = []

        def images(ds=ds, labels=labels):
            for i in range(len(ds)):
                image, label = ds[i]
                labels.append(label)
                yield image

        x = images_to_tensor(images(), GTSRB_RESOLUTION, crop=False)
        parts += [x, torch.tensor(labels, dtype=torch.int64)]
    return _splits(name, *parts, source=folder)


_READERS: dict[str, Callable[[str, Path, Path], DataSplits]] = {
    "fashion-mnist": _read_idx_set,
    "mnist": _read_idx_set,
    "cifar10": _read_cifar10,
    "gtsrb": _read_gtsrb,
}


def _download(name: str, root: Path) -> None:
    """Fetch a named set into ``root`` in torchvision's layout (the only network access)."""
    from torchvision import datasets as tvd

    root.mkdir(parents=True, exist_ok=True)
    if name == "fashion-mnist":
        tvd.FashionMNIST(str(root), train=True, download=True)  # fetches all four files
    elif name == "mnist":
        tvd.MNIST(str(root), train=True, download=True)
    elif name == "cifar10":
        tvd.CIFAR10(str(root), train=True, download=True)
    else:
        tvd.GTSRB(str(root), split="train", download=True)
        tvd.GTSRB(str(root), split="test", download=True)


# ---------------------------------------------------------------------------- how to get it


def _how_to_get(name: str, root: Path) -> list[str]:
    """The ways to obtain a named set, one line each."""
    files = {
        "fashion-mnist": f"the four IDX files (train-images-idx3-ubyte, train-labels-idx1-ubyte, "
        f"t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte; gzipped .gz or not) in {root / 'fashion-mnist'}/ "
        f"(or torchvision's layout {root / 'FashionMNIST' / 'raw'}/)",
        "mnist": f"the four IDX files (train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte, "
        f"t10k-labels-idx1-ubyte; gzipped .gz or not) in {root / 'mnist'}/ (or torchvision's layout {root / 'MNIST' / 'raw'}/)",
        "cifar10": f"CIFAR-10's python version (cifar-10-python.tar.gz, extracted) in {root / 'cifar-10-batches-py'}/ "
        f"(data_batch_1 … data_batch_5, test_batch, batches.meta)",
        "gtsrb": f"GTSRB in torchvision's layout, in {root / 'gtsrb'}/: GTSRB/Training/00000 … 00042/*.ppm "
        f"(GTSRB-Training_fixed.zip), GTSRB/Final_Test/Images/*.ppm (GTSRB_Final_Test_Images.zip) and "
        f"GT-final_test.csv (GTSRB_Final_Test_GT.zip)",
    }[name]
    ways = [f"Put the files in the data dir: {files}. (The data dir is $ASDKIT_DATA if set, else ./data; load(..., root=...) picks another.)"]
    if name == "fashion-mnist":
        ways.append(f"On Debian/Ubuntu: sudo apt-get install -y dataset-fashion-mnist (installs the files in {DEBIAN_FASHION_MNIST}).")
    ways.append(f"Allow the torchvision download (needs internet): asdkit.data.load({name!r}, download=True) fetches it into {root}.")
    return ways


def _unavailable(name: str, root: Path, problems: list[str]) -> DataUnavailableError:
    title = _SPECS[name].title
    looked = ", ".join(str(p) for p in [root / f"{name}.pt", *_raw_folders(name, root)])
    ways = _how_to_get(name, root)
    count = {2: "Two", 3: "Three"}[len(ways)]
    lines = [f"{title} is not available: looked in {looked}; {'; '.join(problems)}.", f"{count} ways to get it:"]
    lines += [f"  {i}. {w}" for i, w in enumerate(ways, 1)]
    return DataUnavailableError("\n".join(lines))


# ---------------------------------------------------------------------------- load


def _load_named(name: str, root: Path, download: bool) -> DataSplits:
    cache = root / f"{name}.pt"
    if cache.is_file():
        return read_cache(cache)
    problems: list[str] = []
    splits = None
    folder = _find_raw(name, root)
    if folder is None:
        problems.append("no files found there")
    else:
        try:
            splits = _READERS[name](name, folder, root)
        except _Unreadable as err:
            problems.append(str(err))
    if splits is None:
        if not download:
            problems.append("downloading was not allowed (download=False)")
        else:
            try:
                _download(name, root)
                folder = _find_raw(name, root)
                if folder is None:
                    raise RuntimeError(f"the files are not in the expected layout under {root}")
                splits = _READERS[name](name, folder, root)
            except Exception as err:  # no network, a proxy, a full disk …: all say "get it another way"
                problems.append(f"the torchvision download failed ({type(err).__name__}: {err})")
        if splits is None:
            raise _unavailable(name, root, problems)
    try:
        write_cache(cache, splits)
    except OSError as err:
        warnings.warn(f"could not write the cache {cache} ({err}); the next load converts the files again", stacklevel=3)
    return splits


def _resolve(name: str | os.PathLike, root: Path) -> tuple[str, object]:
    """("named", key) | ("npz", Path) | ("folder", Path) for ``name``."""
    if isinstance(name, str):
        key = _ALIASES.get(name.strip().lower().replace("-", "").replace("_", ""))
        if key is not None:
            return "named", key
    path = Path(name).expanduser()
    candidates = [path] if path.is_absolute() else [path, root / path]  # as given, then inside the data dir
    if str(name).lower().endswith(".npz"):
        for p in candidates:
            if p.is_file():
                return "npz", p
        raise ValueError(f"The 'name' parameter of load (--dataset) names an .npz file that does not exist: looked at "
                         f"{', '.join(str(p.absolute()) for p in candidates)}.")  # fmt: skip
    for p in candidates:
        if p.is_dir():
            return "folder", p
    raise ValueError(
        f"The 'name' parameter of load (--dataset) must be one of {', '.join(DATASETS)}, a path to an .npz file or a path to an "
        f"image folder (train/<class>/…, val/<class>/…). Got {str(name)!r} instead."
    )


def load(
    name: str | os.PathLike = DATASETS[0],
    *,
    root: str | os.PathLike | None = None,
    download: bool = True,
    resolution: int | None = None,
    resize: bool = True,
    hflip: bool | None = None,
) -> DataSplits:
    """Load a data set's training and test parts as uint8 tensors.

    Parameters
    ----------
    name : str or PathLike, default="fashion-mnist"
        One of :data:`DATASETS` (``"fashion-mnist"``, ``"mnist"``, ``"cifar10"``,
        ``"gtsrb"``), a path to an ``.npz`` file (arrays ``x_train``, ``y_train``,
        ``x_test``, ``y_test``; images N×C×H×W, N×H×W×C or N×H×W), or a path to an
        ImageNet-style folder (``train/<class>/*.jpg|png``, ``val/<class>/…`` or ``test/``).
        A relative path is tried as given, then inside the data dir.
    root : str or PathLike, optional
        The data dir; default :func:`data_dir` (``$ASDKIT_DATA``, else ``./data``).
    download : bool, default=True
        Whether a named set that is not found may be downloaded with torchvision.
    resolution : int, optional
        Side of the square images returned, in [4, 1024]. Image folders default to 32;
        other sets keep their own size unless given (then: shorter side resized, bilinear,
        and centre-cropped).
    resize : bool, default=True
        False: a named set or an ``.npz`` file keeps its own size (the caller subsets, then
        resizes with :func:`~asdkit.data.files.resize_images`); an image folder is always read
        at ``resolution``.
    hflip : bool, optional
        Whether horizontal flips are a valid augmentation; default per data set (True for
        CIFAR-10, image folders and ``.npz`` files whose name contains "cifar").

    Returns
    -------
    DataSplits
        ``train`` and ``test`` ImageSets (uint8 N×C×H×W, int64 labels, classes, mean/std);
        ``source`` is the file or folder they were read from.

    Raises
    ------
    ValueError
        For an unknown name or a bad argument; for a corrupt cache file (the message says
        to delete it).
    DataUnavailableError
        If a named set is neither found nor downloadable; the message lists the ways to
        get it.
    """
    if not isinstance(name, (str, os.PathLike)):
        raise ValueError(f"The 'name' parameter of load (--dataset) must be a str or a path. Got {name!r} instead.")
    if root is not None and not isinstance(root, (str, os.PathLike)):
        raise ValueError(f"The 'root' parameter of load must be a path or None. Got {root!r} instead.")
    if not isinstance(download, bool):
        raise ValueError(f"The 'download' parameter of load must be a bool. Got {download!r} instead.")
    if resolution is not None and (isinstance(resolution, bool) or not isinstance(resolution, int) or not 4 <= resolution <= 1024):
        raise ValueError(f"The 'resolution' parameter of load must be None or an int in the range [4, 1024]. Got {resolution!r} instead.")
    if hflip is not None and not isinstance(hflip, bool):
        raise ValueError(f"The 'hflip' parameter of load must be None or a bool. Got {hflip!r} instead.")
    root_dir = data_dir() if root is None else Path(root).expanduser().absolute()

    kind, what = _resolve(name, root_dir)
    if kind == "folder":
        return load_folder(what, resolution=resolution or 32, hflip=hflip)
    splits = load_npz(what, hflip=hflip) if kind == "npz" else _load_named(what, root_dir, download)
    train, test = splits.train, splits.test
    if resolution is not None and resize:
        train, test = (s.with_images(resize_images(s.x, resolution)) for s in (train, test))
    if hflip is not None:
        train, test = replace(train, hflip=hflip), replace(test, hflip=hflip)
    return DataSplits(train, test, source=splits.source)


def describe(root: str | os.PathLike | None = None) -> list[dict]:
    """Which named data sets are available, and where (for the command ``asdkit data``).

    Parameters
    ----------
    root : str or PathLike, optional
        The data dir; default :func:`data_dir`.

    Returns
    -------
    list of dict
        One per name in :data:`DATASETS`, with keys ``name``, ``title``, ``available``
        (bool), ``cached`` (bool: the fast cache file exists), ``path`` (str: where it
        would be read from, or None) and ``how`` (str: the ways to get it; empty when
        available).
    """
    if root is not None and not isinstance(root, (str, os.PathLike)):
        raise ValueError(f"The 'root' parameter of describe must be a path or None. Got {root!r} instead.")
    root_dir = data_dir() if root is None else Path(root).expanduser().absolute()
    rows = []
    for name in DATASETS:
        cache = root_dir / f"{name}.pt"
        path = cache if cache.is_file() else _find_raw(name, root_dir)
        how = "" if path else "\n".join(f"{i}. {w}" for i, w in enumerate(_how_to_get(name, root_dir), 1))
        rows.append(dict(name=name, title=_SPECS[name].title, available=path is not None, cached=cache.is_file(),
                         path=None if path is None else str(path), how=how))  # fmt: skip
    return rows
