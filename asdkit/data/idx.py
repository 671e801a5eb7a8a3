"""Reading IDX files (the MNIST / Fashion-MNIST format), gzipped or not, with numpy alone.

An IDX file is a 4-byte magic number (two zero bytes, a type code, the number of
dimensions), one big-endian uint32 per dimension, then the values in C order: a 16-byte
header for a stack of images (N, H, W), 8 bytes for a label vector (N,).
"""
from __future__ import annotations

import gzip
import math
from pathlib import Path

import numpy as np

# type code -> big-endian numpy dtype (from the format's description by LeCun & Cortes)
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}

# the four files of an MNIST-like data set, by the ImageSet field they fill
IDX_FILES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}


def read_idx(path: str | Path) -> np.ndarray:
    """Read one IDX file, gzipped (detected by its magic bytes) or plain.

    Parameters
    ----------
    path : str or Path
        The file.

    Returns
    -------
    numpy.ndarray
        The array, with the shape and native-endian dtype the header declares.

    Raises
    ------
    ValueError
        If the file is not an IDX file or its length disagrees with its header.
    """
    path = Path(path)
    with open(path, "rb") as f:
        gzipped = f.read(2) == b"\x1f\x8b"
    try:
        with (gzip.open(path, "rb") if gzipped else open(path, "rb")) as f:
            raw = f.read()
    except (OSError, EOFError) as err:  # a truncated or damaged gzip stream
        raise ValueError(f"cannot read the IDX file {path}: {err}") from err
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise ValueError(f"{path} is not an IDX file (bad magic number {raw[:4].hex()!r})")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"{path} is truncated: its header declares {ndim} dimensions")
    dims = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    count = math.prod(dims)
    if len(raw) - header != count * dtype.itemsize:
        raise ValueError(
            f"{path} is truncated or corrupt: its header declares shape {dims} "
            f"({count * dtype.itemsize} bytes of data), the file holds {len(raw) - header}"
        )
    array = np.frombuffer(raw, dtype=dtype, count=count, offset=header).reshape(dims)
    return array.astype(dtype.newbyteorder("="))  # a native-endian, writable copy


def find_idx_files(folder: Path) -> dict[str, Path] | None:
    """The four IDX files of an MNIST-like set in ``folder``, or None unless all four are there.

    Each may be plain or ``.gz``, and named ``train-images-idx3-ubyte`` or
    ``train-images.idx3-ubyte`` (both spellings circulate).
    """
    found = {}
    for key, stem in IDX_FILES.items():
        dotted = stem.replace("-idx", ".idx")
        for name in (stem, stem + ".gz", dotted, dotted + ".gz"):
            if (folder / name).is_file():
                found[key] = folder / name
                break
        else:
            return None
    return found
