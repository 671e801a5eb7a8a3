"""Preparing a run: the data, the poisoned set, the trusted seeds, the network and the context a defense sees.

:func:`prepare` is every step before training, and every check: a pre-flight (``preflight=True``)
stops after the defense has planned its phases, with no poison built and no record touched.
The figures call :func:`splits` and :func:`poisoned_set` for the same images a run trains on.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .attacks import PoisonedSet, asr_testset, make_attack, poison
from .config import RunConfig, defense_options, defense_spec, resolve_epochs, validate
from .context import Context, Evaluator, Products
from .data import load, seed_samples, stratified_subset
from .data.files import resize_images
from .devices import available_memory, resolve_device
from .engine import Images, Normalizer, stream
from .models import make_model
from .phases import Phase
from .precision import resolve_precision
from .records import CHECKPOINT, load_checked, run_folder

__all__ = ["Prepared", "prepare", "preflight", "splits", "poisoned_set", "draw_seeds", "network"]


@dataclass
class Prepared:
    """A run ready to train: its config, the defense, the ground truth (the runner's), the context and the planned phases."""

    config: RunConfig
    spec: Any  # the DefenseSpec
    attack: Any  # the Attack (a prepared one with its built state)
    truth: PoisonedSet
    ctx: Context
    phases: list[Phase]
    classes: list[str]
    folder: Path
    precision: str
    precision_reason: str


def splits(config: RunConfig):
    """(train, test) of ``config``'s data set: subsets drawn, then resized; the target and the test classes checked."""
    data = load(config.dataset, resolution=config.resolution or None, resize=False)
    train, test = data.train, data.test
    if config.target >= train.num_classes:
        raise ValueError(f"The 'target' field must be a class index in [0, {train.num_classes - 1}] for {config.dataset}. Got {config.target} instead.")
    fitted = []  # a scale's sizes are "at most": a data set smaller than the size asked for is used whole, and said so
    if config.train_size:
        if config.train_size < len(train):
            train = stratified_subset(train, config.train_size, seed=config.seed)
        else:
            fitted.append(f"train_size {config.train_size:,} → the whole training set ({len(train):,} images)")
    if config.test_size:
        if config.test_size < len(test):
            test = stratified_subset(test, config.test_size, seed=config.seed)
        else:
            fitted.append(f"test_size {config.test_size:,} → the whole test set ({len(test):,} images)")
    if fitted:
        _say_once(f"{config.dataset} is smaller than the {config.scale} scale asks: " + "; ".join(fitted))
    absent = sorted(set(range(train.num_classes)) - set(test.y.unique().tolist()))
    if absent:
        raise ValueError(f"The test set ({len(test)} images{f', test_size={config.test_size}' if config.test_size else ''}) has no image of "
                         f"class(es) {absent[:5]}{' ...' if len(absent) > 5 else ''}: every class needs test images for its accuracy; "
                         "give a larger test_size (0 = the whole test set).")
    if config.resolution and train.x.shape[-1] != config.resolution:  # after the subsets: only the images used are resized
        count, pixels = len(train) + len(test), train.x.shape[1] * config.resolution ** 2
        need = count * pixels + 2 * min(count, 2048) * pixels * 4  # the uint8 images and a chunk's float copies while resizing
        free = available_memory()
        if need > 0.5 * free:
            raise ValueError(f"The 'resolution' field ({config.resolution}) makes {len(train) + len(test)} images of "
                             f"{config.resolution}×{config.resolution} pixels, {need / 2**30:.1f} GiB, more than half of this machine's "
                             f"{free / 2**30:.1f} GiB available; lower it or the train/test sizes.")
        train, test = (s.with_images(resize_images(s.x, config.resolution)) for s in (train, test))
    return train, test


_SAID: set[str] = set()


def _say_once(text: str) -> None:
    """Print what a scale's preset adapted to the data set, once a process."""
    if text not in _SAID:
        _SAID.add(text)
        print(f"asdkit: {text}.", flush=True)


def _unbuilt(attack):
    """A prepared attack's stand-in for a pre-flight: the built poison's indices and labels, the images left as they are."""
    stand_in, same = copy.copy(attack), lambda x, **_: x.clone()
    stand_in.apply = stand_in.train_trigger = same
    if callable(getattr(attack, "noise", None)):  # a noise mode stays one (the cover count depends on it)
        stand_in.noise = same
    return stand_in


def poisoned_set(config: RunConfig, train, *, root: Path | None = None, device: torch.device | str = "cpu", preflight: bool = False,
                 rebuild: bool = False, quiet: bool = True):
    """(attack, :class:`PoisonedSet`) of ``config``: a prepared attack's poison read from its cache (built there if missing)."""
    from .prepared import check_prepared, prepare_attack

    attack, source = make_attack(config.attack, train.shape, seed=config.seed, **config.attack_args), None
    if attack.needs_build(config.rate) and preflight:
        check_prepared(config, attack)
        attack = _unbuilt(attack)
    elif attack.needs_build(config.rate):  # CLB, IAB, Refool, ...: built once, cached (asdkit.prepared)
        source = prepare_attack(config, train, attack, root=run_folder(config, root).parent, device=torch.device(device),
                                rebuild=rebuild, quiet=quiet)
    truth = poison(train, attack, rate=config.rate, target=config.target, seed=config.seed, label_mode=config.label_mode, source=source)
    return attack, truth


def draw_seeds(truth: PoisonedSet, config: RunConfig, per_class: int, poisoned: int) -> torch.Tensor:
    """The defender's trusted seeds: ``per_class`` clean samples a class, ``poisoned`` of them swapped for poisoned ones (002 Table 5)."""
    if per_class == 0:
        return torch.zeros(0, dtype=torch.long)
    try:
        seeds = seed_samples(truth.observed_label, per_class, seed=config.seed, exclude=truth.is_poison)
    except ValueError as exc:
        raise ValueError(f"{config.defense}'s seeds_per_class={per_class} cannot be drawn from this training set: {exc}") from None
    if poisoned > len(seeds) or poisoned > len(truth.poison_index):
        raise ValueError(f"The 'poisoned_seeds' option of {config.defense} must be an int in [0, {min(len(seeds), len(truth.poison_index))}] "
                         f"here (seeds_per_class × classes, and no more than the poisoned samples). Got {poisoned} instead.")
    if poisoned:
        g = stream(config.seed, "seeds", "poisoned seeds")
        picked = truth.poison_index[torch.randperm(len(truth.poison_index), generator=g)[:poisoned]]
        seeds = torch.cat([seeds[torch.randperm(len(seeds), generator=g)[poisoned:]], picked])
    return seeds.sort().values


# images one training step holds per unit of a batch option: MixMatch's labelled batch and two unlabelled views, SimCLR's two views
_IMAGES_PER = {"mixmatch_batch_size": 3, "simclr_batch_size": 2}


@torch.no_grad()
def _activation_bytes(model: torch.nn.Module, shape: tuple, device) -> int:
    """Bytes of the outputs of every leaf module for one image: what one image of a training step keeps for its backward."""
    total = [0]
    hooks = [m.register_forward_hook(lambda _m, _i, out: total.__setitem__(0, total[0] + (out.numel() if torch.is_tensor(out) else 0)))
             for m in model.modules() if not list(m.children())]
    try:
        was = model.training
        model.eval()
        model(torch.zeros((2, *shape), device=device))
        model.train(was)
    finally:
        for h in hooks:
            h.remove()
    return total[0] * 4 // 2


def check_sizes(ctx: Context, free: int) -> None:
    """Options that scale memory, bounded before any work by the data and ``free``, the bytes the run's own device has (also in a pre-flight on the CPU): pad, and the largest training step's activations."""
    c, n, side = ctx.config, ctx.n, ctx.data.x.shape[-1]
    if c.pad > side:
        raise ValueError(f"The 'pad' field ({c.pad}) must be an int in [0, {side}] here (the images are {side} pixels wide). Got {c.pad} instead.")
    batches = {"batch_size": c.batch_size, **{k: v for k, v in ctx.options.items() if k.endswith("batch_size") and k != "eval_batch_size"}}
    # a batch that slices the set holds at most n images; MixMatch draws its batches, SimCLR drops the last partial one
    images_of = {k: v * _IMAGES_PER[k] if k in _IMAGES_PER else min(v, n) for k, v in batches.items()}
    name = max(images_of, key=images_of.get)
    size, images = batches[name], images_of[name]
    per = 3 * _activation_bytes(ctx.model, tuple(ctx.data.x.shape[1:]), ctx.device)  # outputs, their gradients, autograd's buffers
    if images * per > 0.8 * free:
        raise ValueError(f"The '{name}' {'field' if name == 'batch_size' else 'option'} ({size}) makes a training step of {images} images, "
                         f"about {images * per / 2**30:.1f} GiB of activations ({per / 2**20:.2f} MiB an image), more than this machine's "
                         f"{free / 2**30:.1f} GiB available; at most {int(0.8 * free / per) // _IMAGES_PER.get(name, 1)} here.")


def network(config: RunConfig, train, device: torch.device | str = "cpu") -> torch.nn.Module:
    """The run's network, initialised from its seed, channels-last on ``device``."""
    torch.manual_seed(config.seed)
    model = make_model(config.model, num_classes=train.num_classes, in_channels=train.shape[0], **config.model_args)
    return model.to(device, memory_format=torch.channels_last)


def _products_read(checkpoint: Path) -> frozenset[str] | None:
    """The phase products a run may read: any when it starts; when it resumes, those it had read (its plan must not change)."""
    if not checkpoint.exists():
        return None
    try:
        return frozenset(load_checked(checkpoint, required=("state",))["state"].get("reused_products", ()))
    except ValueError:  # a damaged checkpoint: the resume says so, naming the file
        return frozenset()


def prepare(config: RunConfig, *, root: Path | None = None, quiet: bool = False, rebuild_poison: bool = False,
            preflight: bool = False) -> Prepared:
    """Every step before training: data, poison, seeds, network, context, the defense's check and plan (a pre-flight on the CPU)."""
    validate(config)
    spec, options = defense_spec(config.defense), defense_options(config)
    device = resolve_device(config.device)  # checked in the pre-flight too, which then works on the CPU
    precision, reason = resolve_precision(config.precision, device)  # bf16 this device lacks: refused
    free = available_memory(device)  # of the device the run trains on, also in a pre-flight
    device = torch.device("cpu") if preflight else device
    train, test = splits(config)
    attack, truth = poisoned_set(config, train, root=root, device=device, preflight=preflight, rebuild=rebuild_poison, quiet=quiet)
    asr_test = asr_testset(test, attack, target=config.target, label_mode=config.label_mode)
    normalize = Normalizer(train.mean, train.std, device, channels_last=True)
    data = Images(truth.data.x.to(device), truth.data.y.to(device), normalize, train.num_classes, pad=config.pad, flip=train.hflip)
    evaluator = Evaluator(test.x.to(device), test.y.to(device), asr_test.x.to(device), asr_test.y.to(device),
                          normalize, config.eval_batch_size, precision)
    seeds = draw_seeds(truth, config, *(spec.seeds(options) if spec.seeds else (0, 0)))
    model = network(config, train, device)
    folder = run_folder(config, root)
    products = Products(folder.parent / "cache" / "products", _products_read(folder / CHECKPOINT))
    ctx = Context(config=config, options=options, data=data, seeds=seeds, model=model, epochs=resolve_epochs(config, len(train)),
                  evaluator=evaluator, folder=folder, precision=precision, products=products)
    check_sizes(ctx, free)
    if config.milestones and config.milestones[-1] >= ctx.epochs:
        raise ValueError(f"The 'milestones' field must be epochs below the {ctx.epochs} this run trains "
                         f"({'the budget buys' if not config.epochs else 'epochs'}). Got {list(config.milestones)} instead.")
    if spec.check is not None:
        spec.check(ctx)
    phases: list[Phase] = spec.plan(ctx)
    names = [p.name for p in phases]
    if len(set(names)) != len(names) or any(p.epochs < 0 or p.steps < 0 for p in phases):
        raise ValueError(f"Defense {config.defense!r} planned phases with repeated names or negative sizes: {names}.")
    return Prepared(config, spec, attack, truth, ctx, phases, train.classes, folder, precision, reason)


def preflight(configs, root: Path | None = None) -> None:
    """Every check each run of ``configs`` makes before it trains (options, data, the defense's data-dependent check), none
    trained and no poison built: a batch refuses a bad config before its first run, not when that run starts."""
    for config in configs:
        try:
            prepare(config, root=root, quiet=True, preflight=True)
        except ValueError as err:  # the same error (a DataUnavailableError stays one), prefixed with the run it stopped
            err.args = (f"{config.defense} / {config.attack} at {config.scale} (seed {config.seed}): {err}", *err.args[1:])
            raise
