"""Every hostile input of the committed table (tests/hostile_inputs.py) and every value a declared option refuses:
one line, exit 2, the field or file named with what is allowed and what was given, nothing trained, nothing left behind;
and every value a config field, a defense option or an attack option declares it refuses (wrong type, NaN, inf, out of range,
huge) refused by name before any data loads."""
from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import forbid_training
from hostile_inputs import CASES

from asdkit.cli import main
from asdkit.attacks import ATTACKS
from asdkit.config import config_fields, make_config
from asdkit.defenses import DEFENSES


def _fill(text: str, paths: dict[str, Path]) -> str:
    for key, path in paths.items():
        text = text.replace("{" + key + "}", str(path))
    return text


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_a_hostile_input_is_one_line_naming_it_and_nothing_is_trained_or_left(case, runs_env, tmp_path, capsys, monkeypatch):
    paths = case.setup(tmp_path) if case.setup else {}
    for key, value in case.env.items():
        monkeypatch.setenv(key, _fill(value, paths))
    if not case.trains:
        forbid_training(monkeypatch)
    code = main([_fill(a, paths) for a in case.argv])
    out, err = capsys.readouterr()
    assert code == 2, (out, err)
    assert err.count("\n") == 1 and err.startswith("asdkit: error: ") and "Traceback" not in err, err
    for fragment in case.names:
        assert _fill(fragment, paths) in err, (fragment, err)
    left = [p for p in runs_env.rglob("*")] if runs_env.exists() else []
    if case.keeps:  # the epochs finished before the error are kept: the record and its checkpoint
        assert any(p.name == "record.pt" for p in left) and any(p.name == "checkpoint.pt" for p in left)
    else:
        assert [p for p in left if p.is_file()] == [], left


def _refused(option) -> list:
    """Values of every kind a declared option's own check refuses: wrong type, NaN, inf, out of range, huge."""
    return [v for v in ("nope", 1.5, -1, 10**30, math.nan, math.inf, -math.inf, [], None, True) if not option.accepts(v)]


EDGES = [("field", o.name, v) for o in config_fields() if o.name not in ("attack_args", "defense_args", "scale", "defense")
         for v in _refused(o)]
EDGES += [(d, o.name, v) for d, spec in DEFENSES.items() for o in spec.options for v in _refused(o)]
EDGES += [(f"attack:{a}", o.name, v) for a, cls in ATTACKS.items() for o in cls.options for v in _refused(o)]


@pytest.mark.parametrize("owner,name,value", EDGES, ids=[f"{o}.{n}={v!r}" for o, n, v in EDGES])
def test_every_value_a_declared_field_or_option_refuses_is_refused_by_name_before_any_data(owner, name, value, monkeypatch):
    monkeypatch.setattr("asdkit.preparation.load", lambda *a, **k: pytest.fail("data loaded"))
    if owner.startswith("attack:"):
        defense, overrides = "none", {"attack": owner[7:], f"attack.{name}": value}
    else:
        defense, overrides = ("none", {name: value}) if owner == "field" else (owner, {f"defense.{name}": value})
    with pytest.raises(ValueError) as err:
        make_config("smoke", defense=defense, overrides=overrides)
    message = str(err.value)
    assert "\n" not in message and f"'{name}'" in message and repr(value)[:20] in message, message


def test_the_table_and_the_edges_cover_the_cases_they_claim():
    assert len(CASES) >= 35 and len({c.id for c in CASES}) == len(CASES)
    assert len(EDGES) >= 300
    owners = {o for o, _, _ in EDGES}
    assert owners == {"field", *DEFENSES, *(f"attack:{a}" for a in ATTACKS)} - {"none"}


def test_pool_workers_end_within_seconds_when_their_parent_is_killed(tmp_path):
    """`kill -9` of a sweep's parent leaves no worker running (each watches its parent)."""
    marker = tmp_path / "worker.pid"
    code = ("import sys; sys.path.insert(0, %r); from pathlib import Path; from asdkit.launchers import local; import helpers; "
            "local([[helpers.SleepJob(%r)]], worker=helpers.sleeping_worker, root=Path(%r), jobs=2, quiet=True)"
            % (str(Path(__file__).parent), str(marker), str(tmp_path)))
    parent = subprocess.Popen([sys.executable, "-c", code])
    try:
        deadline = time.time() + 60
        while not marker.exists() and time.time() < deadline:
            time.sleep(0.2)
        assert marker.exists(), "the worker never started"
        worker = int(marker.read_text())
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait()
        deadline = time.time() + 10
        while time.time() < deadline and _alive(worker):
            time.sleep(0.2)
        assert not _alive(worker)
    finally:
        if parent.poll() is None:
            parent.kill()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] if Path(f"/proc/{pid}").exists() else "X"
    return state not in ("Z", "X")


