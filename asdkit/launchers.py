"""The cluster launchers of :func:`asdkit.sweep.launch`: submitit job arrays (SLURM) and Ray tasks, imported only when used.

Both only call :func:`asdkit.sweep._run_one` on a config somewhere: the record store (a path
every worker sees) and its per-record locks do the rest. A pre-empted SLURM job is requeued by
submitit and its run resumes from its record's last finished epoch.
"""
from __future__ import annotations

from pathlib import Path

__all__ = ["slurm", "ray", "slurm_parameters"]


def _needs(module: str, extra: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise ValueError(f"The {extra} launcher needs {module}: pip install 'asdkit[{extra}]' (or pip install {module}).") from None


class _Job:
    """A submitit job that runs one config; on pre-emption or timeout it requeues itself (the record resumes)."""

    def __call__(self, config: dict, root: str) -> dict:
        from .sweep import _run_one

        return _run_one(config, root)

    def checkpoint(self, config: dict, root: str):
        import submitit

        return submitit.helpers.DelayedSubmission(self, config, root)


def slurm_parameters(options: dict) -> dict:
    """submitit's parameters from the sweep's options: partition, time limit (min), GPUs per run, array parallelism."""
    p = {"timeout_min": int(options.get("time", 240)), "gpus_per_node": int(options.get("gpus", 1)),
         "cpus_per_task": int(options.get("cpus", 4)), "slurm_array_parallelism": int(options.get("parallel", 32)),
         "name": "asdkit"}
    if options.get("partition"):
        p["slurm_partition"] = options["partition"]
    return p


def slurm(todo, *, root: Path, options: dict, quiet: bool = False) -> list[dict]:
    """Submit the missing runs as one job array; wait for them; return one result per run (a failure keeps its error)."""
    submitit = _needs("submitit", "slurm")
    from .runner import run_folder

    cluster = options.get("cluster")  # None: SLURM if present; "local" / "debug": this machine (tests)
    ex = submitit.AutoExecutor(folder=Path(root) / "submitit" / "%j", cluster=cluster)
    params = slurm_parameters(options)
    if cluster in ("local", "debug"):
        params = {"timeout_min": params["timeout_min"], "name": params["name"]}
    ex.update_parameters(**params)
    job = _Job()
    jobs = ex.map_array(job, [c.to_dict() for c in todo], [str(root)] * len(todo))
    results = []
    for c, j in zip(todo, jobs):
        try:
            res = j.result()
        except Exception as exc:  # noqa: BLE001 - reported with its config and the job's id
            res = {"state": "failed", "error": f"job {j.job_id}: {str(exc)[-600:]}"}
        results.append({"config": c, "run": run_folder(c, root).name, **res})
    return results


def ray(todo, *, root: Path, options: dict, quiet: bool = False) -> list[dict]:
    """Run the missing runs as Ray tasks (``gpus`` per task, fractions allowed) on the cluster at ``address`` or a local one."""
    ray_ = _needs("ray", "ray")
    from .runner import run_folder
    from .sweep import _run_one

    if not ray_.is_initialized():
        ray_.init(address=options.get("address"), ignore_reinit_error=True, include_dashboard=False, log_to_driver=False)
    task = ray_.remote(num_gpus=float(options.get("gpus", 0)), num_cpus=float(options.get("cpus", 1)), max_retries=2)(_run_one)
    refs = [task.remote(c.to_dict(), str(root), int(options.get("threads", 1))) for c in todo]
    results = []
    for c, ref in zip(todo, refs):
        try:
            res = ray_.get(ref)
        except Exception as exc:  # noqa: BLE001
            res = {"state": "failed", "error": f"{type(exc).__name__}: {str(exc)[-600:]}"}
        results.append({"config": c, "run": run_folder(c, root).name, **res})
    return results
