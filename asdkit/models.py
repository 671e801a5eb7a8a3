"""Models of the papers and a compact CPU model, plus helpers that name their parts.

Every model here exposes the same three things, so defenses never hard-code layer names:

- ``model.features(x)`` — the backbone: images → pooled feature vectors (N × d);
- ``model.linear`` — the head: a single ``nn.Linear`` from features to logits;
- ``model.layer_groups`` — the ordered names of its top-level stages, input to output
  (ResNet-18: ``conv1, bn1, layer1, layer2, layer3, layer4, linear``), which is what
  "update the last k layers" (002 Section 5.1, meta-split) counts;
- ``model.meta_layers`` — how many of those groups are 002 B.3's "half of the feature
  extractor plus the linear layer" (ResNet-18: 3 = layer3, layer4, linear; the compact
  model: 2 = its last stage and the head; torchvision models: half their body groups + 1).
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .devices import forward_chunk

__all__ = [
    "MODELS",
    "make_model",
    "ResNet18",
    "CompactResNet",
    "last_layers",
    "train_only",
    "unfreeze",
    "meta_layers_default",
    "conv_layers",
    "channel_activations",
    "channel_layers",
    "split_backbone_head",
]


class BasicBlock(nn.Module):
    """The two-convolution residual block of ResNet-18 (He et al. 2016)."""

    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class _Classifier(nn.Module):
    """Shared ``forward = linear(features(x))`` and the ``layer_groups`` convention."""

    layer_groups: tuple[str, ...] = ()
    linear: nn.Linear

    def features(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - interface
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.features(x))


class ResNet18(_Classifier):
    """The CIFAR ResNet-18 used by all three papers: 3×3 stem, no max-pool, 512-d features."""

    layer_groups = ("conv1", "bn1", "layer1", "layer2", "layer3", "layer4", "linear")
    meta_layers = 3  # layer3, layer4 (half of the four residual stages) and the linear layer
    # PIPD's channel layers (the authors' hooks): every conv of layer2-layer4 and their shortcut branches (after BN)
    channel_layers = tuple(f"layer{k}.{b}.{part}" for k in (2, 3, 4) for b, parts in ((0, ("conv1", "shortcut", "conv2")), (1, ("conv1", "conv2")))
                           for part in parts)

    def __init__(self, num_classes: int = 10, in_channels: int = 3, width: int = 64) -> None:
        super().__init__()
        w = width
        self.conv1 = nn.Conv2d(in_channels, w, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(w)
        self.layer1 = nn.Sequential(BasicBlock(w, w), BasicBlock(w, w))
        self.layer2 = nn.Sequential(BasicBlock(w, 2 * w, 2), BasicBlock(2 * w, 2 * w))
        self.layer3 = nn.Sequential(BasicBlock(2 * w, 4 * w, 2), BasicBlock(4 * w, 4 * w))
        self.layer4 = nn.Sequential(BasicBlock(4 * w, 8 * w, 2), BasicBlock(8 * w, 8 * w))
        self.linear = nn.Linear(8 * w, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)


class _PoolStage(nn.Module):
    """conv-BN-ReLU, 2×2 max-pool, then one residual conv-BN-ReLU (airbench-style stage)."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, 1, 1, bias=False)
        self.bn = nn.BatchNorm2d(cout)
        self.res = nn.Sequential(nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn(F.max_pool2d(self.conv(x), 2)))
        return x + self.res(x)


class CompactResNet(_Classifier):
    """A small residual network that trains in minutes on a 2-core CPU at 28×28 and 32×32.

    Three stages of widths ``widths`` (default 32/64/128), each a convolution, a 2×2
    max-pool and one residual convolution; global average pooling and a linear head
    (0.29 M parameters). No full-resolution stem: on 2 CPU cores it costs as much as the
    rest of the network (measured: 53 s vs 38 s a 60k Fashion-MNIST epoch).
    """

    layer_groups = ("layer1", "layer2", "layer3", "linear")
    meta_layers = 2  # layer3 (the last of three stages: the nearest to half) and the linear layer
    # PIPD's channel layers: every conv but the first stage's, as ResNet-18 leaves out its stem and layer1
    channel_layers = ("layer2.conv", "layer2.res.0", "layer3.conv", "layer3.res.0")

    def __init__(self, num_classes: int = 10, in_channels: int = 1, widths: tuple[int, int, int] = (32, 64, 128)) -> None:
        super().__init__()
        w1, w2, w3 = widths
        self.layer1 = _PoolStage(in_channels, w1)
        self.layer2 = _PoolStage(w1, w2)
        self.layer3 = _PoolStage(w2, w3)
        self.linear = nn.Linear(w3, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer3(self.layer2(self.layer1(x)))
        return torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)