def test_a_full_disk_is_named_and_what_was_written_stays(tmp_path, monkeypatch):
    import asdkit._io as io

    io.save_atomic({"a": 1}, tmp_path / "kept.pt")

    def full(obj, f):
        raise RuntimeError("[enforce fail at inline_container.cc] . unexpected pos 443392 vs 443284")

    monkeypatch.setattr(io.torch, "save", full)
    monkeypatch.setattr(io.shutil, "disk_usage", lambda p: type("U", (), {"free": 4096})())
    with pytest.raises(io.NoSpace, match=f"no space left in {tmp_path} .writing record.pt."):
        io.save_atomic({"b": 2}, tmp_path / "record.pt")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kept.pt"]


def test_an_empty_lock_is_stale_once_it_is_not_being_written(tmp_path):
    from asdkit.locks import WRITING_SECONDS, RecordLock

    lock = RecordLock(tmp_path)
    lock.path.write_text("")
    assert not lock.stale()  # it may be being written this very moment
    old = time.time() - WRITING_SECONDS - 1
    os.utime(lock.path, (old, old))
    assert lock.stale()
    lock.acquire()  # taken over, not waited on for an hour
    assert lock.holder()["pid"] == os.getpid()
    lock.release()


def test_status_names_a_corrupt_record_and_the_listings_go_on(runs_env, capsys):
    from asdkit.planner import status
    from asdkit.records import run_folder

    configs = [make_config("smoke"), make_config("smoke", overrides={"seed": 1})]
    folder = run_folder(configs[0], runs_env)
    folder.mkdir(parents=True)
    (folder / "record.pt").write_bytes(b"not a record")
    assert [s for _, s in status(configs, runs_env)] == ["corrupt", "missing"]
    assert main(["course", "list", "--scale", "smoke"]) == 0 and main(["figures", "--list", "--scale", "smoke", "--only", "asd_fig02"]) == 0
    assert main(["sweep", "--scale", "smoke", "--seed", "0,1", "--status"]) == 0
    assert "corrupt" in capsys.readouterr().out


def test_explorers_and_records_refuse_what_they_cannot_show_by_name(tmp_path):
    import torch

    from asdkit.records import Record
    from asdkit.widgets import LossExplorer, SplitExplorer

    rec = Record({"defense": "none", "attack": "badnets", "dataset": "fashion-mnist"})
    rec.arrays.update(observed_label=torch.arange(20) % 10, is_poison=torch.zeros(20, dtype=torch.bool), true_label=torch.arange(20) % 10)
    for e in range(2):
        rec.add_epoch({"phase": "train", "acc": 0.5}, {"train_loss": torch.rand(20)})
    with pytest.raises(ValueError, match="LossExplorer takes records by name"):
        LossExplorer(rec)
    with pytest.raises(ValueError, match=r"'epoch' must be an int in \[-2, 1\].*Got 99"):
        SplitExplorer(rec, epoch=99)
    with pytest.raises(ValueError, match=r"'epoch' of epoch_array must be an int in \[-2, 1\].*Got 99"):
        rec.epoch_array("train_loss", 99)


def test_a_reused_record_from_another_machine_says_so(monkeypatch):
    from asdkit.cli import _summary_line

    config = make_config("smoke")
    summary = {"acc": 0.9, "asr": 0.9, "epochs": 2, "seconds": 1.0, "record": "runs/x", "reused": True, "machine": "Another CPU, 1 thread"}
    line = _summary_line(config, summary)
    assert "reused a record trained on Another CPU, 1 thread, not" in line
    monkeypatch.setattr("asdkit.records.machine", lambda device: "Another CPU, 1 thread")
    assert _summary_line(config, summary).endswith("(reused finished record)  -> runs/x")


def test_one_data_set_name_is_one_record_key():
    from asdkit.config import config_hash

    assert config_hash(make_config("smoke", overrides={"dataset": "Fashion-MNIST"})) == config_hash(make_config("smoke"))
