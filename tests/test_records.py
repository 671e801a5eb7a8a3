"""Tests of asdkit.records: round trips, corrupt and hostile files, atomic writes."""
from __future__ import annotations

import io
import os
from pathlib import Path

import pytest
import torch

from asdkit import records
from asdkit.records import FORMAT, Record, RecordError, load_checked, save_atomic

CONFIG = {"defense": "none", "attack": "badnets", "dataset": "fashion-mnist", "rate": 0.1, "milestones": [100, 150]}


def sample_record() -> Record:
    g = torch.Generator().manual_seed(0)
    rec = Record(CONFIG, code_version="0.1.0+abc")
    rec.arrays.update(is_poison=torch.rand(50, generator=g) < 0.1, true_label=torch.randint(0, 10, (50,), generator=g))
    for epoch in range(3):
        rec.add_epoch({"acc": 0.5 + epoch / 10, "asr": 1.0 - epoch / 4, "loss": 2.0 / (epoch + 1),
                       "phase": "warm-up" if epoch == 0 else "train", "phase_epoch": 0 if epoch == 0 else epoch - 1},
                      {"train_loss": torch.rand(50, generator=g) * 5, "clean_pool": torch.rand(50, generator=g) < 0.5,
                       "order": torch.randperm(50, generator=g)})
    rec.snapshots["final"] = {"ce": torch.rand(50, generator=g).half(), "note": "t=3"}
    rec.summary = {"acc": 0.7, "asr": 0.5, "seconds": 1.5, "record": "x", "epochs": 3, "phases": {"warm-up": 1, "train": 2},
                   "seconds_warm-up": 0.5, "seconds_train": 1.0}
    rec.status = "done"
    return rec


def test_round_trip(tmp_path):
    rec = sample_record()
    path = rec.save(tmp_path / "run" / "record.pt")
    assert path == tmp_path / "run" / "record.pt" and rec.path == path
    back = Record.load(tmp_path / "run")  # a folder means its record.pt
    assert back.config == CONFIG and back.code_version == "0.1.0+abc" and back.status == "done"
    assert back.metrics == rec.metrics and back.epochs == 3
    assert back.metric("acc") == [0.5, 0.6, 0.7] and back.metric("missing") == [None] * 3
    assert [m["epoch"] for m in back.metrics] == [0, 1, 2]
    assert back.metric("phase") == ["warm-up", "train", "train"] and back.metric("phase_epoch") == [0, 0, 1]
    for e in range(3):
        stored = back.epoch_arrays["train_loss"][e]
        assert stored.dtype == torch.float16  # floats are stored as float16
        assert torch.equal(back.epoch_array("train_loss", e), rec.epoch_arrays["train_loss"][e].float())
        assert back.epoch_array("train_loss", e).dtype == torch.float32
        assert back.epoch_array("clean_pool", e).dtype == torch.bool
        assert torch.equal(back.epoch_array("clean_pool", e), rec.epoch_arrays["clean_pool"][e])
        assert back.epoch_array("order", e).dtype == torch.int64
    assert torch.equal(back.epoch_array("order"), rec.epoch_arrays["order"][2])  # default: the last epoch
    assert back.arrays["is_poison"].dtype == torch.bool and torch.equal(back.arrays["is_poison"], rec.arrays["is_poison"])
    assert torch.equal(back.arrays["true_label"], rec.arrays["true_label"])
    assert torch.equal(back.snapshots["final"]["ce"], rec.snapshots["final"]["ce"]) and back.snapshots["final"]["note"] == "t=3"
    assert back.summary == rec.summary
    with pytest.raises(KeyError, match="train_loss"):
        back.epoch_array("nope")


def test_float_arrays_are_rounded_to_float16():
    rec = Record({})
    x = torch.tensor([0.1, 1 / 3, 1234.567, 1e-3], dtype=torch.float64)
    rec.add_epoch({"acc": 1.0}, {"v": x})
    torch.testing.assert_close(rec.epoch_array("v"), x.half().float(), rtol=0, atol=0)
    assert (rec.epoch_array("v").double() - x).abs().max() < 1.0  # float16 keeps ~3 digits


