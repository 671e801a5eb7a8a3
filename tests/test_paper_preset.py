"""The paper preset: 002's numbers, and the code path a GPU user runs, exercised on real CIFAR-10 images at tiny size."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from asdkit import make_config, run
from asdkit.config import resolve_epochs
from asdkit.models import ResNet18, meta_layers_default

SHARED = Path(os.environ.get("ASDKIT_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
CIFAR_MINI = SHARED / "cifar10-mini.npz"
needs_cifar_mini = pytest.mark.skipif(not CIFAR_MINI.exists(), reason=f"{CIFAR_MINI} is absent")


def test_paper_preset_has_002_appendix_b2_numbers():
    c = make_config("paper")
    assert (c.dataset, c.model, c.epochs, c.batch_size) == ("cifar10", "resnet18", 200, 128)
    assert (c.optimizer, c.lr, c.momentum, c.weight_decay, c.schedule, c.milestones) == ("sgd", 0.1, 0.9, 5e-4, "multistep", (100, 150))
    assert (c.rate, c.target, c.pad) == (0.05, 3, 4)
    assert resolve_epochs(c, 50_000) == 200  # a set epoch count, not a budget


def test_paper_preset_of_asd_has_002_appendix_b3_numbers():
    from asdkit.defenses.asd import OPTIONS

    c = make_config("paper", defense="asd")
    assert (c.epochs, c.optimizer, c.lr, c.schedule) == (120, "adam", 0.002, "constant")
    paper = {o.name: o.default_at("paper") for o in OPTIONS}
    assert paper == {o.name: o.default for o in OPTIONS}  # the declared defaults are the paper's
    assert c.defense_args == paper  # paper scale = the defaults below, untouched, stored in full
    D = c.defense_args
    assert (D["t1"], D["t2"], D["iterations"], D["mixmatch_batch_size"]) == (60, 90, 1024, 64)
    assert (D["seeds_per_class"], D["warmup_every"], D["warmup_step"]) == (10, 5, 10)
    assert (D["alpha"], D["gamma"], D["meta_lr"]) == (0.5, 0.5, 0.015)
    # "half of the feature extractor plus the linear layer" (002 B.3): 3 layer groups of ResNet-18
    assert D["meta_layers"] == "auto" and meta_layers_default(ResNet18(10, 3)) == 3
    assert (D["temperature"], D["mixup_alpha"], D["lambda_u"]) == (0.5, 0.75, 15.0)


@needs_cifar_mini
def test_paper_preset_trains_resnet18_two_iterations_on_cifar10_mini(runs_env, one_thread):
    tiny = {"dataset": str(CIFAR_MINI), "train_size": 64, "test_size": 20, "epochs": 1, "batch_size": 32, "eval_batch_size": 64}
    with pytest.raises(ValueError, match=r"'milestones'.*\(1\)"):  # 002's /10 at 100 and 150 cannot fall in one epoch
        make_config("paper", overrides=tiny)
    c = make_config("paper", overrides={**tiny, "milestones": []})
    assert (c.optimizer, c.schedule, c.momentum, c.weight_decay) == ("sgd", "multistep", 0.9, 5e-4)
    s = run(c, quiet=True)
    assert s["epochs"] == 1 and s["phases"] == {"train": 1} and 0 <= s["acc"] <= 1 and 0 <= s["asr"] <= 1
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
    assert rec.metric("phase") == ["stage1", "stage2", "stage3"] and rec.metric("phase_epoch") == [0, 0, 0]
    assert s["phases"] == {"stage1": 1, "stage2": 1, "stage3": 1} and s["epochs"] == 3
    assert {"seconds_stage1", "seconds_stage2", "seconds_stage3"} <= set(s)
    assert "end_of_stage2" in rec.snapshots
    ResNet18(10, 3).load_state_dict(rec.weights("end_of_stage2"))  # the snapshot is a real ResNet-18


def test_paper_preset_of_asd_ends_at_epoch_100_on_gtsrb_unless_told_otherwise():
    assert make_config("paper", defense="asd", overrides={"dataset": "gtsrb"}).epochs == 100  # 002 Section 5.1
    assert make_config("paper", defense="asd").epochs == 120
    # a set 'epochs' wins over the GTSRB preset (ASD's stage ends must then fit below it)
    assert make_config("paper", defense="asd", overrides={"dataset": "gtsrb", "epochs": 50, "defense.t1": 25,
                                                         "defense.t2": 40}).epochs == 50
    with pytest.raises(ValueError, match="t1=60, t2=90, epochs=50"):  # refused in make_config, before any data loads
        make_config("paper", defense="asd", overrides={"dataset": "gtsrb", "epochs": 50})
    assert make_config("paper", overrides={"dataset": "gtsrb"}).epochs == 200  # no defense: 002 B.2's 200 epochs


@needs_cifar_mini
@pytest.mark.parametrize("defense,phases", [
    ("abl", {"isolation": 1, "training": 1, "unlearning": 1}),
    ("pipd", {"pre_isolation": 1, "isolation": 2, "training": 1}),
])
def test_paper_presets_of_abl_and_pipd_run_every_phase_with_resnet18_on_cifar10_mini(runs_env, one_thread, defense, phases):
    """The code path a GPU user runs with --scale paper, at tiny size: ResNet-18's 15 PIPD channel layers included."""
    options = {"abl": {"defense.isolation_epochs": 1, "defense.unlearn_epochs": 1},
               "pipd": {"defense.rounds": 2, "defense.train_epochs": 1}}[defense]
    c = make_config("paper", defense=defense, overrides={
        "dataset": str(CIFAR_MINI), "train_size": 200, "test_size": 20, "epochs": 1, "milestones": [], "batch_size": 50,
        "eval_batch_size": 100, "model_args": {"width": 8}, **options})
    assert (c.optimizer, c.lr) == ("sgd", 0.1)
    s = run(c, quiet=True)
    assert s["phases"] == phases and 0 <= s["tpr"] <= 1 and 0 <= s["fpr"] <= 1
    if defense == "pipd":
        from asdkit import Record

        rec = Record.load(s["record"])
        e = rec.metric("phase").index("isolation")
        assert sum(k.startswith("channels/") for k in rec.epoch_arrays) == 15
        assert len(rec.epoch_array("channels/layer4.1.conv2", e)) == 3  # ceil(0.04 · 64) at width 8


