"""A run: data → poison → model → a defense's schedule, with a record that resumes (DESIGN layers 1-7 wired).

:class:`Run` prepares everything a defense needs and owns the epoch loop's bookkeeping
(evaluate, record, checkpoint, progress bar), so a defense module only says what happens
inside an epoch. :func:`run` is the one-call entry point used by the CLI and notebooks.
"""
from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any, Iterator

import torch

from . import __version__
from .attacks import asr_testset, make_attack, poison
from .config import RunConfig, config_hash, validate
from .data import load, stratified_subset
from .engine import Normalizer, evaluate, resolve_device
from .models import make_model
from .records import Record, RecordError, load_checked, runs_dir, save_atomic

__all__ = ["Run", "run", "run_folder", "lr_factor"]


def run_folder(config: RunConfig, root: Path | None = None) -> Path:
    """Where the record of ``config`` lives: ``<runs>/<defense>-<attack>-<config hash>``."""
    return Path(root or runs_dir()) / f"{config.defense}-{config.attack}-{config_hash(config)}"


def lr_factor(schedule: str, t: float, epochs: int, milestones: tuple = ()) -> float:
    """Learning-rate multiplier at fractional epoch ``t``: one-cycle (linear up for 20%, down to 0), multistep (/10 at each milestone) or constant."""
    if schedule == "onecycle":
        peak = 0.2 * epochs
        return t / peak if t < peak else max(0.0, (epochs - t) / (epochs - peak))
    if schedule == "multistep":
        return 0.1 ** sum(t >= m for m in milestones)
    return 1.0


def _code_version() -> str:
    try:
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).parent).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        sha = ""
    return f"{__version__}+{sha}" if sha else __version__


