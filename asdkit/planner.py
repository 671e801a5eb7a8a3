"""The run store's planner: what a set of runs needs, in what order, and who trains it (here, a process pool, SLURM or Ray).

Every run is a pure function of its config and lands in the store keyed by its hash
(:func:`asdkit.records.run_folder`). The course, the figures and a sweep only *declare* sets of
configs; :func:`launch` (or :func:`run` for one config) does the rest:

1. **dependencies first, once**: the clean twin a surrogate attack is built against (an
   ordinary run) and every built poison (:mod:`asdkit.prepared`) are jobs of their own, done
   before the runs that read them; runs that share a phase product (a SimCLR backbone) go to
   one worker in order, so the first makes it and the others reuse it;
2. **pre-flight**: every check of every run before the first trains;
3. **one writer per record**: a run another live process holds is left to it (:mod:`asdkit.locks`);
   a finished one is reused, an interrupted one resumes.
"""
from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from .analysis import class_health
from .attacks import ATTACKS
from .config import RunConfig, defense_options, defense_spec, make_config, validate
from .data import class_names
from .locks import RecordLock, RunLocked
from .preparation import poisoned_set, preflight, splits
from .prepared import poison_cache, surrogate_config
from .records import Record, check_store, finished_record, run_folder, runs_dir
from .runner import Run

__all__ = ["Job", "LAUNCHERS", "RunFailed", "dependencies", "stages", "train", "run", "run_seeds", "status", "launch", "share_groups",
           "estimate", "duration", "describe", "summary_lines", "wait_for", "work", "preflight"]

LAUNCHERS = ("local", "slurm", "ray")


@dataclass(frozen=True)
class Job:
    """One thing to make: a run's record (``kind="run"``) or a built poison (``kind="poison"``), for ``config``."""

    kind: str
    config: RunConfig

    def to_dict(self) -> dict:
        return {"kind": self.kind, "config": self.config.to_dict()}


def _needs_poison(config: RunConfig) -> bool:
    attack = ATTACKS[config.attack]
    return attack.needs_build(config.rate)  # whether the attack is prepared, and at this rate


def dependencies(config: RunConfig) -> list[Job]:
    """What ``config`` reads that another job makes, in order: the clean twin (a surrogate attack), then the built poison."""
    if not _needs_poison(config):
        return []
    twin = [Job("run", surrogate_config(config))] if ATTACKS[config.attack].prepared == "surrogate" else []
    return twin + [Job("poison", config)]


def stages(configs: list[RunConfig], root: Path | None = None) -> list[list[Job]]:
    """The jobs of ``configs`` in the order they can run: clean twins, then poisons (one per cache file), then the runs."""
    root = Path(root or runs_dir())
    twins: dict[str, Job] = {}
    poisons: dict[str, Job] = {}
    for c in configs:
        for job in dependencies(c):
            if job.kind == "run":
                twins.setdefault(run_folder(job.config, root).name, job)
            else:
                poisons.setdefault(poison_cache(c, root).name, job)
    return [s for s in (list(twins.values()), list(poisons.values()), [Job("run", c) for c in configs]) if s]


# -- one config, in this process --------------------------------------------------------------
def _reused(config: RunConfig, rec: Record) -> dict[str, Any]:
    summary = dict(rec.summary)
    if "lowest_class_acc" not in summary:  # a record from before the summary carried its classes
        last = next(m for m in reversed(rec.metrics) if "acc_per_class" in m)
        summary.update(class_health(last["acc_per_class"], config.target, class_names(config.dataset), last.get("clean_target_rate")))
    return {**summary, "reused": True}


def _locked(folder: Path, *, wait: bool, quiet: bool) -> RecordLock:
    """The record lock of ``folder``, taken (waiting for a live holder when ``wait``, else :class:`RunLocked`)."""
    lock, told = RecordLock(folder), False
    while True:
        try:
            lock.acquire()
            return lock
        except RunLocked as exc:
            if not wait:
                raise
            if not told and not quiet:
                print(f"waiting: {exc}", file=sys.stderr)
                told = True
            time.sleep(5)