def test_paper_preset_of_dbd_has_004_appendix_numbers():
    D = make_config("paper", defense="dbd").defense_args
    assert (D["simclr_epochs"], D["simclr_horizon"], D["simclr_batch_size"], D["simclr_lr"], D["tau"]) == (100, 1000, 512, 0.4, 0.5)
    assert (D["head_epochs"], D["head_lr"], D["filter_rate"], D["finetune_epochs"], D["finetune_lr"]) == (10, 0.002, 0.5, 190, 0.002)
    assert (D["sce_alpha"], D["sce_beta"], D["projection_dim"]) == (0.1, 1.0, 128)


@needs_cifar_mini
def test_paper_preset_of_dbd_runs_every_phase_with_resnet18_on_cifar10_mini(runs_env, one_thread):
    """SimCLR with colour views (jitter, grayscale: CIFAR has colour) on ResNet-18, the head, MixMatch fine-tuning: tiny, each phase once."""
    c = make_config("paper", defense="dbd", overrides={
        "dataset": str(CIFAR_MINI), "train_size": 128, "test_size": 40, "eval_batch_size": 128, "model_args": {"width": 8},
        "defense.simclr_epochs": 1, "defense.simclr_horizon": 0, "defense.simclr_batch_size": 64, "defense.head_epochs": 1,
        "defense.head_batch_size": 64, "defense.finetune_epochs": 1, "defense.iterations": 2, "defense.mixmatch_batch_size": 16,
        "defense.feature_sample": 50})
    s = run(c, quiet=True)
    assert s["phases"] == {"simclr": 1, "head": 1, "finetune": 1} and 0 <= s["acc"] <= 1
    from asdkit import Record

    rec = Record.load(s["record"])
    assert rec.snapshots["simclr_features"]["features"].shape == (50, 64)  # ResNet-18 at width 8: 8·8 features
    assert rec.snapshots["stage2"]["sce"].shape == (128,)
    weights = rec.weights("final")
    assert not any(k.startswith("projection") for k in weights)  # the projection head is SimCLR's only
    ResNet18(10, 3, width=8).load_state_dict(weights)
