"""Where the planner's groups of jobs run: a local process pool, submitit job arrays (SLURM) or Ray tasks.

Each launcher only calls the planner's ``worker(group, root, threads)`` on each group somewhere
(one result list per group): the record store (a path every worker sees) and its per-record
locks do the rest. submitit and Ray are imported only when used; a pre-empted SLURM job is
requeued by submitit and its run resumes from its record's last finished epoch.
"""
from __future__ import annotations

from pathlib import Path

__all__ = ["local", "slurm", "ray", "slurm_parameters", "check"]


def _needs(module: str, extra: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise ValueError(f"The {extra} launcher needs {module}: pip install 'asdkit[{extra}]' (or pip install {module}).") from None


def check(launcher: str, options: dict) -> None:
    """Whether ``launcher`` can run here, before any work: its package, and for SLURM a scheduler (``sbatch``) to submit to."""
    import shutil

    if launcher == "slurm":
        _needs("submitit", "slurm")
        if options.get("cluster") is None and shutil.which("sbatch") is None:
            raise ValueError("--launcher slurm needs a SLURM scheduler (sbatch) on this machine and none was found; "
                             "submit from a SLURM login node, or run here with --launcher local.")
    elif launcher == "ray":
        _needs("ray", "ray")


def _watch_parent(parent: int) -> None:
    """In a worker: end within a second once the process that started it is gone (a killed sweep leaves no orphans)."""
    import os
    import threading
    import time

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, daemon=True, name="asdkit-parent-watch").start()


def _failed(exc: BaseException, group: list, prefix: str = "") -> list[dict]:
    """One failure per job of a group whose worker itself died (memory, a signal, a lost node)."""
    return [{"state": "failed", "error": f"{prefix}{type(exc).__name__}: {str(exc)[-600:]}"}] * len(group)


def local(groups, *, worker, root: Path, jobs: int = 1, quiet: bool = False) -> list[list[dict]]:
    """``jobs`` processes here, one thread share each; a group's jobs in order in one process."""
    import multiprocessing as mp
    import os
    from concurrent.futures import ProcessPoolExecutor

    from tqdm.auto import tqdm

    threads = max(1, (os.cpu_count() or 1) // max(1, jobs)) if jobs > 1 else 0
    bar = tqdm(total=sum(len(g) for g in groups), desc=f"runs, {jobs} at a time", unit="run", disable=quiet)
    results: list[list[dict]] = []
    with ProcessPoolExecutor(max_workers=max(1, jobs), mp_context=mp.get_context("spawn"), initializer=_watch_parent,
                             initargs=(os.getpid(),)) as pool:
        futures = [pool.submit(worker, [j.to_dict() for j in g], str(root), threads) for g in groups]
        for g, f in zip(groups, futures):
            try:
                results.append(f.result())
            except Exception as exc:  # noqa: BLE001 - the worker itself died: every job of it failed
                results.append(_failed(exc, g))
            bar.update(len(g))
    bar.close()
    return results


class _Job:
    """A submitit job that makes one group; on pre-emption or timeout it requeues itself (the records resume)."""

    def __init__(self, worker) -> None:
        self.worker = worker

    def __call__(self, group: list, root: str) -> list:
        return self.worker(group, root)

    def checkpoint(self, group: list, root: str):
        import submitit

        return submitit.helpers.DelayedSubmission(self, group, root)


def slurm_parameters(options: dict) -> dict:
    """submitit's parameters from the launcher options: partition, time limit (min), GPUs per job, array parallelism."""
    p = {"timeout_min": int(options.get("time", 240)), "gpus_per_node": int(options.get("gpus", 1)),
         "cpus_per_task": int(options.get("cpus", 4)), "slurm_array_parallelism": int(options.get("parallel", 32)),
         "name": "asdkit"}
    if options.get("partition"):
        p["slurm_partition"] = options["partition"]
    return p


def slurm(groups, *, worker, root: Path, options: dict, quiet: bool = False) -> list[list[dict]]:
    """Submit the groups as one job array; wait for them; one result list per group (a failure keeps its error)."""
    submitit = _needs("submitit", "slurm")
    cluster = options.get("cluster")  # None: SLURM if present; "local" / "debug": this machine (tests)
    ex = submitit.AutoExecutor(folder=Path(root) / "submitit" / "%j", cluster=cluster)
    params = slurm_parameters(options)
    if cluster in ("local", "debug"):
        params = {"timeout_min": params["timeout_min"], "name": params["name"]}
    ex.update_parameters(**params)
    jobs = ex.map_array(_Job(worker), [[j.to_dict() for j in g] for g in groups], [str(root)] * len(groups))
    results = []
    for g, job in zip(groups, jobs):
        try:
            results.append(job.result())
        except Exception as exc:  # noqa: BLE001 - reported with its jobs and the array job's id
            results.append(_failed(exc, g, f"job {job.job_id}: "))
    return results


def ray(groups, *, worker, root: Path, options: dict, quiet: bool = False) -> list[list[dict]]:
    """Run the groups as Ray tasks (``gpus`` per task, fractions allowed) on the cluster at ``address`` or a local one."""
    ray_ = _needs("ray", "ray")
    if not ray_.is_initialized():
        ray_.init(address=options.get("address"), ignore_reinit_error=True, include_dashboard=False, log_to_driver=False)
    task = ray_.remote(num_gpus=float(options.get("gpus", 0)), num_cpus=float(options.get("cpus", 1)), max_retries=2)(worker)
    refs = [task.remote([j.to_dict() for j in g], str(root), int(options.get("threads", 1))) for g in groups]
    results = []
    for g, ref in zip(groups, refs):
        try:
            results.append(ray_.get(ref))
        except Exception as exc:  # noqa: BLE001
            results.append(_failed(exc, g))
    return results
