"""Poisons that need a model to build (CLB's PGD images): built once from the run's clean twin, cached, reused.

The surrogate a prepared attack optimises against is the *clean twin* of the run: no
defense's recipe at the run's scale, on the same images and network, with no poison, itself
an ordinary record (trained once, reused by every run that needs it). The built images are kept in
``<runs>/cache/<attack>-<key>.pt``, keyed by everything they depend on (the clean twin's
config, the attack's options, the target), so every defense of the same poisoned set reuses
them; a changed option builds a new file, ``rebuild=True`` (``--rebuild-poison``) replaces one.
"""
from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import torch

from ._io import save_atomic
from .config import RunConfig, config_hash, make_config

__all__ = ["POISON_FORMAT", "surrogate_config", "poison_cache", "prepared_images"]

POISON_FORMAT = "asdkit-poison/1"


# What a poisoned set is made of: the images, the network, the seed (not the defense or its schedule).
_DATA_FIELDS = ("dataset", "resolution", "train_size", "test_size", "seed", "target", "model", "model_args", "device")


def surrogate_config(config: RunConfig) -> RunConfig:
    """The clean twin ``config``'s poison is built against: no defense's recipe at its scale, on the same images and network, no poison.

    It depends on the data, not on the defense, so every defense of a scale faces the same poisoned set.
    """
    same = {name: getattr(config, name) for name in _DATA_FIELDS}
    return make_config(config.scale, defense="none", overrides={**same, "rate": 0.0})


def poison_cache(config: RunConfig, root: Path) -> Path:
    """The cache file of ``config``'s prepared poison: keyed by the clean twin, the attack and its options, the target."""
    key = json.dumps({"surrogate": config_hash(surrogate_config(config)), "attack": config.attack, "options": config.attack_args,
                      "target": config.target, "format": POISON_FORMAT}, sort_keys=True, default=str)
    return Path(root) / "cache" / f"{config.attack}-{hashlib.sha256(key.encode()).hexdigest()[:12]}.pt"


def _corrupt(path: Path, reason: str) -> ValueError:
    return ValueError(f"The prepared poison {path} is corrupt or not asdkit's ({reason}). Run again with --rebuild-poison "
                      f"(asdkit.run(config, rebuild_poison=True)) to build it anew, or delete the file.")


def _load(path: Path, shape: tuple[int, ...], index: torch.Tensor) -> torch.Tensor:
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for a damaged file
        first = (str(err).splitlines() or [""])[0][:100]
        raise _corrupt(path, f"{type(err).__name__}: {first}") from err
    if not isinstance(payload, dict) or payload.get("format") != POISON_FORMAT:
        raise _corrupt(path, f"format {payload.get('format') if isinstance(payload, dict) else type(payload).__name__!r}")
    x, stored = payload.get("x"), payload.get("index")
    if not isinstance(x, torch.Tensor) or not isinstance(stored, torch.Tensor) or x.dtype != torch.uint8 \
            or tuple(x.shape) != (len(index), *shape[1:]) or not torch.equal(stored, index):
        raise _corrupt(path, "its images do not match this training set's target class")
    return x


def prepared_images(config: RunConfig, train, attack, *, root: Path, device: torch.device, rebuild: bool = False,
                    quiet: bool = False) -> torch.Tensor:
    """``train.x`` with its target-class images replaced by ``attack``'s built ones (cached; built from the clean twin when missing)."""
    from tqdm.auto import tqdm

    from .engine import Normalizer
    from .models import make_model
    from .runner import run

    index = (train.y == config.target).nonzero().flatten()
    path = poison_cache(config, root)
    if path.exists() and not rebuild:
        images = _load(path, tuple(train.x.shape), index)
        if not quiet:
            print(f"reusing the prepared {config.attack} poison {path}", file=sys.stderr)
    else:
        twin = surrogate_config(config)
        summary = run(twin, root=root, quiet=quiet)
        model = make_model(twin.model, num_classes=train.num_classes, in_channels=train.shape[0], **twin.model_args)
        model.load_state_dict(torch.load(Path(summary["record"]) / "model.pt", map_location="cpu", weights_only=True))
        model = model.to(device)
        normalize = Normalizer(train.mean, train.std, device, channels_last=False)
        with tqdm(total=len(index), desc=f"building the {config.attack} poison (clean twin ACC {summary['acc']:.1%})", unit="img",
                  disable=quiet) as bar:
            images = attack.perturb(model, train.x[index].to(device), train.y[index].to(device), normalize=normalize,
                                    progress=bar.update).cpu()
        save_atomic({"format": POISON_FORMAT, "x": images, "index": index, "surrogate": summary["record"],
                     "attack": attack.describe()}, path)
    out = train.x.clone()
    out[index] = images
    return out
