"""One run = one config: the declared fields, the scales (smoke / classroom / lab / paper), overrides, validation.

A config is a frozen dataclass of plain values, so it hashes to a record key and prints as
the hyper-parameter table of a run. Every field is declared once in :func:`config_fields`
(what it accepts, its default per scale, a one-line doc) and every defense declares its own
options the same way (``DefenseSpec.options``); :func:`make_config` checks all of them, in
one place and before any data loads. Scales change sizes, budgets and schedules, never the
algorithm (ARCHITECTURE.md, "Scales"); a scale's budget is counted in sample visits, so the number of
epochs follows from the size of the data set (:func:`resolve_epochs`).
"""
from __future__ import annotations

import ast
import hashlib
import json
import os
import re
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from .options import Option, Options, check_value, choice, integer, real, resolve, scale_chain, text
from .precision import PRECISIONS, native_bf16, resolve_precision

__all__ = ["RunConfig", "SCALES", "make_config", "parse_assignment", "config_hash", "config_fields", "validate",
           "defense_options", "defense_spec", "resolve_epochs", "parse_seeds", "DATA_FIELDS", "POISON_FIELDS",
           "POISONED_SET_FIELDS"]

SCALES = ("smoke", "classroom", "lab", "paper")
# the data, the poison and the network: what every product of a run (a built poison, a SimCLR backbone) is keyed by
DATA_FIELDS = ("dataset", "resolution", "train_size", "test_size", "seed", "model", "model_args")
POISON_FIELDS = ("attack", "attack_args", "rate", "target", "label_mode")
POISONED_SET_FIELDS = DATA_FIELDS + POISON_FIELDS


@dataclass(frozen=True)
class RunConfig:
    """Every knob of one run (units and meaning: :func:`config_fields`); ``attack_args``/``defense_args`` hold per-method options."""

    dataset: str = "fashion-mnist"
    resolution: int = 0
    attack: str = "badnets"
    rate: float = 0.1
    target: int = 0
    label_mode: str = "all2one"
    defense: str = "none"
    scale: str = "classroom"
    seed: int = 0
    device: str = "auto"  # not part of the record key
    precision: str = "fp32"  # make_config resolves 'auto'; a record written before this field trained in float32
    model: str = "compact"
    model_args: dict = field(default_factory=dict)
    train_size: int = 0
    test_size: int = 0
    epochs: int = 0  # 0 = as many as the budget buys on this data set
    budget: int = 180_000  # sample visits of supervised training (classroom: 3 passes over 60k)
    batch_size: int = 128
    optimizer: str = "adam"
    lr: float = 2e-3
    momentum: float = 0.9
    weight_decay: float = 0.0
    schedule: str = "onecycle"
    milestones: tuple = ()
    pad: int = 2
    eval_batch_size: int = 1024
    attack_args: dict = field(default_factory=dict)
    defense_args: dict = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["milestones"] = list(self.milestones)
        return d

    def key_fields(self) -> dict[str, Any]:
        """The fields that change the numbers: all but the device; the precision resolved, and left out when fp32.

        A float32 config so keys as it did before the 'precision' field existed (its records and
        caches stay reusable); a bfloat16 one never meets a float32 record.
        """
        d = self.to_dict()
        d.pop("device")
        precision = d.pop("precision")
        if precision == "auto":  # a RunConfig built by hand; make_config resolves it
            precision = resolve_precision("auto", self.device)[0]
        if precision != "fp32":
            d["precision"] = precision
        return d

    def poisoned_set(self) -> dict[str, Any]:
        """The fields that make the poisoned training set and the initial network (and the precision): what a phase product depends on."""
        key = self.key_fields()
        return {k: key[k] for k in (*POISONED_SET_FIELDS, "precision") if k in key}

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


_DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


def _milestones(v: Any) -> bool:
    return (isinstance(v, (tuple, list)) and all(isinstance(m, int) and not isinstance(m, bool) and m >= 1 for m in v)
            and list(v) == sorted(set(v)))


