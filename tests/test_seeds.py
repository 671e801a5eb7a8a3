"""Results as distributions : the starved-class flag, the multi-seed summary, and the lab preset."""
from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from helpers import forbid_training

import asdkit.records
from asdkit import make_config, run, run_seeds
from asdkit.analysis import MEANINGFUL_TARGET_ACC, asr_caveat, class_health, over_seeds
from asdkit.cli import _summary_line, main
from asdkit.config import parse_seeds as _parse_seeds
from asdkit.config import SCALES, config_fields
from asdkit.data import class_names
from asdkit.defenses import DEFENSES

FASHION = class_names("fashion-mnist")


def test_class_health_flags_a_starved_target_class():
    """A planted case: the target class at 10 % test accuracy makes its ASR of 0 % meaningless; the lowest class is named."""
    acc = [0.10, 0.98, 0.80, 0.90, 0.85, 0.97, 0.55, 0.95, 0.97, 0.96]
    starved = class_health(acc, target=0, classes=FASHION)
    assert starved == {"lowest_class_acc": 0.10, "lowest_class": "T-shirt/top", "target_class_acc": 0.10, "asr_meaningful": False}
    fine = class_health(acc, target=3, classes=FASHION)
    assert fine["asr_meaningful"] and fine["target_class_acc"] == 0.90 and fine["lowest_class"] == "T-shirt/top"
    at_the_line = class_health([MEANINGFUL_TARGET_ACC, 0.9], target=0)
    assert at_the_line["asr_meaningful"] and at_the_line["lowest_class"] == "0"


def test_class_health_flags_a_model_that_puts_clean_images_in_the_target():
    """A collapsed model (ABL's unlearning of clean samples): the target class at 100 %, every other at 0 %, ASR 100 %
    with no trigger needed. Its ASR means nothing, and the printed line says why."""
    acc = [1.0] + [0.0] * 9
    collapsed = class_health(acc, target=0, classes=FASHION, clean_target_rate=1.0)
    assert collapsed["asr_meaningful"] is False and collapsed["clean_target_rate"] == 1.0
    assert "puts 100% of the clean non-target images in the target class" in asr_caveat(collapsed)
    assert class_health([0.9] * 10, target=0, clean_target_rate=0.02)["asr_meaningful"]
    assert asr_caveat(class_health([0.9] * 10, target=0, clean_target_rate=0.02)) is None
    assert not class_health([0.9] * 10, target=0, clean_target_rate=0.5)["asr_meaningful"]  # half untriggered: at the line
    line = _summary_line(make_config("smoke"), {"acc": 0.10, "asr": 1.0, "epochs": 2, "seconds": 1.0, "record": "r", **collapsed})
    assert "ASR 100.00% (not meaningful: the model puts 100% of the clean non-target images in the target class untriggered)" in line


def test_the_printed_line_flags_the_asr_of_a_starved_target(tmp_path):
    config = make_config("smoke")
    summary = {"acc": 0.80, "asr": 0.0, "epochs": 2, "seconds": 10.0, "record": str(tmp_path),
               **class_health([0.12] + [0.9] * 9, target=0, classes=FASHION)}
    line = _summary_line(config, summary)
    assert "ASR 0.00% (not meaningful: the target class itself is at 12% test accuracy)" in line
    assert "lowest class T-shirt/top 12.0%" in line
    summary.update(class_health([0.9] * 6 + [0.4] + [0.9] * 3, target=0, classes=FASHION))
    line = _summary_line(config, summary)
    assert "not meaningful" not in line and "lowest class Shirt 40.0%" in line


def test_over_seeds_spread_and_worst_class():
    runs = {s: {"acc": a, "asr": r, "seconds": t, **class_health(pc, target=0, classes=FASHION)}
            for s, a, r, t, pc in [(0, 0.80, 0.02, 100.0, [0.9, 0.3] + [0.9] * 8),
                                   (1, 0.90, 0.01, 120.0, [0.9, 0.8] + [0.9] * 8),
                                   (4, 0.85, 0.00, 110.0, [0.2, 0.9] + [0.9] * 8)]}
    out = over_seeds(runs)
    assert out["seeds"] == [0, 1, 4]
    assert out["acc"]["median"] == pytest.approx(0.85) and out["acc"]["min"] == 0.80 and out["acc"]["max"] == 0.90
    assert out["acc"]["std"] == pytest.approx(np.std([0.8, 0.9, 0.85], ddof=1))
    assert out["asr"]["median"] == pytest.approx(0.01)
    assert out["worst"] == {"seed": 4, "class": "T-shirt/top", "acc": 0.2}
    assert out["asr_not_meaningful"] == [4]
    assert out["asr_caveats"] == {4: "the target class itself is at 20% test accuracy"}


