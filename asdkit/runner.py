"""A run: data → poison → model → a defense's phases, with a record that resumes (DESIGN layers 1-7 wired).

:class:`Run` prepares everything, hands a defense only a :class:`~asdkit.context.Context`
(no ground truth, no runner), and executes the defense's phases one epoch at a time: after
each epoch it evaluates, adds what the ground truth says of the logged pool, records and
checkpoints, so a run killed anywhere resumes at (phase, epoch) with every optimiser's and
scheduler's state. :func:`run` is the one-call entry point used by the CLI and notebooks.
"""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

from . import __version__
from .analysis import class_health, clean_hard_mask, isolation_rates
from .attacks import asr_testset, make_attack, poison
from .config import RunConfig, config_hash, defense_options, resolve_epochs, validate
from .context import Context, Evaluator
from .data import class_names, load, seed_samples, stratified_subset
from .engine import Images, Normalizer, resolve_device, stream
from .models import make_model, unfreeze
from .phases import Phase, build_optimizers, lr_factor, select
from .precision import resolve_precision
from .records import Record, RecordError, load_checked, runs_dir, save_atomic

__all__ = ["Run", "run", "run_seeds", "run_folder", "preflight", "lr_factor"]


def run_folder(config: RunConfig, root: Path | None = None) -> Path:
    """Where the record of ``config`` lives: ``<runs>/<defense>-<attack>-<config hash>``."""
    return Path(root or runs_dir()) / f"{config.defense}-{config.attack}-{config_hash(config)}"


def _code_version() -> str:
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


