"""Tests of asdkit.attacks: triggers land where they should, poisoning plants a known mask."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from asdkit.attacks import (
    ATTACKS,
    LOCATIONS,
    PLANNED,
    SIG,
    Attack,
    BadNets,
    Blend,
    PoisonedSet,
    Trojan,
    WaNet,
    asr_testset,
    make_attack,
    poison,
)
from asdkit.data import ImageSet
from helpers import ready_attack

N, C10 = 200, 10
SHAPES = [(1, 28, 28), (3, 32, 32)]


def make_set(shape=(3, 32, 32), n=N, classes=C10, seed=0, smooth=False) -> ImageSet:
    """Random uint8 images with shuffled, balanced labels (n / classes per class)."""
    g = torch.Generator().manual_seed(seed)
    if smooth:  # natural-ish images: bilinear upsampling of 4×4 noise
        low = torch.rand(n, shape[0], 4, 4, generator=g) * 255
        x = F.interpolate(low, size=shape[1:], mode="bilinear", align_corners=True).round().to(torch.uint8)
    else:
        x = torch.randint(0, 256, (n, *shape), generator=g, dtype=torch.uint8)
    y = (torch.arange(n) % classes)[torch.randperm(n, generator=g)]
    c = shape[0]
    return ImageSet(x=x, y=y, classes=tuple(f"c{i}" for i in range(classes)), mean=(0.5,) * c, std=(0.25,) * c)


def changed(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-sample: does any pixel differ?"""
    return (a != b).flatten(1).any(1)


# --------------------------------------------------------------------------- poison counts and masks


@pytest.mark.parametrize("shape", SHAPES, ids=["1x28x28", "3x32x32"])
@pytest.mark.parametrize("rate", [0.05, 0.1])
@pytest.mark.parametrize("name", list(ATTACKS))
def test_poison_count_mask_and_labels(name, rate, shape):
    data = make_set(shape)
    x0, y0 = data.x.clone(), data.y.clone()
    target = 3
    attack = ready_attack(name, shape)
    out = poison(data, attack, rate=rate, target=target, seed=1)

    assert isinstance(out, PoisonedSet) and len(out) == N
    assert torch.equal(data.x, x0) and torch.equal(data.y, y0), "input mutated"
    n_target = int((y0 == target).sum())
    expected = round(rate * n_target) if attack.clean_label else round(rate * N)
    assert int(out.is_poison.sum()) == expected
    assert torch.equal(out.poison_index, out.is_poison.nonzero().flatten())
    assert out.is_poison.dtype == torch.bool and out.is_cover.dtype == torch.bool
    assert not (out.is_poison & out.is_cover).any()

    p = out.is_poison
    assert torch.equal(out.true_label, y0)
    assert (out.observed_label[p] == target).all()
    if attack.clean_label:
        assert (y0[p] == target).all()
    else:
        assert (y0[p] != target).all()
    assert torch.equal(out.observed_label[~p], y0[~p])
    assert changed(out.x[p], x0[p]).all()
    untouched = ~p & ~out.is_cover
    assert torch.equal(out.x[untouched], x0[untouched])
    if type(attack).train_trigger is Attack.train_trigger:  # else the training trigger differs (adaptive-patch, Refool)
        assert torch.equal(out.x[p], attack(x0[p]))
    assert (out.target, out.attack, out.label_mode, out.rate) == (target, name, "all2one", rate)


def test_seed_reproducible_and_different():
    data = make_set()
    for name in ATTACKS:
        a = poison(data, ready_attack(name, data.shape), rate=0.1, target=0, seed=7)
        b = poison(data, ready_attack(name, data.shape), rate=0.1, target=0, seed=7)
        c = poison(data, ready_attack(name, data.shape), rate=0.1, target=0, seed=8)
        assert torch.equal(a.x, b.x) and torch.equal(a.observed_label, b.observed_label)
        assert torch.equal(a.is_poison, b.is_poison) and torch.equal(a.is_cover, b.is_cover)
        assert not torch.equal(a.poison_index, c.poison_index), name


