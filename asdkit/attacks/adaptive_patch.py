"""Adaptive-patch ("A-Patch" in 003): Qi et al. (ICLR 2023)'s attack on latent separability, k patches, conservatism."""
from __future__ import annotations

import torch

from ..options import Option, integer, real
from ._common import ShapedAttack, bad_param, check_patch_size, check_shape, is_int, is_real, or_none, to_uint8


def _is_alphas(value: object) -> bool:
    return value is None or (isinstance(value, (tuple, list)) and all(is_real(a) and 0 < a <= 1 for a in value))


class AdaptivePatch(ShapedAttack):
    """k patch triggers: each training poison carries one of them, faintly; the test trigger is all k at full strength.

    The poisoned samples (relabelled) are split into k equal groups in poisoning order, group j
    stamped with patch j at opacity ``alphas[j]``: x + α_j · (p_j − x) on the patch's pixels.
    *Conservatism*: ``cover_ratio`` × as many other samples get the same treatment and keep
    their labels (the noise / cover samples of :func:`asdkit.attacks.poison`), so a trigger
    piece alone does not flip a label and the poisoned samples sit close to the clean ones in
    latent space. At test every patch is stamped at ``test_alpha`` (the full trigger). The
    patches are seeded random black-and-white patterns at seeded, non-overlapping positions
    (the authors' toolbox uses four logo images; their opacities are the defaults here).

    Parameters
    ----------
    shape : tuple of int
        ``(C, H, W)`` of the images.
    k : int, default=4
        Number of patches, >= 1, as many as fit the image without overlap.
    size : int or None, default=None
        Side of each patch; default min(H, W) / 8, at least 3.
    alphas : sequence of float or None, default=None
        The k training opacities in (0, 1]; default (0.5, 0.2, 0.5, 0.3) (the toolbox's) for k = 4, else 0.5 each.
    test_alpha : float, default=1.0
        Opacity of every patch at test, in (0, 1].
    cover_ratio : float, default=2.0
        Cover samples per poisoned sample (the toolbox: cover rate 0.006 for poison rate 0.003), >= 0.
    seed : int, default=0
        Seed of the patterns and their positions.
    """

    name = "adaptive-patch"
    options = (
        integer("k", 4, low=1, doc="number of patches, as many as fit the image without overlap"),
        or_none(integer("size", None, low=1, doc="side of each patch, at most min(H, W); None: min(H, W) / 8, at least 3")),
        Option("alphas", None, _is_alphas, "None or k floats in (0, 1]",
               "the k training opacities; None: (0.5, 0.2, 0.5, 0.3) for k = 4 (the toolbox's), else 0.5 each"),
        real("test_alpha", 1.0, low=0, high=1, closed="right", doc="opacity of every patch at test"),
        real("cover_ratio", 2.0, low=0, doc="cover samples per poisoned sample (the toolbox: cover rate 0.006 for poison rate 0.003)"),
    )

    def __init__(self, shape, *, k=4, size=None, alphas=None, test_alpha=1.0, cover_ratio=2.0, seed=0):
        self.shape = check_shape(shape, "AdaptivePatch")
        c, h, w = self.shape
        self.size = check_patch_size(max(3, round(min(h, w) / 8)) if size is None else size, self.shape, "AdaptivePatch")
        slots = [(r, col) for r in range(0, h - self.size + 1, self.size) for col in range(0, w - self.size + 1, self.size)]
        if not (is_int(k) and 1 <= k <= len(slots)):
            raise bad_param("k", "AdaptivePatch", f"an int in the range [1, {len(slots)}] ({self.size}-pixel patches in {h}×{w} images)", k)
        self.k = int(k)
        if alphas is None:
            alphas = (0.5, 0.2, 0.5, 0.3) if self.k == 4 else (0.5,) * self.k
        if not (isinstance(alphas, (tuple, list)) and len(alphas) == self.k and all(is_real(a) and 0 < a <= 1 for a in alphas)):
            raise bad_param("alphas", "AdaptivePatch", f"None or {self.k} floats in the range (0, 1]", alphas)
        if not (is_real(test_alpha) and 0 < test_alpha <= 1):
            raise bad_param("test_alpha", "AdaptivePatch", "a float in the range (0, 1]", test_alpha)
        if not (is_real(cover_ratio) and cover_ratio >= 0):
            raise bad_param("cover_ratio", "AdaptivePatch", "a float >= 0", cover_ratio)
        self.alphas, self.test_alpha, self.cover_ratio, self.seed = tuple(float(a) for a in alphas), float(test_alpha), float(cover_ratio), int(seed)
        g = torch.Generator().manual_seed(int(seed))
        picked = torch.randperm(len(slots), generator=g)[: self.k]
        self.positions = [slots[int(i)] for i in picked]
        self.patterns = torch.randint(0, 2, (self.k, c, self.size, self.size), generator=g).float() * 255

    def _stamp(self, x: torch.Tensor, j: int, alpha: float) -> torch.Tensor:
        r, c = self.positions[j]
        s = self.size
        out = x.float()
        region = out[:, :, r : r + s, c : c + s]
        out[:, :, r : r + s, c : c + s] = region + alpha * (self.patterns[j] - region)
        return to_uint8(out)

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        """The test trigger: every patch at ``test_alpha``."""
        for j in range(self.k):
            x = self._stamp(x, j, self.test_alpha)
        return x

    def _pieces(self, x: torch.Tensor) -> torch.Tensor:
        """Group j of k (in order) gets patch j at its training opacity (the toolbox's split)."""
        out, n = x.clone(), len(x)
        group = (torch.arange(n) * self.k) // max(n, 1)
        for j in range(self.k):
            rows = (group == j).nonzero().flatten()
            if len(rows):
                out[rows] = self._stamp(x[rows], j, self.alphas[j])
        return out

    def train_trigger(self, x: torch.Tensor, *, generator: torch.Generator) -> torch.Tensor:
        self.check_images(x)
        return self._pieces(x)

    def default_noise_rate(self, rate: float) -> float:
        return self.cover_ratio * rate

    def noise(self, x: torch.Tensor, *, generator: torch.Generator) -> torch.Tensor:
        """Conservatism: cover samples carry a trigger piece as the poisoned ones do, and keep their labels."""
        return self._pieces(x)

    def describe(self) -> str:
        return (f"adaptive-patch: {self.k} {self.size}×{self.size} patches, training opacities {list(self.alphas)} (one a sample), "
                f"all at {self.test_alpha:g} at test, {self.cover_ratio:g} cover samples a poisoned one")
