"""ASD's two adaptive attacks (002 Sec. 5.5, appendices K and L): a universal trigger optimised on the clean twin to slip past ASD."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..engine import stream
from ..options import integer, real
from ._common import ShapedAttack, bad_param, check_shape, is_int, is_real, scale_defaults, to_uint8


class ASDAdaptive(ShapedAttack):
    """A full-image additive trigger p, ‖p‖∞ ≤ ε, optimised by PGD (sign steps) on the clean twin; poison-label.

    ``grad`` (002 Eq. 11, appendix K): minimise ‖∇θ (1/N) Σ L(f(x + p), y_t)‖₂ − ‖∇θ (1/M) Σ L(f(x), y)‖₂,
    the gradient the poisoned samples give the trained model against the clean samples'
    (ASD splits by loss reduction, which the gradient sets). The clean term does not depend
    on p: it is measured once, on one clean batch, and reported with the gap. ``feat`` (002
    Eq. 12, appendix L): minimise ‖(1/N) Σ g(x + p) − (1/M) Σ_{y = y_t} g(x)‖₂, poisoned
    features pulled onto the target class's mean feature (g: the network's penultimate
    features). Each PGD iteration draws ``batch_size`` non-target training images (the
    samples to be poisoned).
    002: ε = 32/255, step 0.001 (of 1), 200 iterations.

    Parameters
    ----------
    shape : tuple of int
        ``(C, H, W)`` of the images.
    epsilon : float, default=32
        ℓ∞ radius of the trigger in pixel units, in (0, 255] (002 Table 21: 4, 8, 16, 32).
    step : float, default=0.255
        PGD step in pixel units (002's 0.001 of the unit range), > 0.
    iterations : int, default=200
        PGD iterations, >= 1.
    batch_size : int, default=128
        Images a PGD iteration reads, >= 1.
    seed : int, default=0
        Seed of the batches.
    """

    name = "asd-adaptive-grad"
    objective = "grad"
    prepared = "surrogate"
    build_version = 2  # 2: Eq. 11's clean term measured once (the PGD batches differ from version 1's)
    options = (
        real("epsilon", 32, low=0, high=255, closed="right", doc="ℓ∞ radius of the trigger in pixel units (002 Table 21: 4, 8, 16, 32)"),
        real("step", 0.255, low=0, closed="neither", doc="PGD step in pixel units (002 K, L: 0.001 of the unit range)"),
        integer("iterations", 200, low=1, scales={"smoke": 10, "classroom": 100}, doc="PGD iterations (002 K, L: 200)"),
        integer("batch_size", 128, low=1, doc="images a PGD iteration reads"),
    )
    scales = scale_defaults(options)

    def __init__(self, shape, *, epsilon=32, step=0.255, iterations=200, batch_size=128, seed=0):
        self.shape = check_shape(shape, type(self).__name__)
        if not (is_real(epsilon) and 0 < epsilon <= 255):
            raise bad_param("epsilon", type(self).__name__, "a float in the range (0, 255] (pixel units)", epsilon)
        if not (is_real(step) and step > 0):
            raise bad_param("step", type(self).__name__, "a float > 0 (pixel units)", step)
        for name, value in (("iterations", iterations), ("batch_size", batch_size)):
            if not (is_int(value) and value >= 1):
                raise bad_param(name, type(self).__name__, "an int >= 1", value)
        self.epsilon, self.step, self.iterations, self.batch_size, self.seed = float(epsilon), float(step), int(iterations), int(batch_size), int(seed)
        self.pattern: torch.Tensor | None = None

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        if self.pattern is None:
            raise RuntimeError(f"{self.name} has no optimised trigger yet: asdkit.run builds it against the clean twin "
                               "(asdkit.prepared.prepare_attack), or call load_state with a built state.")
        return to_uint8(x.float() + self.pattern)

    # -- the build: PGD on the trigger --------------------------------------------------------------
    def build_size(self, inputs) -> int:
        return self.iterations

    def _gradient_norm(self, model, x, y, normalize, *, create_graph: bool) -> torch.Tensor:
        params = [p for p in model.parameters() if p.requires_grad]
        loss = F.cross_entropy(model(normalize(x)), y)
        grads = torch.autograd.grad(loss, params, create_graph=create_graph)
        return torch.sqrt(sum(g.pow(2).sum() for g in grads))

    @torch.no_grad()
    def _target_features(self, model, inputs) -> torch.Tensor:
        rows = (inputs.data.y == inputs.target).nonzero().flatten()
        total = None
        for i in range(0, len(rows), 512):
            f = model.features(inputs.normalize(inputs.data.x[rows[i : i + 512]].to(inputs.device).float())).sum(0)
            total = f if total is None else total + f
        return total / len(rows)

    def build(self, inputs) -> dict:
        """PGD on p within the ε ball (002 K / L); returns the pattern and the objective's first and last values."""
        model, data, dev = inputs.surrogate, inputs.data, inputs.device
        model.eval()
        eligible = (data.y != inputs.target).nonzero().flatten() if inputs.label_mode == "all2one" else torch.arange(len(data))
        g = stream(self.seed, self.name, "batches")
        mean_target = self._target_features(model, inputs) if self.objective == "feat" else None
        base = None
        if self.objective == "grad":  # Eq. 11's clean term does not depend on p: measured once, on one clean batch
            clean = torch.randint(0, len(data), (self.batch_size,), generator=g)
            with torch.enable_grad():
                base = float(self._gradient_norm(model, data.x[clean].to(dev).float(), data.y[clean].to(dev), inputs.normalize,
                                                 create_graph=False))
        pattern = torch.zeros(1, *self.shape, device=dev)
        history = []
        for _ in range(self.iterations):
            pick = eligible[torch.randint(0, len(eligible), (self.batch_size,), generator=g)]
            x = data.x[pick].to(dev).float()
            pattern.requires_grad_(True)
            poisoned = (x + pattern).clamp(0, 255)
            if self.objective == "grad":
                objective = self._gradient_norm(model, poisoned, inputs.relabel(data.y[pick].to(dev)), inputs.normalize,
                                                create_graph=True) - base
            else:
                objective = (model.features(inputs.normalize(poisoned)).mean(0) - mean_target).norm()
            (grad,) = torch.autograd.grad(objective, pattern)
            history.append(float(objective.detach()))
            pattern = (pattern.detach() - self.step * grad.sign()).clamp(-self.epsilon, self.epsilon)
            inputs.progress(1)
        model.zero_grad(set_to_none=True)
        return {"pattern": pattern.detach().cpu()[0], "objective": torch.tensor(history)}

    def load_state(self, state: dict, data=None) -> None:
        p = state["pattern"]
        if not (isinstance(p, torch.Tensor) and tuple(p.shape) == self.shape and float(p.abs().max()) <= self.epsilon + 1e-4):
            raise ValueError(f"its trigger is not a {'×'.join(map(str, self.shape))} pattern within ε = {self.epsilon:g}")
        self.pattern = p.float()
        self.objective_history = state.get("objective")
        return None

    def describe(self) -> str:
        what = "gradient gap (002 Eq. 11)" if self.objective == "grad" else "feature distance to the target class (002 Eq. 12)"
        return f"{self.name}: a full-image trigger, ε {self.epsilon:g}/255, PGD {self.iterations} × {self.step:g} on the {what}"


class ASDAdaptiveFeat(ASDAdaptive):
    """002 appendix L: the trigger that pulls poisoned features onto the target class's (see :class:`ASDAdaptive`)."""

    name = "asd-adaptive-feat"
    objective = "feat"
    build_version = 1  # its build did not change (the class it derives from is at 2)
