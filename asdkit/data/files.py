"""Data sets from the user's own files: an ``.npz`` archive or an ImageNet-style image folder.

Also the image helpers shared by all loaders: per-channel statistics, resizing a whole
uint8 tensor, and turning PIL images into one uint8 tensor (used once, at conversion time).
"""
from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .catalog import CIFAR10_CLASSES, GTSRB_CLASSES
from .types import DataSplits, ImageSet

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".webp")


_CHUNK = 2048  # images per step when converting whole tensors (bounds the float copies)


def channel_stats(x: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and standard deviation of uint8 N×C×H×W images, in [0, 1] units.

    A channel that is constant gets std 1.0, so normalising by it never divides by zero.
    """
    total = torch.zeros(x.shape[1], dtype=torch.float64)
    squares = torch.zeros(x.shape[1], dtype=torch.float64)
    for i in range(0, x.shape[0], _CHUNK):
        f = x[i : i + _CHUNK].to(torch.float64) / 255.0
        total += f.sum(dim=(0, 2, 3))
        squares += f.square().sum(dim=(0, 2, 3))
    count = x.shape[0] * x.shape[2] * x.shape[3]
    mean = total / count
    std = (squares / count - mean.square()).clamp_min(0).sqrt()
    std = torch.where(std > 1e-6, std, torch.ones_like(std))
    return tuple(round(float(v), 4) for v in mean), tuple(round(float(v), 4) for v in std)


def _fit_size(h: int, w: int, resolution: int) -> tuple[int, int]:
    """Height, width after scaling the shorter side to ``resolution`` (aspect ratio kept)."""
    s = resolution / min(h, w)
    return max(resolution, round(h * s)), max(resolution, round(w * s))


def resize_images(x: torch.Tensor, resolution: int) -> torch.Tensor:
    """Resize uint8 N×C×H×W images (shorter side, bilinear, antialiased) and centre-crop square."""
    h, w = x.shape[-2:]
    if h == w == resolution:
        return x
    nh, nw = _fit_size(h, w, resolution)
    top, left = (nh - resolution) // 2, (nw - resolution) // 2
    out = torch.empty((x.shape[0], x.shape[1], resolution, resolution), dtype=torch.uint8)
    for i in range(0, x.shape[0], _CHUNK):
        f = F.interpolate(x[i : i + _CHUNK].float(), size=(nh, nw), mode="bilinear", align_corners=False, antialias=True)
        out[i : i + _CHUNK] = f[..., top : top + resolution, left : left + resolution].round().clamp(0, 255).to(torch.uint8)
    return out


def fit_image(image: Image.Image, resolution: int, *, crop: bool = True) -> np.ndarray:
    """One PIL image as an RGB uint8 H×W×3 array of ``resolution``² pixels (bilinear).

    ``crop=True``: shorter side to ``resolution``, then the centre square (natural photos);
    ``crop=False``: squash the whole image to ``resolution``² (GTSRB, as in the papers).
    """
    image = image.convert("RGB")
    if crop:
        w, h = image.size
        nh, nw = _fit_size(h, w, resolution)
        image = image.resize((nw, nh), Image.BILINEAR)
        left, top = (nw - resolution) // 2, (nh - resolution) // 2
        image = image.crop((left, top, left + resolution, top + resolution))
    elif image.size != (resolution, resolution):
        image = image.resize((resolution, resolution), Image.BILINEAR)
    return np.asarray(image, dtype=np.uint8)


def images_to_tensor(images: Iterable[Image.Image], resolution: int, *, crop: bool) -> torch.Tensor:
    """PIL images of any sizes/modes → one uint8 N×3×R×R tensor (see :func:`fit_image`)."""
    arrays = [fit_image(im, resolution, crop=crop) for im in images]
    if not arrays:
        return torch.empty((0, 3, resolution, resolution), dtype=torch.uint8)
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()


# ---------------------------------------------------------------------------- .npz archives


def _npz_images(a: np.ndarray, key: str, path: Path) -> torch.Tensor:
    """``a`` (N×C×H×W, N×H×W×C or N×H×W; uint8, integers in 0..255 or floats in [0, 1]) as uint8 NCHW."""
    if a.ndim == 3:
        a = a[:, None]
    elif a.ndim == 4:
        channels_first, channels_last = a.shape[1] in (1, 3, 4), a.shape[3] in (1, 3, 4)
        if channels_last and not channels_first:
            a = a.transpose(0, 3, 1, 2)
        elif not channels_first:
            raise ValueError(f"{path}: {key} has shape {a.shape}; expected N×C×H×W or N×H×W×C with C in 1, 3, 4")
    else:
        raise ValueError(f"{path}: {key} has shape {a.shape}; expected N×C×H×W, N×H×W×C or N×H×W")
    if a.dtype == np.uint8:
        pass
    elif np.issubdtype(a.dtype, np.integer) and (a.size == 0 or (a.min() >= 0 and a.max() <= 255)):
        a = a.astype(np.uint8)
    elif np.issubdtype(a.dtype, np.floating) and (a.size == 0 or (a.min() >= 0 and a.max() <= 1)):
        a = np.rint(a * 255).astype(np.uint8)
    else:
        raise ValueError(f"{path}: {key} must be uint8, integers in 0..255 or floats in [0, 1]; got {a.dtype}")
    return torch.from_numpy(np.ascontiguousarray(a))


def _npz_labels(a: np.ndarray, key: str, path: Path, n: int) -> torch.Tensor:
    if not np.issubdtype(a.dtype, np.integer) or a.ndim != 1 or a.shape[0] != n:
        raise ValueError(f"{path}: {key} must be a vector of {n} integers, got {a.dtype} {a.shape}")
    if a.size and a.min() < 0:
        raise ValueError(f"{path}: {key} holds a negative label ({a.min()})")
    return torch.from_numpy(a.astype(np.int64))


def _open_npz(path: Path):
    """``np.load`` of an archive, never unpickling; a file that is not one is refused by name."""
    import zipfile

    try:
        z = np.load(path, allow_pickle=False)
    except (zipfile.BadZipFile, EOFError, OSError, ValueError) as err:  # truncated, empty, text, pickled
        reason = ("not a zip of arrays: numpy could read it only as pickled data, which asdkit never loads" if "pickle" in str(err)
                  else f"{type(err).__name__}: {str(err)[:80]}")
        raise ValueError(f"{path} is not a readable .npz archive ({reason}); write one with numpy.savez(path, x_train=..., "
                         "y_train=..., x_test=..., y_test=...).") from None
    if not isinstance(z, np.lib.npyio.NpzFile):
        raise ValueError(f"{path} holds one array (a .npy file), not an .npz archive of x_train, y_train, x_test, y_test.")
    return z


def _array(z, key: str, path: Path) -> np.ndarray:
    """One array of an archive, by name; an object array (pickle) or a damaged member is refused naming both."""
    try:
        return z[key]
    except ValueError as err:
        if "pickle" in str(err) or "Object arrays" in str(err):
            raise ValueError(f"{path}: the array {key!r} holds Python objects, which asdkit never loads (pickle); store numbers.") from None
        raise ValueError(f"{path}: the array {key!r} cannot be read ({str(err)[:80]}).") from None
    except Exception as err:  # a truncated member: zlib, EOF, bad CRC
        raise ValueError(f"{path}: the array {key!r} cannot be read ({type(err).__name__}: {str(err)[:80]}); the file is damaged.") from None


def _check_labels(path: Path, y_train: torch.Tensor, y_test: torch.Tensor) -> int:
    """The number of classes: labels 0..K-1 with every class in the training set, every test label among them."""
    if len(y_test) == 0:
        raise ValueError(f"{path}: x_test is empty; ACC and ASR are measured on test images, give some.")
    k = int(y_train.max()) + 1
    missing = sorted(set(range(k)) - set(y_train.unique().tolist()))
    if missing:
        raise ValueError(f"{path}: y_train's labels must be 0..K-1 with every class present; they go up to {k - 1} but classes "
                         f"{missing[:5]}{' ...' if len(missing) > 5 else ''} ({len(missing)} of {k}) have no training image.")
    if int(y_test.max()) >= k:
        raise ValueError(f"{path}: y_test holds the label {int(y_test.max())}, a class with no training image (y_train: 0..{k - 1}).")
    return k


def load_npz(path: Path, *, hflip: bool | None = None) -> DataSplits:
    """A data set from an ``.npz`` archive with ``x_train``, ``y_train``, ``x_test``, ``y_test``.

    Optional ``classes`` (an array of strings) names the classes; otherwise they are
    ``"0"``, ``"1"``, … (CIFAR-10's or GTSRB's names when the file name contains "cifar" or
    "gtsrb" and the labels span exactly that many classes). mean/std are computed from the
    training images; ``hflip`` defaults to True when the file name contains "cifar".
    """
    with _open_npz(path) as z:
        missing = [k for k in ("x_train", "y_train", "x_test", "y_test") if k not in z.files]
        if missing:
            raise ValueError(f"{path} lacks the arrays {missing}; it holds {sorted(z.files)}")
        x_train, x_test = _npz_images(_array(z, "x_train", path), "x_train", path), _npz_images(_array(z, "x_test", path), "x_test", path)
        y_train = _npz_labels(_array(z, "y_train", path), "y_train", path, x_train.shape[0])
        y_test = _npz_labels(_array(z, "y_test", path), "y_test", path, x_test.shape[0])
        names = tuple(str(c) for c in _array(z, "classes", path)) if "classes" in z.files else None
    if x_train.shape[1:] != x_test.shape[1:]:
        raise ValueError(f"{path}: x_train images {tuple(x_train.shape[1:])} and x_test {tuple(x_test.shape[1:])} differ")
    if x_train.shape[0] == 0:
        raise ValueError(f"{path}: x_train is empty")
    n_classes = _check_labels(path, y_train, y_test)
    cifar = "cifar" in path.name.lower()
    if names is None:
        known = [n for key, n in (("cifar", CIFAR10_CLASSES), ("gtsrb", GTSRB_CLASSES)) if key in path.name.lower()]
        names = known[0] if known and len(known[0]) == n_classes else tuple(str(i) for i in range(n_classes))
    elif len(names) < n_classes:
        raise ValueError(f"{path}: 'classes' names {len(names)} classes but the labels go up to {n_classes - 1}")
    mean, std = channel_stats(x_train)
    meta = dict(classes=names, mean=mean, std=std, hflip=cifar if hflip is None else hflip, name=path.stem)
    return DataSplits(ImageSet(x_train, y_train, **meta), ImageSet(x_test, y_test, **meta), source=str(path))


# ---------------------------------------------------------------------------- image folders


def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


def _read_images(paths: list[Path], resolution: int) -> torch.Tensor:
    out = np.empty((len(paths), resolution, resolution, 3), dtype=np.uint8)
    for i, p in enumerate(paths):
        try:
            with Image.open(p) as im:
                im.draft("RGB", (resolution, resolution))  # JPEG: decode at a reduced scale still >= resolution
                out[i] = fit_image(im, resolution, crop=True)
        except (OSError, ValueError, SyntaxError) as err:  # PIL: unidentified, truncated or corrupt
            raise ValueError(f"{p} is not a readable image ({type(err).__name__}: {str(err)[:80]}); remove or replace it.") from None
    return torch.from_numpy(out).permute(0, 3, 1, 2).contiguous()


def load_folder(folder: Path, *, resolution: int = 32, hflip: bool | None = None) -> DataSplits:
    """An ImageNet-style subset: ``train/<class>/*.jpg|png`` and ``val/<class>/…`` (or ``test/``).

    Classes are the sorted sub-folder names of ``train/``; each image is resized (shorter
    side to ``resolution``, bilinear) and centre-cropped to ``resolution``². mean/std are
    computed from the training images; ``hflip`` defaults to True (natural photos).
    """
    train_dir = folder / "train"
    test_dir = next((folder / d for d in ("val", "test") if (folder / d).is_dir()), None)
    if not train_dir.is_dir() or test_dir is None:
        raise ValueError(
            f"{folder} is not an image-folder data set: it needs train/<class>/*.jpg|png and "
            f"val/<class>/… (or test/<class>/…)"
        )
    classes = sorted(d.name for d in train_dir.iterdir() if d.is_dir())
    if not classes:
        raise ValueError(f"{train_dir} has no class sub-folders")
    index = {c: i for i, c in enumerate(classes)}
    extra = sorted(d.name for d in test_dir.iterdir() if d.is_dir() and d.name not in index)
    if extra:
        raise ValueError(f"{test_dir} has class folders that train/ lacks: {extra}")
    parts = []
    for split_dir in (train_dir, test_dir):
        paths, labels = [], []
        for c in classes:
            files = _image_files(split_dir / c) if (split_dir / c).is_dir() else []
            if split_dir is train_dir and not files:
                raise ValueError(f"{split_dir / c} holds no images ({', '.join(IMAGE_EXTENSIONS)})")
            paths += files
            labels += [index[c]] * len(files)
        parts.append((_read_images(paths, resolution), torch.tensor(labels, dtype=torch.int64)))
    (x_train, y_train), (x_test, y_test) = parts
    mean, std = channel_stats(x_train)
    meta = dict(classes=tuple(classes), mean=mean, std=std, hflip=True if hflip is None else hflip, name=folder.name)
    return DataSplits(ImageSet(x_train, y_train, **meta), ImageSet(x_test, y_test, **meta), source=str(folder))
