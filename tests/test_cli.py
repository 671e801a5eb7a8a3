"""Tests of the command line: a smoke run end to end, one-line errors, help, `asdkit data`, the console script."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import asdkit
from asdkit.cli import main

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = ["--scale", "smoke", "--set", "train_size=600", "--set", "test_size=300"]


def test_run_prints_a_summary_line_then_json(runs_env, capsys):
    assert main(["run", *TINY, "--json", "--quiet"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    summary = json.loads(lines[-1])
    assert {"acc", "asr", "seconds", "record"} <= set(summary)
    assert 0 <= summary["acc"] <= 1 and 0 <= summary["asr"] <= 1 and summary["seconds"] >= 0
    assert Path(summary["record"]).parent == runs_env and (Path(summary["record"]) / "record.pt").is_file()
    line = lines[-2]
    assert line.startswith("none vs badnets 10% on fashion-mnist (smoke)")
    assert f"ACC {summary['acc']:.2%}" in line and f"ASR {summary['asr']:.2%}" in line and summary["record"] in line

    # the same command again reuses the finished record
    assert main(["run", *TINY, "--json", "--quiet"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert json.loads(lines[-1])["reused"] is True and "reused" in lines[-2]


@pytest.mark.parametrize("argv,name", [
    (["run", "--rate", "1.5"], "'rate'"),
    (["run", "--target", "-1"], "'target'"),
    (["run", "--attack", "clb"], "clb"),
    (["run", "--set", "epochz=3"], "epochz"),
    (["run", "--set", "no_equals_sign"], "key=value"),
    (["run", "--defense", "nope"], "'defense'"),
])
def test_bad_input_is_one_line_on_stderr_and_exit_2(runs_env, capsys, argv, name):
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("asdkit: error:") and name in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_set_device_is_not_ignored(runs_env, monkeypatch):
    """`--set device=...` is a config field like any other; the --device default must not overwrite it."""
    seen = {}

    def fake_run(config, **kwargs):
        seen["device"] = config.device
        return {"acc": 0.5, "asr": 0.5, "seconds": 0.0, "record": "x", "epochs": 1}

    monkeypatch.setattr("asdkit.runner.run", fake_run)
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
    for word in ("smoke", "classroom", "paper", "--set"):
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
