"""One run = one config: the presets (smoke / classroom / paper), overrides and validation.

A config is a frozen dataclass of plain values, so it hashes to a record key and prints as
the hyper-parameter table of a run. Scales change sizes, epochs and schedules, never the
algorithm (DESIGN "Scales").
"""
from __future__ import annotations

import ast
import hashlib
import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any

__all__ = ["RunConfig", "SCALES", "make_config", "parse_assignment", "config_hash"]

SCALES = ("smoke", "classroom", "paper")


@dataclass(frozen=True)
class RunConfig:
    """Every knob of one run. Units in the comments; ``attack_args``/``defense_args`` hold per-method options."""

    dataset: str = "fashion-mnist"  # name, .npz path or image folder
    resolution: int = 0  # resize images to this side (pixels); 0 = the data set's own (image folders: 32)
    attack: str = "badnets"
    rate: float = 0.1  # poison-label: fraction of the whole set; clean-label: of the target class; 0 = clean twin
    target: int = 0  # target class index
    label_mode: str = "all2one"  # or "all2all": y -> (y + 1) mod C
    defense: str = "none"
    scale: str = "classroom"
    seed: int = 0
    device: str = "auto"  # not part of the record key
    model: str = "compact"
    model_args: dict = field(default_factory=dict)  # e.g. {"widths": [16, 32, 64]}
    train_size: int = 0  # stratified subset of the training set; 0 = all of it
    test_size: int = 0  # stratified subset of the test set; 0 = all of it
    epochs: int = 3
    batch_size: int = 128
    optimizer: str = "adam"  # "adam" or "sgd"
    lr: float = 2e-3  # peak learning rate
    momentum: float = 0.9  # SGD only
    weight_decay: float = 0.0
    schedule: str = "onecycle"  # "onecycle" (linear up 20%, down to 0), "multistep", "constant"
    milestones: tuple = ()  # epochs at which "multistep" divides the lr by 10
    pad: int = 2  # random-crop padding, pixels
    eval_batch_size: int = 1024
    attack_args: dict = field(default_factory=dict)  # e.g. {"size": 3, "location": "lower-right"}
    defense_args: dict = field(default_factory=dict)  # e.g. {"t1": 60} for ASD

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["milestones"] = list(self.milestones)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "RunConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"Unknown config field(s) {unknown}; known fields: {sorted(known)}.")
        d = dict(d)
        if "milestones" in d:
            d["milestones"] = tuple(d["milestones"])
        return cls(**d)


# Preset tables: what each scale changes relative to the dataclass defaults above.
_BASE: dict[str, dict[str, Any]] = {
    # seconds: 2,000 training images, a narrow network, two epochs
    "smoke": dict(train_size=2000, test_size=1000, epochs=2, model_args={"widths": [16, 32, 64]}, lr=3e-3),
    # minutes on 2 CPU cores: full Fashion-MNIST, the compact network, one-cycle Adam
    "classroom": dict(),
    # 002 appendix B.2: CIFAR-10, ResNet-18, 200 epochs, SGD 0.1 (momentum 0.9, wd 5e-4), /10 at 100 and 150
    "paper": dict(
        dataset="cifar10", model="resnet18", rate=0.05, target=3, epochs=200, batch_size=128,
        optimizer="sgd", lr=0.1, momentum=0.9, weight_decay=5e-4, schedule="multistep",
        milestones=(100, 150), pad=4,
    ),
}


def _defense_presets(defense: str, scale: str, dataset: str) -> dict[str, Any]:
    from .defenses import DEFENSES  # late import: config sits below defenses

    spec = DEFENSES.get(defense)
    if spec is None:
        return {}
    return {**spec.presets.get(scale, {}), **spec.dataset_presets.get((scale, dataset), {})}


def make_config(scale: str = "classroom", *, defense: str = "none", overrides: dict[str, Any] | None = None) -> RunConfig:
    """The preset of ``scale`` for ``defense``, then ``overrides`` (field → value; ``attack.x``/``defense.x`` for options)."""
    if scale not in SCALES:
        raise ValueError(f"The 'scale' parameter must be one of {list(SCALES)}. Got {scale!r} instead.")
    values: dict[str, Any] = dict(_BASE[scale])
    dataset = (overrides or {}).get("dataset", values.get("dataset", RunConfig.dataset))
    values.update(_defense_presets(defense, scale, dataset))
    values["scale"], values["defense"] = scale, defense
    model = (overrides or {}).get("model", values.get("model", "compact"))
    if model != "compact" and "model_args" not in (overrides or {}):
        values.pop("model_args", None)  # the smoke preset's widths belong to the compact network only
    attack_args, defense_args = dict(values.pop("attack_args", {})), dict(values.pop("defense_args", {}))
    known = {f.name for f in fields(RunConfig)}
    for key, value in (overrides or {}).items():
        if key.startswith("attack."):
            attack_args[key[len("attack."):]] = value
        elif key.startswith("defense.") or key.startswith(f"{defense}."):
            defense_args[key.split(".", 1)[1]] = value
        elif key in known:
            values[key] = value
        else:
            raise ValueError(
                f"Unknown config field {key!r}. Fields: {sorted(known - {'attack_args', 'defense_args'})}; "
                "attack options as attack.NAME (e.g. attack.size=3), defense options as defense.NAME."
            )
    if "milestones" in values:
        values["milestones"] = tuple(values["milestones"])
    config = RunConfig(**values, attack_args=attack_args, defense_args=defense_args)
    validate(config)
    return config