class Run:
    """One run, prepared and checked before any training starts; :meth:`execute` runs its phases.

    Attributes: ``config``, ``spec`` (the defense), ``truth`` (the :class:`PoisonedSet`, ground
    truth included: the runner's, never the defense's), ``ctx`` (what the defense sees),
    ``phases``, ``record``, ``folder``.
    """

    def __init__(self, config: RunConfig, *, root: Path | None = None, quiet: bool = False, rebuild_poison: bool = False,
                 preflight: bool = False) -> None:
        """Prepare the run; with ``preflight``, only as far as every check (a prepared poison is not built), on the CPU."""
        from .defenses import DEFENSES

        validate(config)
        self.config, self.quiet = config, quiet
        self.spec = DEFENSES[config.defense]
        options = defense_options(config)
        device = resolve_device(config.device)  # checked in the pre-flight too, which then works on the CPU
        self.precision, self.precision_reason = resolve_precision(config.precision, device)  # bf16 this device lacks: refused
        if preflight:
            device = torch.device("cpu")
        splits = load(config.dataset, resolution=config.resolution or None)
        train, test = splits.train, splits.test
        self.classes = train.classes
        if config.target >= train.num_classes:
            raise ValueError(f"The 'target' field must be a class index in [0, {train.num_classes - 1}] for {config.dataset}. Got {config.target} instead.")
        if config.train_size:
            train = stratified_subset(train, config.train_size, seed=config.seed)
        if config.test_size:
            test = stratified_subset(test, config.test_size, seed=config.seed)
        self.attack = make_attack(config.attack, train.shape, seed=config.seed, **config.attack_args)
        source = None
        if self.attack.needs_build(config.rate) and preflight:
            from .prepared import check_prepared

            check_prepared(config, self.attack)
            self.attack = _unbuilt(self.attack)
        elif self.attack.needs_build(config.rate):  # CLB, IAB, Refool, ...: built once, cached (asdkit.prepared)
            from .prepared import prepare_attack

            source = prepare_attack(config, train, self.attack, root=run_folder(config, root).parent, device=device,
                                    rebuild=rebuild_poison, quiet=quiet)
        self.truth = poison(train, self.attack, rate=config.rate, target=config.target, seed=config.seed, label_mode=config.label_mode,
                            source=source)
        asr_test = asr_testset(test, self.attack, target=config.target, label_mode=config.label_mode)
        normalize = Normalizer(train.mean, train.std, device, channels_last=True)
        data = Images(self.truth.data.x.to(device), self.truth.data.y.to(device), normalize, train.num_classes,
                      pad=config.pad, flip=train.hflip)
        evaluator = Evaluator(test.x.to(device), test.y.to(device), asr_test.x.to(device), asr_test.y.to(device),
                              normalize, config.eval_batch_size, self.precision)
        seeds = self._draw_seeds(*(self.spec.seeds(options) if self.spec.seeds else (0, 0)))
        torch.manual_seed(config.seed)
        model = make_model(config.model, num_classes=train.num_classes, in_channels=train.shape[0], **config.model_args)
        model = model.to(device, memory_format=torch.channels_last)

        self.folder = run_folder(config, root)
        self.ctx = Context(config=config, options=options, data=data, seeds=seeds, model=model,
                           epochs=resolve_epochs(config, len(train)), evaluator=evaluator, folder=self.folder, precision=self.precision)
        if self.spec.check is not None:
            self.spec.check(self.ctx)
        self.phases: list[Phase] = self.spec.plan(self.ctx)
        names = [p.name for p in self.phases]
        if len(set(names)) != len(names) or any(p.epochs < 0 or p.steps < 0 for p in self.phases):
            raise ValueError(f"Defense {config.defense!r} planned phases with repeated names or negative sizes: {names}.")
        if preflight:
            return
        self.optimizers = build_optimizers(model, self.phases)

        self.record = Record(config.to_dict(), code_version=_code_version())
        self.record.path = self.folder / "record.pt"
        t = self.truth
        self.record.arrays.update(is_poison=t.is_poison, true_label=t.true_label, observed_label=t.observed_label, is_cover=t.is_cover)
        if len(seeds):
            self.record.arrays["seeds"] = seeds
        self.seconds = 0.0
        self.lock = None  # the RecordLock run() holds while this run trains (refreshed every epoch)

    def _draw_seeds(self, per_class: int, poisoned: int) -> torch.Tensor:
        """The defender's trusted seeds: ``per_class`` clean samples a class, ``poisoned`` of them swapped for poisoned ones (002 Table 5)."""
        if per_class == 0:
            return torch.zeros(0, dtype=torch.long)
        t, c = self.truth, self.config
        try:
            seeds = seed_samples(t.observed_label, per_class, seed=c.seed, exclude=t.is_poison)
        except ValueError as exc:
            raise ValueError(f"{c.defense}'s seeds_per_class={per_class} cannot be drawn from this training set: {exc}") from None
        if poisoned > len(seeds) or poisoned > len(t.poison_index):
            raise ValueError(f"The 'poisoned_seeds' option of {c.defense} must be an int in [0, {min(len(seeds), len(t.poison_index))}] "
                             f"here (seeds_per_class × classes, and no more than the poisoned samples). Got {poisoned} instead.")
        if poisoned:
            g = stream(c.seed, "seeds", "poisoned seeds")
            picked = t.poison_index[torch.randperm(len(t.poison_index), generator=g)[:poisoned]]
            seeds = torch.cat([seeds[torch.randperm(len(seeds), generator=g)[poisoned:]], picked])
        return seeds.sort().values

    # -- the phase loop ----------------------------------------------------------------------
    def execute(self) -> dict[str, Any]:
        """Run (or resume) every phase, epoch by epoch; then finish the record and return the summary."""
        ctx = self.ctx
        start_phase, start_epoch = self._resume()
        bar = self._progress(start_phase, start_epoch)
        try:
            for pi, phase in enumerate(self.phases):
                if pi < start_phase:
                    continue
                ctx.phase = phase.name
                select(ctx.model, phase.train)
                ctx.optimizer, ctx.scheduler = self.optimizers[phase.key]
                ctx.progress = bar
                if bar is not None:
                    bar.set_description(f"{self.config.defense} vs {self.config.attack} · {phase.name}", refresh=False)
                for e in range(start_epoch if pi == start_phase else 0, phase.epochs):
                    self._epoch(pi, phase, e)
                    if bar is not None:
                        last = self.record.metrics[-1]
                        bar.set_postfix(acc=f"{last.get('acc', float('nan')):.3f}", asr=f"{last.get('asr', float('nan')):.3f}", refresh=False)
        finally:
            unfreeze(ctx.model)
            if bar is not None:
                bar.close()
        return self._finish()

    def _epoch(self, pi: int, phase: Phase, e: int) -> None:
        ctx = self.ctx
        ctx.pending, ctx.pending_arrays, ctx.pool_score, ctx.pending_faults = {}, {}, None, {}
        t0 = time.perf_counter()
        out = phase.run(ctx, phase.first_epoch + e) or {}
        train_seconds = time.perf_counter() - t0
        self._inject_faults()
        metrics = {**ctx.evaluate(), **self._purification()} if phase.evaluate else {}
        self.seconds += time.perf_counter() - t0
        metrics.update(phase=phase.name, phase_epoch=e, **out, **ctx.pending, **self._pool_truth(),
                       seconds=round(time.perf_counter() - t0, 3), train_seconds=round(train_seconds, 3))
        self.record.add_epoch(metrics, ctx.pending_arrays)
        self._take_snapshots()
        self.record.save()  # record first, then checkpoint: a crash between them only repeats an epoch
        self._checkpoint(pi, e + 1)
        if self.lock is not None:
            self.lock.refresh()

    PURIFICATION_SAMPLE = 500  # poisoned and as many clean training images whose scores each epoch logs (002 Fig. 8)

    @torch.no_grad()
    def _purification(self) -> dict[str, float]:
        """002 Fig. 8: the mean softmax score of the training label and of the true class, on fixed poisoned and clean samples (ground truth: runner only)."""
        from .engine import predict

        t = self.truth
        if not hasattr(self, "_score_index"):
            g, k = stream(self.config.seed, "purification sample"), self.PURIFICATION_SAMPLE
            pick = lambda m: m.nonzero().squeeze(1)[torch.randperm(int(m.sum()), generator=g)[:k]]  # noqa: E731
            self._score_index = torch.cat([pick(t.is_poison), pick(~t.is_poison)]).sort().values
        idx, ctx = self._score_index, self.ctx
        if not bool(t.is_poison[idx].any()):
            return {}
        model = ctx.average.model if ctx.average is not None else ctx.model
        p = predict(model, ctx.data.x[idx.to(ctx.data.x.device)], normalize=ctx.data.normalize,
                    batch_size=self.config.eval_batch_size).softmax(1).cpu()
        observed = p.gather(1, t.observed_label[idx][:, None]).squeeze(1)
        true = p.gather(1, t.true_label[idx][:, None]).squeeze(1)
        poisoned = t.is_poison[idx]
        return {"score/poisoned_label": round(float(observed[poisoned].mean()), 5), "score/poisoned_true": round(float(true[poisoned].mean()), 5),
                "score/clean_label": round(float(observed[~poisoned].mean()), 5)}

    def _inject_faults(self) -> None:
        """003 Table 3: swap the requested share of a defense's mask for random benign samples outside it (ground truth, runner only)."""
        for key, ratio in sorted(self.ctx.pending_faults.items()):
            mask = self.ctx.state[key]
            members = mask.nonzero().squeeze(1)
            k = int(round(ratio * len(members)))
            g = stream(self.config.seed, "faults", key)
            outside = (~mask.cpu() & ~self.truth.is_poison).nonzero().squeeze(1)
            drop = members[torch.randperm(len(members), generator=g)[:k]]
            add = outside[torch.randperm(len(outside), generator=g)[:k]].to(mask.device)
            new = mask.clone()
            new[drop], new[add] = False, True
            self.ctx.state[key] = new
            self.ctx.log(**{f"faults/{key}": k, f"benign_in/{key}": int((new.cpu() & ~self.truth.is_poison).sum())})

    def _pool_truth(self) -> dict[str, Any]:
        """What the ground truth says of the pool the defense logged this epoch (never shown to the defense)."""
        pool = self.ctx.pending_arrays.get("clean_pool")
        if pool is None:
            return {}
        is_poison = self.truth.is_poison
        flagged = ~pool  # isolated as (possibly) poisoned: 003 Table 2's TPR and FPR
        out = {"poison_in_pool": int((pool & is_poison).sum()), **isolation_rates(flagged, is_poison)}
        score = self.ctx.pool_score
        if score is not None:  # clean-hard: the hard_fraction·N clean samples of largest score (002 Section 5.2)
            hard = clean_hard_mask(score, is_poison, self.ctx.pool_hard_fraction)
            out.update(hard_in_pool=int((pool & hard).sum()), clean_hard=int(hard.sum()))
        return out

    def _take_snapshots(self) -> None:
        for name, values in self.ctx.pending_snapshots.items():
            self.record.snapshots.setdefault(name, {}).update(values)
        self.ctx.pending_snapshots = {}

    def _progress(self, start_phase: int, start_epoch: int):
        if self.quiet:
            return None
        from tqdm.auto import tqdm

        left = sum(p.steps * (p.epochs - (start_epoch if i == start_phase else 0)) for i, p in enumerate(self.phases) if i >= start_phase)
        tty = sys.stderr.isatty()
        return tqdm(total=left, desc=f"{self.config.defense} vs {self.config.attack}", unit="step", leave=False,
                    mininterval=0.1 if tty else 30.0, maxinterval=10.0 if tty else 300.0)

    def _checkpoint(self, phase: int, epoch: int) -> None:
        ctx = self.ctx
        save_atomic({
            "phase": phase, "epoch": epoch,
            "model": ctx.model.state_dict(),
            "optimizers": {k: o.state_dict() for k, (o, _) in self.optimizers.items()},
            "schedulers": {k: s.state_dict() for k, (_, s) in self.optimizers.items()},
            "state": ctx.state,
            "average": ctx.average.model.state_dict() if ctx.average is not None else {},
            "seconds": self.seconds,
        }, self.folder / "checkpoint.pt")

    def _resume(self) -> tuple[int, int]:
        """(phase index, epochs finished in it) of the checkpoint, with model, optimisers, schedulers and state restored."""
        path = self.folder / "checkpoint.pt"
        if not path.exists() or not self.record.path.exists():
            return 0, 0
        ckpt = load_checked(path, required=("phase", "epoch", "model", "optimizers", "schedulers", "state"))
        phase, epoch = int(ckpt["phase"]), int(ckpt["epoch"])
        if not (0 <= phase < len(self.phases) and 0 <= epoch <= self.phases[phase].epochs) or set(ckpt["optimizers"]) != set(self.optimizers):
            raise RecordError(f"{path} does not match this defense's phases {[p.name for p in self.phases]}; delete {self.folder} and run again.")
        done = sum(p.epochs for p in self.phases[:phase]) + epoch
        old = Record.load(self.record.path)
        if old.epochs < done:
            raise RecordError(f"{self.record.path} holds {old.epochs} epochs but its checkpoint {done}; delete {self.folder} and run again.")
        old.truncate(done)
        old.arrays.update(self.record.arrays)
        old.snapshots.update(self.record.snapshots)
        old.path = self.record.path
        self.record = old
        ctx = self.ctx
        ctx.model.load_state_dict(ckpt["model"])
        for key, (opt, sched) in self.optimizers.items():
            opt.load_state_dict(ckpt["optimizers"][key])
            sched.load_state_dict(ckpt["schedulers"][key])
        ctx.state.update(ckpt["state"])
        if ctx.average is not None and ckpt.get("average"):
            ctx.average.model.load_state_dict(ckpt["average"])
        self.seconds = float(ckpt.get("seconds", 0.0))
        return phase, epoch

    def _finish(self) -> dict[str, Any]:
        """Finish the record: the defense's extra summary, pool figures, time per phase, final weights."""
        ctx = self.ctx
        extra = self.spec.finish(ctx) if self.spec.finish else {}
        if "ce" not in ctx.pending_snapshots.get("final", {}) and "ce" not in self.record.snapshots.get("final", {}):
            ctx.snapshot_losses("final")  # every defense's final per-sample losses (002 Fig. 1), unless it took its own
        self._take_snapshots()
        metrics = self.record.metrics
        last = next((m for m in reversed(metrics) if "acc" in m), None) or ctx.evaluate()
        per_phase: dict[str, float] = {}
        for m in metrics:  # 002 Table 3: time per stage
            per_phase[f"seconds_{m['phase']}"] = per_phase.get(f"seconds_{m['phase']}", 0.0) + m["seconds"]
        per_phase = {k: round(v, 1) for k, v in per_phase.items()}
        summary = {"acc": last["acc"], "asr": last.get("asr"), **class_health(last["acc_per_class"], self.config.target, self.classes, last.get("clean_target_rate")),
                   "seconds": round(self.seconds, 1), "machine": machine(ctx.device), "precision": self.precision,
                   "precision_reason": self.precision_reason, "record": str(self.folder),
                   "epochs": self.record.epochs, "phases": {p.name: p.epochs for p in self.phases},
                   **self._pool_summary(), **per_phase, **(extra or {})}
        self.record.summary = summary
        self.record.status = "done"
        # the weights whose ACC/ASR the summary reports: the weight average when there is one
        ctx.save_weights("final", file="model.pt", model=ctx.average.model if ctx.average is not None else None)
        self._take_snapshots()
        self.record.save()
        return summary

    def _pool_summary(self) -> dict[str, Any]:
        """Isolation figures over the run: the most poisoned samples ever in D_C (002 Tables 11-12) and the last pool's TPR/FPR."""
        if "clean_pool" not in self.record.epoch_arrays:
            return {}
        is_poison = self.truth.is_poison
        n_poison = int(is_poison.sum())
        counts = [m["poison_in_pool"] for m in self.record.metrics if "poison_in_pool" in m]
        flagged = ~self.record.epoch_array("clean_pool")  # D_P: what the defense treats as possibly poisoned
        return {
            "max_poison_in_clean_pool": max(counts) if counts else 0,
            "max_poison_fraction_in_clean_pool": max(counts) / n_poison if counts and n_poison else 0.0,
            **isolation_rates(flagged, is_poison),
        }