def _is_dict(v: Any) -> bool:
    return isinstance(v, dict) and all(isinstance(k, str) for k in v)


def config_fields() -> tuple[Option, ...]:
    """The declared config fields: what each accepts, its default per scale and what it means.

    Scales: ``smoke`` (seconds: 2,000 images, a narrow network), ``classroom`` (a 2-core CPU,
    minutes: all of Fashion-MNIST, the compact ResNet), ``lab`` (≤ 20 min on that CPU: 5,000 images,
    the classroom's network, each image seen about as often as in the papers; it inherits what it
    does not set from classroom), ``paper`` (002 appendix B.2: CIFAR-10,
    ResNet-18, 200 epochs of SGD 0.1, momentum 0.9, wd 5e-4, /10 at 100 and 150).
    """
    from .attacks import ATTACKS
    from .defenses import DEFENSES
    from .models import MODELS

    return (
        text("dataset", "cifar10", scales={"smoke": "fashion-mnist", "classroom": "fashion-mnist"},
             want="a data set name, an .npz path or an image folder", doc="the training and test data"),
        integer("resolution", 0, low=0, high=1024, doc="resize images to this side in pixels; 0 = the data set's own (image folders: 32)"),
        choice("attack", "badnets", sorted(ATTACKS), doc="the backdoor attack (002 appendix B.2)"),
        real("rate", 0.05, low=0, high=1, closed="left", scales={"smoke": 0.1, "classroom": 0.1},
             doc="poison rate: of the whole set (poison-label) or of the target class (clean-label); 0 = the clean twin"),
        integer("target", 3, low=0, scales={"smoke": 0, "classroom": 0}, doc="target class index"),
        choice("label_mode", "all2one", ("all2one", "all2all"), doc="all2all relabels y -> (y + 1) mod C"),
        choice("defense", "none", sorted(DEFENSES), doc="the defense (set with --defense, not --set)"),
        choice("scale", "classroom", SCALES, doc="the preset (set with --scale, not --set)"),
        integer("seed", 0, low=0, high=2**63 - 1, doc="seed of the poison selection, the trigger, the initialisation and every random stream"),
        Option("device", "auto", lambda v: isinstance(v, str) and bool(_DEVICE.match(v)), "one of 'auto', 'cpu', 'cuda', 'cuda:N', 'mps'",
               "where to train; not part of the record key"),
        Option("precision", default_precision(), lambda v: v in PRECISIONS, f"one of {list(PRECISIONS)} (this machine: {_supported_here()})",
               "arithmetic of training and evaluation: auto = bf16 where the device computes in bfloat16 natively "
               "(AVX512-BF16 or AMX on a CPU, a CUDA GPU with bf16), else fp32; default $ASDKIT_PRECISION or auto; "
               "part of the record key"),
        choice("model", "resnet18", sorted(MODELS), scales={"smoke": "compact", "classroom": "compact"}, doc="the network"),
        Option("model_args", {}, _is_dict, "a dict of the model's keyword options", "e.g. {'widths': [16, 32, 64]}",
               {"smoke": {"widths": [16, 32, 64]}}),
        integer("train_size", 0, low=0, scales={"smoke": 2000, "lab": 5000}, doc="stratified subset of the training set; 0 = all of it"),
        integer("test_size", 0, low=0, scales={"smoke": 1000}, doc="stratified subset of the test set; 0 = all of it"),
        integer("epochs", 200, low=0, scales={"smoke": 0, "classroom": 0},
                doc="training epochs; 0 = as many as 'budget' buys on this data set"),
        integer("budget", 180_000, low=1, scales={"smoke": 4000, "lab": 300_000},
                doc="sample visits of supervised training when epochs = 0 (epochs = round(budget / N), at least 1)"),
        integer("batch_size", 128, low=1, doc="training batch"),
        choice("optimizer", "sgd", ("adam", "sgd"), scales={"smoke": "adam", "classroom": "adam"}, doc="the optimiser"),
        real("lr", 0.1, low=0, closed="neither", scales={"smoke": 3e-3, "classroom": 2e-3}, doc="peak learning rate"),
        real("momentum", 0.9, low=0, high=1, closed="left", doc="SGD momentum"),
        real("weight_decay", 5e-4, low=0, scales={"smoke": 0.0, "classroom": 0.0}, doc="L2 weight decay"),
        choice("schedule", "multistep", ("onecycle", "cosine", "multistep", "constant"), scales={"smoke": "onecycle", "classroom": "onecycle"},
               doc="lr schedule: onecycle (linear up 20 %, down to 0), cosine (to 0), multistep (/10 at each milestone), constant"),
        Option("milestones", (100, 150), _milestones, "a list of increasing positive ints (epochs)",
               "epochs at which 'multistep' divides the lr by 10", {"smoke": (), "classroom": ()}),
        integer("pad", 4, low=0, scales={"smoke": 2, "classroom": 2}, doc="random-crop padding, pixels"),
        integer("eval_batch_size", 1024, low=1, doc="batch of scoring and evaluation (no autograd)"),
        Option("attack_args", {}, _is_dict, "a dict of the attack's options", "e.g. {'size': 3, 'location': 'lower-right'}"),
        Option("defense_args", {}, _is_dict, "a dict of the defense's options", "every option of the defense (asdkit options NAME)"),
    )


