"""One writer per record: the lock is exclusive, a dead holder's lock is taken over, two processes on one config train it once."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from asdkit.config import make_config
from asdkit.locks import RecordLock, RunLocked
from asdkit.planner import run
from asdkit.records import run_folder

ROOT = Path(__file__).resolve().parents[1]


def _write(folder: Path, **holder) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / ".lock").write_text(json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "since": time.time(), **holder}))
    return folder / ".lock"


def test_a_held_lock_refuses_a_second_taker_naming_the_holder(tmp_path):
    with RecordLock(tmp_path / "run"):
        with pytest.raises(RunLocked, match=f"process {os.getpid()} on {socket.gethostname()}"):
            RecordLock(tmp_path / "run").acquire()
    with RecordLock(tmp_path / "run") as again:  # released on exit
        assert again.held and (tmp_path / "run" / ".lock").exists()
    assert not (tmp_path / "run" / ".lock").exists()


def test_the_lock_of_a_dead_process_is_taken_over(tmp_path):
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    _write(tmp_path / "run", pid=p.pid)
    lock = RecordLock(tmp_path / "run")
    assert lock.stale()
    lock.acquire()
    assert lock.holder()["pid"] == os.getpid()
    lock.release()


def test_another_hosts_lock_is_stale_only_once_it_stops_being_refreshed(tmp_path):
    path = _write(tmp_path / "run", host="elsewhere", pid=12345)
    with pytest.raises(RunLocked, match="on elsewhere"):
        RecordLock(tmp_path / "run", stale_seconds=60).acquire()
    old = time.time() - 120
    os.utime(path, (old, old))
    lock = RecordLock(tmp_path / "run", stale_seconds=60)
    lock.acquire()  # two minutes without a refresh: its worker is gone
    assert lock.holder()["host"] == socket.gethostname()
    lock.release()


def test_a_locked_run_is_refused_before_any_work_when_not_waiting(runs_env, monkeypatch):
    from helpers import forbid_training

    cfg = make_config("smoke")
    _write(run_folder(cfg), pid=os.getppid())  # a live process (pytest's parent) holds it
    forbid_training(monkeypatch)
    with pytest.raises(RunLocked, match="is being trained by process"):
        run(cfg, quiet=True, wait=False)


def test_two_processes_on_one_config_train_it_once(runs_env):
    code = ("import json, sys; from asdkit.config import make_config; from asdkit.planner import run; "
            "s = run(make_config('smoke'), quiet=True); print(json.dumps({'reused': s.get('reused', False), 'acc': s['acc']}))")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for _ in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-800:] for o in outs]
    results = [json.loads(o[0].strip().splitlines()[-1]) for o in outs]
    assert sorted(r["reused"] for r in results) == [False, True]  # one trained, the other waited and read its record
    assert results[0]["acc"] == results[1]["acc"]
    assert not (run_folder(make_config("smoke")) / ".lock").exists()
