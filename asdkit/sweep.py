"""Sweeps (issue 14): a set of configs from a grid or from figures' run lists, what is done and missing, and launchers for the missing.

Every run is a pure function of its config and lands in the record store keyed by its hash, so
a launcher only has to call :func:`asdkit.runner.run` on each missing config somewhere: the
``local`` launcher in a process pool here, ``slurm`` as a submitit job array, ``ray`` as Ray
tasks. A finished run is never repeated; a run another worker holds (its record lock) is left
to it; a failed run's error is reported with its config.
"""
from __future__ import annotations

import ast
import itertools
import json
import statistics
import time
from pathlib import Path
from typing import Any

from .config import RunConfig, make_config
from .records import Record, runs_dir

__all__ = ["grid", "parse_axes", "from_figures", "status", "estimate", "launch", "LAUNCHERS"]

LAUNCHERS = ("local", "slurm", "ray")


def _values(raw: str) -> list[Any]:
    """``0.3,0.5,0.7`` → [0.3, 0.5, 0.7]; a bracketed literal stays one value."""
    raw = raw.strip()
    if raw.startswith(("[", "(", "{")):
        return [ast.literal_eval(raw)]
    out = []
    for part in raw.split(","):
        try:
            out.append(ast.literal_eval(part.strip()))
        except (ValueError, SyntaxError):
            out.append(part.strip())
    return out


def parse_axes(assignments: list[str] = (), **flags: str | None) -> dict[str, list[Any]]:
    """The sweep's axes: ``--set key=v1,v2`` and the comma lists of ``--defense``, ``--attack``, ``--seed``, ``--rate``."""
    axes: dict[str, list[Any]] = {}
    for name, raw in flags.items():
        if raw is not None:
            if name == "seed":
                from .cli import _parse_seeds

                axes["seed"] = _parse_seeds(str(raw))
            else:
                axes[name] = _values(str(raw))
    for text in assignments:
        if "=" not in text:
            raise ValueError(f"--set expects key=value[,value...], got {text!r}")
        key, raw = text.split("=", 1)
        axes[key.strip()] = _values(raw)
    return axes


def grid(scale: str, axes: dict[str, list[Any]]) -> list[RunConfig]:
    """Every combination of the axes' values as a config at ``scale`` (each checked before anything runs)."""
    axes = dict(axes)
    defenses = axes.pop("defense", ["none"])
    keys = list(axes)
    configs = []
    for defense in defenses:
        for combo in itertools.product(*(axes[k] for k in keys)):
            configs.append(make_config(scale, defense=str(defense), overrides=dict(zip(keys, combo))))
    return configs


def from_figures(only: str | None, scale: str) -> list[RunConfig]:
    """The distinct runs the figures ``only`` (None: all) read at ``scale``."""
    from .figures import plan, select

    runs, _ = plan(select(only), scale)
    return list(runs.values())


def status(configs: list[RunConfig], root: Path | None = None) -> list[tuple[RunConfig, str]]:
    """Each config's state: done, running (a live lock), partial (resumable), failed (a stale lock) or missing."""
    from .locks import RecordLock
    from .runner import run_folder

    out = []
    for c in configs:
        folder = run_folder(c, root)
        record, lock = folder / "record.pt", RecordLock(folder)
        done = False
        if record.exists():
            try:
                done = Record.load(record).status == "done"
            except (OSError, ValueError):
                done = False
        if done:
            state = "done"
        elif lock.holder() is not None:
            state = "failed" if lock.stale() else "running"
        elif record.exists():
            state = "partial"
        else:
            state = "missing"
        out.append((c, state))
    return out


# 002 Table 3 (CIFAR-10, their GPU): seconds of one run. No defense and PIPD are not in it: ABL's stage 2 (training on the
# rest, a plain supervised run) and its total (PIPD's LGA pre-isolation and its 20 epochs of selective training are ABL-like) stand in.
PAPER_SECONDS = {"asd": 9990.0, "dbd": 45850.0, "abl": 3200.0, "pipd": 3200.0, "none": 2450.0}


def estimate(config: RunConfig, root: Path | None = None) -> float | None:
    """Seconds this run would take: the median of finished records of the same defense and scale in the store,
    else at paper scale 002 Table 3's time (None if neither)."""
    root = Path(root or runs_dir())
    seconds = []
    for path in root.glob(f"{config.defense}-*/record.pt"):
        try:
            d = Record.load(path)
        except (OSError, ValueError):
            continue
        if d.status == "done" and d.config.get("scale") == config.scale and d.summary.get("seconds"):
            seconds.append(float(d.summary["seconds"]))
    if seconds:
        return statistics.median(seconds)
    return PAPER_SECONDS.get(config.defense) if config.scale == "paper" else None


def _duration(seconds: float) -> str:
    return f"~{seconds:.0f} s" if seconds < 120 else f"~{seconds / 60:.0f} min" if seconds < 7200 else f"~{seconds / 3600:.1f} h"


def _run_one(config: dict, root: str, threads: int = 0) -> dict:
    """Worker (any launcher): run one config into the store at ``root``; a run another live worker holds is left to it."""
    from .config import RunConfig
    from .locks import RunLocked
    from .runner import run

    if threads:
        import torch

        torch.set_num_threads(threads)
    cfg = RunConfig.from_dict(config)
    try:
        s = run(cfg, root=Path(root), quiet=True, wait=False)
        return {"state": "reused" if s.get("reused") else "done", "acc": s.get("acc"), "asr": s.get("asr"), "record": s.get("record")}
    except RunLocked as exc:
        return {"state": "held elsewhere", "error": str(exc)}


