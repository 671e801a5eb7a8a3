"""Sweeps: a grid is every combination, checked before anything runs; the local and submitit launchers give the same records; done runs are never repeated."""
from __future__ import annotations

import pytest

from asdkit.cli import main
from asdkit.config import config_hash
from asdkit.records import Record
from asdkit.planner import launch, status
from asdkit.records import run_folder
from asdkit.sweep import grid, parse_axes

FAST = ["epochs=1", "train_size=600", "test_size=300"]


def test_a_grid_is_every_combination_of_its_axes():
    axes = parse_axes(["defense.gamma=0.3,0.5"], defense="asd", attack="badnets,blend", seed="0-1")
    configs = grid("smoke", axes)
    assert len(configs) == 8 and len({config_hash(c) for c in configs}) == 8
    assert {(c.attack, c.seed, c.defense_args["gamma"]) for c in configs} == {(a, s, g) for a in ("badnets", "blend") for s in (0, 1) for g in (0.3, 0.5)}


def test_a_bad_value_anywhere_in_the_grid_is_refused_before_any_run(runs_env, capsys):
    assert main(["sweep", "--scale", "smoke", "--defense", "asd", "--set", "defense.gamma=0.3,7"]) == 2
    assert "gamma" in capsys.readouterr().err
    assert not runs_env.exists()
    assert main(["sweep", "--scale", "smoke", "--launcher", "local", "--jobs", "0"]) == 2


def _four():
    return grid("smoke", parse_axes(FAST, attack="badnets,blend", seed="0,1"))


def test_the_local_and_the_submitit_launchers_give_the_same_records_and_repeat_nothing(runs_env, tmp_path, monkeypatch):
    submitit = pytest.importorskip("submitit")  # noqa: F841  (the slurm extra)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    configs = _four()
    local = launch(configs, launcher="local", jobs=2, root=runs_env, quiet=True)
    assert sorted(r["state"] for r in local) == ["done"] * 4
    assert [s for _, s in status(configs, runs_env)] == ["done"] * 4
    assert launch(configs, launcher="local", root=runs_env, quiet=True) == []  # nothing left to run
    other = tmp_path / "slurm-store"
    sub = launch(configs, launcher="slurm", root=other, options={"cluster": "local", "time": 10}, quiet=True)
    assert sorted(r["state"] for r in sub) == ["done"] * 4, [r.get("error") for r in sub]
    for c in configs:
        a, b = Record.load(run_folder(c, runs_env)), Record.load(run_folder(c, other))
        assert a.metrics[-1]["acc"] == b.metrics[-1]["acc"] and a.metrics[-1]["asr"] == b.metrics[-1]["asr"]


def test_the_ray_launcher_gives_the_local_launchers_records(runs_env, tmp_path, monkeypatch):
    ray = pytest.importorskip("ray")  # the ray extra
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    configs = _four()
    launch(configs, launcher="local", jobs=2, root=runs_env, quiet=True)
    other = tmp_path / "ray-store"
    try:
        res = launch(configs, launcher="ray", root=other, options={"gpus": 0, "cpus": 1}, quiet=True)
    finally:
        ray.shutdown()
    assert sorted(r["state"] for r in res) == ["done"] * 4, [r.get("error") for r in res]
    for c in configs:
        a, b = Record.load(run_folder(c, runs_env)), Record.load(run_folder(c, other))
        assert a.metrics[-1]["acc"] == b.metrics[-1]["acc"] and a.metrics[-1]["asr"] == b.metrics[-1]["asr"]


def test_a_sweep_refuses_a_config_that_fails_its_checks_before_any_run_trains(runs_env, capsys):
    # a data set path that does not exist passes the config's own checks; the pre-flight loads it before the first run trains
    code = main(["sweep", "--scale", "smoke", "--set", "epochs=1", "--set", "train_size=600", "--set", "test_size=300",
                 "--set", "dataset=fashion-mnist,/nonexistent/x.npz", "--quiet"])
    err = capsys.readouterr().err
    assert code == 2
    assert "/nonexistent/x.npz" in err and "does not exist" in err
    assert not list(runs_env.rglob("record.pt"))


def test_a_failed_run_is_reported_with_its_config_and_the_others_finish(runs_env, monkeypatch, capsys):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    args = ["sweep", "--scale", "smoke", "--set", "epochs=1", "--set", "train_size=600", "--set", "test_size=300", "--seed", "0,1", "--quiet"]
    configs = grid("smoke", parse_axes(["epochs=1", "train_size=600", "test_size=300"], seed="0,1"))
    broken = run_folder(configs[1], runs_env)  # passes every check; fails when the run resumes from its corrupt record
    broken.mkdir(parents=True)
    (broken / "record.pt").write_bytes(b"not a record")
    (broken / "checkpoint.pt").write_bytes(b"not a checkpoint")
    code = main(args)
    out = capsys.readouterr().out
    assert code == 1
    assert "failed" in out and "seed 1" in out and "record.pt is corrupt" in out and "done" in out
    assert [s for _, s in status(configs, runs_env)][0] == "done"