def test_all2all_labels():
    data = make_set()
    out = poison(data, BadNets(data.shape), rate=0.1, target=0, seed=0, label_mode="all2all")
    p = out.is_poison
    assert int(p.sum()) == 20
    assert torch.equal(out.observed_label[p], (data.y[p] + 1) % C10)
    assert torch.equal(out.observed_label[~p], data.y[~p])
    # all samples are eligible under all2all: across seeds, the target class gets poisoned too
    hits = 0
    for seed in range(5):
        again = poison(data, BadNets(data.shape), rate=0.1, target=0, seed=seed, label_mode="all2all")
        hits += int((again.is_poison & (data.y == 0)).sum())
    assert hits > 0


def test_poisoned_set_is_frozen():
    out = poison(make_set(), BadNets((3, 32, 32)), rate=0.05, target=0, seed=0)
    with pytest.raises(AttributeError):
        out.rate = 0.5  # type: ignore[misc]


# --------------------------------------------------------------------------- BadNets


@pytest.mark.parametrize("location", [*LOCATIONS, (5, 7)])
def test_badnets_patch_lands_exactly(location):
    h = w = 32
    size = 4
    x = torch.zeros(3, 3, h, w, dtype=torch.uint8)
    out = BadNets((3, h, w), size=size, location=location, value=200)(x)
    row, col = {
        "upper-left": (0, 0),
        "upper-right": (0, w - size),
        "lower-left": (h - size, 0),
        "lower-right": (h - size, w - size),
        "center": (14, 14),
        (5, 7): (5, 7),
    }[location]
    expected = torch.zeros_like(x)
    expected[:, :, row : row + size, col : col + size] = 200
    assert torch.equal(out, expected)
    assert torch.equal(x, torch.zeros_like(x))


def test_badnets_default_sizes():
    assert BadNets((3, 32, 32)).size == 2
    assert BadNets((1, 28, 28)).size == 3
    assert BadNets((3, 224, 224)).size == 32
    assert BadNets((3, 64, 64)).size == max(2, round(64 / 14))
    out = BadNets((3, 32, 32))(torch.zeros(1, 3, 32, 32, dtype=torch.uint8))
    assert out.sum() == 3 * 4 * 255 and (out[0, :, :2, :2] == 255).all()


# --------------------------------------------------------------------------- Blend


def test_blend_formula_with_default_noise_pattern():
    data = make_set()
    attack = Blend(data.shape, ratio=0.1, seed=3)
    assert attack.pattern.shape == (3, 32, 32) and attack.pattern.dtype == torch.uint8
    assert torch.equal(attack.pattern, Blend(data.shape, seed=3).pattern)
    assert not torch.equal(attack.pattern, Blend(data.shape, seed=4).pattern)
    naive = (0.9 * data.x.double() + 0.1 * attack.pattern.double()).round()
    assert (attack(data.x).double() - naive).abs().max() <= 1  # float32 vs float64 at exact halves


@pytest.mark.parametrize("channels", [1, 3])
def test_blend_with_image_file(tmp_path, channels):
    from PIL import Image

    path = tmp_path / "kitty.png"
    Image.new("RGB", (40, 50), (200, 100, 50)).save(path)
    attack = Blend((channels, 32, 32), ratio=0.2, pattern=path)
    if channels == 3:
        colour = torch.tensor([200, 100, 50], dtype=torch.uint8)
    else:
        colour = torch.tensor([round(0.299 * 200 + 0.587 * 100 + 0.114 * 50)], dtype=torch.uint8)  # PIL "L"
    assert torch.equal(attack.pattern, colour.view(-1, 1, 1).expand(channels, 32, 32))
    x = torch.full((2, channels, 32, 32), 100, dtype=torch.uint8)
    expected = (0.8 * 100 + 0.2 * colour.double()).round().to(torch.uint8).view(1, -1, 1, 1).expand_as(x)
    assert torch.equal(attack(x), expected)
    assert "kitty.png" in attack.describe()


def test_blend_with_tensor_pattern():
    pattern = torch.full((1, 28, 28), 255, dtype=torch.uint8)
    out = Blend((1, 28, 28), ratio=0.5, pattern=pattern)(torch.zeros(2, 1, 28, 28, dtype=torch.uint8))
    assert (out == 128).all()  # round(127.5) → 128 (half to even)


# --------------------------------------------------------------------------- WaNet