def default_precision() -> str:
    """The 'precision' field's default: ``$ASDKIT_PRECISION`` (e.g. fp32 for a whole course or test suite), else auto."""
    value = os.environ.get("ASDKIT_PRECISION", "auto")
    if value not in PRECISIONS:
        raise ValueError(f"The environment variable ASDKIT_PRECISION must be one of {list(PRECISIONS)} (the 'precision' "
                         f"field's default). Got {value!r} instead.")
    return value


def _supported_here() -> str:
    """What this machine's own device supports, for the 'precision' field's error."""
    from .devices import resolve_device

    native, why = native_bf16(resolve_device("auto"))
    return f"fp32 and bf16, {why}" if native else f"fp32 only, {why}"


def _field(name: str) -> Option:
    return next(o for o in config_fields() if o.name == name)


def defense_spec(defense: str):
    """The registered :class:`~asdkit.defenses.DefenseSpec` of ``defense``; an unknown name raises the 'defense' field's error."""
    from .defenses import DEFENSES, PLANNED_DEFENSES

    if defense not in DEFENSES:
        later = f" ({defense!r} is planned for a later release)" if defense in PLANNED_DEFENSES else ""
        raise ValueError(f"The 'defense' field must be one of {sorted(DEFENSES)}{later}. Got {defense!r} instead.")
    return DEFENSES[defense]


