"""Run records: one folder per run, keyed by a hash of its config, written atomically, with checkpoints and provenance.

A run folder ``<runs>/<defense>-<attack>-<hash>/`` holds

- ``record.pt`` — the config (as JSON), the code version, per-epoch metrics (ACC, ASR,
  loss, seconds...), per-epoch per-sample arrays (losses as float16, clean-pool
  membership as bool), the ground truth (``is_poison``, ``true_label``, ``observed_label``),
  named snapshots and the final summary;
- ``checkpoint.pt`` — model, optimiser and scheduler state after the last finished epoch
  (what a resumed run starts from);
- ``model.pt`` — the final weights, once the run is done; other weights saved once at a
  named moment (e.g. ``end_of_stage2.pt``): the record's snapshot of that name says which
  file, and :meth:`Record.weights` reads it.

Every file is written to a temporary name and moved into place (``os.replace``), so an
interrupted run never leaves a half-written file; every file is read with
``torch.load(..., weights_only=True)``, so a record from a stranger cannot run code.
"""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import torch

from ._io import save_atomic
from ._version import __version__
from .config import RunConfig, config_hash

__all__ = ["Record", "RecordError", "save_atomic", "load_checked", "runs_dir", "check_store", "run_folder", "finished_record", "FORMAT",
           "code_version", "cpu_name", "machine", "CHECKPOINT"]

CHECKPOINT = "checkpoint.pt"  # model, optimisers, schedulers, weight average and defense state after the last finished epoch

FORMAT = 1


class RecordError(ValueError):
    """A record or checkpoint that cannot be read: corrupt, truncated or of another format."""


def runs_dir() -> Path:
    """Where runs are stored: ``$ASDKIT_RUNS`` (``~`` expanded) or ``./runs``."""
    value = os.environ.get("ASDKIT_RUNS", "runs")
    if not value.strip():
        raise ValueError("ASDKIT_RUNS is set but empty; unset it (runs then go to ./runs) or name a folder.")
    return Path(value).expanduser()


def check_store(root: Path | None = None) -> Path:
    """The run store ``root`` (default :func:`runs_dir`), checked before any work: a folder, or one that can be made, writable."""
    root = Path(root or runs_dir())
    existing = next((p for p in (root, *root.parents) if p.exists()), None)
    if existing is not None and not existing.is_dir():
        raise ValueError(f"The run store {root} (ASDKIT_RUNS) cannot be a folder: {existing} is a file. Name a folder.")
    if existing is not None and not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(f"The run store {root} (ASDKIT_RUNS) is not writable: {existing} is read-only for this user. Name another folder.")
    return root


def run_folder(config: RunConfig, root: Path | None = None) -> Path:
    """Where the record of ``config`` lives: ``<runs>/<defense>-<attack>-<config hash>``."""
    return Path(root or runs_dir()) / f"{config.defense}-{config.attack}-{config_hash(config)}"


def finished_record(config: RunConfig, root: Path | None = None) -> "Record | None":
    """The finished record of ``config`` if there is one (an interrupted or missing run: None)."""
    path = run_folder(config, root) / "record.pt"
    if not path.exists():
        return None
    rec = Record.load(path)
    return rec if rec.status == "done" else None


def code_version() -> str:
    """The package version and, in a git checkout, the commit: the code that wrote a record."""
    try:
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).parent).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        sha = ""
    return f"{__version__}+{sha}" if sha else __version__


def cpu_name(cpuinfo: str) -> str:
    """The first processor's model name in /proc/cpuinfo; a bare name ("AMD EPYC", as VMs give) gets its family and model numbers."""
    fields: dict[str, str] = {}
    for line in cpuinfo.splitlines():
        key, sep, value = line.partition(":")
        if not sep:
            if fields:  # the blank line after the first processor
                break
            continue
        fields.setdefault(key.strip(), value.strip())
    name = fields.get("model name", "")
    if name and not any(ch.isdigit() for ch in name) and "cpu family" in fields and "model" in fields:
        name += f" (family {fields['cpu family']}, model {fields['model']})"  # two EPYC generations both say "AMD EPYC"
    return name