def parse_assignment(text: str) -> tuple[str, Any]:
    """``key=value`` from the command line; the value is read as a Python literal when it is one."""
    if "=" not in text:
        raise ValueError(f"--set expects key=value, got {text!r}")
    key, raw = text.split("=", 1)
    try:
        value = ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        value = raw
    return key.strip(), value


_CHOICES = {
    "label_mode": ("all2one", "all2all"),
    "optimizer": ("adam", "sgd"),
    "schedule": ("onecycle", "multistep", "constant"),
}


def validate(config: RunConfig) -> None:
    """Check every field that can be checked without the data; raise ValueError naming field, range and value."""

    def bad(name: str, want: str) -> ValueError:
        return ValueError(f"The '{name}' parameter must be {want}. Got {getattr(config, name)!r} instead.")

    for f in fields(config):  # a bool is an int to Python, never a count or a rate here
        if isinstance(getattr(config, f.name), bool):
            raise bad(f.name, "a number or a name, not a bool")
    if not isinstance(config.rate, (int, float)) or not 0 <= config.rate < 1:
        raise bad("rate", "a float in the range [0, 1) (0 = the clean twin, for the ASR floor)")
    if not isinstance(config.target, int) or config.target < 0:
        raise bad("target", "a non-negative int (a class index)")
    if not isinstance(config.seed, int) or config.seed < 0:
        raise bad("seed", "a non-negative int")
    for name, choices in _CHOICES.items():
        if getattr(config, name) not in choices:
            raise bad(name, f"one of {list(choices)}")
    for name in ("epochs", "batch_size", "eval_batch_size"):
        if not isinstance(getattr(config, name), int) or getattr(config, name) < 1:
            raise bad(name, "a positive int")
    for name in ("train_size", "test_size", "pad", "resolution"):
        if not isinstance(getattr(config, name), int) or getattr(config, name) < 0:
            raise bad(name, "a non-negative int")
    if not isinstance(config.lr, (int, float)) or config.lr <= 0:
        raise bad("lr", "a positive float")
    if not isinstance(config.weight_decay, (int, float)) or config.weight_decay < 0:
        raise bad("weight_decay", "a non-negative float")
    from .attacks import ATTACKS, PLANNED
    from .defenses import DEFENSES, PLANNED_DEFENSES
    from .models import MODELS

    if config.attack not in ATTACKS:
        later = " (planned for a later release)" if config.attack in PLANNED else ""
        raise bad("attack", f"one of {sorted(ATTACKS)}{later}")
    if config.defense not in DEFENSES:
        later = " (planned for a later release)" if config.defense in PLANNED_DEFENSES else ""
        raise bad("defense", f"one of {sorted(DEFENSES)}{later}")
    if config.model not in MODELS:
        raise bad("model", f"one of {sorted(MODELS)}")
    if not isinstance(config.attack_args, dict) or not isinstance(config.defense_args, dict) or not isinstance(config.model_args, dict):
        raise ValueError("attack_args, defense_args and model_args must be dicts")
    allowed = _model_options(config.model)
    unknown = sorted(set(config.model_args) - allowed)
    if unknown:
        raise ValueError(f"The 'model_args' parameter has option(s) {unknown} that model {config.model!r} does not take; it takes {sorted(allowed) or 'none'}.")


def _model_options(model: str) -> set[str]:
    """Keyword options of a model's constructor beyond num_classes and in_channels."""
    import inspect

    from . import models

    cls = {"compact": models.CompactResNet, "resnet18": models.ResNet18}.get(model)
    if cls is None:
        return set()
    return set(inspect.signature(cls).parameters) - {"num_classes", "in_channels"}


def config_hash(config: RunConfig) -> str:
    """A short stable key of everything that changes the numbers (the device does not enter it)."""
    d = config.to_dict()
    d.pop("device")
    blob = json.dumps(d, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]
