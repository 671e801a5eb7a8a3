"""Tests of DBD on the shared core: the three phases, the frozen head phase, the filter, the backbone cache, resume, ASR."""
from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch

import asdkit
from helpers import dies_after_checkpoint
from asdkit import make_config
from asdkit.config import defense_options
from asdkit.defenses import dbd
from asdkit.records import Record
from asdkit.runner import Run

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = {"train_size": 1200, "test_size": 300, "defense.simclr_epochs": 2, "defense.head_epochs": 1, "defense.simclr_batch_size": 128,
        "defense.finetune_epochs": 2, "defense.iterations": 4, "defense.feature_sample": 100}


def tiny(**changes):
    return make_config("smoke", defense="dbd", overrides={**TINY, **changes})


@pytest.fixture(scope="module")
def tiny_run(fmnist_dir, tmp_path_factory, one_thread):
    """One tiny DBD run, with the model's weights and buffers captured after every epoch."""
    root = tmp_path_factory.mktemp("dbd")
    states = []
    real = Run._checkpoint

    def capture(self, phase, epoch):
        states.append((self.phases[phase if epoch else phase - 1].name, copy.deepcopy(self.ctx.model.state_dict())))
        real(self, phase, epoch)

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ASDKIT_DATA", str(fmnist_dir))
        mp.setattr(Run, "_checkpoint", capture)
        summary = asdkit.run(tiny(), quiet=True, root=root)
    return summary, Record.load(summary["record"]), states, root


def test_dbd_runs_simclr_then_the_head_then_the_fine_tuning(tiny_run):
    summary, rec, _, _ = tiny_run
    assert rec.metric("phase") == ["simclr"] * 2 + ["head"] + ["finetune"] * 2
    assert summary["phases"] == {"simclr": 2, "head": 1, "finetune": 2} and summary["simclr_reused"] is False
    simclr = rec.snapshots["simclr"]
    assert int(simclr["reused"]) == 0 and len(simclr["probe_acc"]) == 2 and len(simclr["loss"]) == 2
    assert all(0 <= a <= 1 for a in rec.metric("probe_acc")[:2])
    assert "acc" not in rec.metrics[0] and "acc" in rec.metrics[2]  # SimCLR epochs are not evaluated: no head yet
    # the final weights are a plain classifier: the projection head stays out of them
    assert not any(k.startswith("projection.") for k in rec.weights("final"))


def test_the_head_phase_moves_only_the_head_batchnorm_buffers_included(tiny_run):
    _, _, states, _ = tiny_run
    after_simclr = [s for name, s in states if name == "simclr"][-1]
    after_head = [s for name, s in states if name == "head"][-1]
    moved = sorted(k for k in after_head if not torch.equal(after_simclr[k], after_head[k]))
    assert moved == ["linear.bias", "linear.weight"]
    assert any("running_mean" in k for k in after_head)  # there are BatchNorm buffers that could have moved
    after_finetune = states[-1][1]
    assert not torch.equal(after_head["layer1.conv.weight"], after_finetune["layer1.conv.weight"])  # stage 3 trains everything


def test_the_filtered_pool_is_the_lowest_sce_half(tiny_run):
    _, rec, _, _ = tiny_run
    for e, m in enumerate(rec.metrics):
        if m["phase"] != "finetune":
            continue
        pool, losses = rec.epoch_array("clean_pool", e), rec.epoch_array("sce_loss", e).float()
        assert int(pool.sum()) == 600 == m["pool_size"]
        assert losses[pool].max() <= losses[~pool].min()
        assert {"tpr", "fpr", "poison_in_pool", "hard_in_pool"} <= set(m)


def test_the_record_holds_stage2_losses_and_the_feature_sample(tiny_run):
    _, rec, _, _ = tiny_run
    stage2 = rec.snapshots["stage2"]
    assert stage2["ce"].shape == stage2["sce"].shape == (1200,)
    feats = rec.snapshots["simclr_features"]
    assert feats["features"].shape == (100, 64) and len(set(feats["index"].tolist())) == 100