def launch(configs: list[RunConfig], *, launcher: str = "local", jobs: int = 1, root: Path | None = None, dry_run: bool = False,
           options: dict | None = None, quiet: bool = False) -> list[dict]:
    """Run every config of ``configs`` that is not done, with ``launcher``; return one result per dispatched run (state, error)."""
    if launcher not in LAUNCHERS:
        raise ValueError(f"The 'launcher' field must be one of {list(LAUNCHERS)}. Got {launcher!r} instead.")
    root = Path(root or runs_dir())
    todo = [c for c, state in status(configs, root) if state not in ("done", "running")]
    if dry_run:
        return [{"config": c, "state": "would run"} for c in todo]
    if not todo:
        return []
    if launcher == "local":
        from .runner import preflight

        preflight(todo, root)  # every check of every run before the first trains (a cluster's nodes check their own)
        return _local(todo, jobs=jobs, root=root, quiet=quiet)
    from . import launchers

    return getattr(launchers, launcher)(todo, root=root, options=options or {}, quiet=quiet)


def share_groups(configs: list[RunConfig]) -> list[list[RunConfig]]:
    """Runs that share a cached product (a built attack's poison, DBD's SimCLR backbone) as one group, run in order by one
    worker so the product is made once; every other run is a group of its own. Largest groups first."""
    from .attacks import ATTACKS

    groups: dict[str, list[RunConfig]] = {}
    for c in configs:
        shared = ATTACKS[c.attack].prepared is not None or c.defense == "dbd"
        key = json.dumps([c.attack, c.attack_args, c.seed, c.rate, c.train_size], sort_keys=True, default=str) if shared \
            else json.dumps(c.to_dict(), sort_keys=True, default=str)
        groups.setdefault(key, []).append(c)
    return sorted(groups.values(), key=len, reverse=True)


def _run_group(configs: list[dict], root: str, threads: int = 0) -> list[dict]:
    """Worker: run a group's configs in order; a failed run is kept with its error and the next one goes on."""
    out = []
    for c in configs:
        try:
            out.append(_run_one(c, root, threads))
        except Exception as exc:  # noqa: BLE001 - a failed run is reported with its config, never swallowed
            out.append({"state": "failed", "error": f"{type(exc).__name__}: {exc}"})
    return out


def _local(todo: list[RunConfig], *, jobs: int, root: Path, quiet: bool) -> list[dict]:
    """The process pool launcher (``--jobs N``): groups of :func:`share_groups` in parallel processes, one thread share each."""
    import multiprocessing as mp
    import os
    from concurrent.futures import ProcessPoolExecutor, as_completed

    from tqdm.auto import tqdm

    from .runner import run_folder

    results = []
    threads = max(1, (os.cpu_count() or 1) // max(1, jobs))
    bar = tqdm(total=len(todo), desc=f"{todo[0].scale} runs, {jobs} at a time", unit="run", disable=quiet)
    with ProcessPoolExecutor(max_workers=max(1, jobs), mp_context=mp.get_context("spawn")) as pool:
        futures = {pool.submit(_run_group, [c.to_dict() for c in g], str(root), threads if jobs > 1 else 0): g
                   for g in share_groups(todo)}
        for f in as_completed(futures):
            group = futures[f]
            try:
                res = f.result()
            except Exception as exc:  # noqa: BLE001 - the worker itself died (memory, a signal): every run of it failed
                res = [{"state": "failed", "error": f"{type(exc).__name__}: {exc}"}] * len(group)
            for c, r in zip(group, res):
                results.append({"config": c, "run": run_folder(c, root).name, **r})
            bar.update(len(group))
    bar.close()
    return results


def describe(c: RunConfig) -> str:
    """One line naming a config by what differs from its scale's preset."""
    base = make_config(c.scale, defense=c.defense).to_dict()
    diff = {k: v for k, v in c.to_dict().items() if k != "device" and base.get(k) != v}
    for key in ("attack_args", "defense_args"):
        if key in diff:
            diff[key] = {k: v for k, v in diff[key].items() if base[key].get(k) != v}
    return f"{c.defense} vs {c.attack} seed {c.seed}" + (f" {json.dumps(diff, default=str)}" if diff else "")


def summary_lines(configs: list[RunConfig], root: Path | None = None) -> list[str]:
    """The sweep's table: state, run folder, what the config changes, the estimated seconds here."""
    from .runner import run_folder

    lines, counts, total = [], {}, 0.0
    cache: dict[tuple[str, str], float | None] = {}
    for c, state in status(configs, root):
        counts[state] = counts.get(state, 0) + 1
        key = (c.defense, c.scale)
        if key not in cache:
            cache[key] = estimate(c, root)
        est = cache[key]
        if state != "done" and est:
            total += est
        lines.append(f"  {state:<8} {run_folder(c, root).name:<44} {describe(c)}"
                     + (f"  {_duration(est)}" if est and state != "done" else ""))
    source = "002 Table 3's GPU times" if configs and configs[0].scale == "paper" else "medians of finished runs here"
    lines.append(f"{len(configs)} runs: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
                 + (f"; the ones not done: {total / 3600:.1f} run-hours ({source})" if total else ""))
    return lines


def wait_for(configs: list[RunConfig], root: Path | None = None, *, poll: float = 10.0, timeout: float | None = None) -> list[tuple]:
    """Block until no config is running elsewhere (two launchers on one sweep: the second waits for the first's runs)."""
    t0 = time.time()
    while True:
        states = status(configs, root)
        if not any(s == "running" for _, s in states) or (timeout is not None and time.time() - t0 > timeout):
            return states
        time.sleep(poll)