def train(config: RunConfig, *, root: Path | None = None, quiet: bool = False, force: bool = False, wait: bool = True) -> dict[str, Any]:
    """Train (or resume, or reuse) the one run ``config`` whose dependencies are made; its summary.

    A finished record is reused unless ``force``; one other live process holding the record is
    waited for (``wait``) or :class:`~asdkit.locks.RunLocked` is raised (a sweep moves on).
    """
    validate(config)
    folder = run_folder(config, check_store(root))
    rec = None if force else finished_record(config, root)
    if rec is not None:
        return _reused(config, rec)
    lock = _locked(folder, wait=wait, quiet=quiet)
    try:
        rec = None if force else finished_record(config, root)  # finished by the process we waited for
        if rec is not None:
            return _reused(config, rec)
        r = Run(config, root=root, quiet=quiet)  # every check passes before anything old is deleted
        if force and folder.exists():
            for path in folder.glob("*.pt"):
                path.unlink()
        r.lock = lock
        return r.execute()
    finally:
        lock.release()
        try:
            if folder.is_dir() and not any(folder.iterdir()):  # a run refused before it wrote anything leaves no folder
                folder.rmdir()
        except OSError:  # another process took the folder meanwhile: it is theirs
            pass


def build_poison(config: RunConfig, *, root: Path | None = None, rebuild: bool = False, quiet: bool = True) -> str:
    """Make ``config``'s built poison (its clean twin must be trained); the cache file's path."""
    from .devices import resolve_device

    train_set, _ = splits(config)
    poisoned_set(config, train_set, root=root, device=resolve_device(config.device), rebuild=rebuild, quiet=quiet)
    return str(poison_cache(config, Path(root or runs_dir())))


def run(config: RunConfig, *, root: Path | None = None, quiet: bool = False, force: bool = False, rebuild_poison: bool = False,
        wait: bool = True) -> dict[str, Any]:
    """Run (or resume, or reuse) the experiment ``config`` and what it depends on, here; return its summary dict.

    ``rebuild_poison`` builds a prepared attack's poison anew instead of reading its cache (and so trains the run again).
    """
    validate(config)
    check_store(root)
    rec = None if force or rebuild_poison else finished_record(config, root)
    if rec is not None:  # a finished run needs nothing made
        return _reused(config, rec)
    for job in dependencies(config):
        if job.kind == "run":
            train(job.config, root=root, quiet=quiet, wait=wait)
        elif rebuild_poison or not poison_cache(config, Path(root or runs_dir())).exists():
            build_poison(config, root=root, rebuild=rebuild_poison, quiet=quiet)
    return train(config, root=root, quiet=quiet, force=force or rebuild_poison, wait=wait)


def run_seeds(config: RunConfig, seeds, *, root: Path | None = None, quiet: bool = False, force: bool = False,
              rebuild_poison: bool = False) -> dict[str, Any]:
    """``config`` over several seeds, reusing finished records: each seed's summary and their spread (:func:`~asdkit.analysis.over_seeds`)."""
    from .analysis import over_seeds

    configs = {int(s): replace(config, seed=int(s)) for s in seeds}
    for c in configs.values():  # every seed's config checks before the first trains
        validate(c)
    runs = {s: run(c, root=root, quiet=quiet, force=force, rebuild_poison=rebuild_poison) for s, c in configs.items()}
    return {"runs": runs, "over_seeds": over_seeds(runs)}


# -- the store's state ------------------------------------------------------------------------
def status(configs: list[RunConfig], root: Path | None = None) -> list[tuple[RunConfig, str]]:
    """Each config's state: done, running (a live lock), partial (resumable), failed (a stale lock), corrupt (a record that
    cannot be read: delete its folder) or missing."""
    out = []
    for c in configs:
        folder = run_folder(c, root)
        record, lock = folder / "record.pt", RecordLock(folder)
        done = corrupt = False
        if record.exists():
            try:
                done = Record.load(record).status == "done"
            except (OSError, ValueError):
                corrupt = True
        if done:
            state = "done"
        elif corrupt:
            state = "corrupt"
        elif lock.holder() is not None:
            state = "failed" if lock.stale() else "running"
        elif record.exists():
            state = "partial"
        else:
            state = "missing"
        out.append((c, state))
    return out


def wait_for(configs: list[RunConfig], root: Path | None = None, *, poll: float = 10.0, timeout: float | None = None) -> list[tuple]:
    """Block until no config is running elsewhere (two launchers on one set: the second waits for the first's runs)."""
    t0 = time.time()
    while True:
        states = status(configs, root)
        if not any(s == "running" for _, s in states) or (timeout is not None and time.time() - t0 > timeout):
            return states
        time.sleep(poll)


# 002 Table 3 (CIFAR-10, their GPU): seconds of one run. No defense and PIPD are not in it: ABL's stage 2 (training on the
# rest, a plain supervised run) and its total (PIPD's LGA pre-isolation and its 20 epochs of selective training are ABL-like) stand in.
PAPER_SECONDS = {"asd": 9990.0, "dbd": 45850.0, "abl": 3200.0, "pipd": 3200.0, "none": 2450.0}


