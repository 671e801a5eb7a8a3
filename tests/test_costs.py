"""What a run costs before it starts: its planned work in trained-image equivalents, and the planner's table with estimates."""
from __future__ import annotations

import pytest

from asdkit import planner
from asdkit.config import make_config
from asdkit.costs import FORWARD, image_seconds, work
from asdkit.preparation import prepare


@pytest.fixture()
def data_env(fmnist_dir, monkeypatch, tmp_path):
    monkeypatch.setenv("ASDKIT_DATA", str(fmnist_dir))
    monkeypatch.setenv("ASDKIT_RUNS", str(tmp_path / "runs"))
    return tmp_path / "runs"


def test_the_work_of_a_run_is_its_steps_its_scoring_and_its_evaluation(data_env):
    p = prepare(make_config("smoke"), root=data_env, quiet=True, preflight=True)
    (train,) = p.phases
    n, evaluation = p.ctx.n, len(p.ctx.evaluator.x) + len(p.ctx.evaluator.asr_x)
    assert work(p) == {"train": pytest.approx(train.epochs * (n + n * FORWARD + evaluation * FORWARD))}  # every image trained once an epoch


def test_mixmatch_steps_count_three_batches_trained_and_two_guessed(data_env):
    p = prepare(make_config("smoke", defense="asd"), root=data_env, quiet=True, preflight=True)
    b, n, evaluation = p.ctx.options.mixmatch_batch_size, p.ctx.n, len(p.ctx.evaluator.x) + len(p.ctx.evaluator.asr_x)
    for phase in p.phases:
        assert work(p)[phase.name] == pytest.approx(phase.epochs * (phase.steps * (3 * b + 2 * b * FORWARD) + (n + evaluation) * FORWARD))
    more = prepare(make_config("smoke", defense="asd", overrides={"defense.iterations": 40}), root=data_env, quiet=True, preflight=True)
    for phase in p.phases:  # twice the MixMatch steps: twice the steps' work, the same scoring and evaluation
        fixed = phase.epochs * (n + evaluation) * FORWARD
        assert work(more)[phase.name] - fixed == pytest.approx(2 * (work(p)[phase.name] - fixed))


def test_the_per_image_cost_is_measured_once_per_network(data_env, monkeypatch):
    import asdkit.costs as costs

    monkeypatch.setattr(costs, "_MEASURED", {})
    p = prepare(make_config("smoke"), root=data_env, quiet=True, preflight=True)
    first = image_seconds(p)
    assert first > 0 and len(costs._MEASURED) == 1 and image_seconds(p) == first


def test_the_plan_table_names_the_scale_the_folder_and_each_missing_runs_estimate(data_env):
    configs = [make_config("smoke"), make_config("smoke", defense="abl")]
    lines = planner.summary_lines(configs, data_env)
    assert lines[0] == f"smoke scale; records in {data_env.resolve()}"
    assert all(line.startswith("  missing") and line.rstrip().endswith(" s") for line in lines[1:3])
    assert "the ones not done: ~" in lines[-1] and "measured here" in lines[-1]