def _unbuilt(attack):
    """A prepared attack's stand-in for :func:`preflight`: the built poison's indices and labels, the images left as they are."""
    import copy

    stand_in, same = copy.copy(attack), lambda x, **_: x.clone()
    stand_in.apply = stand_in.train_trigger = same
    if callable(getattr(attack, "noise", None)):  # a noise mode stays one (the cover count depends on it)
        stand_in.noise = same
    return stand_in


def preflight(configs, root: Path | None = None) -> None:
    """Every check each run of ``configs`` makes before it trains (options, data, the defense's data-dependent check), none
    trained and no poison built: a batch refuses a bad config before its first run, not when that run starts."""
    for config in configs:
        try:
            Run(config, root=root, quiet=True, preflight=True)
        except ValueError as err:  # the same error (a DataUnavailableError stays one), prefixed with the run it stopped
            err.args = (f"{config.defense} / {config.attack} at {config.scale} (seed {config.seed}): {err}", *err.args[1:])
            raise


def finished_record(config: RunConfig, root: Path | None = None) -> Record | None:
    """The finished record of ``config`` if there is one (an interrupted or missing run: None)."""
    path = run_folder(config, root) / "record.pt"
    if not path.exists():
        return None
    rec = Record.load(path)
    return rec if rec.status == "done" else None


