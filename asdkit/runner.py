"""Executing a prepared run: a defense's phases, one epoch at a time, recorded and checkpointed so that it resumes.

:class:`Run` takes what :func:`asdkit.preparation.prepare` built, hands the defense only its
:class:`~asdkit.context.Context` (no ground truth), and after each epoch evaluates, lets the
observers (:mod:`asdkit.observers`) add what the ground truth says, saves the record and then a
checkpoint, so a run killed anywhere resumes at (phase, epoch) with every optimiser's and
scheduler's state. Which runs to train, and in what order, is the planner's (:mod:`asdkit.planner`).
"""
from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from .analysis import class_health
from .engine import Diverged
from .models import unfreeze
from .observers import PoolTruth, Purification, inject_faults
from .phases import Phase, build_optimizers, select
from .preparation import Prepared, prepare
from .records import CHECKPOINT, Record, RecordError, code_version, load_checked, machine, save_atomic

__all__ = ["Run"]


class Run:
    """One run, prepared and checked before any training starts; :meth:`execute` runs its phases.

    Attributes: ``config``, ``spec`` (the defense), ``attack``, ``truth`` (the :class:`PoisonedSet`, ground
    truth included: the runner's, never the defense's), ``ctx`` (what the defense sees),
    ``phases``, ``record``, ``folder``.
    """

    def __init__(self, config, *, root: Path | None = None, quiet: bool = False, rebuild_poison: bool = False,
                 prepared: Prepared | None = None) -> None:
        """Prepare the run (or take ``prepared``), build its optimisers and a fresh record."""
        p = prepared or prepare(config, root=root, quiet=quiet, rebuild_poison=rebuild_poison)
        self.config, self.spec, self.attack, self.truth = p.config, p.spec, p.attack, p.truth
        self.ctx, self.phases = p.ctx, p.phases
        self.folder, self.classes, self.quiet = p.folder, p.classes, quiet
        self.precision, self.precision_reason = p.precision, p.precision_reason
        self.optimizers = build_optimizers(self.ctx.model, self.phases)
        self.record = Record(self.config.to_dict(), code_version=code_version())
        self.record.path = self.folder / "record.pt"
        t = self.truth
        self.record.arrays.update(is_poison=t.is_poison, true_label=t.true_label, observed_label=t.observed_label, is_cover=t.is_cover)
        if len(self.ctx.seeds):
            self.record.arrays["seeds"] = self.ctx.seeds
        self.pool_truth = PoolTruth(t.is_poison)
        self.purification = Purification(t, self.config.seed, self.config.eval_batch_size)
        self.seconds = 0.0
        self.lock = None  # the RecordLock the planner holds while this run trains (refreshed every epoch)

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
                select(ctx.model, phase.train)
                ctx.enter(phase.name, *self.optimizers[phase.key], bar)
                if bar is not None:
                    bar.set_description(f"{self.config.defense} vs {self.config.attack} · {phase.name}", refresh=False)
                for e in range(start_epoch if pi == start_phase else 0, phase.epochs):
                    self._epoch(pi, phase, e)
                    if bar is not None:
                        last = self.record.metrics[-1]
                        bar.set_postfix(acc=f"{last.get('acc', float('nan')):.3f}", asr=f"{last.get('asr', float('nan')):.3f}", refresh=False)
                if phase.product is not None and phase.epochs:  # what later runs start from (a SimCLR backbone)
                    ctx.keep(phase.product)
        finally:
            unfreeze(ctx.model)
            if bar is not None:
                bar.close()
        return self._finish()

    def _epoch(self, pi: int, phase: Phase, e: int) -> None:
        ctx = self.ctx
        t0 = time.perf_counter()
        try:
            out = phase.run(ctx, phase.first_epoch + e) or {}
        except Diverged as err:  # the record keeps the finished epochs; a rerun resumes before this one and says so again
            raise Diverged(f"{self.config.defense} diverged in phase {phase.name!r}, epoch {e + 1} of {phase.epochs}: {err}. "
                           f"The {self.record.epochs} finished epoch(s) are kept in {self.folder}; lower the phase's lr "
                           "(--set lr=... or the defense's own lr option: a new config, a new run).") from None
        train_seconds = time.perf_counter() - t0
        log = ctx.take_log()
        log.metrics.update(inject_faults(log.faults, ctx.state, self.truth.is_poison, self.config.seed))
        model = ctx.average.model if ctx.average is not None else ctx.model
        metrics = {**ctx.evaluate(), **self.purification.measure(model, ctx.data)} if phase.evaluate else {}
        self.seconds += time.perf_counter() - t0
        metrics.update(phase=phase.name, phase_epoch=e, **out, **log.metrics, **self.pool_truth.epoch(log),
                       seconds=round(time.perf_counter() - t0, 3), train_seconds=round(train_seconds, 3))
        self.record.add_epoch(metrics, log.arrays)
        self._take_snapshots(log)
        self.record.save()  # record first, then checkpoint: a crash between them only repeats an epoch
        self._checkpoint(pi, e + 1)
        if self.lock is not None:
            self.lock.refresh()

    def _take_snapshots(self, log) -> None:
        for name, values in log.snapshots.items():
            self.record.snapshots.setdefault(name, {}).update(values)

    def _progress(self, start_phase: int, start_epoch: int):
        if self.quiet:
            return None
        from tqdm.auto import tqdm

        left = sum(p.steps * (p.epochs - (start_epoch if i == start_phase else 0)) for i, p in enumerate(self.phases) if i >= start_phase)
        tty = sys.stderr.isatty()
        return tqdm(total=left, desc=f"{self.config.defense} vs {self.config.attack}", unit="step", leave=False,
                    mininterval=0.1 if tty else 30.0, maxinterval=10.0 if tty else 300.0)

    # -- checkpoints -------------------------------------------------------------------------
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
        }, self.folder / CHECKPOINT)

    def _resume(self) -> tuple[int, int]:
        """(phase index, epochs finished in it) of the checkpoint, with model, optimisers, schedulers and state restored."""
        path = self.folder / CHECKPOINT
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

    # -- the end -----------------------------------------------------------------------------
    def _finish(self) -> dict[str, Any]:
        """Finish the record: the defense's extra summary, pool figures, time per phase, final weights."""
        ctx = self.ctx
        extra = self.spec.finish(ctx) if self.spec.finish else {}
        if "ce" not in ctx.epoch_log.snapshots.get("final", {}) and "ce" not in self.record.snapshots.get("final", {}):
            ctx.snapshot_losses("final")  # every defense's final per-sample losses (002 Fig. 1), unless it took its own
        self._take_snapshots(ctx.take_log())
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
                   **self.pool_truth.summary(self.record), **per_phase, **(extra or {})}
        self.record.summary = summary
        self.record.status = "done"
        # the weights whose ACC/ASR the summary reports: the weight average when there is one
        ctx.save_weights("final", file="model.pt", model=ctx.average.model if ctx.average is not None else None)
        self._take_snapshots(ctx.take_log())
        self.record.save()
        return summary