class Run:
    """Everything one run needs, prepared and validated before any training starts.

    Attributes a defense uses: ``config``, ``device``, ``train`` (the :class:`PoisonedSet`),
    ``test``, ``asr_test``, ``x``/``y`` (training images and observed labels, resident on the
    device), ``model``, ``normalize``, ``record``; and the methods :meth:`make_optimizer`,
    :meth:`epochs` (the resumable loop) and :meth:`log`.
    """

    def __init__(self, config: RunConfig, *, root: Path | None = None, quiet: bool = False) -> None:
        validate(config)
        self.config = config
        self.quiet = quiet
        self.device = resolve_device(config.device)
        splits = load(config.dataset, resolution=config.resolution or None)
        train, test = splits.train, splits.test
        if config.target >= train.num_classes:
            raise ValueError(f"The 'target' parameter must be a class index in [0, {train.num_classes - 1}] for {config.dataset}. Got {config.target} instead.")
        if config.train_size:
            train = stratified_subset(train, config.train_size, seed=config.seed)
        if config.test_size:
            test = stratified_subset(test, config.test_size, seed=config.seed)
        attack = make_attack(config.attack, train.shape, seed=config.seed, **config.attack_args)
        self.attack = attack
        self.train = poison(train, attack, rate=config.rate, target=config.target, seed=config.seed, label_mode=config.label_mode)
        self.test = test
        self.asr_test = asr_testset(test, attack, target=config.target, label_mode=config.label_mode)
        self.num_classes = train.num_classes

        dev = self.device
        self.x = self.train.data.x.to(dev)
        self.y = self.train.data.y.to(dev)
        self.all_index = torch.arange(len(self.train))
        self._test = (test.x.to(dev), test.y.to(dev), self.asr_test.x.to(dev), self.asr_test.y.to(dev))
        self.normalize = Normalizer(train.mean, train.std, dev, channels_last=True)
        torch.manual_seed(config.seed)
        self.model = make_model(config.model, num_classes=self.num_classes, in_channels=train.shape[0], **config.model_args)
        self.model = self.model.to(dev, memory_format=torch.channels_last)
        self.optimizer: torch.optim.Optimizer | None = None
        self.scheduler = None
        self.state: dict[str, torch.Tensor] = {}  # defense state that must survive a resume
        self.average = None  # a WeightAverage, if the defense keeps one: then ACC/ASR are measured on it
        self._check_defense_inputs()  # needs the data and the model; still before any training

        self.key = config_hash(config)
        self.folder = run_folder(config, root)
        self.record = Record(config.to_dict(), code_version=_code_version())
        self.record.path = self.folder / "record.pt"
        self.record.arrays.update(is_poison=self.train.is_poison, true_label=self.train.true_label,
                                  observed_label=self.train.observed_label, is_cover=self.train.is_cover)
        self._pending: tuple[dict[str, Any], dict[str, torch.Tensor]] = ({}, {})
        self.seconds = 0.0

    def _check_defense_inputs(self) -> None:
        from .defenses import DEFENSES

        check = getattr(DEFENSES[self.config.defense], "check", None)
        if check is not None:
            check(self)

    # -- pieces a defense calls --------------------------------------------------------------
    def make_optimizer(self, steps_per_epoch: int, params=None, *, lr: float | None = None) -> torch.optim.Optimizer:
        """The config's optimiser over ``params`` (default all), with its per-step lr schedule."""
        c = self.config
        params = list(self.model.parameters()) if params is None else list(params)
        lr = c.lr if lr is None else lr
        if c.optimizer == "sgd":
            opt = torch.optim.SGD(params, lr=lr, momentum=c.momentum, weight_decay=c.weight_decay, nesterov=False)
        else:
            opt = torch.optim.Adam(params, lr=lr, weight_decay=c.weight_decay)
        steps = max(1, steps_per_epoch)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda step: lr_factor(c.schedule, (step + 1) / steps, c.epochs, c.milestones))
        self.optimizer = opt
        self.steps_per_epoch = steps
        return opt

    def log(self, arrays: dict[str, torch.Tensor] | None = None, **metrics: Any) -> None:
        """Add metrics (scalars) and per-sample arrays to the epoch being run."""
        self._pending[0].update(metrics)
        self._pending[1].update(arrays or {})

    def log_clean_pool(self, clean_pool: torch.Tensor, l1_loss: torch.Tensor, *, hard_fraction: float = 0.1) -> None:
        """Record D_C of this epoch and, from the ground truth (never shown to a policy), what is in it.

        ``poison_in_pool``: poisoned samples in D_C; ``hard_in_pool``: clean-hard samples in
        D_C, the ``hard_fraction``·N clean samples with the largest L1 loss (002 Section 5.2:
        5,000 of 50,000).
        """
        is_poison = self.train.is_poison
        k = int(round(hard_fraction * len(l1_loss)))
        clean_index = (~is_poison).nonzero().squeeze(1)
        clean_hard = torch.zeros_like(is_poison)
        clean_hard[clean_index[torch.argsort(l1_loss[clean_index], descending=True, stable=True)[:k]]] = True
        self.log(arrays={"clean_pool": clean_pool.clone()}, pool_size=int(clean_pool.sum()),
                 poison_in_pool=int((clean_pool & is_poison).sum()), hard_in_pool=int((clean_pool & clean_hard).sum()),
                 clean_hard=int(clean_hard.sum()),
                 pool_per_class=torch.bincount(self.train.observed_label[clean_pool], minlength=self.num_classes).tolist())

    def pool_summary(self) -> dict[str, Any]:
        """Isolation figures over the run: the most poisoned samples ever in D_C (Tables 11-12) and the last pool's TPR/FPR."""
        n_poison = int(self.train.is_poison.sum())
        counts = [m.get("poison_in_pool", 0) for m in self.record.metrics]
        last = self.record.epoch_array("clean_pool")
        flagged = ~last  # D_P: what the defense treats as possibly poisoned
        is_poison = self.train.is_poison
        return {
            "max_poison_in_clean_pool": max(counts) if counts else 0,
            "max_poison_fraction_in_clean_pool": max(counts) / n_poison if counts and n_poison else 0.0,
            "tpr": float((flagged & is_poison).sum() / max(1, n_poison)),
            "fpr": float((flagged & ~is_poison).sum() / max(1, int((~is_poison).sum()))),
        }

    def save_weights(self, name: str, *, file: str | None = None, model: torch.nn.Module | None = None, **info: Any) -> None:
        """Save the current weights (of ``model``, default the trained one) once as ``<name>.pt`` (or ``file``); the snapshot ``name`` points to it."""
        file = file or f"{name}.pt"
        save_atomic((model or self.model).state_dict(), self.folder / file)
        self.record.snapshots.setdefault(name, {}).update(weights=file, **{k: torch.tensor(v) for k, v in info.items()})

    def snapshot_losses(self, name: str, *, sce=None) -> None:
        """Store CE and SCE losses (``sce``: the defense's own L1, default SCE α 0.1, β 1) of every training sample under f_θ as snapshot ``name``."""
        from .engine import predict
        from .losses import cross_entropy, sce_loss

        logits = predict(self.model, self.x, normalize=self.normalize, batch_size=self.config.eval_batch_size)
        y = self.y.to(logits.device)
        self.record.snapshots.setdefault(name, {}).update(ce=cross_entropy(logits, y).half().cpu(), sce=(sce or sce_loss)(logits, y).half().cpu())

    def evaluate(self) -> dict[str, float]:
        """ACC on the clean test set and ASR on the triggered non-target test set, now."""
        tx, ty, ax, ay = self._test
        model = self.average.model if self.average is not None else self.model
        return evaluate(model, tx, ty, ax, ay, normalize=self.normalize, batch_size=self.config.eval_batch_size)

    def epochs(self) -> Iterator[int]:
        """The resumable epoch loop: yields epoch numbers; after each, evaluates, records and checkpoints."""
        start = self._resume()
        bar = self._progress(start)
        try:
            for epoch in range(start, self.config.epochs):
                self._pending = ({}, {})
                t0 = time.perf_counter()
                self.progress = bar
                yield epoch
                train_seconds = time.perf_counter() - t0
                metrics = self.evaluate()
                self.seconds += time.perf_counter() - t0
                metrics.update(self._pending[0], seconds=round(time.perf_counter() - t0, 3), train_seconds=round(train_seconds, 3))
                self.record.add_epoch(metrics, self._pending[1])
                self.record.save()  # record first, then checkpoint: a crash between them only repeats an epoch
                self._checkpoint(epoch + 1)
                if bar is not None:
                    bar.set_postfix(acc=f"{metrics['acc']:.3f}", asr=f"{metrics.get('asr', float('nan')):.3f}", refresh=False)
        finally:
            if bar is not None:
                bar.close()

    def _progress(self, start: int):
        if self.quiet:
            return None
        from tqdm.auto import tqdm

        c = self.config
        return tqdm(total=(c.epochs - start) * getattr(self, "steps_per_epoch", 1), desc=f"{c.defense} vs {c.attack}", unit="step", leave=False)

    def _checkpoint(self, finished_epochs: int) -> None:
        save_atomic({
            "epoch": finished_epochs,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict() if self.optimizer else {},
            "scheduler": self.scheduler.state_dict() if self.scheduler else {},
            "state": self.state,
            "average": self.average.model.state_dict() if self.average is not None else {},
            "seconds": self.seconds,
        }, self.folder / "checkpoint.pt")

    def _resume(self) -> int:
        ckpt_path = self.folder / "checkpoint.pt"
        if not ckpt_path.exists() or not self.record.path.exists():
            return 0
        ckpt = load_checked(ckpt_path, required=("epoch", "model", "optimizer", "scheduler", "state"))
        old = Record.load(self.record.path)
        if old.epochs < ckpt["epoch"]:
            raise RecordError(f"{self.record.path} holds {old.epochs} epochs but its checkpoint {ckpt['epoch']}; delete {self.folder} and run again.")
        old.truncate(ckpt["epoch"])
        old.arrays.update(self.record.arrays)
        old.path = self.record.path
        self.record = old
        self.model.load_state_dict(ckpt["model"])
        if self.optimizer is not None and ckpt["optimizer"]:
            self.optimizer.load_state_dict(ckpt["optimizer"])
        if self.scheduler is not None and ckpt["scheduler"]:
            self.scheduler.load_state_dict(ckpt["scheduler"])
        self.state.update(ckpt["state"])
        if self.average is not None and ckpt.get("average"):
            self.average.model.load_state_dict(ckpt["average"])
        self.seconds = float(ckpt.get("seconds", 0.0))
        return int(ckpt["epoch"])

    def finish(self, extra: dict[str, Any]) -> dict[str, Any]:
        """Mark the record done, save the final weights and return the summary."""
        last = self.record.metrics[-1] if self.record.metrics else self.evaluate()
        summary = {"acc": last["acc"], "asr": last.get("asr"), "seconds": round(self.seconds, 1),
                   "record": str(self.folder), "epochs": self.record.epochs, **extra}
        self.record.summary = summary
        self.record.status = "done"
        # the weights whose ACC/ASR the summary reports: the weight average when there is one
        self.save_weights("final", file="model.pt", model=self.average.model if self.average is not None else None)
        self.record.save()
        return summary


def run(config: RunConfig, *, root: Path | None = None, quiet: bool = False, force: bool = False) -> dict[str, Any]:
    """Run (or resume, or reuse) the experiment ``config``; return its summary dict.

    A finished record with the same config hash is reused unless ``force``; an interrupted
    one resumes from its last finished epoch.
    """
    from .defenses import DEFENSES

    validate(config)
    folder = run_folder(config, root)
    if not force and (folder / "record.pt").exists():
        rec = Record.load(folder / "record.pt")
        if rec.status == "done":
            return {**rec.summary, "reused": True}
    r = Run(config, root=root, quiet=quiet)  # every check passes before anything old is deleted
    if force and folder.exists():
        for path in folder.glob("*.pt"):
            path.unlink()
    extra = DEFENSES[config.defense].run(r) or {}
    return r.finish(extra)
