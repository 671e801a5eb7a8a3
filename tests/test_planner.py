"""The planner: dependencies are jobs made first, once; no run starts another; the three front-ends share its flags."""
from __future__ import annotations

import pytest
from helpers import forbid_training

from asdkit.cli import main
from asdkit.config import make_config
from asdkit.planner import dependencies, stages
from asdkit.prepared import surrogate_config
from asdkit.records import run_folder


def test_a_surrogate_attack_needs_its_clean_twin_then_its_poison_and_a_plain_one_nothing():
    clb = make_config("smoke", overrides={"attack": "clb"})
    assert [(j.kind, j.config) for j in dependencies(clb)] == [("run", surrogate_config(clb)), ("poison", clb)]
    iab = make_config("smoke", overrides={"attack": "iab"})
    assert [j.kind for j in dependencies(iab)] == ["poison"]  # it trains its own networks: no twin
    assert dependencies(make_config("smoke")) == []
    assert dependencies(make_config("smoke", overrides={"attack": "clb", "rate": 0.0})) == []  # nothing to build at rate 0


def test_runs_sharing_a_twin_and_a_poison_are_planned_with_each_made_once(tmp_path):
    runs = [make_config("smoke", defense=d, overrides={"attack": "clb"}) for d in ("none", "asd")]  # one twin, one poison
    runs.append(make_config("smoke", overrides={"attack": "clb", "seed": 1}))
    plan = stages(runs, tmp_path)
    assert [[j.kind for j in s] for s in plan] == [["run", "run"], ["poison", "poison"], ["run"] * 3]
    assert {run_folder(j.config, tmp_path).name for j in plan[0]} == {run_folder(surrogate_config(c), tmp_path).name for c in runs}


def test_a_run_never_starts_another_its_missing_twin_is_a_clear_error(runs_env):
    from asdkit.runner import Run

    clb = make_config("smoke", overrides={"attack": "clb", "train_size": 600, "test_size": 300})
    with pytest.raises(ValueError, match="clean twin .* not trained yet: asdkit.run"):
        Run(clb, root=runs_env, quiet=True)
    assert not list(runs_env.rglob("record.pt"))


@pytest.mark.parametrize("argv", [["course", "prepare", "--scale", "smoke", "--only", "clean,none-blend"],
                                  ["figures", "--scale", "smoke", "--only", "asd_fig01"],
                                  ["sweep", "--scale", "smoke", "--attack", "badnets,blend"]])
def test_course_figures_and_sweep_share_the_planners_status_and_dry_run(argv, runs_env, capsys, monkeypatch):
    forbid_training(monkeypatch)
    assert main([*argv, "--status"]) == 0
    status = capsys.readouterr().out
    assert "missing" in status and "runs: " in status and not any(line.startswith("  done") for line in status.splitlines())
    assert status.startswith("smoke scale; records in ") and "the ones not done: ~" in status  # each missing run estimated here
    assert main([*argv, "--dry-run", "--jobs", "2"]) == 0
    dry = capsys.readouterr().out
    assert "would run " in dry and "with the local launcher: 2 at a time on this machine" in dry
    assert main([*argv, "--jobs", "0"]) == 2
    assert not runs_env.exists() or not list(runs_env.rglob("record.pt"))


def test_a_dry_run_counts_the_runs_asked_for_apart_from_their_dependencies(runs_env, capsys):
    argv = ["sweep", "--scale", "smoke", "--attack", "clb", "--defense", "none,asd", "--set", "train_size=600", "--set", "test_size=300"]
    assert main([*argv, "--dry-run"]) == 0
    assert "would run 2 of 2 and make 2 dependencies first (clean twins, built poisons)" in capsys.readouterr().out
    assert not runs_env.exists() or not list(runs_env.rglob("*.pt"))


def test_a_finished_run_is_reused_without_remaking_its_dependencies(runs_env):
    import shutil

    from asdkit.planner import run

    clb = make_config("smoke", overrides={"attack": "clb", "train_size": 600, "test_size": 300})
    first = run(clb, quiet=True)
    shutil.rmtree(runs_env / "cache")
    shutil.rmtree(run_folder(surrogate_config(clb), runs_env))
    again = run(clb, quiet=True)
    assert again["reused"] is True and again["acc"] == first["acc"]
    assert not (runs_env / "cache").exists() and not run_folder(surrogate_config(clb), runs_env).exists()


def test_a_failed_run_of_the_figures_or_the_course_is_one_error_and_stops_the_set(runs_env):
    from asdkit.figures.registry import train_missing
    from asdkit.planner import RunFailed

    diverging = make_config("smoke", overrides={"lr": 1e30, "train_size": 600, "test_size": 300})
    fine = make_config("smoke", overrides={"seed": 1, "train_size": 600, "test_size": 300})
    with pytest.raises(RunFailed, match="diverged in phase 'train'"):
        train_missing({"a": diverging, "b": fine}, root=runs_env, quiet=True)
    assert isinstance(RunFailed("x"), ValueError)  # the command line prints it as one line
    assert not run_folder(fine, runs_env).exists()  # the set stopped at its first failure