def test_wanet_warps_slightly_and_matches_reference():
    data = make_set(smooth=True)
    attack = WaNet(data.shape)
    out = attack(data.x)
    diff = (out.float() - data.x.float()).abs()
    assert changed(out, data.x).all()
    assert 0 < diff.mean() < 4  # a warp of about half a pixel on smooth images
    # the grid, transcribed from the WaNet release for square images
    g = torch.Generator().manual_seed(0)
    ins = torch.rand(1, 2, 4, 4, generator=g) * 2 - 1
    ins = ins / torch.mean(torch.abs(ins))
    noise_grid = F.interpolate(ins, size=32, mode="bicubic", align_corners=True).permute(0, 2, 3, 1)
    array1d = torch.linspace(-1, 1, steps=32)
    xx, yy = torch.meshgrid(array1d, array1d, indexing="ij")
    identity_grid = torch.stack((yy, xx), 2)[None, ...]
    grid = torch.clamp(identity_grid + 0.5 * noise_grid / 32, -1, 1)
    assert torch.allclose(attack.grid, grid)
    reference = F.grid_sample(data.x.float(), grid.repeat(N, 1, 1, 1), align_corners=True).round().clamp(0, 255)
    assert (out.float() - reference).abs().max() <= 1


def test_wanet_cover_samples_keep_labels():
    data = make_set(smooth=True)
    attack = WaNet(data.shape)
    out = poison(data, attack, rate=0.1, target=0, seed=0)
    cover = out.is_cover
    assert int(cover.sum()) == round(0.2 * N)
    assert torch.equal(out.cover_index, cover.nonzero().flatten())
    assert torch.equal(out.observed_label[cover], data.y[cover])
    assert changed(out.x[cover], data.x[cover]).all()
    # the noise warp is not the trigger warp
    assert changed(out.x[cover], attack(data.x[cover])).any()
    assert (out.x[cover].float() - data.x[cover].float()).abs().mean() < 6
    none = poison(data, attack, rate=0.1, target=0, seed=0, noise_rate=0.0)
    assert not none.is_cover.any() and torch.equal(none.is_poison, out.is_poison)
    assert int(poison(data, attack, rate=0.1, target=0, seed=0, noise_rate=0.3).is_cover.sum()) == 60


def test_wanet_noise_is_seeded():
    data = make_set(smooth=True)
    attack = WaNet(data.shape, seed=2)
    a = attack.noise(data.x[:8], generator=torch.Generator().manual_seed(1))
    b = attack.noise(data.x[:8], generator=torch.Generator().manual_seed(1))
    c = attack.noise(data.x[:8], generator=torch.Generator().manual_seed(2))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert not torch.equal(WaNet(data.shape, seed=2).grid, WaNet(data.shape, seed=3).grid)


# --------------------------------------------------------------------------- SIG and Trojan


def test_sig_only_touches_target_class():
    data = make_set()
    out = poison(data, SIG(data.shape), rate=0.1, target=4, seed=0)
    touched = changed(out.x, data.x)
    assert torch.equal(touched, out.is_poison)
    assert (data.y[touched] == 4).all()
    assert torch.equal(out.observed_label, data.y)


def test_sig_signal_formula():
    x = torch.full((1, 3, 4, 32), 128, dtype=torch.uint8)
    out = SIG((3, 4, 32), delta=20, frequency=6)(x)
    column = torch.tensor([round(128 + 20 * math.sin(2 * math.pi * j * 6 / 32)) for j in range(32)], dtype=torch.uint8)
    assert torch.equal(out, column.expand_as(x))
    assert SIG.clean_label and SIG((3, 4, 32)).clean_label


def test_trojan_square():
    attack = Trojan((3, 32, 32))
    assert attack.size == 6 and Trojan((1, 28, 28)).size == 6
    x = torch.full((2, 3, 32, 32), 77, dtype=torch.uint8)
    out = attack(x)
    region = torch.zeros(32, 32, dtype=torch.bool)
    region[26:, 26:] = True
    assert (out[:, :, ~region] == 77).all()
    patch = out[0, 0, 26:, 26:]
    assert (patch[0] == 255).all() and (patch[-1] == 255).all() and (patch[:, 0] == 255).all() and (patch[:, -1] == 255).all()
    assert set(patch.unique().tolist()) <= {0, 255}
    assert (out[:, :, 26:, 26:] == patch).all()  # same in every channel and image
    assert torch.equal(Trojan((3, 32, 32), seed=0).patch, attack.patch)
    assert not torch.equal(Trojan((3, 32, 32), seed=1).patch, attack.patch)


# --------------------------------------------------------------------------- ASR test set