class TorchvisionClassifier(_Classifier):
    """A torchvision architecture adapted to small inputs (002 Table 18): stride-1 stem, new head."""

    def __init__(self, arch: str, num_classes: int, in_channels: int) -> None:
        super().__init__()
        import torchvision.models as tvm

        if arch == "vgg11":
            from torchvision.models.vgg import cfgs, make_layers

            body = make_layers(cfgs["A"], batch_norm=True)  # VGG-11's convolutions only: no 120 M-parameter classifier
            body[0] = nn.Conv2d(in_channels, 64, 3, 1, 1)
            self.body = body[:-1]  # drop the last max-pool: 32×32 inputs are already 2×2 there
            dim = 512
        elif arch == "mobilenet_v2":
            net = tvm.mobilenet_v2(weights=None)
            net.features[0][0] = nn.Conv2d(in_channels, 32, 3, 1, 1, bias=False)
            self.body = net.features
            dim = net.last_channel
        elif arch == "densenet121":
            net = tvm.densenet121(weights=None)
            net.features.conv0 = nn.Conv2d(in_channels, 64, 3, 1, 1, bias=False)
            net.features.pool0 = nn.Identity()
            self.body = net.features  # its final ReLU is applied in features()
            dim = net.classifier.in_features
        else:  # pragma: no cover - guarded by make_model
            raise ValueError(arch)
        self.linear = nn.Linear(dim, num_classes)
        self.relu_out = arch == "densenet121"
        # One group per child of the body that has weights (VGG: each conv and BN; MobileNetV2:
        # each inverted-residual block; DenseNet: each dense block and transition), then the head.
        self.layer_groups = tuple(f"body.{name}" for name, child in self.body.named_children()
                                  if any(True for _ in child.parameters())) + ("linear",)
        self.meta_layers = (len(self.layer_groups) - 1) // 2 + 1

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.body(x)
        if self.relu_out:
            x = F.relu(x)
        return torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)


MODELS: dict[str, Callable[..., _Classifier]] = {
    "compact": lambda num_classes, in_channels, **kw: CompactResNet(num_classes, in_channels, **kw),
    "resnet18": lambda num_classes, in_channels, **kw: ResNet18(num_classes, in_channels, **kw),
    "vgg11": lambda num_classes, in_channels: TorchvisionClassifier("vgg11", num_classes, in_channels),
    "mobilenet_v2": lambda num_classes, in_channels: TorchvisionClassifier("mobilenet_v2", num_classes, in_channels),
    "densenet121": lambda num_classes, in_channels: TorchvisionClassifier("densenet121", num_classes, in_channels),
}


def make_model(name: str, *, num_classes: int, in_channels: int, **options) -> _Classifier:
    """Build a model by name (``compact``, ``resnet18``, ``vgg11``, ``mobilenet_v2``, ``densenet121``)."""
    if name not in MODELS:
        raise ValueError(f"The 'model' parameter must be one of {sorted(MODELS)}. Got {name!r} instead.")
    return MODELS[name](num_classes, in_channels, **options)


def last_layers(model: nn.Module, k: int) -> list[nn.Module]:
    """The last ``k`` entries of ``model.layer_groups`` (meta-split's "last k layers", 002 Section 5.1)."""
    groups = getattr(model, "layer_groups", ())
    if not 1 <= k <= len(groups):
        raise ValueError(f"The 'k' parameter of last_layers must be in [1, {len(groups)}] for this model. Got {k} instead.")
    return [model.get_submodule(name) for name in groups[-k:]]