def estimate(config: RunConfig, root: Path | None = None) -> float | None:
    """Seconds this run would take here: at paper scale 002 Table 3's GPU time; else its planned work times a per-image cost
    measured on this machine (:func:`asdkit.costs.estimate_seconds`), None if it cannot be prepared here."""
    if config.scale == "paper":
        return PAPER_SECONDS.get(config.defense)
    from .costs import estimate_seconds

    try:
        return estimate_seconds(config, root)
    except (ValueError, OSError, RuntimeError):  # its data or poison is not here yet: the launch's pre-flight says why
        return None


def duration(seconds: float) -> str:
    """A time as a reader wants it: ~45 s, ~12 min, ~3.5 h."""
    return f"~{seconds:.0f} s" if seconds < 120 else f"~{seconds / 60:.0f} min" if seconds < 7200 else f"~{seconds / 3600:.1f} h"


def describe(c: RunConfig) -> str:
    """One line naming a config by what differs from its scale's preset."""
    base = make_config(c.scale, defense=c.defense).to_dict()
    diff = {k: v for k, v in c.to_dict().items() if k != "device" and base.get(k) != v}
    for key in ("attack_args", "defense_args"):
        if key in diff:
            diff[key] = {k: v for k, v in diff[key].items() if base[key].get(k) != v}
    return f"{c.defense} vs {c.attack} seed {c.seed}" + (f" {json.dumps(diff, default=str)}" if diff else "")


def summary_lines(configs: list[RunConfig], root: Path | None = None) -> list[str]:
    """The set's table: the scale and the records folder, then each run's state, folder, what its config changes and, when it is
    not done, its estimated time here; the total of those last."""
    states = status(configs, root)
    scales = sorted({c.scale for c in configs})
    lines = [f"{', '.join(scales) or 'no'} scale; records in {Path(root or runs_dir()).resolve()}"]
    counts: dict[str, int] = {}
    total, unknown = 0.0, 0
    counted: set[str] = set()
    for c, state in states:
        counts[state] = counts.get(state, 0) + 1
        est = estimate(c, root) if state != "done" else None
        total += (est or 0.0) if run_folder(c, root).name not in counted else 0.0
        counted.add(run_folder(c, root).name)
        unknown += state != "done" and est is None
        lines.append(f"  {state:<8} {run_folder(c, root).name:<44} {describe(c)}" + (f"  {duration(est)}" if est else ""))
    source = "002 Table 3's GPU times" if configs and configs[0].scale == "paper" else "planned work × a per-image cost measured here"
    lines.append(f"{len(configs)} runs" + (": " if counts else "") + ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
                 + (f"; the ones not done: {duration(total)} in all, one at a time ({source})" if total else "")
                 + (f"; {unknown} without an estimate" if unknown else ""))
    return lines


# -- launching --------------------------------------------------------------------------------
def _product_keys(config: RunConfig) -> list[str]:
    """The phase products ``config``'s defense makes or reuses (DBD's SimCLR backbone)."""
    spec = defense_spec(config.defense)
    return [p.key for p in spec.products(config, defense_options(config))] if spec.products else []


def share_groups(jobs: list[Job]) -> list[list[Job]]:
    """Runs that share a phase product or a built poison as one group, run in order by one worker so the product is made
    once and read by the rest; every other job is a group of its own. Largest groups first."""
    groups: dict[str, list[Job]] = {}
    for job in jobs:
        c = job.config
        if job.kind == "run" and _needs_poison(c):
            key = json.dumps([c.attack, c.attack_args, c.seed, c.rate, c.train_size], sort_keys=True, default=str)
        elif job.kind == "run" and _product_keys(c):
            key = "products " + " ".join(_product_keys(c))
        else:
            key = json.dumps(job.to_dict(), sort_keys=True, default=str)
        groups.setdefault(key, []).append(job)
    return sorted(groups.values(), key=len, reverse=True)


def work(job: dict, root: str, threads: int = 0, quiet: bool = True) -> dict:
    """Worker (any launcher): make one job in the store at ``root``; a run another live worker holds is left to it."""
    if threads:
        import torch

        torch.set_num_threads(threads)
    cfg = RunConfig.from_dict(job["config"])
    if job["kind"] == "poison":
        return {"state": "done", "record": build_poison(cfg, root=Path(root), quiet=quiet)}
    try:
        s = train(cfg, root=Path(root), quiet=quiet, wait=False)
        return {"state": "reused" if s.get("reused") else "done", "acc": s.get("acc"), "asr": s.get("asr"), "record": s.get("record")}
    except RunLocked as exc:
        return {"state": "held elsewhere", "error": str(exc)}