def test_a_sweep_killed_mid_run_resumes_repeats_nothing_and_leaves_no_corrupt_record(runs_env, tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    args = ["sweep", "--scale", "smoke", "--set", "epochs=3", "--set", "train_size=600", "--set", "test_size=300", "--seed", "0,1", "--quiet"]
    configs = grid("smoke", parse_axes(["epochs=3", "train_size=600", "test_size=300"], seed="0,1"))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    cmd = [sys.executable, "-c", "import sys; from asdkit.cli import main; sys.exit(main(sys.argv[1:]))", *args]
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    first, second = (run_folder(c, runs_env) for c in configs)
    deadline = time.time() + 300
    while time.time() < deadline:  # kill the sweep once the first run is done and the second has checkpointed an epoch
        done = [s for _, s in status(configs, runs_env)]
        if done[0] == "done" and (second / "checkpoint.pt").exists() or done[1] == "done" and (first / "checkpoint.pt").exists():
            break
        time.sleep(0.2)
    os.killpg(p.pid, signal.SIGKILL)
    p.wait()
    for _ in range(50):  # the pool's worker dies a moment after its parent
        states = [s for _, s in status(configs, runs_env)]
        if "running" not in states:
            break
        time.sleep(0.2)
    assert sorted(states) in (["done", "failed"], ["done", "partial"]), states  # a dead worker's lock reads as failed
    finished = [c for c, s in zip(configs, states) if s == "done"][0]
    stamp = (run_folder(finished, runs_env) / "record.pt").stat().st_mtime_ns
    assert main(args) == 0
    assert [s for _, s in status(configs, runs_env)] == ["done", "done"]
    assert (run_folder(finished, runs_env) / "record.pt").stat().st_mtime_ns == stamp  # not repeated
    for c in configs:
        assert Record.load(run_folder(c, runs_env)).status == "done"


def test_two_launchers_started_on_one_sweep_compute_each_run_once(runs_env):
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    args = ["sweep", "--scale", "smoke", *sum((["--set", a] for a in FAST), []), "--seed", "0-3", "--quiet"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    code = "import sys; from asdkit.cli import main; sys.exit(main(sys.argv[1:]))"
    procs = [subprocess.Popen([sys.executable, "-c", code, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1][-600:] for o in outs]
    trained = [line.split()[1] for o in outs for line in o[0].splitlines() if line.strip().startswith("done ")]
    configs = grid("smoke", parse_axes(FAST, seed="0-3"))
    assert sorted(trained) == sorted(run_folder(c, runs_env).name for c in configs)  # each run trained by exactly one launcher
    assert [s for _, s in status(configs, runs_env)] == ["done"] * 4


def test_a_missing_launcher_package_names_its_extra(monkeypatch):
    import builtins

    real = builtins.__import__

    def no_submitit(name, *args, **kwargs):
        if name.split(".")[0] in ("submitit", "ray"):
            raise ImportError(name)
        return real(name, *args, **kwargs)

    import importlib

    monkeypatch.setattr(importlib, "import_module", lambda name, *a: no_submitit(name))
    from asdkit.launchers import _needs

    with pytest.raises(ValueError, match=r"pip install 'asdkit\[slurm\]'"):
        _needs("submitit", "slurm")
    with pytest.raises(ValueError, match=r"pip install 'asdkit\[ray\]'"):
        _needs("ray", "ray")


def test_runs_sharing_a_built_poison_or_a_backbone_go_to_one_worker_and_the_rest_alone():
    from asdkit.planner import Job, share_groups

    iab = grid("smoke", parse_axes([], defense="none,asd", attack="iab", seed="0"))  # same images: one IAB build
    dbd = grid("smoke", parse_axes(["defense.filter_rate=0.3,0.5"], defense="dbd", attack="badnets", seed="0"))
    plain = grid("smoke", parse_axes([], defense="none,asd", attack="badnets", seed="0,1"))
    groups = share_groups([Job("run", c) for c in plain + dbd + iab])
    assert [len(g) for g in groups] == [2, 2, 1, 1, 1, 1]
    assert sorted((j.config.defense, j.config.attack) for g in groups[:2] for j in g) == [("asd", "iab"), ("dbd", "badnets"), ("dbd", "badnets"), ("none", "iab")]
    assert {len({j.config.attack for j in g}) for g in groups} == {1}
    assert sorted(config_hash(j.config) for g in groups for j in g) == sorted(config_hash(c) for c in plain + dbd + iab)


def test_a_failed_run_in_a_group_is_reported_and_the_group_goes_on(monkeypatch):
    import asdkit.planner as planner

    def one(job, root, threads=0, quiet=True):
        if job["config"]["seed"] == 0:
            raise ValueError("planted failure")
        return {"state": "done"}

    monkeypatch.setattr(planner, "work", one)
    jobs = [planner.Job("run", c).to_dict() for c in grid("smoke", parse_axes([], seed="0,1"))]
    assert planner.work_group(jobs, "unused") == [{"state": "failed", "error": "ValueError: planted failure"}, {"state": "done"}]