def machine(device: torch.device | str) -> str:
    """The processor a run's seconds were measured on ("AMD EPYC (family 25, model 1), 2 threads", "NVIDIA H200"): results repeat on one machine only."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type == "mps":
        return "Apple MPS"
    try:
        name = cpu_name(Path("/proc/cpuinfo").read_text())
    except OSError:
        name = ""
    import platform

    threads = torch.get_num_threads()
    return f"{name or platform.processor() or platform.machine()}, {threads} thread{'s' * (threads != 1)}"


def load_checked(path: Path, *, required: tuple[str, ...] = ()) -> dict:
    """``torch.load(weights_only=True)`` with a clear error for a corrupt or foreign file."""
    path = Path(path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as exc:  # pickle, zip and weights-only errors all mean the same to a user
        raise RecordError(f"{path} is corrupt or not an asdkit file ({type(exc).__name__}: {str(exc)[:120]}). "
                          f"Delete it (or its run folder) and run again.") from None
    if not isinstance(obj, dict) or any(k not in obj for k in required):
        raise RecordError(f"{path} is not a complete asdkit file (missing {[k for k in required if not isinstance(obj, dict) or k not in obj]}). "
                          f"Delete it (or its run folder) and run again.")
    return obj


class Record:
    """The numbers of one run: config, per-epoch metrics and per-sample arrays, snapshots, summary.

    ``metrics`` is a list (one dict per finished epoch); ``epoch_arrays[name]`` a list of
    tensors (one per epoch); ``arrays`` holds per-run tensors (the ground truth);
    ``snapshots[name]`` holds any dict of tensors a figure needs at a named moment.
    """

    def __init__(self, config: dict, *, code_version: str = "") -> None:
        self.config = config
        self.code_version = code_version
        self.status = "running"
        self.metrics: list[dict[str, Any]] = []
        self.epoch_arrays: dict[str, list[torch.Tensor]] = {}
        self.arrays: dict[str, torch.Tensor] = {}
        self.snapshots: dict[str, dict[str, Any]] = {}
        self.summary: dict[str, Any] = {}
        self.path: Path | None = None

    # -- building ---------------------------------------------------------------------------
    def add_epoch(self, metrics: dict[str, Any], arrays: dict[str, torch.Tensor] | None = None) -> None:
        """Append one finished epoch: scalar metrics and per-sample arrays (floats stored as float16)."""
        epoch = len(self.metrics)
        for name, value in (arrays or {}).items():
            lst = self.epoch_arrays.setdefault(name, [])
            while len(lst) < epoch:  # an array first logged in a later epoch: pad earlier epochs
                lst.append(torch.empty(0))
            value = value.detach().cpu()
            lst.append(value.half() if value.is_floating_point() else value)
        self.metrics.append({"epoch": epoch, **metrics})

    def truncate(self, epochs: int) -> None:
        """Forget everything after the first ``epochs`` epochs (resume after a checkpoint)."""
        self.metrics = self.metrics[:epochs]
        self.epoch_arrays = {k: v[:epochs] for k, v in self.epoch_arrays.items()}
        self.status = "running"

    # -- reading ----------------------------------------------------------------------------
    def metric(self, name: str) -> list[Any]:
        """One metric per epoch (None where an epoch did not log it)."""
        return [m.get(name) for m in self.metrics]

    def epoch_array(self, name: str, epoch: int = -1) -> torch.Tensor:
        """The per-sample array ``name`` of one epoch (default the last), as float32 / bool."""
        if name not in self.epoch_arrays:
            raise KeyError(f"This record has no per-epoch array {name!r}; it has {sorted(self.epoch_arrays)}.")
        count = len(self.epoch_arrays[name])
        if not -count <= epoch < count:
            raise ValueError(f"The 'epoch' of epoch_array must be an int in [{-count}, {count - 1}] ({count} epochs of {name!r}). Got {epoch} instead.")
        t = self.epoch_arrays[name][epoch]
        return t.float() if t.is_floating_point() else t

    def logged_epochs(self, name: str) -> list[int]:
        """The epochs that logged the per-epoch array ``name`` (one first logged later is padded with empty arrays before)."""
        if name not in self.epoch_arrays:
            raise KeyError(f"This record has no per-epoch array {name!r}; it has {sorted(self.epoch_arrays)}.")
        return [e for e, t in enumerate(self.epoch_arrays[name]) if t.numel()]

    def weights(self, name: str = "final") -> dict[str, torch.Tensor]:
        """The model weights saved at snapshot ``name`` (``final`` once the run is done), read with weights_only=True."""
        snap = self.snapshots.get(name, {})
        if "weights" not in snap or self.path is None:
            raise KeyError(f"This record has no weights named {name!r}; snapshots with weights: "
                           f"{[k for k, v in self.snapshots.items() if 'weights' in v]}.")
        return load_checked(self.path.parent / snap["weights"])

    @property
    def epochs(self) -> int:
        return len(self.metrics)

    # -- storage ----------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "config": json.dumps(self.config, sort_keys=True),
            "code_version": self.code_version,
            "status": self.status,
            "metrics": json.dumps(self.metrics),
            "epoch_arrays": self.epoch_arrays,
            "arrays": self.arrays,
            "snapshots": self.snapshots,
            "summary": json.dumps(self.summary),
        }

    def save(self, path: Path | None = None) -> Path:
        path = Path(path or self.path)
        save_atomic(self.to_dict(), path)
        self.path = path
        return path

    @classmethod
    def load(cls, path: Path | str) -> "Record":
        """Read a record; a corrupt or foreign file raises :class:`RecordError` naming it."""
        path = Path(path)
        if path.is_dir():
            path = path / "record.pt"
        if not path.exists():
            raise FileNotFoundError(f"No record at {path}. Runs are stored under {runs_dir()} (set ASDKIT_RUNS to change).")
        d = load_checked(path, required=("format", "config", "metrics", "epoch_arrays", "arrays", "summary"))
        if d["format"] != FORMAT:
            raise RecordError(f"{path} has record format {d['format']}, this asdkit reads format {FORMAT}.")
        try:
            rec = cls(json.loads(d["config"]), code_version=d.get("code_version", ""))
            rec.status = d.get("status", "running")
            rec.metrics = json.loads(d["metrics"])
            rec.epoch_arrays = d["epoch_arrays"]
            rec.arrays = d["arrays"]
            rec.snapshots = d.get("snapshots", {})
            rec.summary = json.loads(d["summary"])
        except (TypeError, ValueError, json.JSONDecodeError) as exc:
            raise RecordError(f"{path} is corrupt ({exc}). Delete its run folder and run again.") from None
        rec.path = path
        return rec

    def __repr__(self) -> str:
        c = self.config
        return f"Record({c.get('defense')} vs {c.get('attack')} on {c.get('dataset')}, {self.epochs} epochs, {self.status})"
