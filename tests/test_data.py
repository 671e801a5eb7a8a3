"""Tests of asdkit.data: every source a data set can come from, the cache, subsets, seed samples.

No test touches the network: the one function that downloads is replaced by one that fails,
and the data dir is a fresh temporary folder for every test.
"""
from __future__ import annotations

import gzip
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import asdkit.data as ad
from asdkit.data import (
    DATASETS,
    DataSplits,
    DataUnavailableError,
    ImageSet,
    data_dir,
    describe,
    load,
    seed_samples,
    stratified_subset,
)
from asdkit.data import files as ad_files
from asdkit.data import idx as ad_idx
from asdkit.data import loaders

DEBIAN = Path("/usr/share/datasets/fashion-mnist")
SHARED = Path(os.environ.get("ASDKIT_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


@pytest.fixture(autouse=True)
def root(tmp_path, monkeypatch) -> Path:
    """A fresh, empty data dir; no downloads; no Debian package unless a test asks for it."""
    data = tmp_path / "data"
    monkeypatch.setenv("ASDKIT_DATA", str(data))

    def no_network(name, root):
        raise OSError("network disabled in tests")

    monkeypatch.setattr(loaders, "_download", no_network)
    monkeypatch.setattr(loaders, "DEBIAN_FASHION_MNIST", tmp_path / "no-debian-package")
    return data


# ---------------------------------------------------------------------------- helpers


def write_idx(path: Path, array: np.ndarray, *, gz: bool) -> None:
    """An IDX file of uint8 ``array``: magic 0,0,8,ndim, big-endian dims, the bytes."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    path.parent.mkdir(parents=True, exist_ok=True)
    with (gzip.open(path, "wb") if gz else open(path, "wb")) as f:
        f.write(header + array.astype(np.uint8).tobytes())


def fake_mnist(folder: Path, *, gz: bool, n_train: int = 30, n_test: int = 10, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    arrays = {
        "x_train": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "y_train": rng.integers(0, 10, n_train, dtype=np.uint8),
        "x_test": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "y_test": rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    for key, stem in ad_idx.IDX_FILES.items():
        write_idx(folder / (stem + (".gz" if gz else "")), arrays[key], gz=gz)
    return arrays


def assert_matches(splits: DataSplits, arrays: dict) -> None:
    for part in ("train", "test"):
        s = getattr(splits, part)
        assert s.x.dtype == torch.uint8 and s.y.dtype == torch.int64
        assert torch.equal(s.x, torch.from_numpy(arrays[f"x_{part}"]).unsqueeze(1))
        assert torch.equal(s.y, torch.from_numpy(arrays[f"y_{part}"]).long())


def no_idx_reads(monkeypatch) -> None:
    def fail(path):
        raise AssertionError(f"read {path}, expected the cache")

    monkeypatch.setattr(ad_idx, "read_idx", fail)


def labelled_set(counts: list[int]) -> ImageSet:
    """An ImageSet whose image i holds the value i (so a subset reveals which samples it kept)."""
    y = torch.cat([torch.full((c,), k, dtype=torch.int64) for k, c in enumerate(counts)])
    x = torch.arange(len(y), dtype=torch.uint8).view(-1, 1, 1, 1).expand(-1, 1, 2, 2).contiguous()
    return ImageSet(x, y, classes=tuple(str(k) for k in range(len(counts))), mean=(0.5,), std=(0.25,))


# ---------------------------------------------------------------------------- data dir


def test_data_dir_is_env_var_else_cwd_data(tmp_path, monkeypatch):
    monkeypatch.setenv("ASDKIT_DATA", str(tmp_path / "elsewhere"))
    assert data_dir() == tmp_path / "elsewhere"
    monkeypatch.delenv("ASDKIT_DATA")
    monkeypatch.chdir(tmp_path)
    assert data_dir() == tmp_path / "data"


def test_exports():
    assert DATASETS == ("fashion-mnist", "mnist", "cifar10", "gtsrb")
    assert issubclass(DataUnavailableError, ValueError)
    for name in ("load", "data_dir", "stratified_subset", "seed_samples", "describe", "ImageSet", "DataSplits"):
        assert name in ad.__all__


# ---------------------------------------------------------------------------- Fashion-MNIST, real


@pytest.mark.skipif(not DEBIAN.is_dir(), reason="Debian's dataset-fashion-mnist is not installed")
def test_fashion_mnist_from_debian_then_from_cache(root, monkeypatch):
    monkeypatch.setattr(loaders, "DEBIAN_FASHION_MNIST", DEBIAN)
    d = load()  # the default data set
    assert (len(d.train), len(d.test)) == (60000, 10000)
    assert d.train.y[:10].tolist() == [9, 0, 0, 3, 0, 2, 7, 2, 5, 5]
    assert d.train.x.dtype == torch.uint8 and d.train.shape == (1, 28, 28)
    assert d.train.classes[0] == "T-shirt/top" and d.train.classes[9] == "Ankle boot"
    assert d.train.mean == (0.2860,) and d.train.std == (0.3530,) and d.train.hflip is False
    assert d.train.name == "fashion-mnist" and d.source == str(DEBIAN)
    assert (root / "fashion-mnist.pt").is_file()
    assert not list(root.glob(".*.tmp"))  # the atomic write left no temporary file

    no_idx_reads(monkeypatch)  # a second load must not touch the IDX files
    again = load("fashion-mnist")
    assert again.source == str(root / "fashion-mnist.pt")
    assert torch.equal(again.train.x, d.train.x) and torch.equal(again.test.y, d.test.y)
    assert again.train.classes == d.train.classes and again.test.mean == d.test.mean


# ---------------------------------------------------------------------------- IDX files, fake


@pytest.mark.parametrize("gz", [True, False], ids=["gz", "plain"])
@pytest.mark.parametrize(
    "name, folder",
    [("fashion-mnist", "fashion-mnist"), ("fashion-mnist", "FashionMNIST/raw"), ("mnist", "MNIST/raw"), ("mnist", "mnist")],
)
def test_idx_layouts(root, monkeypatch, name, folder, gz):
    arrays = fake_mnist(root / folder, gz=gz)
    d = load(name, download=False)
    assert_matches(d, arrays)
    assert d.source == str(root / folder) and d.train.name == name
    assert d.train.classes[:2] == (("T-shirt/top", "Trouser") if name == "fashion-mnist" else ("0", "1"))
    assert d.train.mean == ((0.2860,) if name == "fashion-mnist" else (0.1307,))
    assert d.train.hflip is False

    no_idx_reads(monkeypatch)
    cached = load(name, download=False)
    assert cached.source == str(root / f"{name}.pt")
    assert_matches(cached, arrays)


def test_idx_lookup_order_prefers_data_dir_over_debian(root, tmp_path, monkeypatch):
    ours = fake_mnist(root / "fashion-mnist", gz=True, seed=1)
    fake_mnist(tmp_path / "debian", gz=True, seed=2)
    monkeypatch.setattr(loaders, "DEBIAN_FASHION_MNIST", tmp_path / "debian")
    assert_matches(load(download=False), ours)


def test_debian_location_is_used_when_data_dir_is_empty(root, tmp_path, monkeypatch):
    debian = fake_mnist(tmp_path / "debian", gz=True)
    monkeypatch.setattr(loaders, "DEBIAN_FASHION_MNIST", tmp_path / "debian")
    d = load(download=False)
    assert_matches(d, debian)
    assert d.source == str(tmp_path / "debian")


def test_read_idx_rejects_truncated_and_foreign_files(tmp_path):
    write_idx(tmp_path / "ok", np.zeros((3, 4, 5), np.uint8), gz=False)
    assert ad_idx.read_idx(tmp_path / "ok").shape == (3, 4, 5)
    (tmp_path / "short").write_bytes((tmp_path / "ok").read_bytes()[:-7])
    with pytest.raises(ValueError, match="truncated"):
        ad_idx.read_idx(tmp_path / "short")
    (tmp_path / "png").write_bytes(b"\x89PNG\r\n\x1a\n....")
    with pytest.raises(ValueError, match="not an IDX file"):
        ad_idx.read_idx(tmp_path / "png")


def test_resolution_resizes_a_named_set(root):
    fake_mnist(root / "mnist", gz=False)
    d = load("mnist", download=False, resolution=32)
    assert d.train.shape == (1, 32, 32) and d.test.shape == (1, 32, 32)


# ---------------------------------------------------------------------------- CIFAR-10, fake pickles


def test_cifar10_from_python_batches_via_torchvision(root, monkeypatch):
    import torchvision.datasets.cifar as tv_cifar

    # the fake batches cannot match torchvision's md5 sums of the real ones
    monkeypatch.setattr(tv_cifar, "check_integrity", lambda *args, **kwargs: True)
    rng = np.random.default_rng(0)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    batches = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batches[name] = {"data": rng.integers(0, 256, (4, 3072), dtype=np.uint8), "labels": rng.integers(0, 10, 4).tolist()}
        (folder / name).write_bytes(pickle.dumps(batches[name]))
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": list(ad_files.CIFAR10_CLASSES)}))

    d = load("cifar10", download=False)
    assert (len(d.train), len(d.test)) == (20, 4)
    assert d.train.x.dtype == torch.uint8 and d.train.shape == (3, 32, 32)
    # a CIFAR row is 1024 red, 1024 green, 1024 blue values: exactly C×H×W
    assert torch.equal(d.train.x[4], torch.from_numpy(batches["data_batch_2"]["data"][0]).view(3, 32, 32))
    assert d.train.y.tolist() == sum((batches[f"data_batch_{i}"]["labels"] for i in range(1, 6)), [])
    assert d.test.y.tolist() == batches["test_batch"]["labels"]
    assert d.train.classes == ad_files.CIFAR10_CLASSES and d.train.hflip is True
    assert d.train.mean == (0.4914, 0.4822, 0.4465) and d.train.std == (0.2023, 0.1994, 0.2010)
    assert (root / "cifar10.pt").is_file()

    monkeypatch.setattr(tv_cifar, "check_integrity", lambda *args, **kwargs: False)  # torchvision would now refuse
    assert torch.equal(load("cifar10", download=False).train.x, d.train.x)  # … but the cache answers


# ---------------------------------------------------------------------------- GTSRB, fake folder


def test_gtsrb_from_torchvision_layout(root):
    rng = np.random.default_rng(0)
    base = root / "gtsrb"
    sizes = [(29, 31), (45, 17), (64, 64), (33, 40)]
    for c in range(43):  # torchvision numbers the classes by the sorted folder names
        folder = base / "GTSRB" / "Training" / f"{c:05d}"
        folder.mkdir(parents=True)
        w, h = sizes[c % 4]
        Image.fromarray(np.full((h, w, 3), c, np.uint8)).save(folder / f"00000_{c:05d}.ppm")
    test_dir = base / "GTSRB" / "Final_Test" / "Images"
    test_dir.mkdir(parents=True)
    test_labels = [42, 0, 7]
    rows = ["Filename;Width;Height;Roi.X1;Roi.Y1;Roi.X2;Roi.Y2;ClassId"]
    for i, c in enumerate(test_labels):
        Image.fromarray(rng.integers(0, 256, (27, 35, 3), dtype=np.uint8)).save(test_dir / f"{i:05d}.ppm")
        rows.append(f"{i:05d}.ppm;35;27;0;0;35;27;{c}")
    (base / "GT-final_test.csv").write_text("\n".join(rows) + "\n")

    d = load("gtsrb", download=False)
    assert (len(d.train), len(d.test)) == (43, 3)
    assert d.train.shape == (3, 32, 32) and d.train.x.dtype == torch.uint8
    assert d.train.y.tolist() == list(range(43)) and d.test.y.tolist() == test_labels
    assert all(bool((d.train.x[c] == c).all()) for c in range(43))  # flat images stay flat when resized
    assert d.train.num_classes == 43 and d.train.hflip is False
    assert d.train.mean == (0.3403, 0.3121, 0.3214)
    assert (root / "gtsrb.pt").is_file()


def test_gtsrb_conversion_squashes_odd_sizes_to_32():
    images = [
        Image.new("RGB", (45, 17), (10, 20, 30)),
        Image.new("L", (31, 29), 200),  # grayscale becomes 3 equal channels
        Image.fromarray(np.tile(np.arange(64, dtype=np.uint8) * 4, (20, 1))),  # a left-to-right ramp
    ]
    x = ad_files.images_to_tensor(images, 32, crop=False)
    assert x.shape == (3, 3, 32, 32) and x.dtype == torch.uint8
    assert x[0, :, 5, 5].tolist() == [10, 20, 30] and bool((x[0] == x[0, :, :1, :1]).all())
    assert bool((x[1] == 200).all())
    row = x[2, 0, 10].int()
    assert bool((row[1:] >= row[:-1]).all()) and row[0] < 20 and row[-1] > 230  # the whole ramp is kept, no crop


# ---------------------------------------------------------------------------- real .npz subsets


@pytest.mark.parametrize(
    "file, n_train, n_test, n_classes, hflip",
    [("cifar10-mini.npz", 4660, 846, 10, True), ("gtsrb-mini.npz", 10230, 2580, 43, False)],
)
def test_real_npz_subsets(file, n_train, n_test, n_classes, hflip):
    path = SHARED / file
    if not path.is_file():
        pytest.skip(f"{path} is absent (set ASDKIT_SHARED_DATA)")
    d = load(path)
    assert (len(d.train), len(d.test)) == (n_train, n_test)
    for part in (d.train, d.test):
        assert part.x.dtype == torch.uint8 and part.x.shape[1:] == (3, 32, 32) and part.y.dtype == torch.int64
        assert torch.unique(part.y).numel() == n_classes
    assert d.train.num_classes == n_classes and d.train.hflip is hflip
    assert d.train.name == path.stem and d.source == str(path)
    assert all(0.2 < m < 0.6 for m in d.train.mean) and all(0.15 < s < 0.4 for s in d.train.std)


# ---------------------------------------------------------------------------- own .npz files


def test_npz_channels_last_and_int_labels(tmp_path):
    rng = np.random.default_rng(0)
    x_train = rng.integers(0, 256, (12, 8, 8, 3), dtype=np.uint8)  # N×H×W×C
    x_test = rng.integers(0, 256, (5, 8, 8, 3), dtype=np.uint8)
    y_train, y_test = np.arange(12, dtype=np.int32) % 3, np.array([0, 1, 2, 2, 1], dtype=np.int16)
    np.savez(tmp_path / "mine.npz", x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)

    d = load(tmp_path / "mine.npz")
    assert d.train.x.shape == (12, 3, 8, 8) and d.test.x.shape == (5, 3, 8, 8)
    assert torch.equal(d.train.x, torch.from_numpy(x_train).permute(0, 3, 1, 2))
    assert d.train.y.dtype == torch.int64 and d.test.y.tolist() == [0, 1, 2, 2, 1]
    assert d.train.classes == ("0", "1", "2") and d.train.hflip is False and d.train.name == "mine"
    expected_mean = x_train.reshape(-1, 3).mean(0) / 255
    assert np.allclose(d.train.mean, expected_mean, atol=1e-4)
    assert np.allclose(d.train.std, (x_train.reshape(-1, 3) / 255).std(0), atol=1e-4)
    assert load(str(tmp_path / "mine.npz"), hflip=True).train.hflip is True


def test_npz_gray_and_lookup_in_data_dir(root):
    root.mkdir(parents=True)
    x = np.zeros((4, 6, 6), np.uint8)  # N×H×W
    np.savez(root / "gray-cifar-like.npz", x_train=x, y_train=np.arange(4), x_test=x[:2], y_test=np.arange(2))
    d = load("gray-cifar-like.npz")  # found inside the data dir
    assert d.train.shape == (1, 6, 6) and d.train.std == (1.0,)  # a constant channel gets std 1
    assert d.train.hflip is True  # "cifar" in the file name


def test_npz_bad_content_is_a_clear_error(tmp_path):
    np.savez(tmp_path / "half.npz", x_train=np.zeros((2, 3, 4, 4), np.uint8), y_train=np.zeros(2, np.int64))
    with pytest.raises(ValueError, match="lacks the arrays"):
        load(tmp_path / "half.npz")
    np.savez(tmp_path / "float.npz", x_train=np.full((2, 3, 4, 4), 7.0), y_train=np.zeros(2, np.int64),
             x_test=np.zeros((1, 3, 4, 4), np.uint8), y_test=np.zeros(1, np.int64))  # fmt: skip
    with pytest.raises(ValueError, match="floats in"):
        load(tmp_path / "float.npz")
    with pytest.raises(ValueError, match="does not exist"):
        load(tmp_path / "absent.npz")


# ---------------------------------------------------------------------------- image folders


def _photo(path: Path, size: tuple[int, int], centre: tuple[int, int, int]) -> None:
    """A w×h RGB image, red at the left and right quarters, ``centre`` colour in between."""
    w, h = size
    a = np.zeros((h, w, 3), np.uint8)
    a[..., 0] = 255
    a[:, w // 4 : w - w // 4] = centre
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(a).save(path)


@pytest.mark.parametrize("test_name", ["val", "test"])
def test_image_folder(tmp_path, test_name):
    folder = tmp_path / "tiny-imagenet"
    colours = {"dog": (0, 200, 0), "cat": (0, 0, 200)}
    for c, colour in colours.items():
        for i in range(3):
            _photo(folder / "train" / c / f"{i}.png", (40, 20), colour)
        _photo(folder / test_name / c / "0.jpg", (20, 40), colour)
    (folder / "train" / "cat" / "notes.txt").write_text("not an image")

    d = load(folder, resolution=16)
    assert d.train.classes == ("cat", "dog")  # sorted
    assert d.train.shape == (3, 16, 16) and d.train.x.dtype == torch.uint8
    assert d.train.y.tolist() == [0, 0, 0, 1, 1, 1] and d.test.y.tolist() == [0, 1]
    assert d.train.hflip is True and d.train.name == "tiny-imagenet" and d.source == str(folder)
    # shorter side to 16, then the centre crop: the red side bands (beyond 1/4 of the width) are cut off
    centre = d.train.x[3, :, :, 3:13]
    assert centre[0].max() < 10 and centre[1].min() > 190
    assert load(folder).train.shape == (3, 32, 32)  # default resolution 32
    assert len(d.train.mean) == 3 and load(folder, hflip=False).train.hflip is False


def test_image_folder_without_val_is_an_error(tmp_path):
    _photo(tmp_path / "set" / "train" / "a" / "0.png", (8, 8), (1, 2, 3))
    with pytest.raises(ValueError, match="val/"):
        load(tmp_path / "set")


# ---------------------------------------------------------------------------- missing data, bad input


def test_missing_fashion_mnist_names_all_three_ways(root):
    with pytest.raises(DataUnavailableError) as info:
        load("fashion-mnist", download=False)
    msg = str(info.value)
    assert str(root / "fashion-mnist") in msg and "train-images-idx3-ubyte" in msg  # 1. the files, where
    assert "apt-get install -y dataset-fashion-mnist" in msg  # 2. Debian's package
    assert "torchvision download" in msg and "internet" in msg and "download=False" in msg  # 3. the download
    assert isinstance(info.value, ValueError)


def test_failed_download_is_reported(root):
    with pytest.raises(DataUnavailableError, match="download failed.*network disabled") as info:
        load("cifar10")
    assert str(root / "cifar-10-batches-py") in str(info.value) and "apt-get" not in str(info.value)


@pytest.mark.parametrize("content", [b"this is not a torch file", "wrong-format"])
def test_corrupt_cache_says_delete_it(root, content):
    root.mkdir(parents=True)
    cache = root / "mnist.pt"
    if isinstance(content, bytes):
        cache.write_bytes(content)
    else:
        torch.save({"format": "something-else", "x": torch.zeros(2)}, cache)
    with pytest.raises(ValueError, match="corrupt") as info:
        load("mnist")
    assert str(cache) in str(info.value) and "Delete it" in str(info.value)


def test_unknown_name_lists_the_valid_ones():
    with pytest.raises(ValueError) as info:
        load("imagenet-21k")
    assert all(n in str(info.value) for n in DATASETS) and ".npz" in str(info.value)


def test_names_are_normalised(root):
    arrays = fake_mnist(root / "FashionMNIST" / "raw", gz=True)
    assert_matches(load("Fashion_MNIST", download=False), arrays)


@pytest.mark.parametrize(
    "kwargs, parameter",
    [
        ({"name": 3}, "name"),
        ({"download": "yes"}, "download"),
        ({"resolution": 0}, "resolution"),
        ({"resolution": 32.0}, "resolution"),
        ({"hflip": 1}, "hflip"),
        ({"root": 5}, "root"),
    ],
)
def test_load_validates_arguments(kwargs, parameter):
    with pytest.raises(ValueError, match=f"'{parameter}' parameter of load"):
        load(**kwargs)


def test_describe(root):
    rows = {r["name"]: r for r in describe()}
    assert list(rows) == list(DATASETS)
    assert not any(r["available"] for r in rows.values())
    assert "apt-get install -y dataset-fashion-mnist" in rows["fashion-mnist"]["how"]
    assert "torchvision download" in rows["gtsrb"]["how"]

    fake_mnist(root / "mnist", gz=True)
    row = {r["name"]: r for r in describe(root)}["mnist"]
    assert row["available"] and not row["cached"] and row["path"] == str(root / "mnist") and row["how"] == ""
    load("mnist")
    row = {r["name"]: r for r in describe()}["mnist"]
    assert row["cached"] and row["path"] == str(root / "mnist.pt")


# ---------------------------------------------------------------------------- stratified_subset


def test_stratified_subset_exact_size_and_proportions():
    data = labelled_set([50, 30, 20])
    sub = stratified_subset(data, 10, seed=0)
    assert len(sub) == 10 and torch.bincount(sub.y).tolist() == [5, 3, 2]
    sub = stratified_subset(data, 7, seed=0)  # shares 3.5, 2.1, 1.4: the largest remainder gets the spare one
    assert torch.bincount(sub.y, minlength=3).tolist() == [4, 2, 1]
    ids = sub.x[:, 0, 0, 0].long()
    assert torch.equal(data.y[ids], sub.y) and ids.unique().numel() == 7 and bool((ids[1:] > ids[:-1]).all())
    assert sub.classes == data.classes and sub.mean == data.mean


def test_stratified_subset_is_deterministic_by_seed():
    data = labelled_set([40, 40, 40])
    a, b, c = (stratified_subset(data, 30, seed=s) for s in (1, 1, 2))
    assert torch.equal(a.x, b.x) and not torch.equal(a.x, c.x)


def test_stratified_subset_bounds():
    data = labelled_set([3, 2])
    assert len(stratified_subset(data, 5, seed=0)) == 5 and len(stratified_subset(data, 0, seed=0)) == 0
    with pytest.raises(ValueError, match=r"'size' parameter of stratified_subset must be an int in the range \[0, 5\]\. Got 6"):
        stratified_subset(data, 6, seed=0)
    with pytest.raises(ValueError, match="'seed'"):
        stratified_subset(data, 2, seed=-1)


# ---------------------------------------------------------------------------- seed_samples


def test_seed_samples_exact_counts_and_exclusion():
    labels = torch.tensor([0] * 30 + [1] * 20 + [2] * 15)
    idx = seed_samples(labels, 10, seed=0)
    assert idx.dtype == torch.int64 and idx.unique().numel() == 30
    assert torch.bincount(labels[idx]).tolist() == [10, 10, 10]
    assert torch.equal(idx, seed_samples(labels, 10, seed=0)) and not torch.equal(idx, seed_samples(labels, 10, seed=1))

    exclude = torch.zeros(len(labels), dtype=torch.bool)
    exclude[::2] = True
    for seed in range(5):
        idx = seed_samples(labels, 7, seed=seed, exclude=exclude)
        assert not exclude[idx].any() and torch.bincount(labels[idx]).tolist() == [7, 7, 7]


def test_seed_samples_too_many_names_the_class():
    labels = torch.tensor([0] * 30 + [1] * 4 + [2] * 15)
    with pytest.raises(ValueError, match="class 1 has 4 samples"):
        seed_samples(labels, 10, seed=0)
    exclude = labels == 2
    exclude[-12:] = True  # class 2 keeps 0 of its 15
    with pytest.raises(ValueError, match=r"class 2 has 0 samples available \(after exclusion\)"):
        seed_samples(labels, 3, seed=0, exclude=exclude)


@pytest.mark.parametrize(
    "kwargs, parameter",
    [({"per_class": 0}, "per_class"), ({"seed": -1}, "seed"), ({"exclude": torch.zeros(6)}, "exclude"),
     ({"labels": torch.zeros(6)}, "labels")],
)  # fmt: skip
def test_seed_samples_validates(kwargs, parameter):
    args = {"labels": torch.tensor([0, 0, 0, 1, 1, 1]), "per_class": 1, "seed": 0, **kwargs}
    with pytest.raises(ValueError, match=f"'{parameter}' parameter of seed_samples"):
        seed_samples(args.pop("labels"), args.pop("per_class"), **args)


def test_classes_of_reads_a_files_own_names_and_a_named_sets(tmp_path, monkeypatch):
    from asdkit.data import classes_of

    assert classes_of("fashion-mnist")[6] == "Shirt"
    x = np.zeros((4, 8, 8), dtype=np.uint8)
    path = tmp_path / "two.npz"
    np.savez(path, x_train=x, y_train=np.array([0, 1, 0, 1]), x_test=x, y_test=np.array([0, 1, 1, 0]), classes=np.array(["cat", "dog"]))
    assert classes_of(path) == ("cat", "dog") and classes_of(str(path)) == ("cat", "dog")
    np.savez(path, x_train=x, y_train=np.array([0, 1, 0, 1]), x_test=x, y_test=np.array([0, 1, 1, 0]), classes=np.array(["ox", "yak"]))
    os.utime(path, ns=(0, path.stat().st_mtime_ns + 1))  # a rewritten file is read again, even within one clock tick
    assert classes_of(path) == ("ox", "yak")
    monkeypatch.setenv("ASDKIT_DATA", str(tmp_path))
    monkeypatch.chdir(tmp_path.parent)
    assert classes_of("two.npz") == ("ox", "yak")  # a relative name is also looked for in the data dir, as load does


def test_class_names_of_named_sets_and_none_for_files():
    from asdkit.data import class_names

    assert class_names("fashion-mnist")[6] == "Shirt" and len(class_names("FashionMNIST")) == 10
    assert class_names("gtsrb") is not None and len(class_names("gtsrb")) == 43
    assert class_names("some/file.npz") is None


@pytest.mark.parametrize("scale", ["smoke", "classroom", "lab"])
@pytest.mark.parametrize("file", ["gtsrb-mini.npz", "cifar10-mini.npz"])
def test_every_defense_passes_every_check_on_the_shared_subsets_without_set(file, scale, tmp_path, capsys, monkeypatch):
    """A scale's sizes are "at most": a data set smaller than a preset asks for is used whole, and that is said once."""
    monkeypatch.setattr("asdkit.preparation._SAID", set())  # said once a process: this test's process starts afresh
    from asdkit.config import make_config
    from asdkit.preparation import preflight

    path = SHARED / file
    if not path.is_file():
        pytest.skip(f"{path} is absent (set ASDKIT_SHARED_DATA)")
    configs = [make_config(scale, defense=d, overrides={"dataset": str(path)}) for d in ("none", "abl", "asd", "dbd", "pipd")]
    preflight(configs, tmp_path)  # every check a run makes before it trains, the defense's own data-dependent ones included
    said = [line for line in capsys.readouterr().out.splitlines() if "is smaller than" in line]
    asked = {(c.train_size, c.test_size) for c in configs}
    d = load(path)
    if any(n >= len(d.train) or t >= len(d.test) for n, t in asked):
        assert said and len(said) == len(set(said)) and "the whole" in said[0]


def test_every_defense_trains_on_the_shared_gtsrb_subset_at_smoke_without_set(tmp_path):
    """The smallest scale end to end on 43 classes: every defense trains, tests on every class and scores its pools."""
    from asdkit import planner
    from asdkit.config import make_config
    from asdkit.data import class_names
    from asdkit.records import finished_record

    path = SHARED / "gtsrb-mini.npz"
    if not path.is_file():
        pytest.skip(f"{path} is absent (set ASDKIT_SHARED_DATA)")
    names = class_names("gtsrb")
    for defense in ("none", "abl", "asd", "dbd", "pipd"):
        config = make_config("smoke", defense=defense, overrides={"dataset": str(path)})
        summary = planner.run(config, root=tmp_path, quiet=True)
        assert finished_record(config, tmp_path) is not None, defense
        assert 0.0 <= summary["acc"] <= 1.0 and summary["lowest_class"] in names, (defense, summary["lowest_class"])
        if defense != "none":  # a defense that sets samples apart is scored against the poison it was given
            assert 0.0 <= summary["tpr"] <= 1.0 and 0.0 <= summary["fpr"] <= 1.0, defense
