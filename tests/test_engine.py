"""Tests of asdkit.engine: score/evaluate against hand computations, augmentation against a slow reference."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from asdkit.engine import Images, Normalizer, augment, evaluate, resolve_device, score, stream, train_epoch
from asdkit.losses import cross_entropy, sce_loss

pytestmark = pytest.mark.usefixtures("one_thread")

CPU = torch.device("cpu")
MEAN, STD = (0.3, 0.6, 0.45), (0.2, 0.25, 0.3)


class Tiny(nn.Module):
    """conv → BN → ReLU → global pool → linear: BatchNorm makes train and eval mode differ."""

    def __init__(self, cin=3, classes=4):
        super().__init__()
        self.conv = nn.Conv2d(cin, 6, 3, padding=1)
        self.bn = nn.BatchNorm2d(6)
        self.linear = nn.Linear(6, classes)

    def forward(self, x):
        return self.linear(F.relu(self.bn(self.conv(x))).mean(dim=(2, 3)))


def images(n=20, shape=(3, 8, 8), seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, *shape), generator=g, dtype=torch.uint8)


# --------------------------------------------------------------------------- score


@pytest.mark.parametrize("loss_fn", [cross_entropy, sce_loss], ids=["ce", "sce"])
def test_score_equals_hand_computation(loss_fn):
    torch.manual_seed(0)
    model = Tiny()
    model.train()
    model(torch.randn(16, 3, 8, 8) * 3 + 1)  # move BN running stats away from (0, 1)
    x, y = images(20), torch.randint(0, 4, (20,), generator=torch.Generator().manual_seed(1))

    got = score(model, x, y, loss_fn, normalize=Normalizer(MEAN, STD, CPU), batch_size=7)

    ref = Tiny()
    ref.load_state_dict(model.state_dict())
    ref.eval()
    xn = (x.float() / 255 - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)
    with torch.no_grad():
        logits = ref(xn)
    expected = F.cross_entropy(logits, y, reduction="none") if loss_fn is cross_entropy else loss_fn(logits, y)
    assert got.shape == (20,) and got.dtype == torch.float32 and got.device == CPU
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)
    # and it is the eval-mode loss, not the train-mode one (BatchNorm on batch statistics)
    ref.train()
    with torch.no_grad():
        train_mode = loss_fn(ref(xn), y)
    assert not torch.allclose(got, train_mode, atol=1e-3)


def test_score_leaves_model_in_eval_mode_without_autograd():
    model = Tiny()
    model.train()
    x, y = images(10), torch.zeros(10, dtype=torch.long)
    with torch.enable_grad():
        out = score(model, x, y, cross_entropy, normalize=Normalizer(MEAN, STD, CPU))
    assert model.training is False
    assert out.requires_grad is False and out.grad_fn is None
    assert all(p.grad is None for p in model.parameters())


# --------------------------------------------------------------------------- augment


def test_augment_without_pad_or_flip_is_identity():
    x = images(30)
    x0 = x.clone()
    out = augment(x, pad=0, flip=False, generator=torch.Generator().manual_seed(0))
    assert out.dtype == torch.uint8 and torch.equal(out, x0) and torch.equal(x, x0)


@pytest.mark.parametrize("pad", [1, 2, 4])
def test_augment_outputs_are_windows_of_the_padded_input(pad):
    """Slow reference: each output equals x_padded[i, :, dy:dy+h, dx:dx+w] for some offset in [0, 2·pad]."""
    n, h, w = 200, 8, 8
    x = images(n, (2, h, w), seed=pad)
    x0 = x.clone()
    out = augment(x, pad=pad, flip=False, generator=torch.Generator().manual_seed(pad))
    assert out.shape == x.shape and out.dtype == torch.uint8
    assert torch.equal(x, x0), "augment modified its input"
    xp = F.pad(x, (pad, pad, pad, pad))
    seen = set()
    for i in range(n):
        hits = [(dy, dx) for dy in range(2 * pad + 1) for dx in range(2 * pad + 1)
                if torch.equal(out[i], xp[i, :, dy : dy + h, dx : dx + w])]
        assert hits, f"sample {i} is not a shifted window of its padded input"
        seen.update(hits)
    # the offsets are random and cover most of the (2·pad+1)² grid over 200 samples
    assert len(seen) >= 0.8 * (2 * pad + 1) ** 2


def test_augment_keeps_the_pixel_sum_of_an_image_with_a_zero_border():
    pad, n = 3, 64
    x = torch.zeros(n, 1, 16, 16, dtype=torch.uint8)
    x[:, :, pad:-pad, pad:-pad] = images(n, (1, 16 - 2 * pad, 16 - 2 * pad), seed=9)
    out = augment(x, pad=pad, flip=True, generator=torch.Generator().manual_seed(0))
    assert torch.equal(out.long().sum(dim=(1, 2, 3)), x.long().sum(dim=(1, 2, 3)))
    assert not torch.equal(out, x)  # but the images moved


def test_augment_is_reproducible_from_the_generator():
    x = images(50)
    a = augment(x, pad=2, flip=True, generator=torch.Generator().manual_seed(5))
    b = augment(x, pad=2, flip=True, generator=torch.Generator().manual_seed(5))
    c = augment(x, pad=2, flip=True, generator=torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_augment_flips_about_half_and_never_without_flip():
    n = 400
    x = images(n, (1, 6, 6), seed=2)  # random images are not mirror-symmetric
    assert not (x == x.flip(3)).flatten(1).all(1).any()
    out = augment(x, pad=0, flip=True, generator=torch.Generator().manual_seed(0))
    same = (out == x).flatten(1).all(1)
    flipped = (out == x.flip(3)).flatten(1).all(1)
    assert torch.all(same ^ flipped)
    assert 150 <= int(flipped.sum()) <= 250  # Binomial(400, 1/2): mean 200, sd 10
    for seed in range(3):
        assert torch.equal(augment(x, pad=0, flip=False, generator=torch.Generator().manual_seed(seed)), x)


# --------------------------------------------------------------------------- devices


def test_resolve_device_auto_is_cpu_here():
    if torch.cuda.is_available() or (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        pytest.skip("an accelerator is present")
    assert resolve_device("auto") == torch.device("cpu")
    assert resolve_device("cpu") == torch.device("cpu")


@pytest.mark.parametrize("name", ["cuda", "cuda:0"])
def test_resolve_device_cuda_without_gpu_is_a_value_error(name):
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    with pytest.raises(ValueError, match="CUDA"):
        resolve_device(name)


@pytest.mark.parametrize("name", ["tpu", "meta", "gpu0"])
def test_resolve_device_unknown_is_a_value_error(name):
    with pytest.raises(ValueError, match="'device'"):
        resolve_device(name)


# --------------------------------------------------------------------------- evaluate


class OneHotOfFirstPixel(nn.Module):
    """Logits = one-hot of the (unnormalised) first pixel: predicts whatever label is written there."""

    def forward(self, x):
        return F.one_hot(x[:, 0, 0, 0].round().long(), 10).float()


def labelled(y):
    x = torch.zeros(len(y), 1, 4, 4, dtype=torch.uint8)
    x[:, 0, 0, 0] = y.to(torch.uint8)
    return x


IDENTITY = dict(mean=(0.0,), std=(1 / 255,))  # Normalizer(0, 1/255) leaves pixel values as they are


def test_evaluate_of_a_perfect_model_is_one():
    y = torch.arange(12) % 10
    norm = Normalizer(IDENTITY["mean"], IDENTITY["std"], CPU)
    out = evaluate(OneHotOfFirstPixel(), labelled(y), y, labelled(torch.full((8,), 3)), torch.full((8,), 3), normalize=norm, batch_size=5)
    assert out == {"acc": 1.0, "asr": 1.0, "acc_per_class": [1.0] * 10, "clean_target_rate": 0.0}


class AlwaysTarget(nn.Module):
    """A collapsed model: class 3 for every input, triggered or not."""

    def forward(self, x):
        return F.one_hot(torch.full((len(x),), 3), 10).float()


def test_evaluate_measures_how_often_clean_images_land_in_the_target():
    """clean_target_rate: of the clean non-target test images, the share predicted as the target (exact fractions)."""
    y = torch.arange(12) % 10  # 11 non-target images (one 3)
    shown = y.clone()
    shown[[0, 1]] = 3  # two clean non-target images predicted as the target
    norm = Normalizer(IDENTITY["mean"], IDENTITY["std"], CPU)
    asr = torch.full((8,), 3)
    out = evaluate(OneHotOfFirstPixel(), labelled(shown), y, labelled(asr), asr, normalize=norm)
    assert out["clean_target_rate"] == pytest.approx(2 / 11, abs=1e-4)
    collapsed = evaluate(AlwaysTarget(), labelled(y), y, labelled(asr), asr, normalize=norm)
    assert collapsed["asr"] == 1.0 and collapsed["clean_target_rate"] == 1.0 and collapsed["acc"] == pytest.approx(1 / 12)
    all2all = evaluate(AlwaysTarget(), labelled(y), y, labelled(asr), (asr + torch.arange(8)) % 10, normalize=norm)
    assert "clean_target_rate" not in all2all  # no single target to land in


def test_evaluate_counts_exact_fractions():
    y = torch.arange(12) % 10
    shown = y.clone()
    shown[:3] = (shown[:3] + 1) % 10  # 3 of 12 predictions wrong
    asr_y = torch.full((8,), 3)
    asr_shown = asr_y.clone()
    asr_shown[::2] = 4  # half the triggered images miss the target
    norm = Normalizer(IDENTITY["mean"], IDENTITY["std"], CPU)
    out = evaluate(OneHotOfFirstPixel(), labelled(shown), y, labelled(asr_shown), asr_y, normalize=norm, batch_size=5)
    assert out["acc"] == pytest.approx(0.75) and out["asr"] == pytest.approx(0.5)
    assert 0 <= out["acc"] <= 1 and 0 <= out["asr"] <= 1
    no_asr = evaluate(OneHotOfFirstPixel(), labelled(shown), y, None, None, normalize=norm)
    assert set(no_asr) == {"acc", "acc_per_class"} and no_asr["acc"] == pytest.approx(0.75)
    # per class: the fraction right among that class's test samples (a class with none counts 0)
    per_class = torch.tensor(no_asr["acc_per_class"])
    counts = torch.bincount(y, minlength=len(per_class)).float()
    assert (per_class * counts).sum() / counts.sum() == pytest.approx(0.75)


# --------------------------------------------------------------------------- train_epoch


def test_train_epoch_per_sample_losses_are_aligned_with_index():
    """A loss equal to the sample's 'label' shows where each per-sample value came from."""
    n = 40
    torch.manual_seed(0)
    model = Tiny(cin=1)
    x = images(n, (1, 8, 8))
    y = torch.arange(n) * 10  # unique per sample; used by the loss only
    index = torch.arange(0, n, 2)[torch.randperm(n // 2)]  # a subset, out of order
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    steps = []
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: steps.append(s) or 1.0)
    steps.clear()

    def loss_fn(logits, t):
        return t.float() + 0.0 * logits.sum(1)

    data = Images(x, y, Normalizer((0.5,), (0.25,), CPU, channels_last=False), num_classes=3, pad=1)
    res = train_epoch(model, data, index, opt, generator=torch.Generator().manual_seed(0), batch_size=6, loss_fn=loss_fn,
                      scheduler=sched)
    assert len(res.index) == len(index) == len(res.sample_loss)
    assert sorted(res.index.tolist()) == sorted(index.tolist())
    assert not torch.equal(res.index, index)  # shuffled by the generator
    torch.testing.assert_close(res.sample_loss, y[res.index].float())
    assert res.loss == pytest.approx(float(y[index].float().mean()))
    assert len(steps) == -(-len(index) // 6)  # one scheduler step per batch, the last batch kept
    assert model.training


def test_train_epoch_learns_an_easy_problem():
    """Dark vs bright images: the mean training loss falls over a few epochs."""
    g = torch.Generator().manual_seed(0)
    n = 64
    y = torch.arange(n) % 2
    x = (torch.rand(n, 1, 8, 8, generator=g) * 100 + 150 * y.view(-1, 1, 1, 1)).to(torch.uint8)
    torch.manual_seed(0)
    model = Tiny(cin=1, classes=2)
    opt = torch.optim.Adam(model.parameters(), lr=0.02)
    norm = Normalizer((0.4,), (0.3,), CPU)
    data = Images(x, y, norm, num_classes=2, pad=0)
    losses = [train_epoch(model, data, torch.arange(n), opt, generator=stream(0, "batches", e), batch_size=16).loss
              for e in range(6)]
    assert losses[-1] < 0.5 * losses[0], losses
    acc = (score(model, x, y, lambda lo, t: (lo.argmax(1) == t).float(), normalize=norm)).mean()
    assert acc == 1.0


def test_named_streams_differ_by_every_name_and_repeat():
    a = torch.randint(0, 10**9, (4,), generator=stream(0, "stage3", "virtual model", 1, 0))
    assert torch.equal(a, torch.randint(0, 10**9, (4,), generator=stream(0, "stage3", "virtual model", 1, 0)))
    for other in (stream(1, "stage3", "virtual model", 1, 0), stream(0, "stage2", "virtual model", 1, 0),
                  stream(0, "stage3", "mixmatch", 1, 0), stream(0, "stage3", "virtual model", 2, 0),
                  stream(0, "stage3", "virtual model", 1, 1)):
        assert not torch.equal(a, torch.randint(0, 10**9, (4,), generator=other))


def test_meta_epoch_streams_never_collide_with_other_purposes():
    """The old numbered streams (2 + e for the virtual model's e-th epoch, 3, 4) collided once meta_epochs >= 2."""
    draws = {}
    for purpose in ("mixmatch", "virtual model", "batches"):
        for e in range(4):
            for j in range(4):
                draws[(purpose, e, j)] = tuple(torch.randint(0, 2**62, (2,), generator=stream(0, "stage3", purpose, e, j)).tolist())
    assert len(set(draws.values())) == len(draws)


def test_weights_scale_each_sample_loss_descend_ascend_skip():
    """weight +1 descends, -1 ascends, 0 skips: one step of SGD on a linear model moves the loss of each accordingly."""
    torch.manual_seed(0)
    n = 6
    x = torch.randint(0, 256, (n, 1, 4, 4), dtype=torch.uint8)
    y = torch.arange(n) % 2
    norm = Normalizer((0.5,), (0.25,), CPU, channels_last=False)
    data = Images(x, y, norm, num_classes=2, pad=0)

    def one_step(weight):
        torch.manual_seed(1)
        model = nn.Sequential(nn.Flatten(), nn.Linear(16, 2))
        before = score(model, x, y, cross_entropy, normalize=norm)
        train_epoch(model, data, torch.tensor([0]), torch.optim.SGD(model.parameters(), lr=0.5), generator=torch.Generator(),
                    batch_size=1, weight=weight)
        return score(model, x, y, cross_entropy, normalize=norm)[0] - before[0]

    assert one_step(torch.ones(n)) < 0
    assert one_step(-torch.ones(n)) > 0
    assert one_step(torch.zeros(n)) == 0


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_forward_passes_in_cpu_chunks_give_the_bits_of_whole_batches(monkeypatch, precision):
    """predict and channel_activations take at most CPU_CHUNK images a pass on a CPU (faster: caches); the outputs are bit for bit
    those of one pass per eval batch, so a float32 record made before the chunking repeats exactly."""
    from asdkit import devices
    from asdkit.engine import predict
    from asdkit.models import channel_activations, make_model

    torch.manual_seed(0)
    model = make_model("compact", num_classes=10, in_channels=1, widths=(8, 16, 32)).to(memory_format=torch.channels_last)
    for m in model.modules():  # BatchNorm statistics that are not the identity
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    x = torch.randint(0, 256, (300, 1, 28, 28), dtype=torch.uint8)
    norm = Normalizer((0.3,), (0.3,), CPU)
    assert devices.forward_chunk(300, CPU) == devices.CPU_CHUNK < 300
    monkeypatch.setattr(devices, "CPU_CHUNK", 1024)  # the passes before the chunking: one per eval batch
    whole = predict(model, x, normalize=norm, batch_size=300, precision=precision)
    acts = channel_activations(model, x, normalize=norm, batch_size=300)
    monkeypatch.setattr(devices, "CPU_CHUNK", 7)
    assert devices.forward_chunk(300, CPU) == 7 and devices.forward_chunk(300, torch.device("cuda")) == 300
    assert torch.equal(predict(model, x, normalize=norm, batch_size=300, precision=precision), whole)
    chunked = channel_activations(model, x, normalize=norm, batch_size=300)
    assert all(torch.equal(chunked[k], acts[k]) for k in acts)
