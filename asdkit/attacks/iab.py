"""IAB: the input-aware dynamic backdoor (Nguyen & Tran, NeurIPS 2020), used as 002 B.2 does: generator trained, poison made in advance."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..engine import JointOptimizer, Terms, augment, stream, train_steps
from ..options import integer, real
from ._common import ShapedAttack, bad_param, check_shape, is_int, is_real, scale_defaults, to_uint8

EPSILON = 1e-7  # the original's, in the diversity ratio and the squashing


class PatternNet(nn.Module):
    """The original's encoder-decoder (conv-BN-ReLU blocks, max-pool down, bilinear up): a pattern (``out = C``) or a mask (``out = 1``)."""

    def __init__(self, channels: int, out: int, *, steps: int, width: int) -> None:
        super().__init__()

        def block(cin: int, cout: int, relu: bool = True) -> nn.Sequential:
            layers = [nn.Conv2d(cin, cout, 3, 1, 1), nn.BatchNorm2d(cout, momentum=0.05)]
            return nn.Sequential(*layers, nn.ReLU(inplace=True)) if relu else nn.Sequential(*layers)

        self.down, c = nn.ModuleList(), channels
        for i in range(steps):
            w = width * 2**i
            self.down.append(nn.Sequential(block(c, w), block(w, w)))
            c = w
        self.middle = block(c, c)
        self.up = nn.ModuleList()
        for i in range(steps):
            last = i == steps - 1
            nxt = out if last else c // 2
            self.up.append(nn.Sequential(block(c, c), block(c, nxt, relu=not last)))
            c = nxt

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of the pattern or mask, at the input's size."""
        sizes = []
        for layer in self.down:
            sizes.append(x.shape[-2:])
            x = F.max_pool2d(layer(x), 2)
        x = self.middle(x)
        for layer, size in zip(self.up, reversed(sizes)):
            x = layer(F.interpolate(x, size=size, mode="bilinear", align_corners=False))
        return x


def squash(logits: torch.Tensor) -> torch.Tensor:
    """The generator's output in [0, 1]: tanh(x) / (2 + ε) + 0.5."""
    return torch.tanh(logits) / (2 + EPSILON) + 0.5


def threshold(logits: torch.Tensor) -> torch.Tensor:
    """The mask network's output, squashed then made near-binary: tanh(20 s − 10) / (2 + ε) + 0.5 with s = squash(x)."""
    return torch.tanh(squash(logits) * 20 - 10) / (2 + EPSILON) + 0.5


def diversity(x1: torch.Tensor, x2: torch.Tensor, out1: torch.Tensor, out2: torch.Tensor) -> torch.Tensor:
    """The diversity loss: mean of ‖x1 − x2‖ / ‖g(x1) − g(x2)‖ (root-mean-square distances), small when distinct inputs get distinct outputs."""
    def rms(a, b):
        return (a - b).pow(2).mean(dim=(1, 2, 3)).sqrt()

    return (rms(x1, x2) / (rms(out1, out2) + EPSILON)).mean()


