"""Tests of the command line: a smoke run end to end, one-line errors, help, `asdkit data`, the console script."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import forbid_training

import asdkit
from asdkit.cli import main
from asdkit.config import config_fields

pytestmark = pytest.mark.usefixtures("one_thread")

TRAIN = 600
TINY = ["--scale", "smoke", "--set", f"train_size={TRAIN}", "--set", "test_size=300"]
SMOKE_EPOCHS = round(4000 / TRAIN)  # the smoke budget, 4,000 sample visits, over 600 images: 7 epochs



def test_run_prints_a_summary_line_then_json(runs_env, capsys):
    assert main(["run", *TINY, "--json", "--quiet"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    summary = json.loads(lines[-1])
    assert {"acc", "asr", "seconds", "record", "epochs", "phases", "seconds_train"} <= set(summary)
    assert 0 <= summary["acc"] <= 1 and 0 <= summary["asr"] <= 1 and summary["seconds"] >= 0
    assert summary["epochs"] == SMOKE_EPOCHS and summary["phases"] == {"train": SMOKE_EPOCHS}
    assert Path(summary["record"]).parent == runs_env and (Path(summary["record"]) / "record.pt").is_file()
    line = lines[-2]
    assert line.startswith("none vs badnets 10% on fashion-mnist (smoke)")
    assert f"ACC {summary['acc']:.2%}" in line and f"ASR {summary['asr']:.2%}" in line
    assert line.endswith(f"  {SMOKE_EPOCHS} epochs  fp32  {summary['seconds']:.0f} s  -> {summary['record']}"), line  # the suite's precision
    assert "phases" not in line and "seconds_" not in line  # the per-phase entries stay in the JSON

    # the same command again reuses the finished record
    assert main(["run", *TINY, "--json", "--quiet"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert json.loads(lines[-1])["reused"] is True and "reused" in lines[-2]
    assert re.search(rf"  {SMOKE_EPOCHS} epochs  fp32  \d+ s \(reused finished record\)  -> {re.escape(summary['record'])}$", lines[-2]), lines[-2]


@pytest.mark.parametrize("argv,name", [
    (["run", "--rate", "1.5"], "'rate'"),
    (["run", "--target", "-1"], "'target'"),
    (["run", "--attack", "lira"], "'attack'"),
    (["run", "--attack", "iab", "--set", "attack.epochs=0"], "The 'attack_args' field's option 'epochs' of attack 'iab' must be an int in [1, inf). Got 0 instead."),
    (["run", "--attack", "refool", "--set", "attack.reflections=no-such.npz"], "no-such.npz"),
    (["run", "--set", "epochz=3"], "epochz"),
    (["run", "--set", "no_equals_sign"], "key=value"),
    (["run", "--defense", "nope"], "'defense'"),
    (["run", "--set", "momentum=1.5"], "The 'momentum' field must be a float in [0, 1). Got 1.5 instead."),
    (["run", "--defense", "asd", "--set", "defense.gamma=1.5"], "The 'gamma' option of asd must be a float in (0, 1). Got 1.5 instead."),
    (["run", "--set", "epochs=-1"], "'epochs'"),
    (["options", "nope"], "'defense'"),
    (["run", "--set", "precision=fp16"], "The 'precision' field must be one of ['auto', 'fp32', 'bf16'] (this machine: fp32"),
])
def test_bad_input_is_one_line_on_stderr_and_exit_2(runs_env, capsys, monkeypatch, argv, name):
    forbid_training(monkeypatch)
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("asdkit: error:") and name in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_set_an_option_the_defense_lacks_exits_2_naming_it(runs_env, capsys, monkeypatch):
    forbid_training(monkeypatch)
    assert main(["run", *TINY, "--quiet", "--set", "defense.t1=5"]) == 2  # defense none takes no options
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("asdkit: error:") and len(err.strip().splitlines()) == 1
    assert "'t1'" in err and "'none'" in err
    assert not list(runs_env.rglob("*.pt")), "a rejected run wrote files"


@pytest.mark.parametrize("key,value", [("scale", "paper"), ("defense", "asd")])
def test_set_scale_or_defense_exits_2(runs_env, capsys, monkeypatch, key, value):
    """scale and defense choose the preset: --scale/--defense, never --set."""
    forbid_training(monkeypatch)
    assert main(["run", "--quiet", "--set", f"{key}={value}"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("asdkit: error:") and len(err.strip().splitlines()) == 1
    assert f"'{key}'" in err and f"--{key}" in err and "Traceback" not in err
    assert not list(runs_env.rglob("*.pt"))


def test_options_asd_prints_every_asd_option(capsys):
    from asdkit.defenses.asd import OPTIONS

    assert main(["options", "asd"]) == 0
    out = capsys.readouterr().out
    names = [line.split()[0] for line in out.splitlines()[1:] if line.startswith("  ") and line[2:3] != " "]
    assert names == [o.name for o in OPTIONS]  # every option, once, in declared order
    assert "Options of asd" in out.splitlines()[0]
    gamma = next(line for line in out.splitlines() if line.split()[:1] == ["gamma"])
    assert "a float in (0, 1)" in gamma and "0.5" in gamma
    t1 = next(line for line in out.splitlines() if line.split()[:1] == ["t1"])
    assert "smoke 2" in t1 and "classroom 6" in t1 and "paper 60" in t1  # a default that differs per scale

    # `asdkit run --defense asd --options` prints the same table and trains nothing
    assert main(["run", "--defense", "asd", "--options"]) == 0
    assert capsys.readouterr().out == out


def test_options_without_a_defense_lists_the_config_fields_and_none_takes_none(capsys):
    assert main(["options"]) == 0
    out = capsys.readouterr().out
    names = [line.split()[0] for line in out.splitlines()[1:] if line.startswith("  ") and line[2:3] != " "]
    assert names == [o.name for o in config_fields()]
    budget = next(line for line in out.splitlines() if line.split()[:1] == ["budget"])
    assert "smoke 4000" in budget and "classroom 180000" in budget
    assert main(["options", "none"]) == 0
    assert capsys.readouterr().out.strip() == "none takes no options."


def test_set_device_is_not_ignored(runs_env, monkeypatch):
    """`--set device=...` is a config field like any other; the --device default must not overwrite it."""
    seen = {}

    def fake_run(config, **kwargs):
        seen["device"] = config.device
        return {"acc": 0.5, "asr": 0.5, "seconds": 0.0, "record": "x", "epochs": 1}

    monkeypatch.setattr("asdkit.planner.run", fake_run)
    assert main(["run", *TINY, "--quiet", "--device", "cpu"]) == 0
    assert seen["device"] == "cpu"
    assert main(["run", *TINY, "--quiet", "--set", "device=cuda:0"]) == 0
    assert seen["device"] == "cuda:0"


def test_data_lists_fashion_mnist_as_found(runs_env, capsys, fmnist_dir):
    assert main(["data"]) == 0
    out = capsys.readouterr().out
    assert str(fmnist_dir) in out.splitlines()[0]
    row = next(line for line in out.splitlines() if line.split()[:1] == ["fashion-mnist"])
    assert row.split()[1] == "found"
    assert main(["data", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["fashion-mnist"]["available"] is True


def test_run_help_describes_the_scales_and_set(capsys):
    with pytest.raises(SystemExit) as info:
        main(["run", "--help"])
    assert info.value.code == 0
    text = capsys.readouterr().out
    for word in ("smoke", "classroom", "paper", "--set", "--options", "asdkit options", "budget"):
        assert word in text


def test_no_command_prints_help(capsys):
    assert main([]) == 0
    assert "run" in capsys.readouterr().out


def test_version_in_process(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == asdkit.__version__


def test_installed_console_script():
    script = Path(sys.executable).parent / "asdkit"
    if not script.exists():
        pytest.skip(f"no console script at {script} (package not installed)")
    done = subprocess.run([str(script), "--version"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == asdkit.__version__


def test_options_of_an_attack_list_its_options_with_their_scale_defaults(capsys):
    assert main(["options", "iab"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("Options of the attack iab") and "cached in runs/cache/" in out
    line = next(line for line in out.splitlines() if line.strip().startswith("epochs"))
    assert "default 600" in line and "smoke 2" in line and "classroom 26" in line and "lab 26" in line  # lab inherits classroom
    assert main(["options", "badnets"]) == 0
    out = capsys.readouterr().out
    assert "location" in out and "cached" not in out
