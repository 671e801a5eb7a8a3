"""Tests of SimCLR's pieces (asdkit.ssl): NT-Xent, the batched views, the projection head, the linear probe, the objective."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from asdkit.engine import Images, Normalizer, batches, train_steps
from asdkit.ssl import ProjectionHead, ViewConfig, linear_probe_accuracy, nt_xent, simclr_objective, simclr_views

pytestmark = pytest.mark.usefixtures("one_thread")


def naive_nt_xent(z1, z2, tau, anchors="both"):
    """SimCLR Eq. 1 transcribed loop by loop: ℓ(i, j) = −log exp(s_ij/τ) / Σ_{k≠i} exp(s_ik/τ)."""
    z = [v / v.norm() for v in torch.cat([z1, z2]).double()]
    b, out = len(z1), []
    for i in range(2 * b if anchors == "both" else b):
        j = (i + b) % (2 * b)
        num = math.exp(float(z[i] @ z[j]) / tau)
        den = sum(math.exp(float(z[i] @ z[k]) / tau) for k in range(2 * b) if k != i)
        out.append(-math.log(num / den))
    return torch.tensor(out, dtype=torch.float64)


@pytest.mark.parametrize("anchors", ["both", "view1"])
def test_nt_xent_matches_a_naive_transcription(anchors):
    g = torch.Generator().manual_seed(0)
    z1 = nn.functional.normalize(torch.randn(6, 5, generator=g), dim=1)
    z2 = nn.functional.normalize(torch.randn(6, 5, generator=g), dim=1)
    got = nt_xent(z1, z2, temperature=0.5, anchors=anchors)
    assert len(got) == (12 if anchors == "both" else 6)
    assert torch.allclose(got.double(), naive_nt_xent(z1, z2, 0.5, anchors), atol=1e-5)


def test_nt_xent_of_two_identical_views_of_orthogonal_images_has_its_analytic_value():
    """z1 = z2 = e_i: s = 1 with the positive, 0 with the 2b − 2 others ⇒ ℓ = −1/τ + log(e^{1/τ} + 2b − 2)."""
    b, tau = 4, 0.5
    z = torch.eye(b, 8)[:, :8]
    expected = -1 / tau + math.log(math.exp(1 / tau) + 2 * b - 2)
    assert torch.allclose(nt_xent(z, z.clone(), temperature=tau), torch.full((2 * b,), expected), atol=1e-6)
    with pytest.raises(ValueError, match="'anchors' parameter of nt_xent must be 'both' or 'view1'"):
        nt_xent(z, z, anchors="all")


def test_two_views_differ_stay_in_range_and_keep_the_shape():
    g = torch.Generator().manual_seed(1)
    for shape in [(16, 1, 28, 28), (16, 3, 32, 32)]:
        x = torch.randint(0, 256, shape, dtype=torch.uint8)
        v1, v2 = simclr_views(x, g), simclr_views(x, g)
        assert v1.shape == shape and v1.dtype == torch.float32
        assert float(v1.min()) >= 0 and float(v1.max()) <= 255
        assert float((v1 - v2).abs().mean()) > 5  # two random views of one image are not the same picture
        assert not torch.equal(v1, x.float())


def test_views_without_randomness_are_the_image():
    """Full-size crop, no flip, no jitter, no blur: the view is the image itself (the crop's grid is the identity)."""
    cfg = ViewConfig(crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), flip=False, jitter_p=0.0, gray_p=0.0, blur_p=0.0)
    x = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8)
    v = simclr_views(x, torch.Generator().manual_seed(0), cfg)
    assert torch.allclose(v, x.float(), atol=1e-3)


def test_the_flip_mirrors_and_the_blur_keeps_the_mean():
    x = torch.arange(32 * 32, dtype=torch.float32).reshape(1, 1, 32, 32).repeat(64, 1, 1, 1).clamp(max=255).to(torch.uint8)
    cfg = ViewConfig(crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), jitter_p=0.0, gray_p=0.0, blur_p=0.0)
    v = simclr_views(x, torch.Generator().manual_seed(0), cfg)
    flipped = [bool(torch.allclose(v[i], x[i].float().flip(2), atol=1e-3)) for i in range(64)]
    kept = [bool(torch.allclose(v[i], x[i].float(), atol=1e-3)) for i in range(64)]
    assert all(a or b for a, b in zip(flipped, kept)) and 16 < sum(flipped) < 48
    blurred = simclr_views(x, torch.Generator().manual_seed(0), ViewConfig(crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), flip=False,
                                                                           jitter_p=0.0, blur_p=1.0))
    assert torch.allclose(blurred.mean(dim=(1, 2, 3)), x.float().mean(dim=(1, 2, 3)), rtol=0.02)


def test_projection_head_is_l2_normalised():
    head = ProjectionHead(16, 8)
    z = head(torch.randn(10, 16))
    assert z.shape == (10, 8) and torch.allclose(z.norm(dim=1), torch.ones(10), atol=1e-5)


def test_linear_probe_separates_separable_features_and_not_noise():
    g = torch.Generator().manual_seed(0)
    y = torch.arange(400) % 4
    separable = torch.nn.functional.one_hot(y, 4).float() * 3 + 0.3 * torch.randn(400, 4, generator=g)
    assert linear_probe_accuracy(separable, y) > 0.95
    assert linear_probe_accuracy(torch.randn(400, 4, generator=g), y) < 0.45


class _Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.linear = nn.Linear(4, 2)
        self.projection = ProjectionHead(4, 3)

    def features(self, x):
        return self.body(x)

    def forward(self, x):
        return self.linear(self.features(x))


def test_simclr_steps_train_backbone_and_projection_and_never_read_labels():
    torch.manual_seed(0)
    x = torch.randint(0, 256, (32, 1, 12, 12), dtype=torch.uint8)
    norm = Normalizer((0.5,), (0.25,), torch.device("cpu"), channels_last=False)
    data = Images(x, torch.full((32,), -1), norm, 2)  # labels that would break any loss that read them
    model = _Tiny()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    g = torch.Generator().manual_seed(0)
    result = train_steps(model, batches(torch.arange(32), 16, generator=g), simclr_objective(data, generator=g), opt)
    after = model.state_dict()
    assert result.steps == 2 and math.isfinite(result.loss)
    assert not torch.equal(before["body.0.weight"], after["body.0.weight"])
    assert not torch.equal(before["projection.net.0.weight"], after["projection.net.0.weight"])
    assert torch.equal(before["linear.weight"], after["linear.weight"])  # the classifier head is not part of SimCLR
