"""Prepared attacks: the poison that needs a model or an optimisation is built once, cached, reused.

An attack with ``prepared == "surrogate"`` (CLB, ASD's adaptive attacks) is optimised against
the run's *clean twin*: no defense's recipe at the run's scale, on the same images and network,
with no poison, itself an ordinary record (the planner trains it first, once, for every run that
needs it: :mod:`asdkit.planner`). One
with ``prepared == "own"`` (IAB) trains its own networks; Refool's build reads its reflection
images from another data set. What a build returns is kept in ``<runs>/cache/<attack>-<key>.pt``,
keyed by everything it depends on (the clean twin's config, which names the data; the attack
and its options; the target and label mode), so every defense of one poisoned set reuses it;
a changed option builds a new file, ``rebuild=True`` (``--rebuild-poison``) replaces one.
"""
from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import torch

from ._io import save_atomic
from .config import DATA_FIELDS, RunConfig, config_hash, make_config, validate
from .records import finished_record, load_checked

__all__ = ["POISON_FORMAT", "surrogate_config", "poison_cache", "check_prepared", "prepare_attack"]

POISON_FORMAT = "asdkit-poison/2"


# What the clean twin shares with its run: the images, the network, the seed, the target, the device (not the defense).
_TWIN_FIELDS = (*DATA_FIELDS, "target", "device")


def surrogate_config(config: RunConfig) -> RunConfig:
    """The clean twin ``config``'s poison is built against: no defense's recipe at its scale, on the same images and network, no poison.

    It depends on the data, not on the defense, so every defense of a scale faces the same poisoned set; it trains in
    float32 whatever the run's precision, so a bfloat16 run and a float32 one face the same poison too.
    """
    same = {name: getattr(config, name) for name in _TWIN_FIELDS}
    return make_config(config.scale, defense="none", overrides={**same, "rate": 0.0, "precision": "fp32"})


def poison_cache(config: RunConfig, root: Path) -> Path:
    """The cache file of ``config``'s prepared poison: keyed by the clean twin, the attack and its options, the target and label mode."""
    from .attacks import ATTACKS

    version = ATTACKS[config.attack].build_version  # a build whose result changed: a new file, not the old one
    key = json.dumps({"surrogate": config_hash(surrogate_config(config)), "attack": config.attack, "options": config.attack_args,
                      "target": config.target, "label_mode": config.label_mode, "format": POISON_FORMAT,
                      **({"build": version} if version != 1 else {})}, sort_keys=True, default=str)
    return Path(root) / "cache" / f"{config.attack}-{hashlib.sha256(key.encode()).hexdigest()[:12]}.pt"


def _corrupt(path: Path, reason: str) -> ValueError:
    return ValueError(f"The prepared poison {path} is corrupt or not asdkit's ({reason}). Run again with --rebuild-poison "
                      f"(asdkit.run(config, rebuild_poison=True)) to build it anew, or delete the file.")


def _load(path: Path) -> dict:
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for a damaged file
        first = (str(err).splitlines() or [""])[0][:100]
        raise _corrupt(path, f"{type(err).__name__}: {first}") from err
    if not isinstance(payload, dict) or payload.get("format") != POISON_FORMAT or not isinstance(payload.get("state"), dict):
        raise _corrupt(path, f"format {payload.get('format') if isinstance(payload, dict) else type(payload).__name__!r}")
    return payload["state"]


def _network(config: RunConfig, train) -> torch.nn.Module:
    """A freshly initialised network of ``config``'s architecture for ``train``'s images and classes."""
    from .models import make_model

    return make_model(config.model, num_classes=train.num_classes, in_channels=train.shape[0], **config.model_args)


def _surrogate(config: RunConfig, train, *, root: Path, device: torch.device):
    """The trained clean twin (the planner trains it first: :func:`asdkit.planner.run`) and its summary."""
    twin = surrogate_config(config)
    rec = finished_record(twin, root)
    if rec is None:
        raise ValueError(f"The {config.attack} poison is built against the clean twin {config_hash(twin)} under {root}, which is not "
                         "trained yet: asdkit.run(config) (or `asdkit run`, a sweep, the figures, the course) trains it first.")
    model = _network(twin, train)
    model.load_state_dict(load_checked(rec.path.parent / "model.pt"))
    return model.to(device).eval(), rec.summary


def check_prepared(config: RunConfig, attack) -> None:
    """What :func:`prepare_attack` will need, checked without building (:func:`asdkit.preparation.preflight`): the build's own inputs, and the clean twin a surrogate attack trains first."""
    attack.check_build()
    if attack.prepared == "surrogate":
        validate(surrogate_config(config))


def prepare_attack(config: RunConfig, train, attack, *, root: Path, device: torch.device, rebuild: bool = False,
                   quiet: bool = False) -> torch.Tensor | None:
    """Give ``attack`` its built state (from the cache, or built now); return the source images :func:`poison` stamps (CLB), else None."""
    from tqdm.auto import tqdm

    from .attacks.build import BuildInputs
    from .engine import Normalizer

    path = poison_cache(config, root)
    if path.exists() and not rebuild:
        state = _load(path)
        try:
            source = attack.load_state(state, train)
        except (KeyError, TypeError, ValueError, RuntimeError) as err:
            raise _corrupt(path, f"its state does not fit this run: {str(err)[:160]}") from err
        if not quiet:
            print(f"reusing the prepared {config.attack} poison {path}", file=sys.stderr)
        return source
    surrogate, note = None, ""
    if attack.prepared == "surrogate":
        surrogate, summary = _surrogate(config, train, root=root, device=device)
        note = f" against the clean twin (ACC {summary['acc']:.1%})"

    inputs = BuildInputs(data=train, target=config.target, label_mode=config.label_mode,
                         normalize=Normalizer(train.mean, train.std, device, channels_last=False), device=device,
                         seed=config.seed, new_model=lambda: _network(config, train).to(device), surrogate=surrogate,
                         batch_size=config.batch_size, pad=config.pad)
    with tqdm(total=attack.build_size(inputs), desc=f"building the {config.attack} poison{note}", disable=quiet) as bar:
        inputs.progress = bar.update
        state = attack.build(inputs)
    save_atomic({"format": POISON_FORMAT, "state": state, "attack": attack.describe()}, path)
    return attack.load_state(state, train)