def make_config(scale: str = "classroom", *, defense: str = "none", overrides: dict[str, Any] | None = None) -> RunConfig:
    """The preset of ``scale`` for ``defense``, then ``overrides`` (field → value; ``attack.x``/``defense.x`` for options).

    Every field and every option is checked here, before any data loads: an unknown name,
    a bad value, an option the defense lacks, or ``scale``/``defense`` given as overrides
    (they choose the preset: pass them as arguments, ``--scale``/``--defense`` on the CLI).
    """
    check_value(_field("scale"), scale, "parameter of make_config")
    spec = defense_spec(defense)
    overrides = dict(overrides or {})
    for key in ("scale", "defense"):
        if key in overrides:
            raise ValueError(f"The {key!r} field chooses the preset and cannot be overridden; pass it as make_config({key}=...) "
                             f"(on the command line: --{key}). Got {key}={overrides[key]!r}.")
    for key in ("dataset", "attack", "model"):  # they choose presets: checked before they are looked up
        if key in overrides:
            check_value(_field(key), overrides[key], "field")
    values: dict[str, Any] = {o.name: o.default_at(scale) for o in config_fields()}
    presets: dict[str, Any] = {}
    for s in scale_chain(scale):  # lab: the classroom's presets, then its own
        presets.update(spec.presets.get(s, {}))
    dataset = overrides.get("dataset", presets.get("dataset", values["dataset"]))
    values.update(presets)
    for s in scale_chain(scale):
        values.update(spec.dataset_presets.get((s, dataset), {}))
    values["scale"], values["defense"] = scale, defense
    model = overrides.get("model", values["model"])
    if model != "compact" and "model_args" not in overrides:
        values["model_args"] = {}  # the smoke preset's widths belong to the compact network only
    attack_args, defense_args = dict(values.pop("attack_args")), {}
    known = {o.name for o in config_fields()} - {"attack_args", "defense_args"}
    for key, value in overrides.items():
        if key.startswith("attack."):
            attack_args[key[len("attack."):]] = value
        elif key.startswith("defense.") or key.startswith(f"{defense}."):
            defense_args[key.split(".", 1)[1]] = value
        elif key in known:
            values[key] = value
        else:
            raise ValueError(
                f"Unknown config field {key!r}. Fields: {sorted(known - {'scale', 'defense'})}; "
                "attack options as attack.NAME (e.g. attack.size=3), defense options as defense.NAME."
            )
    values.pop("defense_args")
    attack_args = {**_attack_scale_defaults(values["attack"], scale), **attack_args}
    if isinstance(values.get("milestones"), list):
        values["milestones"] = tuple(values["milestones"])
    values["dataset"] = dataset_name(values["dataset"])
    options = resolve(spec.options, defense_args, scale=scale, owner=defense, what="defense option(s)")
    check_value(_field("precision"), values["precision"], "field")
    check_value(_field("device"), values["device"], "field")
    values["precision"] = resolve_precision(values["precision"], values["device"])[0]  # 'auto' is decided here, once
    config = RunConfig(**values, attack_args=attack_args, defense_args=dict(options))
    validate(config)
    return config


def dataset_name(name: Any) -> Any:
    """A named data set in its one spelling (``Fashion-MNIST`` → ``fashion-mnist``), so one run has one record key; paths as given."""
    from .data import DATASETS

    return name.lower() if isinstance(name, str) and name.lower() in DATASETS else name


def _attack_scale_defaults(attack: str, scale: str) -> dict[str, Any]:
    """The attack's own per-scale option defaults (``Attack.scales``; lab inherits classroom), e.g. IAB's training epochs."""
    from .attacks import ATTACKS

    cls, out = ATTACKS.get(attack), {}
    for s in scale_chain(scale) if cls is not None else ():
        out.update(cls.scales.get(s, {}))
    return out


def defense_options(config: RunConfig) -> Options:
    """The defense's options of ``config``: its declared defaults at the config's scale, updated by ``defense_args``."""
    spec = defense_spec(config.defense)
    return resolve(spec.options, config.defense_args, scale=config.scale, owner=config.defense, what="defense option(s)")


def resolve_epochs(config: RunConfig, train_size: int) -> int:
    """Epochs of supervised training: ``config.epochs``, or (when 0) round(budget / N) passes over N samples, at least 1."""
    return config.epochs or max(1, round(config.budget / max(1, train_size)))


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


def parse_assignments(texts, defense: str, **flags: Any) -> dict[str, Any]:
    """Every ``--set key=value`` and flag as one overrides dict; a field given twice (``asd.gamma`` and ``defense.gamma``,
    ``--attack`` and ``--set attack=``) is refused, naming both."""
    out: dict[str, Any] = {}
    given: dict[str, str] = {}
    pairs = [(f"--set {t}", *parse_assignment(t)) for t in texts]
    pairs += [(f"--{k.replace('_', '-')} {v}", k, v) for k, v in flags.items() if v is not None]
    for source, key, value in pairs:
        canonical = f"defense.{key.split('.', 1)[1]}" if key.startswith(f"{defense}.") else key
        if canonical in given:
            raise ValueError(f"The {canonical!r} field is given twice ({given[canonical]} and {source}); give it once.")
        given[canonical] = source
        out[key] = value
    return out