def test_asr_testset_all2one_and_all2all():
    test = make_set(seed=5)
    attack = BadNets(test.shape)
    x0 = test.x.clone()
    asr = asr_testset(test, attack, target=2)
    keep = test.y != 2
    assert len(asr) == int(keep.sum()) == N - N // C10
    assert (asr.y == 2).all()
    assert torch.equal(asr.x, attack(test.x[keep]))
    assert torch.equal(test.x, x0)
    both = asr_testset(test, attack, target=2, label_mode="all2all")
    assert len(both) == N and torch.equal(both.y, (test.y + 1) % C10)


# --------------------------------------------------------------------------- registry


def test_registry_and_make_attack():
    assert set(ATTACKS) == {"badnets", "blend", "wanet", "sig", "trojan", "clb", "iab", "refool", "adaptive-patch",
                            "asd-adaptive-grad", "asd-adaptive-feat"}
    assert set(PLANNED).isdisjoint(ATTACKS)
    for name, cls in ATTACKS.items():
        attack = make_attack(name, (3, 32, 32), seed=1)
        assert isinstance(attack, cls) and isinstance(attack, Attack)
        assert attack.name == cls.name == name
        assert isinstance(attack.describe(), str) and attack.describe()
    assert make_attack("blend", (3, 32, 32), ratio=0.2).ratio == 0.2
    assert torch.equal(make_attack("wanet", (3, 32, 32), seed=5).grid, WaNet((3, 32, 32), seed=5).grid)
    assert make_attack("badnets", (3, 32, 32), seed=5, size=3).size == 3


def test_attack_checks_batch():
    attack = BadNets((3, 32, 32))
    with pytest.raises(ValueError, match="uint8"):
        attack(torch.zeros(1, 3, 32, 32))
    with pytest.raises(ValueError, match="N×3×32×32"):
        attack(torch.zeros(1, 1, 28, 28, dtype=torch.uint8))


def test_rate_zero_is_the_clean_twin():
    data = make_set()
    for attack in (BadNets(data.shape), WaNet(data.shape), SIG(data.shape)):
        twin = poison(data, attack, rate=0, target=0, seed=0)
        assert int(twin.is_poison.sum()) == 0 and int(twin.is_cover.sum()) == 0
        assert torch.equal(twin.data.x, data.x) and torch.equal(twin.data.y, data.y)
    assert int(poison(data, WaNet(data.shape), rate=0, target=0, seed=0, noise_rate=0.1).is_cover.sum()) == round(0.1 * len(data))


# --------------------------------------------------------------------------- every bad input