def work_group(jobs: list[dict], root: str, threads: int = 0, quiet: bool = True) -> list[dict]:
    """Worker: make a group's jobs in order; a failed one is kept with its error and the next one goes on."""
    out = []
    for job in jobs:
        try:
            out.append(work(job, root, threads, quiet))
        except Exception as exc:  # noqa: BLE001 - a failed run is reported with its config, never swallowed
            out.append({"state": "failed", "error": f"{type(exc).__name__}: {exc}"})
    return out


def _todo(configs: list[RunConfig], root: Path) -> list[list[Job]]:
    """The stages still to make: runs not done or running elsewhere, with the dependencies they lack."""
    left = [c for c, state in status(configs, root) if state not in ("done", "running")]
    asked = {run_folder(c, root).name for c in left}  # their states are known: only the clean twins are looked up
    out = []
    for stage in stages(left, root):
        if stage[0].kind == "poison":
            stage = [j for j in stage if not poison_cache(j.config, root).exists()]
        else:
            twins = [j.config for j in stage if run_folder(j.config, root).name not in asked]
            done = {run_folder(c, root).name for c, s in status(twins, root) if s in ("done", "running")}
            stage = [j for j in stage if run_folder(j.config, root).name not in done]
        if stage:
            out.append(stage)
    return out


class RunFailed(ValueError):
    """A run (or a dependency) of a set failed; its error is in the message."""


def launch(configs: list[RunConfig], *, launcher: str = "local", jobs: int = 1, root: Path | None = None, dry_run: bool = False,
           options: dict | None = None, quiet: bool = False, keep_going: bool = True) -> list[dict]:
    """Make every config of ``configs`` that is not done, dependencies first, with ``launcher``; one result per dispatched job.

    ``keep_going=False``: stop at the first failure (the course and the figures need every run; a sweep reports and goes on).
    """
    if launcher not in LAUNCHERS:
        raise ValueError(f"The 'launcher' field must be one of {list(LAUNCHERS)}. Got {launcher!r} instead.")
    if jobs < 1:
        raise ValueError(f"The 'jobs' field must be an int in [1, inf). Got {jobs} instead.")
    root = check_store(root)
    if launcher != "local" and not dry_run:
        from .launchers import check

        check(launcher, options or {})
    todo = _todo(configs, root)
    if dry_run:
        return [{"config": j.config, "kind": j.kind, "state": "would run"} for stage in todo for j in stage]
    if not todo:
        return []
    if launcher == "local":  # every check of every run before the first trains (a cluster's nodes check their own)
        preflight([j.config for j in todo[-1]], root)
    twins = [j.config for c in configs for j in dependencies(c) if j.kind == "run"]
    results: list[dict] = []
    for stage in todo:
        if stage[0].kind == "poison":  # a twin another process trains is waited for, not built against half-made
            wait_for(twins, root)
        results += _dispatch(stage, launcher=launcher, jobs=jobs, root=root, options=options or {}, quiet=quiet, keep_going=keep_going)
        if not keep_going and any(r["state"] == "failed" for r in results):
            break
    return results


def _dispatch(stage: list[Job], *, launcher: str, jobs: int, root: Path, options: dict, quiet: bool, keep_going: bool = True) -> list[dict]:
    from . import launchers

    groups = share_groups(stage)
    if launcher == "local" and jobs == 1:  # here, in this process, one group after another, each run's progress shown
        from tqdm.auto import tqdm

        raw = []
        show = not quiet and len(groups) > 1
        cost = [sum((estimate(j.config, root) or 0.0) if j.kind == "run" else 0.0 for j in g) if show else 0.0 for g in groups]
        with tqdm(total=round(sum(cost)) or len(groups), desc=f"{stage[0].kind}s ({stage[0].config.scale}, estimated s)",
                  unit="s", disable=not show) as bar:  # the remaining time from each group's estimate, not from a count
            for g, c in zip(groups, cost):
                raw.append(work_group([j.to_dict() for j in g], str(root), quiet=quiet))
                bar.update(round(c) if sum(cost) else 1)
                if not keep_going and any(r["state"] == "failed" for r in raw[-1]):
                    break
    elif launcher == "local":
        raw = launchers.local(groups, worker=work_group, root=root, jobs=jobs, quiet=quiet)
    else:
        raw = getattr(launchers, launcher)([g for g in groups], worker=work_group, root=root, options=options, quiet=quiet)
    return [{"config": j.config, "kind": j.kind, "run": run_folder(j.config, root).name if j.kind == "run" else "poison of "
             + run_folder(j.config, root).name, **r} for g, res in zip(groups, raw) for j, r in zip(g, res)]