class IAB(ShapedAttack):
    """Input-aware dynamic backdoor: a generator G and a mask network M give each image its own trigger, x + M(x)·(G(x) − x).

    Built as in the original (Nguyen & Tran, 2020): M is first trained alone for
    ``mask_epochs`` (mask density loss with λ_norm, diversity loss with λ_div); then G and a
    classifier of the victim's architecture are trained together for ``epochs``, each batch
    holding ``p_attack`` backdoor samples (relabelled), ``p_cross`` cross-trigger samples
    (another image's trigger, label kept) and clean ones, with G's diversity loss. The trained G
    and M then poison the training set in advance (002 B.2's poisoning threat model); the
    cross-trigger samples of the poisoned set (``cross_ratio`` × the poisoned count) are its
    noise (cover) samples. The original's optimisers: classifier SGD 0.01 (momentum 0.9, weight
    decay 5e-4), G and M Adam 0.01 (β 0.5, 0.9), each decayed ×0.1 at its milestones.

    Parameters
    ----------
    shape : tuple of int
        ``(C, H, W)`` of the images.
    epochs : int, default=600
        Joint epochs of G and the classifier (the original's ``n_iters``); >= 1.
    mask_epochs : int, default=25
        Epochs of M alone; >= 1.
    images : int, default=0
        Training images G and M are trained on (a random subset drawn with ``seed``); 0 = all.
    p_attack, p_cross : float, default=0.1
        Shares of each training batch made backdoor and cross-trigger samples, in (0, 0.5).
    cross_ratio : float, default=1.0
        Cross-trigger samples in the poisoned set per poisoned sample (the original's
        p_cross / p_attack), >= 0.
    mask_density : float, default=0.032
        The mask's target density (share of pixels), in (0, 1).
    lambda_div, lambda_norm : float, default=1, 100
        Weights of the diversity and the mask-density losses, >= 0.
    seed : int, default=0
        Seed of the build's streams (initialisation, batches, augmentation) and the cross pairs.
    """

    name = "iab"
    prepared = "own"
    # classroom: G and M on 10,000 of the 60,000 images, 2 + 26 joint epochs: no defense then reaches ASR 91.9 % (ACC 91.3 %,
    # seed 0), the build 384 s on a 2-core AMD EPYC alone; 18 joint epochs gave 89.3 % (151 s on a faster 2-core Xeon),
    # 6 gave 87.1 %. A mask epoch on all 60,000 images would take ~3 min alone
    options = (
        integer("epochs", 600, low=1, scales={"smoke": 2, "classroom": 26}, doc="joint epochs of G and the classifier (the original's n_iters)"),
        integer("mask_epochs", 25, low=1, scales={"smoke": 1, "classroom": 2}, doc="epochs of the mask network M alone"),
        integer("images", 0, low=0, scales={"classroom": 10_000}, doc="training images G and M are trained on, a random subset (0: all)"),
        real("p_attack", 0.1, low=0, high=0.5, closed="neither", doc="share of each training batch made backdoor samples"),
        real("p_cross", 0.1, low=0, high=0.5, closed="neither", doc="share of each training batch made cross-trigger samples"),
        real("cross_ratio", 1.0, low=0, doc="cross-trigger (cover) samples of the poisoned set per poisoned sample"),
        real("mask_density", 0.032, low=0, high=1, closed="neither", doc="the mask's target density (share of pixels)"),
        real("lambda_div", 1.0, low=0, doc="weight λ_div of the diversity loss"),
        real("lambda_norm", 100.0, low=0, doc="weight λ_norm of the mask-density loss"),
    )
    scales = scale_defaults(options)

    def __init__(self, shape, *, epochs=600, mask_epochs=25, images=0, p_attack=0.1, p_cross=0.1, cross_ratio=1.0,
                 mask_density=0.032, lambda_div=1.0, lambda_norm=100.0, seed=0):
        self.shape = check_shape(shape, "IAB")
        if not (is_int(images) and images >= 0):
            raise bad_param("images", "IAB", "an int >= 0 (0 = the whole training set)", images)
        self.images = int(images)
        for name, value in (("epochs", epochs), ("mask_epochs", mask_epochs)):
            if not (is_int(value) and value >= 1):
                raise bad_param(name, "IAB", "an int >= 1", value)
        for name, value in (("p_attack", p_attack), ("p_cross", p_cross)):
            if not (is_real(value) and 0 < value < 0.5):
                raise bad_param(name, "IAB", "a float in the range (0, 0.5)", value)
        if not (is_real(mask_density) and 0 < mask_density < 1):
            raise bad_param("mask_density", "IAB", "a float in the range (0, 1)", mask_density)
        for name, value in (("cross_ratio", cross_ratio), ("lambda_div", lambda_div), ("lambda_norm", lambda_norm)):
            if not (is_real(value) and value >= 0):
                raise bad_param(name, "IAB", "a float >= 0", value)
        self.epochs, self.mask_epochs, self.seed = int(epochs), int(mask_epochs), int(seed)
        self.p_attack, self.p_cross, self.cross_ratio = float(p_attack), float(p_cross), float(cross_ratio)
        self.mask_density, self.lambda_div, self.lambda_norm = float(mask_density), float(lambda_div), float(lambda_norm)
        c, h, w = self.shape
        steps = 2 if min(h, w) < 32 else 3  # the original: MNIST 16 × 2 steps, CIFAR-10 / GTSRB 32 × 3
        self._nets = dict(steps=steps, width=16 if steps == 2 else 32)
        self.generator = self.mask = None

    def _new_nets(self) -> tuple[PatternNet, PatternNet]:
        c = self.shape[0]
        return PatternNet(c, c, **self._nets), PatternNet(c, 1, **self._nets)

    # -- the trigger -----------------------------------------------------------------------------
    def _require(self) -> None:
        if self.generator is None:
            raise RuntimeError("IAB has no trained generator yet: asdkit.run builds it (asdkit.prepared.prepare_attack), "
                               "or call load_state with a built state.")

    def blend(self, x: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
        """x + M(s)·(G(s) − x) on [0, 1] floats: ``source`` s's trigger on images ``x`` (s = x: the backdoor; another image: cross)."""
        return x + (squash(self.generator(source)) - x) * threshold(self.mask(source))

    @torch.no_grad()
    def _stamp(self, x: torch.Tensor, source: torch.Tensor, batch: int = 512) -> torch.Tensor:
        self._require()
        out = []
        for i in range(0, len(x), batch):
            a, s = x[i : i + batch].float() / 255, source[i : i + batch].float() / 255
            out.append(to_uint8(self.blend(a, s) * 255))
        return torch.cat(out) if out else x.clone()

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        return self._stamp(x, x)

    def default_noise_rate(self, rate: float) -> float:
        return self.cross_ratio * rate

    def noise(self, x: torch.Tensor, *, generator: torch.Generator) -> torch.Tensor:
        """Cross-trigger samples: each image gets the trigger of another image of the batch (labels kept)."""
        if len(x) < 2:
            return x.clone()
        order = torch.randperm(len(x), generator=generator)
        partner = torch.empty_like(order)
        partner[order] = order.roll(1)  # a derangement: never an image's own trigger
        return self._stamp(x, x[partner])

    # -- building: the original's two training stages ----------------------------------------------
    def build_size(self, inputs) -> int:
        return self.mask_epochs + self.epochs

    def build(self, inputs) -> dict:
        """Train M (density + diversity), then G with a fresh classifier (CE + diversity); return G and M (CPU state dicts)."""
        dev, data = inputs.device, inputs.data
        torch.manual_seed(stream(self.seed, "iab", "init").initial_seed() % 2**31)
        generator, mask = (net.to(dev, memory_format=torch.channels_last) for net in self._new_nets())  # ~1.7× faster on CPU
        classifier = inputs.new_model()
        opt_m = torch.optim.Adam(mask.parameters(), 0.01, betas=(0.5, 0.9))
        sched_m = torch.optim.lr_scheduler.MultiStepLR(opt_m, _milestones(self.mask_epochs, (10 / 25, 20 / 25)), 0.1)
        opt_g = torch.optim.Adam(generator.parameters(), 0.01, betas=(0.5, 0.9))
        sched_g = torch.optim.lr_scheduler.MultiStepLR(opt_g, _milestones(self.epochs, (2 / 6, 3 / 6, 4 / 6, 5 / 6)), 0.1)
        opt_c = torch.optim.SGD(classifier.parameters(), 0.01, momentum=0.9, weight_decay=5e-4)
        sched_c = torch.optim.lr_scheduler.MultiStepLR(opt_c, _milestones(self.epochs, (1 / 6, 2 / 6, 3 / 6, 4 / 6)), 0.1)

        pool = torch.arange(len(data))
        if 0 < self.images < len(data):
            pool = pool[torch.randperm(len(data), generator=stream(self.seed, "iab", "images"))[: self.images]]

        def pairs(stage: str, epoch: int):
            g = stream(self.seed, "iab", stage, epoch)
            n, bs = len(pool), inputs.batch_size
            first, second = pool[torch.randperm(n, generator=g)], pool[torch.randperm(n, generator=g)]
            for i in range(0, n - bs + 1, bs):  # full batches, as the original's loaders deliver
                a, b = first[i : i + bs], second[i : i + bs]
                xa = augment(data.x[a], pad=inputs.pad, flip=data.hflip, generator=g)
                xb = augment(data.x[b], pad=inputs.pad, flip=data.hflip, generator=g)
                yield _last(xa.to(dev).float() / 255), data.y[a].to(dev), _last(xb.to(dev).float() / 255)

        def mask_objective(net, batch) -> Terms:
            x1, _, x2 = batch
            m1, m2 = threshold(net(x1)), threshold(net(x2))
            loss = self.lambda_norm * F.relu(m1 - self.mask_density).mean() + self.lambda_div * diversity(x1, x2, m1, m2)
            return Terms(loss.reshape(1), 1.0)

        for epoch in range(self.mask_epochs):
            train_steps(mask, pairs("mask", epoch), mask_objective, opt_m)
            sched_m.step()
            inputs.progress(1)
        mask.eval().requires_grad_(False)

        def joint_objective(nets, batch) -> Terms:
            x1, y1, x2 = batch
            nb, nc = int(self.p_attack * len(x1)), int(self.p_cross * len(x1))
            p1 = squash(nets["generator"](x1[:nb]))
            backdoor = x1[:nb] + (p1 - x1[:nb]) * threshold(mask(x1[:nb]))
            p2 = squash(nets["generator"](x2[nb : nb + nc]))
            cross = x1[nb : nb + nc] + (p2 - x1[nb : nb + nc]) * threshold(mask(x2[nb : nb + nc]))
            batch_x = torch.cat([backdoor, cross, x1[nb + nc :]])
            labels = torch.cat([inputs.relabel(y1[:nb]), y1[nb:]])
            loss = F.cross_entropy(nets["classifier"](inputs.normalize(batch_x * 255)), labels)
            k = min(nb, nc)
            if k and self.lambda_div:
                loss = loss + self.lambda_div * diversity(x1[:k], x2[nb : nb + k], p1[:k], p2[:k])
            return Terms(loss.reshape(1), 1.0)

        nets, both = nn.ModuleDict({"classifier": classifier, "generator": generator}), JointOptimizer(opt_c, opt_g)
        for epoch in range(self.epochs):
            train_steps(nets, pairs("joint", epoch), joint_objective, both)
            sched_c.step()
            sched_g.step()
            inputs.progress(1)
        return {"generator": {k: v.cpu() for k, v in generator.state_dict().items()},
                "mask": {k: v.cpu() for k, v in mask.state_dict().items()}}

    def load_state(self, state: dict, data=None) -> None:
        generator, mask = self._new_nets()
        generator.load_state_dict(state["generator"])
        mask.load_state_dict(state["mask"])
        self.generator, self.mask = generator.eval().requires_grad_(False), mask.eval().requires_grad_(False)
        return None

    def describe(self) -> str:
        on = f"{self.images} images" if self.images else "all images"
        return (f"IAB: generator + mask network on {on} ({self.mask_epochs} mask epochs, {self.epochs} joint epochs, density "
                f"{self.mask_density:g}), cross-trigger samples {self.cross_ratio:g} × the poisoned")


def _last(x: torch.Tensor) -> torch.Tensor:
    return x.contiguous(memory_format=torch.channels_last)


def _milestones(epochs: int, fractions: tuple[float, ...]) -> list[int]:
    """The original's milestones as fractions of its schedule, at ``epochs`` (repeats dropped, each >= 1)."""
    return sorted({max(1, round(f * epochs)) for f in fractions if round(f * epochs) < epochs})