def meta_layers_default(model: nn.Module) -> int:
    """How many last layer groups 002 B.3's virtual model updates for ``model``: "half of the feature extractor plus the linear layer"."""
    return int(getattr(model, "meta_layers", max(1, len(getattr(model, "layer_groups", ())) // 2)))


def train_only(model: nn.Module, modules: list[nn.Module], *, norm_stats: str = "frozen") -> list[nn.Parameter]:
    """Freeze every parameter of ``model`` except those of ``modules``; return those.

    ``norm_stats="frozen"`` (the default) also keeps the frozen part's BatchNorm layers in
    eval mode while training (:func:`asdkit.engine.train_mode` honours it): they normalise
    with their running statistics and never update them, so the frozen part computes exactly
    what it computed before (DBD's linear head on a frozen backbone). ``"drift"`` leaves
    them in train mode, so their statistics move with the data (the ASD authors' virtual
    model, whose optimiser simply omits the frozen layers).
    """
    if norm_stats not in ("frozen", "drift"):
        raise ValueError(f"The 'norm_stats' parameter of train_only must be 'frozen' or 'drift'. Got {norm_stats!r} instead.")
    for p in model.parameters():
        p.requires_grad_(False)
    params = [p for m in modules for p in m.parameters()]
    for p in params:
        p.requires_grad_(True)
    inside = {id(sub) for m in modules for sub in m.modules()}
    model.frozen_norms = tuple(m for m in model.modules() if isinstance(m, nn.modules.batchnorm._NormBase) and id(m) not in inside) \
        if norm_stats == "frozen" else ()
    return params


def unfreeze(model: nn.Module) -> list[nn.Parameter]:
    """Undo :func:`train_only`: every parameter trains, every BatchNorm layer follows the model's mode."""
    for p in model.parameters():
        p.requires_grad_(True)
    model.frozen_norms = ()
    return list(model.parameters())


def split_backbone_head(model: nn.Module) -> tuple[Callable[[torch.Tensor], torch.Tensor], nn.Linear]:
    """(backbone, head): ``model.features`` and ``model.linear`` (DBD's decoupling, 004 Section 3)."""
    return model.features, model.linear


def conv_layers(model: nn.Module) -> list[tuple[str, nn.Conv2d]]:
    """Every ``nn.Conv2d`` of the model with its qualified name, in forward-definition order."""
    return [(name, m) for name, m in model.named_modules() if isinstance(m, nn.Conv2d)]


def channel_layers(model: nn.Module) -> tuple[str, ...]:
    """The layers whose channels PIPD compares (003 Section 3.2): ``model.channel_layers``, else every conv layer."""
    return tuple(getattr(model, "channel_layers", ())) or tuple(name for name, _ in conv_layers(model))


@torch.no_grad()
def channel_activations(model: nn.Module, x: torch.Tensor, layers: list[str] | tuple[str, ...] | None = None, *,
                        pooling: str = "max", normalize=None, batch_size: int = 1024) -> dict[str, torch.Tensor]:
    """Per-sample, per-channel activations (N × C, float32, CPU) of the named layers, pooled over space.

    PIPD (003 Section 3.2) compares these per channel between a suspected-poisoned and a
    suspected-benign subset. ``pooling="max"`` is the global max of each channel, as the
    authors' code pools; ``"mean"`` the spatial mean. A conv layer gives its raw output (before
    BatchNorm and ReLU); a shortcut branch its output after its BatchNorm — the authors'
    hooks. ``layers`` defaults to :func:`channel_layers`. Eval mode, no autograd, batches of
    ``batch_size``; ``x`` is normalised by ``normalize`` (uint8 images) or already normalised.
    """
    if pooling not in ("max", "mean"):
        raise ValueError(f"The 'pooling' parameter of channel_activations must be 'max' or 'mean'. Got {pooling!r} instead.")
    names = list(channel_layers(model) if layers is None else layers)
    modules = dict(model.named_modules())
    unknown = [n for n in names if n not in modules]
    if unknown:
        raise ValueError(f"Unknown layer(s) {unknown}; this model's channel layers are {list(channel_layers(model))[:6]}...")
    chunks: dict[str, list[torch.Tensor]] = {n: [] for n in names}

    def pool(o: torch.Tensor) -> torch.Tensor:
        return (o.amax(dim=(2, 3)) if pooling == "max" else o.mean(dim=(2, 3))).float().cpu()

    hooks = [modules[n].register_forward_hook(lambda m, i, o, n=n: chunks[n].append(pool(o))) for n in names]
    was_training = model.training
    try:
        model.eval()
        step = forward_chunk(batch_size, x.device)
        for start in range(0, len(x), step):
            xb = x[start:start + step]
            model(normalize(xb) if normalize is not None else xb)
    finally:
        model.train(was_training)
        for h in hooks:
            h.remove()
    return {n: torch.cat(c) if c else torch.zeros(0) for n, c in chunks.items()}