@pytest.mark.parametrize("text, seeds", [("3", [3]), ("0,1,2", [0, 1, 2]), ("0-4", [0, 1, 2, 3, 4]), ("0-1,5", [0, 1, 5])])
def test_parse_seeds(text, seeds):
    assert _parse_seeds(text) == seeds


@pytest.mark.parametrize("text", ["a", "1,1", "0-x", ""])
def test_parse_seeds_rejects(text):
    with pytest.raises(ValueError, match="'seed' field"):
        _parse_seeds(text)


def test_run_seeds_on_smoke_records_summarises_and_reuses(runs_env, one_thread, monkeypatch):
    """Two smoke seeds: the spread is the per-seed numbers' spread; a second call trains nothing and says reused."""
    config = make_config("smoke", overrides={"train_size": 600, "test_size": 300, "epochs": 2})
    first = run_seeds(config, [0, 1], quiet=True)
    accs = [first["runs"][s]["acc"] for s in (0, 1)]
    assert accs[0] != accs[1]  # different seeds, different runs
    assert first["over_seeds"]["acc"]["median"] == pytest.approx(float(np.median(accs)))
    lows = [first["runs"][s]["lowest_class_acc"] for s in (0, 1)]
    assert first["over_seeds"]["worst"]["acc"] == min(lows) and first["over_seeds"]["worst"]["class"] in FASHION
    for s in (0, 1):
        rec = asdkit.records.finished_record(replace(config, seed=s))
        last = [m for m in rec.metrics if "acc_per_class" in m][-1]["acc_per_class"]
        assert rec.summary["lowest_class_acc"] == min(last) and "target_class_acc" in rec.summary
    forbid_training(monkeypatch)
    again = run_seeds(config, [0, 1], quiet=True)
    assert all(r["reused"] for r in again["runs"].values())
    assert again["over_seeds"] == first["over_seeds"]


def test_cli_several_seeds_prints_the_spread(runs_env, one_thread, capsys):
    args = ["run", "--scale", "smoke", "--seed", "0,1", "--quiet", "--json", "--set", "train_size=600", "--set", "test_size=300", "--set", "epochs=1"]
    assert main(args) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("seed 0: none vs badnets") and out[1].startswith("seed 1: ")
    assert any(line.startswith("  ACC median") for line in out) and any("lowest per-class accuracy" in line for line in out)
    assert any("not across CPU models" in line for line in out)
    payload = json.loads(out[-1])
    assert sorted(payload["runs"]) == ["0", "1"] and payload["over_seeds"]["seeds"] == [0, 1]


def test_a_bad_seed_list_stops_before_any_work(runs_env, capsys, monkeypatch):
    forbid_training(monkeypatch)
    assert main(["run", "--scale", "smoke", "--seed", "0,0"]) == 2
    assert "lists a seed twice" in capsys.readouterr().err


@pytest.mark.parametrize("defense", sorted(DEFENSES))
def test_the_lab_preset_validates_for_every_defense(defense):
    """lab is classroom's data and network with its own budgets: every defense makes a valid lab config."""
    assert "lab" in SCALES
    lab, classroom = make_config("lab", defense=defense), make_config("classroom", defense=defense)
    assert (lab.dataset, lab.model, lab.optimizer) == (classroom.dataset, classroom.model, classroom.optimizer) == ("fashion-mnist", "compact", "adam")
    assert lab.scale == "lab" and lab.train_size == 5000 and lab.test_size == 0, "every defense runs on the same lab data"


def test_lab_inherits_what_it_does_not_set():
    """An option with no lab default takes classroom's, not the paper's."""
    by_name = {o.name: o for o in config_fields()}
    assert by_name["lr"].default_at("lab") == by_name["lr"].default_at("classroom") != by_name["lr"].default
    assert by_name["pad"].default_at("lab") == 2
