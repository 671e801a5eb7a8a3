"""CLB: the label-consistent backdoor (Turner, Tsipras & Madry, 2019), as set up in 002 appendix B.2."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..options import choice, integer, real
from ._common import ShapedAttack, bad_param, check_shape, is_int, is_real, or_none
from .badnets import BadNets


class CLB(ShapedAttack):
    """Label-consistent backdoor: target-class images made hard by PGD on a clean model, then stamped; labels kept.

    Building the poison (:meth:`perturb`) runs ``steps`` steps of PGD of size ``step`` that
    *raise* a clean model's cross-entropy on each image's own (target) label, inside the ℓ∞
    ball of radius ``epsilon`` around it (002 B.2: 16, 1.5 and 30, in pixel units of 255),
    so the model must lean on the trigger to fit them. The trigger is BadNets' square
    (``corners=4``: one in every corner, Turner et al.'s variant); :meth:`apply`, the test-time
    trigger, stamps only the square.

    Parameters
    ----------
    shape : tuple of int
        ``(C, H, W)`` of the images.
    epsilon : float, default=16
        Radius of the ℓ∞ ball in pixel units, in ``(0, 255]`` (002 appendix H also uses 32).
    step : float, default=1.5
        PGD step in pixel units, > 0.
    steps : int, default=30
        PGD steps, >= 0 (0: the trigger alone on the clean images).
    corners : {1, 4}, default=1
        The square in the upper-left corner only, or in all four.
    size : int or None, default=None
        Side of the square (BadNets' default for the image size when None).
    """

    name = "clb"
    clean_label = True
    prepared = "surrogate"  # the PGD images are built against the clean twin (asdkit.prepared)
    options = (
        real("epsilon", 16, low=0, high=255, closed="right", doc="radius of the PGD ℓ∞ ball in pixel units (002 B.2: 16; appendix H also 32)"),
        real("step", 1.5, low=0, closed="neither", doc="PGD step in pixel units (002 B.2: 1.5)"),
        integer("steps", 30, low=0, doc="PGD steps (002 B.2: 30; 0: the trigger alone on the clean images)"),
        choice("corners", 1, (1, 4), doc="the square in the upper-left corner only, or in all four (Turner et al.'s variant)"),
        or_none(integer("size", None, low=1, doc="side of the square, at most min(H, W); None: BadNets' default for the image size")),
    )

    def __init__(self, shape, *, epsilon=16, step=1.5, steps=30, corners=1, size=None):
        self.shape = check_shape(shape, "CLB")
        if not (is_real(epsilon) and 0 < epsilon <= 255):
            raise bad_param("epsilon", "CLB", "a float in the range (0, 255] (pixel units)", epsilon)
        if not (is_real(step) and step > 0):
            raise bad_param("step", "CLB", "a float > 0 (pixel units)", step)
        if not (is_int(steps) and steps >= 0):
            raise bad_param("steps", "CLB", "an int >= 0", steps)
        if corners not in (1, 4):
            raise bad_param("corners", "CLB", "1 or 4", corners)
        self.epsilon, self.step, self.steps, self.corners = float(epsilon), float(step), int(steps), int(corners)
        locations = ("upper-left",) if corners == 1 else ("upper-left", "upper-right", "lower-left", "lower-right")
        self.squares = [BadNets(self.shape, size=size, location=loc) for loc in locations]

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        for square in self.squares:
            x = square.apply(x)
        return x

    def perturb(self, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, *, normalize, batch_size: int = 256,
                progress=None) -> torch.Tensor:
        """The PGD images (uint8, within ``epsilon`` of ``x`` in every pixel) that raise ``model``'s CE on labels ``y``, before the trigger."""
        self.check_images(x)
        model.eval()
        out = []
        for i in range(0, len(x), batch_size):
            x0 = x[i : i + batch_size].float()  # pixel units, as the normaliser takes them
            target = y[i : i + batch_size].to(x0.device)
            low, high = (x0 - self.epsilon).clamp(min=0), (x0 + self.epsilon).clamp(max=255)
            adv = x0.clone()
            for _ in range(self.steps):
                adv.requires_grad_(True)
                loss = F.cross_entropy(model(normalize(adv)), target)
                (grad,) = torch.autograd.grad(loss, adv)
                adv = torch.maximum(torch.minimum(adv.detach() + self.step * grad.sign(), high), low)
            # whole pixels, still inside the ball: round, then clip to the ball's integer bounds
            out.append(torch.maximum(torch.minimum(adv.round(), high.floor()), low.ceil()).to(torch.uint8))
            if progress is not None:
                progress(len(out[-1]))
        return torch.cat(out) if out else x.clone()

    # -- the prepared poison: the target class's PGD images -------------------------------------
    @classmethod
    def needs_build(cls, rate: float) -> bool:
        return rate > 0  # the test trigger is the square alone

    def build_size(self, inputs) -> int:
        return int((inputs.data.y == inputs.target).sum())

    def build(self, inputs) -> dict:
        """The PGD images of every target-class training image (002 B.2), and their indices."""
        index = (inputs.data.y == inputs.target).nonzero().flatten()
        x = inputs.data.x[index].to(inputs.device)
        images = self.perturb(inputs.surrogate, x, inputs.data.y[index].to(inputs.device), normalize=inputs.normalize,
                              progress=inputs.progress).cpu()
        return {"x": images, "index": index, "target": torch.tensor(inputs.target)}

    def load_state(self, state: dict, data) -> torch.Tensor:
        """``data.x`` with its target-class images replaced by the built PGD images (the source :func:`poison` stamps)."""
        x, index = state["x"], state["index"]
        expected = (data.y == int(state["target"])).nonzero().flatten()
        if not (isinstance(x, torch.Tensor) and x.dtype == torch.uint8 and tuple(x.shape) == (len(expected), *data.x.shape[1:])
                and isinstance(index, torch.Tensor) and torch.equal(index, expected)):
            raise ValueError("its images do not match this training set's target class")
        source = data.x.clone()
        source[index] = x
        return source

    def describe(self) -> str:
        where = "upper-left corner" if self.corners == 1 else "four corners"
        return f"CLB: PGD ε {self.epsilon:g}/255, step {self.step:g}, {self.steps} steps, then a {self.squares[0].size}×{self.squares[0].size} square in the {where}"