def _reused(config: RunConfig, rec: Record) -> dict[str, Any]:
    summary = dict(rec.summary)
    if "lowest_class_acc" not in summary:  # a record from before the summary carried its classes
        last = next(m for m in reversed(rec.metrics) if "acc_per_class" in m)
        summary.update(class_health(last["acc_per_class"], config.target, class_names(config.dataset), last.get("clean_target_rate")))
    return {**summary, "reused": True}


def run(config: RunConfig, *, root: Path | None = None, quiet: bool = False, force: bool = False,
        rebuild_poison: bool = False, wait: bool = True) -> dict[str, Any]:
    """Run (or resume, or reuse) the experiment ``config``; return its summary dict.

    A finished record with the same config hash is reused unless ``force``; an interrupted
    one resumes from its last finished epoch. ``rebuild_poison`` builds a prepared attack's
    poison (CLB) anew instead of reading its cache. One process trains a config at a time
    (:class:`~asdkit.locks.RecordLock`): if another live one holds it, ``wait`` waits for it and
    reuses its record, else :class:`~asdkit.locks.RunLocked` is raised (a sweep moves on).
    """
    from .locks import RecordLock, RunLocked

    validate(config)
    folder = run_folder(config, root)
    force = force or rebuild_poison  # a new poison makes a new run
    rec = None if force else finished_record(config, root)
    if rec is not None:
        return _reused(config, rec)
    lock = RecordLock(folder)
    told = False
    while True:
        try:
            lock.acquire()
            break
        except RunLocked as exc:
            if not wait:
                raise
            if not told and not quiet:
                print(f"waiting: {exc}", file=sys.stderr)
                told = True
            time.sleep(5)
    try:
        rec = None if force else finished_record(config, root)  # finished by the process we waited for
        if rec is not None:
            return _reused(config, rec)
        r = Run(config, root=root, quiet=quiet, rebuild_poison=rebuild_poison)  # every check passes before anything old is deleted
        if force and folder.exists():
            for path in folder.glob("*.pt"):
                path.unlink()
        r.lock = lock
        return r.execute()
    finally:
        lock.release()


def run_seeds(config: RunConfig, seeds, *, root: Path | None = None, quiet: bool = False, force: bool = False,
              rebuild_poison: bool = False) -> dict[str, Any]:
    """``config`` over several seeds, reusing finished records: each seed's summary and their spread (:func:`~asdkit.analysis.over_seeds`)."""
    from dataclasses import replace

    from .analysis import over_seeds

    configs = {int(s): replace(config, seed=int(s)) for s in seeds}
    for c in configs.values():  # every seed's config checks before the first trains
        validate(c)
    runs = {s: run(c, root=root, quiet=quiet, force=force, rebuild_poison=rebuild_poison) for s, c in configs.items()}
    return {"runs": runs, "over_seeds": over_seeds(runs)}
