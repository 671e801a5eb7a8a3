"""The per-data-set cache file: ``<data_dir>/<name>.pt`` holds plain tensors and metadata.

Written once, after the first (slow) conversion, atomically (a temporary file in the same
folder, then ``os.replace``), so a crash never leaves half a cache behind; read with
``torch.load(..., weights_only=True)``, which unpickles no code.
"""
from __future__ import annotations

from pathlib import Path

import torch

from .._io import save_atomic
from .types import DataSplits, ImageSet

CACHE_FORMAT = "asdkit-data/1"


def _plain(t: torch.Tensor) -> torch.Tensor:
    """``t`` as a compact tensor (torch.save writes a view's whole storage)."""
    t = t.contiguous()
    return t.clone() if t.untyped_storage().nbytes() != t.nbytes else t


def write_cache(path: Path, splits: DataSplits) -> None:
    """Save ``splits`` to ``path`` atomically (temporary file + ``os.replace``)."""
    tr, te = splits.train, splits.test
    payload = {
        "format": CACHE_FORMAT,
        "name": tr.name,
        "classes": list(tr.classes),
        "mean": [float(v) for v in tr.mean],
        "std": [float(v) for v in tr.std],
        "hflip": bool(tr.hflip),
        "source": splits.source,
        "x_train": _plain(tr.x),
        "y_train": _plain(tr.y),
        "x_test": _plain(te.x),
        "y_test": _plain(te.y),
    }
    save_atomic(payload, path)


def cache_error(path: Path, reason: object) -> ValueError:
    """The error for an unreadable cache file: it says to delete it."""
    return ValueError(
        f"The data cache file {path} is corrupt or was not written by this version of asdkit "
        f"({reason}). Delete it (rm '{path}') and load again: it is rebuilt from the original files."
    )


def read_cache(path: Path) -> DataSplits:
    """Load a cache written by :func:`write_cache`; a damaged file gives :func:`cache_error`."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for a damaged zip/pickle
        raise cache_error(path, f"{type(err).__name__}: {err}") from err
    try:
        if not isinstance(payload, dict) or payload.get("format") != CACHE_FORMAT:
            fmt = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
            raise ValueError(f"format {fmt!r}, expected {CACHE_FORMAT!r}")
        meta = dict(
            classes=tuple(str(c) for c in payload["classes"]),
            mean=tuple(float(v) for v in payload["mean"]),
            std=tuple(float(v) for v in payload["std"]),
            hflip=bool(payload["hflip"]),
            name=str(payload["name"]),
        )
        train = ImageSet(payload["x_train"], payload["y_train"], **meta)
        test = ImageSet(payload["x_test"], payload["y_test"], **meta)
        for part in (train, test):
            if len(part) and not 0 <= int(part.y.min()) <= int(part.y.max()) < len(meta["classes"]):
                raise ValueError(f"labels outside 0..{len(meta['classes']) - 1}")
        if train.shape != test.shape:
            raise ValueError(f"train images {train.shape} and test images {test.shape} differ in shape")
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        raise cache_error(path, f"{type(err).__name__}: {err}") from err
    return DataSplits(train, test, source=str(path))