DATA = make_set()
SMALL = make_set(n=20)
BAD_INPUTS = {
    "rate 1.5": ("rate", lambda: poison(DATA, BadNets(DATA.shape), rate=1.5, target=0, seed=0)),
    "rate -0.1": ("rate", lambda: poison(DATA, BadNets(DATA.shape), rate=-0.1, target=0, seed=0)),
    "rate 1": ("rate", lambda: poison(DATA, BadNets(DATA.shape), rate=1, target=0, seed=0)),
    "rate str": ("rate", lambda: poison(DATA, BadNets(DATA.shape), rate="0.1", target=0, seed=0)),
    "rate too small": ("rate", lambda: poison(SMALL, BadNets(SMALL.shape), rate=0.01, target=0, seed=0)),
    "count too large": ("rate", lambda: poison(DATA, BadNets(DATA.shape), rate=0.95, target=0, seed=0)),
    "clean-label too small": ("rate", lambda: poison(DATA, SIG(DATA.shape), rate=0.01, target=0, seed=0)),
    "target -1": ("target", lambda: poison(DATA, BadNets(DATA.shape), rate=0.1, target=-1, seed=0)),
    "target 10 of 10": ("target", lambda: poison(DATA, BadNets(DATA.shape), rate=0.1, target=10, seed=0)),
    "target float": ("target", lambda: poison(DATA, BadNets(DATA.shape), rate=0.1, target=1.0, seed=0)),
    "seed float": ("seed", lambda: poison(DATA, BadNets(DATA.shape), rate=0.1, target=0, seed=0.5)),
    "label_mode": ("label_mode", lambda: poison(DATA, BadNets(DATA.shape), rate=0.1, target=0, seed=0, label_mode="one2one")),
    "clean-label all2all": ("label_mode", lambda: poison(DATA, SIG(DATA.shape), rate=0.1, target=0, seed=0, label_mode="all2all")),
    "noise_rate 1": ("noise_rate", lambda: poison(DATA, WaNet(DATA.shape), rate=0.1, target=0, seed=0, noise_rate=1.0)),
    "noise_rate no noise mode": ("noise_rate", lambda: poison(DATA, BadNets(DATA.shape), rate=0.1, target=0, seed=0, noise_rate=0.2)),
    "noise_rate too large": ("noise_rate", lambda: poison(DATA, WaNet(DATA.shape), rate=0.5, target=0, seed=0, noise_rate=0.6)),
    "attack wrong shape": ("attack", lambda: poison(DATA, BadNets((1, 28, 28)), rate=0.1, target=0, seed=0)),
    "attack not an Attack": ("attack", lambda: poison(DATA, "badnets", rate=0.1, target=0, seed=0)),
    "data not an ImageSet": ("data", lambda: poison(DATA.x, BadNets(DATA.shape), rate=0.1, target=0, seed=0)),
    "asr target 10": ("target", lambda: asr_testset(DATA, BadNets(DATA.shape), target=10)),
    "asr label_mode": ("label_mode", lambda: asr_testset(DATA, BadNets(DATA.shape), target=0, label_mode="x")),
    "unknown attack": ("name", lambda: make_attack("lira", (3, 32, 32))),
    "adaptive-patch k": ("k", lambda: make_attack("adaptive-patch", (3, 32, 32), k=0)),
    "adaptive-patch alphas": ("alphas", lambda: make_attack("adaptive-patch", (3, 32, 32), k=2, alphas=(0.5,))),
    "iab epochs": ("epochs", lambda: make_attack("iab", (3, 32, 32), epochs=0)),
    "iab p_cross": ("p_cross", lambda: make_attack("iab", (3, 32, 32), p_cross=0.6)),
    "refool candidates": ("candidates", lambda: make_attack("refool", (3, 32, 32), candidates=0)),
    "asd-adaptive epsilon": ("epsilon", lambda: make_attack("asd-adaptive-grad", (3, 32, 32), epsilon=0)),
    "unknown option": ("colour", lambda: make_attack("badnets", (3, 32, 32), colour=3)),
    "shape": ("shape", lambda: BadNets((32, 32))),
    "badnets location name": ("location", lambda: BadNets((3, 32, 32), location="middle")),
    "badnets location off image": ("location", lambda: BadNets((3, 32, 32), location=(31, 31))),
    "badnets location negative": ("location", lambda: BadNets((3, 32, 32), location=(-1, 0))),
    "badnets size": ("size", lambda: BadNets((3, 32, 32), size=33)),
    "badnets value": ("value", lambda: BadNets((3, 32, 32), value=256)),
    "blend ratio": ("ratio", lambda: Blend((3, 32, 32), ratio=0)),
    "blend missing file": ("pattern", lambda: Blend((3, 32, 32), pattern="/nonexistent/kitty.png")),
    "blend pattern shape": ("pattern", lambda: Blend((3, 32, 32), pattern=torch.zeros(1, 32, 32, dtype=torch.uint8))),
    "wanet k": ("k", lambda: WaNet((3, 32, 32), k=1)),
    "wanet s": ("s", lambda: WaNet((3, 32, 32), s=0)),
    "sig delta": ("delta", lambda: SIG((3, 32, 32), delta=0)),
    "sig frequency": ("frequency", lambda: SIG((3, 32, 32), frequency=-1)),
    "trojan size": ("size", lambda: Trojan((3, 32, 32), size=2)),
    "trojan location": ("location", lambda: Trojan((3, 32, 32), location="top")),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_raises_naming_parameter(case):
    param, call = BAD_INPUTS[case]
    with pytest.raises(ValueError) as info:
        call()
    assert f"'{param}'" in str(info.value), str(info.value)


def test_error_message_format():
    with pytest.raises(ValueError) as info:
        poison(DATA, BadNets(DATA.shape), rate=1.5, target=0, seed=0)
    assert str(info.value) == "The 'rate' parameter of poison must be a float in the range [0, 1). Got 1.5 instead."
    with pytest.raises(ValueError, match="adaptive-patch"):  # the message lists every implemented attack
        make_attack("lira", (3, 32, 32))
    with pytest.raises(ValueError, match="badnets"):
        make_attack("lira", (3, 32, 32))
    with pytest.raises(ValueError, match="location"):
        make_attack("badnets", (3, 32, 32), colour=3)
