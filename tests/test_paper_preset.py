"""The paper preset: 002's numbers, and the code path a GPU user runs, exercised on real CIFAR-10 images at tiny size."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from asdkit import make_config, run
from asdkit.models import ResNet18

SHARED = Path(os.environ.get("ASDKIT_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
CIFAR_MINI = SHARED / "cifar10-mini.npz"
needs_cifar_mini = pytest.mark.skipif(not CIFAR_MINI.exists(), reason=f"{CIFAR_MINI} is absent")


def test_paper_preset_has_002_appendix_b2_numbers():
    c = make_config("paper")
    assert (c.dataset, c.model, c.epochs, c.batch_size) == ("cifar10", "resnet18", 200, 128)
    assert (c.optimizer, c.lr, c.momentum, c.weight_decay, c.schedule, c.milestones) == ("sgd", 0.1, 0.9, 5e-4, "multistep", (100, 150))
    assert (c.rate, c.target, c.pad) == (0.05, 3, 4)


def test_paper_preset_of_asd_has_002_appendix_b3_numbers():
    from asdkit.defenses.asd import DEFAULTS

    c = make_config("paper", defense="asd")
    assert (c.epochs, c.optimizer, c.lr, c.schedule) == (120, "adam", 0.002, "constant")
    assert c.defense_args == {}  # paper scale = the defaults below, untouched
    assert (DEFAULTS["t1"], DEFAULTS["t2"], DEFAULTS["iterations"], DEFAULTS["mixmatch_batch_size"]) == (60, 90, 1024, 64)
    assert (DEFAULTS["seeds_per_class"], DEFAULTS["warmup_every"], DEFAULTS["warmup_step"]) == (10, 5, 10)
    assert (DEFAULTS["alpha"], DEFAULTS["gamma"], DEFAULTS["meta_lr"], DEFAULTS["meta_layers"]) == (0.5, 0.5, 0.015, 3)
    assert (DEFAULTS["temperature"], DEFAULTS["mixup_alpha"], DEFAULTS["lambda_u"]) == (0.5, 0.75, 15.0)


@needs_cifar_mini
def test_paper_preset_trains_resnet18_two_iterations_on_cifar10_mini(runs_env, one_thread):
    c = make_config("paper", overrides={"dataset": str(CIFAR_MINI), "train_size": 64, "test_size": 20, "epochs": 1,
                                             "batch_size": 32, "eval_batch_size": 64})
    s = run(c, quiet=True)
    assert s["epochs"] == 1 and 0 <= s["acc"] <= 1 and 0 <= s["asr"] <= 1
    from asdkit import Record

    rec = Record.load(s["record"])
    assert rec.config["model"] == "resnet18" and rec.arrays["is_poison"].sum() == round(0.05 * 64)
    assert len(rec.metrics) == 1 and rec.metrics[0]["train_seconds"] > 0


@needs_cifar_mini
def test_paper_preset_of_asd_runs_every_stage_with_resnet18_on_cifar10_mini(runs_env, one_thread):
    c = make_config("paper", defense="asd", overrides={
        "dataset": str(CIFAR_MINI), "train_size": 100, "test_size": 20, "epochs": 3, "eval_batch_size": 64,
        "defense.t1": 1, "defense.t2": 2, "defense.iterations": 2, "defense.mixmatch_batch_size": 8,
        "defense.meta_batch_size": 50, "defense.seeds_per_class": 2, "defense.warmup_step": 2})
    s = run(c, quiet=True)
    from asdkit import Record

    rec = Record.load(s["record"])
    assert rec.metric("stage") == [1, 2, 3]
    assert "end_of_stage2" in rec.snapshots
    ResNet18(10, 3).load_state_dict(rec.weights("end_of_stage2"))  # the snapshot is a real ResNet-18


def test_paper_preset_of_asd_ends_at_epoch_100_on_gtsrb_unless_told_otherwise():
    assert make_config("paper", defense="asd", overrides={"dataset": "gtsrb"}).epochs == 100  # 002 Section 5.1
    assert make_config("paper", defense="asd").epochs == 120
    assert make_config("paper", defense="asd", overrides={"dataset": "gtsrb", "epochs": 50}).epochs == 50
    assert make_config("paper", overrides={"dataset": "gtsrb"}).epochs == 200  # no defense: 002 B.2's 200 epochs