def validate(config: RunConfig) -> None:
    """Check every field, the attack's and the model's option names and every defense option; ValueError naming field, range and value."""
    from .attacks import ATTACKS, PLANNED, check_attack_options

    if config.attack in PLANNED:
        raise ValueError(f"The 'attack' field names {config.attack!r}, planned for a later release and not implemented yet. "
                         f"Implemented: {sorted(ATTACKS)}.")
    for opt in config_fields():
        check_value(opt, getattr(config, opt.name), "field")
    if config.epochs and config.milestones and config.milestones[-1] >= config.epochs:
        raise ValueError(f"The 'milestones' field must be epochs below 'epochs' ({config.epochs}). Got {list(config.milestones)} instead.")
    check_attack_options(config.attack, config.attack_args)
    allowed = _model_options(config.model)
    unknown = sorted(set(config.model_args) - allowed)
    if unknown:
        raise ValueError(f"The 'model_args' field has option(s) {unknown} that model {config.model!r} does not take; it takes {sorted(allowed) or 'none'}.")
    _check_model_args(config.model, config.model_args)
    spec = defense_spec(config.defense)
    options = defense_options(config)
    if spec.constraints is not None:
        spec.constraints(config, options)


def _check_model_args(model: str, args: dict) -> None:
    """The widths a network is built with: three ints for the compact network's stages, one for ResNet-18's first."""
    ok = lambda v: isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 4096  # noqa: E731
    if "widths" in args and not (isinstance(args["widths"], (list, tuple)) and len(args["widths"]) == 3 and all(map(ok, args["widths"]))):
        raise ValueError(f"The 'model_args' field's option 'widths' of model {model!r} must be three ints in [1, 4096] "
                         f"(the stages' channels, e.g. (32, 64, 128)). Got {args['widths']!r} instead.")
    if "width" in args and not ok(args["width"]):
        raise ValueError(f"The 'model_args' field's option 'width' of model {model!r} must be an int in [1, 4096]. Got {args['width']!r} instead.")


def _model_options(model: str) -> set[str]:
    """Keyword options of a model's constructor beyond num_classes and in_channels."""
    import inspect

    from . import models

    cls = {"compact": models.CompactResNet, "resnet18": models.ResNet18}.get(model)
    if cls is None:
        return set()
    return set(inspect.signature(cls).parameters) - {"num_classes", "in_channels"}


def config_hash(config: RunConfig) -> str:
    """A short stable key of everything that changes the numbers (:meth:`RunConfig.key_fields`)."""
    d = config.key_fields()
    blob = json.dumps(d, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


MAX_SEED, MAX_SEEDS = 2**63 - 1, 1000  # a seed torch's generators take; the runs one command may ask for


def parse_seeds(text: str | None) -> list[int]:
    """``--seed``: one int, a comma list (0,1,2) or a range (0-4); [] when not given."""
    if text is None:
        return []
    seeds: list[int] = []
    try:
        for part in str(text).split(","):
            lo, _, hi = part.strip().partition("-")
            first, last = int(lo), int(hi) if hi else int(lo)
            if not 0 <= first <= last <= MAX_SEED or last - first + 1 + len(seeds) > MAX_SEEDS:
                raise ValueError
            seeds.extend(range(first, last + 1))
    except ValueError:
        raise ValueError(f"The 'seed' field must be an int in [0, {MAX_SEED}], a comma list (0,1,2) or a range (0-4) of at most "
                         f"{MAX_SEEDS} seeds. Got {text!r} instead.") from None
    if len(set(seeds)) != len(seeds) or not seeds:
        raise ValueError(f"The 'seed' field lists a seed twice or none: {text!r}.")
    return seeds