def test_array_first_logged_later_is_padded_and_truncate_forgets():
    rec = Record({})
    rec.add_epoch({"acc": 0.1})
    rec.add_epoch({"acc": 0.2}, {"pool": torch.tensor([True, False])})
    assert len(rec.epoch_arrays["pool"]) == 2 and rec.epoch_arrays["pool"][0].numel() == 0
    assert torch.equal(rec.epoch_array("pool", 1), torch.tensor([True, False]))
    rec.status = "done"
    rec.truncate(1)
    assert rec.epochs == 1 and rec.metric("acc") == [0.1] and len(rec.epoch_arrays["pool"]) == 1 and rec.status == "running"


def test_missing_record_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="ASDKIT_RUNS"):
        Record.load(tmp_path / "nothing.pt")


# --------------------------------------------------------------------------- corrupt files


def _random_bytes(path: Path) -> None:
    path.write_bytes(os.urandom(4096))


def _truncated(path: Path) -> None:
    sample_record().save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _a_list(path: Path) -> None:
    torch.save([1, 2, 3], path)


def _missing_keys(path: Path) -> None:
    torch.save({"format": FORMAT, "config": "{}"}, path)


def _bad_json(path: Path) -> None:
    d = sample_record().to_dict()
    d["metrics"] = "[{not json"
    torch.save(d, path)


def _empty(path: Path) -> None:
    path.write_bytes(b"")


@pytest.mark.parametrize("damage", [_random_bytes, _truncated, _a_list, _missing_keys, _bad_json, _empty])
def test_a_corrupt_record_names_its_path_and_says_to_delete_it(tmp_path, damage):
    path = tmp_path / "run" / "record.pt"
    path.parent.mkdir()
    damage(path)
    with pytest.raises(RecordError) as info:
        Record.load(path)
    message = str(info.value)
    assert str(path) in message and "Delete" in message
    assert isinstance(info.value, ValueError)  # the CLI turns ValueErrors into one line, exit 2


def test_a_record_of_another_format_is_refused(tmp_path):
    d = sample_record().to_dict()
    d["format"] = FORMAT + 1
    torch.save(d, tmp_path / "record.pt")
    with pytest.raises(RecordError, match=f"format {FORMAT + 1}"):
        Record.load(tmp_path / "record.pt")


def _leave_mark(path):  # what a hostile pickle would run on load
    Path(path).write_text("pwned")
    return {}


class Hostile:
    def __init__(self, mark):
        self.mark = mark

    def __reduce__(self):
        return (_leave_mark, (self.mark,))


def test_a_pickled_object_is_refused_without_running_it(tmp_path):
    mark = tmp_path / "mark"
    d = sample_record().to_dict()
    d["summary"] = Hostile(str(mark))
    path = tmp_path / "record.pt"
    torch.save(d, path)
    assert not mark.exists()
    with pytest.raises(RecordError, match="record.pt"):
        Record.load(path)
    with pytest.raises(RecordError):
        load_checked(path)
    assert not mark.exists(), "loading a record executed pickled code"


# --------------------------------------------------------------------------- atomic writes


def test_save_atomic_writes_and_leaves_no_temporary_files(tmp_path):
    path = tmp_path / "deep" / "file.pt"
    save_atomic({"a": torch.arange(3)}, path)
    save_atomic({"a": torch.arange(4)}, path)
    assert os.listdir(path.parent) == ["file.pt"]
    assert torch.equal(load_checked(path)["a"], torch.arange(4))


@pytest.mark.parametrize("error", [RuntimeError("disk full"), KeyboardInterrupt()], ids=["RuntimeError", "KeyboardInterrupt"])
def test_save_atomic_keeps_the_old_file_when_writing_fails(tmp_path, monkeypatch, error):
    path = tmp_path / "record.pt"
    save_atomic({"old": torch.ones(3)}, path)
    old_bytes = path.read_bytes()
    real_save = torch.save

    def half_then_fail(obj, f, *args, **kwargs):
        buf = io.BytesIO()
        real_save(obj, buf, *args, **kwargs)
        f.write(buf.getvalue()[:100])  # some bytes reach the temporary file
        raise error

    monkeypatch.setattr(torch, "save", half_then_fail)
    with pytest.raises(type(error)):
        save_atomic({"new": torch.zeros(3)}, path)
    monkeypatch.undo()
    assert path.read_bytes() == old_bytes
    assert os.listdir(tmp_path) == ["record.pt"]
    assert torch.equal(load_checked(path)["old"], torch.ones(3))


def test_runs_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("ASDKIT_RUNS", str(tmp_path / "r"))
    assert records.runs_dir() == tmp_path / "r"
    monkeypatch.delenv("ASDKIT_RUNS")
    assert records.runs_dir() == Path("runs")
