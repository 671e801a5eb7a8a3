"""What a run costs before it starts: its planned work in trained-image equivalents, and the planner's table with estimates."""
from __future__ import annotations

import pytest

from asdkit import planner
from asdkit.config import make_config
from asdkit.costs import FORWARD, SCORING_BATCH, image_seconds, work
from asdkit.preparation import prepare


@pytest.fixture()
def data_env(fmnist_dir, monkeypatch, tmp_path):
    monkeypatch.setenv("ASDKIT_DATA", str(fmnist_dir))
    monkeypatch.setenv("ASDKIT_RUNS", str(tmp_path / "runs"))
    return tmp_path / "runs"


def test_the_work_of_a_run_is_its_steps_its_evaluation_and_its_final_losses(data_env):
    p = prepare(make_config("smoke"), root=data_env, quiet=True, preflight=True)
    (train,) = p.phases
    n, evaluation = p.ctx.n, len(p.ctx.evaluator.x) + len(p.ctx.evaluator.asr_x)
    w = work(p)
    assert w["train"] == (pytest.approx(train.epochs * n), train.batch_size)  # every image trained once an epoch, in its batch
    assert w["train passes"] == (pytest.approx(train.epochs * evaluation * FORWARD), SCORING_BATCH)
    assert w["final"] == (pytest.approx(2 * n * FORWARD), SCORING_BATCH)


def test_mixmatch_steps_count_three_batches_trained_and_two_guessed_and_asd_scores_every_epoch(data_env):
    p = prepare(make_config("smoke", defense="asd"), root=data_env, quiet=True, preflight=True)
    o, n = p.ctx.options, p.ctx.n
    evaluation = len(p.ctx.evaluator.x) + len(p.ctx.evaluator.asr_x)
    b = o.mixmatch_batch_size
    for phase in p.phases:
        assert work(p)[phase.name] == (pytest.approx(phase.epochs * phase.steps * (3 * b + 2 * b * FORWARD)), 3 * b)
        scoring = (2 * FORWARD + o.meta_epochs) if phase.name == "stage3" else FORWARD  # stage 3 also trains and scores a virtual model
        assert work(p)[f"{phase.name} passes"][0] == pytest.approx(phase.epochs * (scoring * n + evaluation * FORWARD))
    more = prepare(make_config("smoke", defense="asd", overrides={"defense.iterations": 40}), root=data_env, quiet=True, preflight=True)
    assert all(work(more)[ph.name][0] == pytest.approx(2 * work(p)[ph.name][0]) for ph in p.phases)  # twice the steps, twice the work
    assert all(work(more)[f"{ph.name} passes"] == work(p)[f"{ph.name} passes"] for ph in p.phases)


def test_the_per_image_cost_is_measured_once_per_network(data_env, monkeypatch):
    import asdkit.costs as costs

    monkeypatch.setattr(costs, "_MEASURED", {})
    p = prepare(make_config("smoke"), root=data_env, quiet=True, preflight=True)
    first = image_seconds(p)
    assert first > 0 and len(costs._MEASURED) == 1 and image_seconds(p) == first
    assert image_seconds(p, batch=32) > 0 and len(costs._MEASURED) == 2  # per batch size: small batches cost more an image


def test_the_plan_table_names_the_scale_the_folder_and_each_missing_runs_estimate(data_env):
    configs = [make_config("smoke"), make_config("smoke", defense="abl")]
    lines = planner.summary_lines(configs, data_env)
    assert lines[0] == f"smoke scale; records in {data_env.resolve()}"
    assert all(line.startswith("  missing") and line.rstrip().endswith(" s") for line in lines[1:3])
    assert "the ones not done: ~" in lines[-1] and "measured here" in lines[-1]