def test_the_backbone_cache_is_reused_when_only_later_stages_change(tiny_run, runs_env, monkeypatch):
    summary, rec, _, root = tiny_run
    assert len(list((root / "cache" / "products").glob("simclr-*.pt"))) == 1

    def no_simclr(*args, **kwargs):
        pytest.fail("SimCLR trained again")

    monkeypatch.setattr(dbd, "simclr_objective", no_simclr)
    other = asdkit.run(tiny(**{"defense.filter_rate": 0.4, "defense.finetune_epochs": 1}), quiet=True, root=root)
    again = Record.load(other["record"])
    assert other["simclr_reused"] is True and again.metric("phase")[0] == "head"
    assert int(again.snapshots["simclr"]["reused"]) == 1
    assert torch.equal(again.snapshots["simclr"]["probe_acc"], rec.snapshots["simclr"]["probe_acc"])
    assert torch.equal(again.snapshots["simclr_features"]["features"], rec.snapshots["simclr_features"]["features"])
    assert int(again.epoch_array("clean_pool", 1).sum()) == 480
    from asdkit.context import Context

    monkeypatch.setattr(Context, "snapshot_features", lambda *a, **k: pytest.fail("a pre-flight computed features"))
    asdkit.preparation.preflight([tiny(**{"defense.filter_rate": 0.3})], root)  # reads the cached backbone, no feature pass
    # a SimCLR option enters the key: no reuse
    key = lambda c: dbd.backbone(c, defense_options(c)).key  # noqa: E731
    assert key(tiny(**{"defense.tau": 0.2})) != key(tiny()) != key(tiny(seed=1))
    assert key(tiny(**{"defense.filter_rate": 0.3, "defense.head_epochs": 3})) == key(tiny())


def test_meta_split_switch_uses_the_virtual_model(runs_env):
    summary = asdkit.run(tiny(**{"defense.split": "meta", "defense.simclr_epochs": 1, "defense.finetune_epochs": 1}), quiet=True)
    rec = Record.load(summary["record"])
    e = rec.metric("phase").index("finetune")
    reduction, pool = rec.epoch_array("loss_reduction", e).float(), rec.epoch_array("clean_pool", e)
    assert int(pool.sum()) == 600 and reduction[pool].max() <= reduction[~pool].min()


@pytest.mark.parametrize("kill_after", [1, 3, 4])  # in SimCLR, after the head, in the fine-tuning
def test_a_killed_dbd_run_resumes_identically_in_each_phase(runs_env, monkeypatch, kill_after):
    config = tiny(**{"defense.finetune_epochs": 2})
    reference = asdkit.run(config, quiet=True, root=runs_env / "a")
    with dies_after_checkpoint(monkeypatch, kill_after):
        asdkit.run(config, quiet=True, root=runs_env / "b")
    resumed = asdkit.run(config, quiet=True, root=runs_env / "b")
    a, b = Record.load(reference["record"]), Record.load(resumed["record"])
    assert a.metric("phase") == b.metric("phase")
    assert a.metric("acc") == b.metric("acc") and a.metric("loss") == b.metric("loss")
    assert torch.equal(a.epoch_array("clean_pool"), b.epoch_array("clean_pool"))
    assert Path(resumed["record"]).name == Path(reference["record"]).name


def test_bad_dbd_settings_are_refused_before_training(runs_env):
    with pytest.raises(ValueError, match=r"'simclr_batch_size' option of dbd must be an int in \[2, 1200\].*Got 5000"):
        Run(tiny(**{"defense.simclr_batch_size": 5000}), quiet=True)
    with pytest.raises(ValueError, match="The 'filter_rate' option of dbd must be a float in"):
        make_config("smoke", defense="dbd", overrides={"defense.filter_rate": 1.0})


def test_knn_agreement_tells_a_backdoored_backbone_from_a_purified_one():
    """004 Fig. 1 in numbers: poisoned points beside the target class (observed label) or beside their own class (true)."""
    from asdkit.analysis import knn_label_agreement

    g = torch.Generator().manual_seed(0)
    true = torch.arange(300) % 3
    is_poison = torch.zeros(300, dtype=torch.bool)
    is_poison[true != 0] = torch.rand(int((true != 0).sum()), generator=g) < 0.1
    observed = torch.where(is_poison, torch.zeros_like(true), true)
    centres = torch.eye(3) * 5
    purified = centres[true] + torch.randn(300, 3, generator=g)
    backdoored = centres[observed] + torch.randn(300, 3, generator=g)
    a = knn_label_agreement(purified.numpy(), observed.numpy(), true.numpy(), is_poison.numpy(), k=5)
    b = knn_label_agreement(backdoored.numpy(), observed.numpy(), true.numpy(), is_poison.numpy(), k=5)
    assert a["true"] > 0.9 > 0.1 > a["observed"] and b["observed"] > 0.9 > 0.1 > b["true"]


