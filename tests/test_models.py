"""Tests of asdkit.models: every architecture builds for both input sizes, and the part-naming helpers."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from asdkit.models import (
    MODELS,
    CompactResNet,
    ResNet18,
    channel_activations,
    conv_layers,
    last_layers,
    make_model,
    split_backbone_head,
)

pytestmark = pytest.mark.usefixtures("one_thread")

SHAPES = [(1, 28, 28), (3, 32, 32)]
CLASSES = 7


@pytest.fixture(scope="module")
def vgg11():
    """torchvision's vgg11_bn builds a 120M-parameter classifier that asdkit then drops: ~2 s, so build it once."""
    return make_model("vgg11", num_classes=CLASSES, in_channels=3).eval()


@pytest.mark.parametrize("shape", SHAPES, ids=["1x28x28", "3x32x32"])
@pytest.mark.parametrize("name", [n for n in MODELS if n != "vgg11"])
def test_every_model_maps_images_to_logits(name, shape):
    torch.manual_seed(0)
    model = make_model(name, num_classes=CLASSES, in_channels=shape[0]).eval()
    with torch.no_grad():
        out = model(torch.randn(2, *shape))
        feats = model.features(torch.randn(2, *shape))
    assert out.shape == (2, CLASSES) and torch.isfinite(out).all()
    assert feats.shape == (2, model.linear.in_features)
    assert isinstance(model.linear, nn.Linear) and model.linear.out_features == CLASSES
    assert all(model.get_submodule(g) is not None for g in model.layer_groups) and model.layer_groups[-1] == "linear"


@pytest.mark.parametrize("side", [28, 32])
def test_vgg11_maps_both_sizes_to_logits(vgg11, side):
    """Four max-pools remain: 28 → 1 and 32 → 2 pixels, both pooled to a 512-d vector."""
    with torch.no_grad():
        out = vgg11(torch.randn(2, 3, side, side))
    assert out.shape == (2, CLASSES) and torch.isfinite(out).all()


def test_make_model_rejects_an_unknown_name():
    with pytest.raises(ValueError, match="'model'.*'lenet'"):
        make_model("lenet", num_classes=10, in_channels=1)


def test_compact_widths_option():
    model = make_model("compact", num_classes=3, in_channels=1, widths=(4, 8, 12))
    assert model.linear.in_features == 12 and model.layer1.conv.out_channels == 4


def test_last_layers_of_resnet18():
    model = ResNet18(num_classes=10)
    got = last_layers(model, 3)
    assert len(got) == 3
    assert got[0] is model.layer3 and got[1] is model.layer4 and got[2] is model.linear
    assert last_layers(model, 7)[0] is model.conv1
    for k in (0, 8):
        with pytest.raises(ValueError, match="'k'"):
            last_layers(model, k)


def test_split_backbone_head_recomposes_the_model():
    torch.manual_seed(0)
    for model in (CompactResNet(5, 1, widths=(4, 8, 16)), ResNet18(5, 1, width=8)):
        model.eval()
        backbone, head = split_backbone_head(model)
        x = torch.randn(3, 1, 28, 28)
        with torch.no_grad():
            feats = backbone(x)
            assert feats.shape == (3, head.in_features)
            torch.testing.assert_close(head(feats), model(x))
        assert head is model.linear


def test_channel_activations_mean_pooling_is_the_spatial_mean_of_conv_outputs():
    torch.manual_seed(0)
    model = CompactResNet(4, 1, widths=(4, 8, 16))
    model(torch.randn(8, 1, 28, 28))  # train-mode pass: BN running stats leave (0, 1)
    model.train()
    x = torch.randn(5, 1, 28, 28)
    acts = channel_activations(model, x, ["layer1.conv", "layer2.conv", "layer3.res.0"], pooling="mean")
    maxed = channel_activations(model, x, ["layer1.conv"])
    assert set(acts) == {"layer1.conv", "layer2.conv", "layer3.res.0"}
    assert model.training, "the model's mode must be restored"
    model.eval()
    with torch.no_grad():
        h1 = model.layer1(x)
        torch.testing.assert_close(acts["layer1.conv"], model.layer1.conv(x).mean(dim=(2, 3)))
        torch.testing.assert_close(maxed["layer1.conv"], model.layer1.conv(x).amax(dim=(2, 3)))  # the default: global max
        torch.testing.assert_close(acts["layer2.conv"], model.layer2.conv(h1).mean(dim=(2, 3)))
        s3 = torch.relu(model.layer3.bn(torch.max_pool2d(model.layer3.conv(model.layer2(h1)), 2)))
        torch.testing.assert_close(acts["layer3.res.0"], model.layer3.res[0](s3).mean(dim=(2, 3)))
    assert acts["layer1.conv"].shape == (5, 4) and acts["layer2.conv"].shape == (5, 8)


def test_channel_activations_default_to_the_models_channel_layers_and_remove_their_hooks():
    model = CompactResNet(4, 1, widths=(4, 8, 16))
    convs = conv_layers(model)
    assert [n for n, _ in convs][:2] == ["layer1.conv", "layer1.res.0"]
    before = [len(m._forward_hooks) for _, m in convs]
    acts = channel_activations(model, torch.randn(70, 1, 28, 28), batch_size=32)  # three batches
    assert list(acts) == ["layer2.conv", "layer2.res.0", "layer3.conv", "layer3.res.0"]
    assert all(acts[n].shape == (70, 8 if n.startswith("layer2") else 16) for n in acts)
    assert [len(m._forward_hooks) for _, m in convs] == before == [0] * len(convs)


def test_resnet18_channel_layers_are_the_authors_fifteen():
    from asdkit.models import ResNet18, channel_layers

    model = ResNet18(10, 3, width=8)
    names = channel_layers(model)
    assert len(names) == 15 and names[:5] == ("layer2.0.conv1", "layer2.0.shortcut", "layer2.0.conv2", "layer2.1.conv1", "layer2.1.conv2")
    acts = channel_activations(model, torch.randn(3, 3, 32, 32))
    assert [a.shape[1] for a in acts.values()] == [16] * 5 + [32] * 5 + [64] * 5


def test_channel_activations_reject_unknown_layers_and_clean_up_after_errors():
    model = CompactResNet(4, 1, widths=(4, 8, 16))
    with pytest.raises(ValueError, match="nope"):
        channel_activations(model, torch.randn(2, 1, 28, 28), ["nope"])
    with pytest.raises(RuntimeError):  # 3 channels into a 1-channel model
        channel_activations(model, torch.randn(2, 3, 28, 28), ["layer1.conv"])
    assert len(model.layer1.conv._forward_hooks) == 0


def test_channel_activations_restore_training_mode_after_an_error():
    """A failed forward pass must not leave the caller's model switched to eval mode."""
    model = CompactResNet(4, 1, widths=(4, 8, 16))
    model.train()
    with pytest.raises(RuntimeError):
        channel_activations(model, torch.randn(2, 3, 28, 28), ["layer1.conv"])
    assert model.training


@pytest.mark.parametrize("name", ["mobilenet_v2", "densenet121"])
def test_torchvision_models_have_enough_layer_groups_for_the_meta_split(name):
    """002 Table 18 runs ASD's meta-split (last 3 layers) on VGG-11, MobileNetV2 and DenseNet-121."""
    from asdkit.models import last_layers, make_model

    model = make_model(name, num_classes=CLASSES, in_channels=3)
    layers = last_layers(model, 3)
    assert layers[-1] is model.linear
    assert all(any(True for _ in m.parameters()) for m in layers)
    assert len(model.layer_groups) > 3