def test_stage2_separation_reads_the_heads_own_loss(tiny_run):
    from asdkit.analysis import detection_auroc, stage2_separation

    _, rec, _, _ = tiny_run
    out = stage2_separation(rec)
    sce = rec.snapshots["stage2"]["sce"].double().numpy()
    assert out["head_loss"] == "sce" and out["auroc"] == pytest.approx(detection_auroc(sce, rec.arrays["is_poison"].numpy()))
    assert -1 <= out["normalised_gap"] <= 1 and "probe_before" in rec.snapshots["simclr"]


def test_ce_and_sce_of_one_model_rank_samples_identically():
    """Why 004 Fig. 3 needs two heads: SCE = α·CE + β·A·(1 − p_y) is a decreasing function of p_y, as CE is."""
    from asdkit.losses import cross_entropy, sce_loss

    g = torch.Generator().manual_seed(0)
    logits, labels = torch.randn(500, 10, generator=g) * 3, torch.randint(0, 10, (500,), generator=g)
    ce, sce = cross_entropy(logits, labels), sce_loss(logits, labels)
    assert torch.equal(torch.argsort(ce, stable=True), torch.argsort(sce, stable=True))


def test_head_loss_ce_fits_the_head_with_ce_on_the_cached_backbone(tiny_run, runs_env, monkeypatch):
    from asdkit.analysis import stage2_separation

    _, sce_rec, _, root = tiny_run
    monkeypatch.setattr(dbd, "simclr_objective", lambda *a, **k: pytest.fail("SimCLR trained again"))
    s = asdkit.run(tiny(**{"defense.head_loss": "ce"}), quiet=True, root=root)
    rec = Record.load(s["record"])
    assert s["simclr_reused"] and "ce_loss" in rec.epoch_arrays and "sce_loss" not in rec.epoch_arrays
    assert stage2_separation(rec)["head_loss"] == "ce"
    assert not torch.equal(rec.snapshots["stage2"]["ce"], sce_rec.snapshots["stage2"]["ce"])  # another head


def test_dbd_lowers_asr_against_no_defense_at_smoke_scale(runs_env):
    dbd_run = asdkit.run(make_config("smoke", defense="dbd"), quiet=True)
    none = asdkit.run(make_config("smoke"), quiet=True)
    assert none["asr"] > 0.9 and dbd_run["asr"] < none["asr"] - 0.5, (dbd_run["asr"], none["asr"])
    assert dbd_run["max_poison_in_clean_pool"] < 100  # of 200: the SCE filter keeps most poisoned samples unlabelled
    assert dbd_run["fpr"] == pytest.approx(0.5, abs=0.1)  # the unlabelled pool is half the set by design


def test_a_run_that_read_a_cached_backbone_resumes_reading_it(runs_env, monkeypatch):
    """Killed in the head phase after reusing a backbone, the run resumes with the same plan and the same numbers."""
    first, second = tiny(), tiny(**{"defense.filter_rate": 0.4, "defense.finetune_epochs": 1})
    for root in ("a", "b"):
        asdkit.run(first, quiet=True, root=runs_env / root)  # caches the backbone
    reference = asdkit.run(second, quiet=True, root=runs_env / "a")
    with dies_after_checkpoint(monkeypatch, 1):
        asdkit.run(second, quiet=True, root=runs_env / "b")
    resumed = asdkit.run(second, quiet=True, root=runs_env / "b")
    assert resumed["simclr_reused"] is True and resumed["phases"] == reference["phases"] and resumed["phases"]["simclr"] == 0
    a, b = Record.load(reference["record"]), Record.load(resumed["record"])
    assert a.metric("phase") == b.metric("phase") and a.metric("acc") == b.metric("acc") and a.metric("loss") == b.metric("loss")
