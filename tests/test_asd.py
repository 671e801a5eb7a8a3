"""Tests of ASD (002, Algorithm 1): the split policies, the stage schedule, the options and tiny Fashion-MNIST runs."""
from __future__ import annotations

import copy
from dataclasses import replace
from types import SimpleNamespace

import pytest
import torch

from helpers import dies_after_checkpoint
import asdkit.context
import asdkit.engine
import asdkit.defenses.asd as asd
from asdkit import make_config, run
from asdkit.config import defense_options, parse_assignment
from asdkit.defenses.policies import class_agnostic_loss_split, class_aware_loss_split, lowest_count, lowest_fraction, meta_split
from asdkit.engine import score
from asdkit.losses import cross_entropy, sce_loss
from asdkit.models import CompactResNet, ResNet18, make_model, meta_layers_default
from asdkit.records import Record, load_checked
from asdkit.records import run_folder
from asdkit.runner import Run

pytestmark = pytest.mark.usefixtures("one_thread")

# The smoke data every run here uses: 1,000 training images (10% poisoned, BadNets → class 0), 300 test images.
TRAIN, TEST = 1000, 300
# meta_layers=3 (layer2, layer3, linear): the default when the reference's thresholds were measured; "auto" picks 2 on the
# compact model, whose smoke-scale meta-split is noisier (seed 0: 30 poisoned samples in the stage-3 D_C, ASR 0.15).
REF = {"train_size": TRAIN, "test_size": TEST, "epochs": 4, "defense.t1": 2, "defense.t2": 3, "defense.iterations": 15,
       "defense.meta_layers": 3}
SMALL = {"train_size": 600, "test_size": TEST, "epochs": 4, "defense.t1": 2, "defense.t2": 3}


def asd_config(**overrides):
    return make_config("smoke", defense="asd", overrides=overrides)


def folder_of(root, config):
    return run_folder(config, root)


# =========================================================================== split policies

# 12 samples of 3 classes (sizes 5, 4, 3), distinct losses; seeds 11 (class 0) and 8 (class 2) have high losses.
LABELS = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1, 0])
LOSSES = torch.tensor([0.5, 0.1, 0.9, 0.2, 0.8, 0.3, 0.05, 0.6, 0.7, 0.4, 0.15, 0.95])
SEEDS = torch.tensor([11, 8])


def indices(mask):
    return set(mask.nonzero().flatten().tolist())


@pytest.mark.parametrize("per_class, expected", [
    (0, {11, 8}),  # seeds only
    (1, {11, 8, 6, 1, 5}),  # seeds are not counted among a class's picks: class 0 still gets 6
    (2, {11, 8, 6, 3, 1, 10, 5, 2}),  # class 2 has only two non-seed candidates: both
    (3, {11, 8, 6, 3, 9, 1, 10, 7, 5, 2}),  # 0 (0.5) and 4 (0.8) are each their class's largest
    (10, set(range(12))),  # more than any class holds: every sample
])
def test_class_aware_split_hand_computed(per_class, expected):
    mask = class_aware_loss_split(LOSSES, LABELS, seeds=SEEDS, per_class=per_class)
    assert mask.dtype == torch.bool and mask.shape == (12,)
    assert indices(mask) == expected


def naive_class_aware(losses, labels, seeds, per_class):
    chosen = set(seeds.tolist())
    for k in set(labels.tolist()):
        cands = [i for i in range(len(losses)) if labels[i] == k and i not in chosen]
        cands.sort(key=lambda i: (losses[i].item(), i))
        chosen |= set(cands[:per_class])
    return chosen


@pytest.mark.parametrize("per_class", [0, 1, 7, 30, 500])
def test_class_aware_split_matches_naive_and_ignores_sample_order(per_class):
    g = torch.Generator().manual_seed(per_class)
    n = 300
    losses = torch.randperm(n, generator=g).float() / n  # distinct
    labels = torch.randint(0, 6, (n,), generator=g)
    seeds = torch.randperm(n, generator=g)[:12]
    mask = class_aware_loss_split(losses, labels, seeds=seeds, per_class=per_class)
    assert indices(mask) == naive_class_aware(losses, labels, seeds, per_class)
    assert mask[seeds].all()
    perm = torch.randperm(n, generator=g)
    inverse = torch.empty_like(perm)
    inverse[perm] = torch.arange(n)
    permuted = class_aware_loss_split(losses[perm], labels[perm], seeds=inverse[seeds], per_class=per_class)
    back = torch.zeros_like(permuted)
    back[perm] = permuted
    assert torch.equal(back, mask)


def test_class_aware_split_keeps_high_loss_seeds_and_rejects_negative_per_class():
    mask = class_aware_loss_split(LOSSES, LABELS, seeds=torch.tensor([11]), per_class=1)
    assert mask[11]  # the highest loss of all, kept because it is a seed
    with pytest.raises(ValueError, match="per_class"):
        class_aware_loss_split(LOSSES, LABELS, seeds=SEEDS, per_class=-1)


@pytest.mark.parametrize("rate", [0.1, 0.25, 0.5, 0.73, 1.0])
def test_class_agnostic_split_takes_exactly_the_lowest_round_rate_n(rate):
    g = torch.Generator().manual_seed(0)
    losses = torch.rand(203, generator=g)
    mask = class_agnostic_loss_split(losses, rate=rate)
    k = round(rate * 203)
    assert int(mask.sum()) == k
    assert indices(mask) == set(torch.argsort(losses)[:k].tolist())


def test_class_agnostic_split_selects_every_planted_low_loss_sample():
    g = torch.Generator().manual_seed(1)
    losses = 1 + 2 * torch.rand(1000, generator=g)  # clean-looking... and planted samples the model already fits
    planted = torch.randperm(1000, generator=g)[:50]
    losses[planted] = 0.5 * torch.rand(50, generator=g)
    mask = class_agnostic_loss_split(losses, rate=0.1)
    assert int(mask.sum()) == 100
    assert mask[planted].all()


def test_meta_split_takes_the_least_loss_reduction_and_never_planted_poison():
    g = torch.Generator().manual_seed(2)
    reduction = torch.randn(1000, generator=g) * 0.1  # clean samples: the virtual epoch barely moves them
    poison = torch.randperm(1000, generator=g)[:100]
    reduction[poison] = 2 + torch.rand(100, generator=g)  # poisoned samples are learnt fast: large reduction
    mask = meta_split(reduction, rate=0.5)
    assert int(mask.sum()) == 500
    assert not mask[poison].any()
    assert reduction[mask].max() < reduction[~mask].min()
    # even when the split takes 90%, the planted 10% stay out
    assert not meta_split(reduction, rate=0.9)[poison].any()


def test_lowest_fraction_breaks_ties_by_index():
    assert indices(lowest_fraction(torch.tensor([1.0, 0.0, 1.0, 0.0, 1.0]), 0.6)) == {1, 3, 0}


@pytest.mark.parametrize("k, expected", [(0, {11, 8}), (3, {11, 8, 6, 1, 10}), (5, {11, 8, 6, 1, 10, 3, 5}), (50, set(range(12)))])
def test_lowest_count_keeps_the_seeds_and_adds_the_k_lowest_of_the_rest(k, expected):
    assert indices(lowest_count(LOSSES, k, keep=SEEDS)) == expected  # whatever the class
    assert indices(lowest_count(LOSSES, k)) == set(torch.argsort(LOSSES)[:k].tolist())


@pytest.mark.parametrize("split", ["aware", "agnostic", "meta"])
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_split_policies_reject_non_finite_scores(split, bad):
    scores = torch.rand(12)
    scores[4] = bad
    call = {"aware": lambda: class_aware_loss_split(scores, LABELS, seeds=SEEDS, per_class=1),
            "agnostic": lambda: class_agnostic_loss_split(scores, rate=0.5),
            "meta": lambda: meta_split(scores, rate=0.5)}[split]
    with pytest.raises(ValueError, match="finite"):
        call()


@pytest.mark.parametrize("rate", [0.0, -0.1, 1.01, 2])
@pytest.mark.parametrize("split", [class_agnostic_loss_split, meta_split])
def test_split_policies_reject_rates_outside_zero_one(split, rate):
    with pytest.raises(ValueError, match=r"'rate'.*\(0, 1\]"):
        split(torch.rand(10), rate=rate)


def test_split_policies_reject_two_dimensional_scores():
    with pytest.raises(ValueError, match="1-D"):
        meta_split(torch.rand(4, 3), rate=0.5)


# =========================================================================== schedule, seeds, options

PAPER = {o.name: o.default for o in asd.OPTIONS}  # t1 = 60, t2 = 90, epochs 120


@pytest.mark.parametrize("stages, expected", [
    ("123", {0: 1, 59: 1, 60: 2, 89: 2, 90: 3, 119: 3}),
    ("13", {0: 1, 59: 1, 60: 3, 89: 3, 90: 3, 119: 3}),  # stage-2 epochs become stage 3
    ("12", {0: 1, 59: 1, 60: 2, 89: 2, 90: 2, 119: 2}),  # stage-3 epochs become stage 2
    ("23", {0: 2, 59: 2, 60: 2, 89: 2, 90: 3, 119: 3}),  # stage-1 epochs become stage 2
    ("3", {0: 3, 60: 3, 119: 3}),
    ("1", {0: 1, 90: 1, 119: 1}),
    (13, {60: 3}),  # --set defense.stages=13 parses as an int
])
def test_stage_of(stages, expected):
    o = {**PAPER, "stages": stages}
    assert {e: asd.stage_of(e, o, 120) for e in expected} == expected


@pytest.mark.parametrize("stages, expected", [
    ("123", [(1, range(0, 60)), (2, range(60, 90)), (3, range(90, 120))]),
    ("13", [(1, range(0, 60)), (3, range(60, 120))]),
    ("23", [(2, range(0, 90)), (3, range(90, 120))]),
    ("2", [(2, range(0, 120))]),
])
def test_stage_ranges_are_the_phases_of_the_stage_schedule(stages, expected):
    o = {**PAPER, "stages": stages}
    ranges = asd.stage_ranges(o, 120)
    assert ranges == expected
    assert [s for s, r in ranges for _ in r] == [asd.stage_of(e, o, 120) for e in range(120)]


def test_stages_as_the_command_line_parses_them_is_accepted():
    key, value = parse_assignment("defense.stages=13")  # README: asdkit run --defense asd --set defense.stages=13
    assert (key, value) == ("defense.stages", 13)
    o = defense_options(asd_config(**{key: value}))
    assert [asd.stage_of(e, o, 4) for e in range(4)] == [1, 1, 3, 3]


def fake_run(labels, is_poison, *, seed=0):
    """What preparation.draw_seeds reads: the ground truth and the config's seed."""
    truth = SimpleNamespace(observed_label=labels, is_poison=is_poison, poison_index=is_poison.nonzero().flatten())
    return SimpleNamespace(truth=truth, config=SimpleNamespace(seed=seed, defense="asd"))


def draw_seeds(r, per_class, poisoned=0):
    from asdkit.preparation import draw_seeds as draw

    return draw(r.truth, r.config, per_class, poisoned)


def poisoned_labels(n=400, classes=10, rate=0.1, seed=0):
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % classes
    is_poison = torch.zeros(n, dtype=torch.bool)
    is_poison[torch.randperm(n, generator=g)[: int(rate * n)]] = True
    labels[is_poison] = 0
    return labels, is_poison


@pytest.mark.parametrize("w", [1, 3, 10])
def test_clean_seeds_w_per_class_none_poisoned(w):
    labels, is_poison = poisoned_labels()
    r = fake_run(labels, is_poison)
    seeds = draw_seeds(r, w)
    assert len(seeds) == len(set(seeds.tolist())) == 10 * w
    assert torch.equal(torch.bincount(labels[seeds], minlength=10), torch.full((10,), w))
    assert not is_poison[seeds].any()
    assert torch.equal(seeds, draw_seeds(r, w))  # same seed, same seeds


def test_asd_asks_the_runner_for_w_seeds_a_class_k_poisoned_and_none_with_transfer_seeds():
    assert asd.seeds(defense_options(asd_config(**{"defense.seeds_per_class": 3, "defense.poisoned_seeds": 4}))) == (3, 4)
    assert asd.seeds(defense_options(asd_config(**{"defense.seed_source": "x.npz"}))) == (0, 0)
    assert len(draw_seeds(fake_run(*poisoned_labels()), 0, 0)) == 0


@pytest.mark.parametrize("k", [1, 4, 30])
def test_clean_seeds_poisoned_seeds_slips_exactly_k_poisoned_samples_in(k):
    labels, is_poison = poisoned_labels()
    r = fake_run(labels, is_poison)
    seeds = draw_seeds(r, 3, k)
    assert len(seeds) == len(set(seeds.tolist())) == 30  # the total is kept
    assert int(is_poison[seeds].sum()) == k
    assert torch.equal(seeds, draw_seeds(r, 3, k))  # a named stream: the same draw every time


@pytest.mark.parametrize("per_class, k, name", [
    (10, 101, "poisoned_seeds"),  # more than seeds_per_class (10) × 10 classes
    (10, 41, "poisoned_seeds"),  # more than the 40 poisoned samples there are
    (34, 0, "seeds_per_class"),  # class 1 has only 33 clean samples
])
def test_seeds_that_cannot_be_drawn_from_the_data_are_refused_naming_the_option(per_class, k, name):
    labels, is_poison = poisoned_labels()
    r = fake_run(labels, is_poison)
    assert len(draw_seeds(r, 33)) == 330 and int(is_poison[draw_seeds(r, 4, 40)].sum()) == 40  # the edges are accepted
    with pytest.raises(ValueError, match=name):
        draw_seeds(r, per_class, k)


@pytest.mark.parametrize("args, name", [
    ({"bogus": 1}, "bogus"),
    ({"t1": 3, "t2": 2}, "t1"),
    ({"t2": 5}, "t2"),  # more than epochs = 4
    ({"t1": -1}, "t1"),
    ({"alpha": 0.0}, "alpha"),
    ({"alpha": 1.0}, "alpha"),
    ({"gamma": 1.0}, "gamma"),
    ({"gamma": 0}, "gamma"),
    ({"clean_hard_fraction": 1.5}, "clean_hard_fraction"),
    ({"stage1_split": "meta"}, "stage1_split"),
    ({"stage2_split": "class_aware"}, "stage2_split"),
    ({"stages": "124"}, "stages"),
    ({"stages": ""}, "stages"),
    ({"stages": "abc"}, "stages"),
    ({"meta_optimizer": "rmsprop"}, "meta_optimizer"),
    ({"iterations": 0}, "iterations"),
    ({"warmup_every": 0}, "warmup_every"),
    ({"meta_layers": 2.5}, "meta_layers"),
    ({"meta_layers": 5}, "meta_layers"),  # the compact model has 4 layer groups
    ({"seeds_per_class": 0}, "seeds_per_class"),
    ({"poisoned_seeds": -1}, "poisoned_seeds"),
    ({"seed_source": 3}, "seed_source"),
    ({"seed_source": "x.npz", "poisoned_seeds": 2}, "seed_source"),
    ({"transfer_epochs": -1}, "transfer_epochs"),
])
def test_options_reject_bad_values_naming_them(args, name):
    with pytest.raises(ValueError, match=name):
        asd_config(**{f"defense.{k}": v for k, v in args.items()})


def test_option_messages_name_the_option_its_range_and_the_value():
    with pytest.raises(ValueError, match=r"^The 'gamma' option of asd must be a float in \(0, 1\)\. Got 1\.5 instead\.$"):
        asd_config(**{"defense.gamma": 1.5})
    with pytest.raises(ValueError, match=r"^Unknown defense option\(s\) \['gama'\] for 'asd'; its options: \[.*'gamma'.*\]"):
        asd_config(**{"defense.gama": 0.5})


def test_options_accept_the_presets_and_edge_values():
    for args in ({"t1": 2, "t2": 3}, {"t1": 0, "t2": 0}, {"t1": 4, "t2": 4}, {"t1": 1, "t2": 2, "stages": "13", "alpha": 0.01, "poisoned_seeds": 100},
                 {"meta_layers": 4}, {"meta_layers": "auto"}, {"warmup_step": 0.5}, {"warmup_step": 0}):
        config = asd_config(**{f"defense.{k}": v for k, v in args.items()})
        o = defense_options(config)
        assert {k: o[k] for k in args} == args
        assert config.defense_args == dict(o)  # make_config stores every resolved option
    for scale in ("smoke", "classroom", "paper"):
        o = defense_options(make_config(scale, defense="asd"))
        assert o == {opt.name: opt.default_at(scale) for opt in asd.OPTIONS}
    assert {k: defense_options(make_config("paper", defense="asd"))[k] for k in PAPER} == PAPER
    assert make_config("paper", defense="asd").epochs == 120


def test_meta_layers_auto_is_the_models_half_feature_extractor_plus_head():
    assert PAPER["meta_layers"] == "auto"
    assert meta_layers_default(CompactResNet()) == 2  # its last stage and the head
    assert meta_layers_default(ResNet18()) == 3  # layer3, layer4 and the head


@pytest.mark.parametrize("args, name", [
    ({"meta_lr": -0.015}, "meta_lr"),  # torch's Adam would raise only when stage 3 starts (epoch 90 of 120)
    ({"meta_batch_size": 0}, "meta_batch_size"),  # range() step 0, only when stage 3 starts
    ({"warmup_step": -10}, "warmup_step"),  # class_aware_loss_split would raise at epoch warmup_every
    ({"temperature": 0}, "temperature"),  # ZeroDivisionError inside the first MixMatch step
    ({"poisoned_seeds": 1.5}, "poisoned_seeds"),  # TypeError when the seeds are drawn (randperm()[:1.5])
])
def test_options_that_would_crash_later_in_training_are_refused_by_make_config(args, name):
    """Once a bug (they passed the old options() and check(), failing only once training reached them): now make_config refuses them."""
    with pytest.raises(ValueError, match=f"The '{name}' option of asd must be"):
        asd_config(**{f"defense.{k}": v for k, v in args.items()})


def test_bad_option_through_make_config_stops_the_run_before_training(runs_env, monkeypatch):
    def boom(*a, **k):
        pytest.fail("training started")

    monkeypatch.setitem(asd.SEMI_METHODS, "mixmatch", boom)
    with pytest.raises(ValueError, match="'gamma'.*Got 1.0"):
        asd_config(**{**SMALL, "defense.gamma": 1.0})
    # a config that bypasses make_config (a hand-made or edited one) is refused by Run and run() alike
    good = asd_config(**SMALL)
    config = replace(good, defense_args={**good.defense_args, "gamma": 1.0})
    with pytest.raises(ValueError, match="'gamma'.*Got 1.0"):
        Run(config, quiet=True)
    with pytest.raises(ValueError, match="gamma"):
        run(config, quiet=True)
    assert not folder_of(runs_env, config).exists()


def test_meta_layers_beyond_the_model_is_reported_under_its_name(runs_env, monkeypatch):
    """defense.meta_layers=5 (the compact model has 4 layer groups) stops the run before training, naming 'meta_layers'
    (it once read "The 'k' parameter of last_layers must be in [1, 4]")."""
    def boom(*a, **k):
        pytest.fail("training started")

    monkeypatch.setitem(asd.SEMI_METHODS, "mixmatch", boom)
    with pytest.raises(ValueError, match=r"'meta_layers' option of asd must be 'auto' or an int in \[1, 4\]"):
        asd_config(**{**SMALL, "defense.meta_layers": 5})
    good = asd_config(**SMALL)
    config = replace(good, defense_args={**good.defense_args, "meta_layers": 5})
    with pytest.raises(ValueError, match="meta_layers"):
        run(config, quiet=True)
    assert not folder_of(runs_env, config).exists()


# =========================================================================== the reference smoke run


@pytest.fixture(scope="module")
def reference(fmnist_dir, tmp_path_factory, one_thread):
    """One uninterrupted ASD smoke run (4 epochs: stages 1, 1, 2, 3), shared by the tests that read it."""
    root = tmp_path_factory.mktemp("asd-ref")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ASDKIT_DATA", str(fmnist_dir))
        mp.setenv("ASDKIT_RUNS", str(root))
        config = asd_config(**REF)
        summary = run(config, quiet=True, force=True)
        prepared = Run(config, root=root, quiet=True)  # the same data, for re-scoring snapshots
    folder = folder_of(root, config)
    return dict(config=config, summary=summary, folder=folder, record=Record.load(folder), run=prepared)


def test_smoke_record_per_epoch_arrays_and_stages(reference):
    rec, n = reference["record"], TRAIN
    assert rec.status == "done" and rec.epochs == 4
    assert rec.metric("stage") == [1, 1, 2, 3]
    assert rec.metric("phase") == ["stage1", "stage1", "stage2", "stage3"]
    assert rec.metric("phase_epoch") == [0, 1, 0, 0]
    assert reference["summary"]["phases"] == {"stage1": 2, "stage2": 1, "stage3": 1}
    assert {f"seconds_stage{s}" for s in (1, 2, 3)} <= set(reference["summary"])  # 002 Table 3: time per stage
    for e in range(4):
        assert rec.epoch_array("l1_loss", e).shape == (n,)
        pool = rec.epoch_array("clean_pool", e)
        assert pool.dtype == torch.bool and pool.shape == (n,)
    for name in ("virtual_loss", "loss_reduction"):
        assert [len(rec.epoch_arrays[name][e]) for e in range(4)] == [0, 0, 0, n]
    red, l1, virt = (rec.epoch_array(k, 3) for k in ("loss_reduction", "l1_loss", "virtual_loss"))
    assert torch.allclose(red, l1 - virt, atol=0.02, rtol=0.01)  # stored as float16
    for key in ("acc", "asr", "loss", "loss_x", "loss_u", "weight_u", "pool_size", "poison_in_pool", "split_seconds"):
        assert all(v is not None for v in rec.metric(key)), key


def test_smoke_record_pools_are_the_ones_each_stage_prescribes(reference):
    rec, n = reference["record"], TRAIN
    labels, seeds = rec.arrays["observed_label"], rec.arrays["seeds"]
    assert len(seeds) == 10 * 10
    assert torch.equal(seeds, reference["run"].ctx.seeds)  # the seeds the defense was handed
    for e, per_class in ((0, 0), (1, 40)):  # stage 1: warmup_every 1, warmup_step 40
        pool, l1 = rec.epoch_array("clean_pool", e), rec.epoch_array("l1_loss", e)
        assert pool[seeds].all()
        expected = len(seeds)
        for k in range(10):
            cand = (labels == k)
            cand[seeds] = False
            expected += min(per_class, int(cand.sum()))
            picked = pool & cand
            if picked.any() and (cand & ~pool).any():
                assert l1[picked].max() <= l1[cand & ~pool].min()  # the lowest of the class (float16: ≤)
        assert int(pool.sum()) == expected == rec.metric("pool_size")[e]
    assert rec.metric("pool_size")[:2] == [100, 500]
    pool, l1 = rec.epoch_array("clean_pool", 2), rec.epoch_array("l1_loss", 2)
    assert int(pool.sum()) == round(0.5 * n)  # stage 2: alpha·N lowest L1
    assert l1[pool].max() <= l1[~pool].min()
    pool, red = rec.epoch_array("clean_pool", 3), rec.epoch_array("loss_reduction", 3)
    assert int(pool.sum()) == round(0.5 * n)  # stage 3: gamma·N least loss reduction
    assert red[pool].max() <= red[~pool].min()


def test_smoke_record_counts_poison_in_the_pool_from_the_ground_truth(reference):
    rec = reference["record"]
    is_poison = rec.arrays["is_poison"]
    assert int(is_poison.sum()) == 100
    counts = [int((rec.epoch_array("clean_pool", e) & is_poison).sum()) for e in range(4)]
    assert rec.metric("poison_in_pool") == counts
    assert not rec.epoch_array("clean_pool", 0)[is_poison].any()  # epoch 0: the clean seeds only
    # a random half of the set would hold ~50 poisoned samples; ASD's pools hold few
    assert max(counts) < 15, counts
    summary = reference["summary"]
    last = rec.epoch_array("clean_pool", 3)
    assert summary["max_poison_in_clean_pool"] == max(counts)
    assert summary["tpr"] == pytest.approx(float((~last & is_poison).sum()) / 100)
    assert summary["fpr"] == pytest.approx(float((~last & ~is_poison).sum()) / 900)


def test_smoke_record_snapshots(reference):
    rec, ctx = reference["record"], reference["run"].ctx
    assert int(rec.snapshots["end_of_stage2"]["epoch"]) == 2
    weights = rec.weights("end_of_stage2")
    model = make_model("compact", num_classes=10, in_channels=1, widths=[16, 32, 64])
    model.load_state_dict(weights)  # strict: every key, every shape
    # the stage-3 epoch scored exactly this model: its L1 comes back from the snapshot
    l1 = score(model, ctx.data.x, ctx.data.y, lambda lg, y: sce_loss(lg, y), normalize=ctx.data.normalize)
    assert torch.allclose(l1, rec.epoch_array("l1_loss", 3), atol=0.02, rtol=0.01)
    final = rec.weights("final")
    assert final.keys() == weights.keys()
    assert all(torch.equal(final[k], v) for k, v in load_checked(reference["folder"] / "model.pt").items())
    assert any(not torch.equal(final[k], weights[k]) for k in final)  # stage 3 trained on
    for name in ("ce", "sce"):  # Fig. 3 (d): losses of every training sample under the final model
        assert rec.snapshots["final"][name].shape == (TRAIN,)
    model.load_state_dict(final)
    sce = score(model, ctx.data.x, ctx.data.y, lambda lg, y: sce_loss(lg, y), normalize=ctx.data.normalize)
    assert torch.allclose(sce, rec.snapshots["final"]["sce"].float(), atol=0.02, rtol=0.01)


def test_asd_lowers_asr_against_no_defense_on_the_same_smoke_data(reference, runs_env):
    """Same data, seed, optimiser (Adam 0.002, constant) and epochs; only the defense differs."""
    c = reference["config"]
    none = make_config("smoke", defense="none", overrides={"train_size": TRAIN, "test_size": TEST, "epochs": 4,
                                                           "optimizer": c.optimizer, "lr": c.lr, "schedule": c.schedule})
    summary = run(none, quiet=True)
    rec_none, rec_asd = Record.load(summary["record"]), reference["record"]
    assert torch.equal(rec_none.arrays["is_poison"], rec_asd.arrays["is_poison"])
    assert torch.equal(rec_none.arrays["observed_label"], rec_asd.arrays["observed_label"])
    asr_none, asr_asd = summary["asr"], reference["summary"]["asr"]
    assert asr_none > 0.8, asr_none  # seen: 0.92
    assert asr_asd < 0.15, asr_asd  # seen: 0.01
    assert reference["summary"]["acc"] > 0.45  # seen: 0.60 (none: 0.72): ASD learnt the task, not just nothing


def test_resume_after_an_interruption_gives_the_uninterrupted_run(reference, runs_env, monkeypatch):
    config = reference["config"]
    with dies_after_checkpoint(monkeypatch, 2) as calls:
        run(config, quiet=True)
    assert calls == [(0, 1), (0, 2)]  # killed after stage 1's two epochs (phase 0), stage 2 not begun
    folder = folder_of(runs_env, config)
    assert Record.load(folder).epochs == 2 and not (folder / "model.pt").exists()
    trained, real_mixmatch = [], asd.SEMI_METHODS["mixmatch"]
    monkeypatch.setitem(asd.SEMI_METHODS, "mixmatch", lambda *a, **k: trained.append(k["epoch"]) or real_mixmatch(*a, **k))
    summary = run(config, quiet=True)
    assert trained == [2, 3]  # resumed, not restarted
    a, b = reference["record"], Record.load(folder)
    for name in ("acc", "asr", "loss", "loss_x", "loss_u", "weight_u", "stage", "phase", "phase_epoch", "pool_size", "poison_in_pool"):
        assert a.metric(name) == b.metric(name), name
    for e in range(4):
        for name in ("l1_loss", "clean_pool"):
            assert torch.equal(a.epoch_array(name, e), b.epoch_array(name, e)), (name, e)
    for k in ("max_poison_in_clean_pool", "tpr", "fpr", "acc", "asr"):
        assert summary[k] == reference["summary"][k], k
    wa, wb = load_checked(reference["folder"] / "model.pt"), load_checked(folder / "model.pt")
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    sa, sb = a.weights("end_of_stage2"), b.weights("end_of_stage2")
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


# =========================================================================== every switch changes what it claims


@pytest.fixture
def no_mixmatch(monkeypatch):
    """Replace the MixMatch epoch (the expensive part) by a stub that records the clean pool it receives."""
    pools = []

    def stub(model, data, clean_pool, optimizer, *, epoch, **kwargs):
        pools.append(clean_pool.clone())
        return {"loss": 0.0, "loss_x": 0.0, "loss_u": 0.0, "weight_u": 0.0}

    monkeypatch.setitem(asd.SEMI_METHODS, "mixmatch", stub)
    return pools


def switch_run(runs_env, pools, **overrides):
    config = asd_config(**{**SMALL, **overrides})
    run(config, quiet=True)
    rec = Record.load(folder_of(runs_env, config))
    assert len(pools) == rec.epochs
    for e, pool in enumerate(pools):  # MixMatch trained on the pool the record shows
        assert torch.equal(pool, rec.epoch_array("clean_pool", e))
    pools.clear()
    return rec


def expected_class_aware_size(rec, per_class):
    labels, seeds = rec.arrays["observed_label"], rec.arrays["seeds"]
    not_seed = torch.ones(len(labels), dtype=torch.bool)
    not_seed[seeds] = False
    return len(seeds) + sum(min(per_class, int(((labels == k) & not_seed).sum())) for k in range(10))


def test_switch_stages_13_runs_no_stage_2(runs_env, no_mixmatch):
    default = switch_run(runs_env, no_mixmatch)
    skipped = switch_run(runs_env, no_mixmatch, **{"defense.stages": "13"})
    assert default.metric("stage") == [1, 1, 2, 3]
    assert skipped.metric("stage") == [1, 1, 3, 3]
    assert skipped.metric("phase") == ["stage1", "stage1", "stage3", "stage3"]
    assert [len(x) for x in skipped.epoch_arrays["loss_reduction"]] == [0, 0, 600, 600]
    assert int(skipped.snapshots["end_of_stage2"]["epoch"]) == 1  # the model as the meta-split begins
    assert default.metric("pool_size")[:2] == skipped.metric("pool_size")[:2]


def test_switch_stage1_split_class_agnostic(runs_env, no_mixmatch):
    """Fig. 11a: the seeds plus per_class × C lowest-L1 samples of the whole set (002 appendix I: the same number in D_C)."""
    rec = switch_run(runs_env, no_mixmatch, **{"defense.stage1_split": "class-agnostic"})
    default = switch_run(runs_env, no_mixmatch)
    assert rec.metric("pool_size") == default.metric("pool_size") == [100, 500, 300, 300]
    labels, seeds = rec.arrays["observed_label"], rec.arrays["seeds"]
    pool, l1 = rec.epoch_array("clean_pool", 1), rec.epoch_array("l1_loss", 1)
    assert pool[seeds].all()
    picked = pool.clone()
    picked[seeds] = False
    rest = ~pool
    assert int(picked.sum()) == 40 * 10
    assert l1[picked].max() <= l1[rest].min()  # the lowest of the whole set, whatever the class
    counts = torch.bincount(labels[picked], minlength=10)
    assert (counts != 40).any(), counts  # not 40 a class: class-agnostic
    assert torch.equal(torch.bincount(labels[default.epoch_array("clean_pool", 1)], minlength=10)
                       - torch.bincount(labels[seeds], minlength=10), torch.full((10,), 40))


def test_switch_stage2_split_class_aware(runs_env, no_mixmatch):
    """Fig. 11b: round(alpha·N / C) lowest-L1 samples of each class, no seeds forced in."""
    rec = switch_run(runs_env, no_mixmatch, **{"defense.stage2_split": "class-aware", "defense.alpha": 0.3})
    labels = rec.arrays["observed_label"]
    pool, l1 = rec.epoch_array("clean_pool", 2), rec.epoch_array("l1_loss", 2)
    per_class = round(0.3 * 600 / 10)
    sizes = torch.bincount(labels, minlength=10)
    assert sizes.min() >= per_class  # no class is capped here, so the number is alpha·N as in stage 2's default
    assert torch.equal(torch.bincount(labels[pool], minlength=10), torch.full((10,), per_class))
    assert rec.metric("pool_size")[2] == 180 == round(0.3 * 600)
    for k in range(10):
        in_k = labels == k
        assert l1[pool & in_k].max() <= l1[~pool & in_k].min()
    assert rec.metric("pool_size")[:2] == [100, 500] and rec.metric("pool_size")[3] == 300
    agnostic = switch_run(runs_env, no_mixmatch, **{"defense.alpha": 0.3})
    assert agnostic.metric("pool_size")[2] == 180
    assert (torch.bincount(labels[agnostic.epoch_array("clean_pool", 2)], minlength=10) != per_class).any()


@pytest.mark.parametrize("every, step", [(1, 12), (2, 7), (1, 40)])
def test_switch_warmup_step_and_every_set_the_stage1_pool_sizes(runs_env, no_mixmatch, every, step):
    n = 3 if step == 40 else 4
    rec = switch_run(runs_env, no_mixmatch, **{"defense.t1": n, "defense.t2": n, "defense.warmup_every": every,
                                                "defense.warmup_step": step, "epochs": n})
    sizes = [expected_class_aware_size(rec, (e // every) * step) for e in range(rec.epochs)]
    assert rec.metric("pool_size") == sizes
    uncapped = {(1, 12): [100, 220, 340], (2, 7): [100, 100, 170, 170], (1, 40): [100, 500]}[(every, step)]
    assert sizes[: len(uncapped)] == uncapped
    if step == 40:  # by epoch 2, 90 a class: capped by the class sizes (about 50 non-seed candidates a class)
        assert 500 < sizes[2] < 100 + 10 * 80


def test_a_warmup_that_would_empty_the_polluted_pool_is_refused_before_training(runs_env, no_mixmatch):
    with pytest.raises(ValueError, match="whole training set"):
        switch_run(runs_env, no_mixmatch, **{"defense.t1": 4, "defense.t2": 4, "defense.warmup_every": 1, "defense.warmup_step": 100})
    assert not no_mixmatch  # no MixMatch epoch ran


@pytest.mark.parametrize("gamma", [0.2, 0.7])
def test_switch_gamma_sets_the_stage3_pool_size(runs_env, no_mixmatch, gamma):
    rec = switch_run(runs_env, no_mixmatch, epochs=1, **{"defense.t1": 0, "defense.t2": 0, "defense.gamma": gamma})
    assert rec.metric("stage") == [3]
    pool, red = rec.epoch_array("clean_pool", 0), rec.epoch_array("loss_reduction", 0)
    assert int(pool.sum()) == round(gamma * 600)
    assert red[pool].max() <= red[~pool].min()


def test_switch_seeds_per_class_sets_the_seeds(runs_env, no_mixmatch):
    rec = switch_run(runs_env, no_mixmatch, epochs=1, **{"defense.t1": 1, "defense.t2": 1, "defense.seeds_per_class": 3})
    seeds = rec.arrays["seeds"]
    assert len(seeds) == 30
    assert torch.equal(torch.bincount(rec.arrays["observed_label"][seeds], minlength=10), torch.full((10,), 3))
    assert indices(rec.epoch_array("clean_pool", 0)) == set(seeds.tolist())  # epoch 0: the seeds alone


def test_switch_poisoned_seeds_and_clean_hard_fraction_reach_the_record(runs_env, no_mixmatch):
    """Table 5: k poisoned samples among the seeds the runner hands ASD; 002 §5.2: clean-hard = the fraction·N hardest clean samples."""
    rec = switch_run(runs_env, no_mixmatch, epochs=1, **{"defense.t1": 1, "defense.t2": 1, "defense.poisoned_seeds": 5,
                                                          "defense.clean_hard_fraction": 0.2})
    seeds, is_poison = rec.arrays["seeds"], rec.arrays["is_poison"]
    assert len(seeds) == 100 and int(is_poison[seeds].sum()) == 5
    assert indices(rec.epoch_array("clean_pool", 0)) == set(seeds.tolist())
    assert rec.metrics[0]["poison_in_pool"] == 5
    assert rec.metrics[0]["clean_hard"] == round(0.2 * 600)


@pytest.fixture(scope="module")
def prepared(fmnist_dir, tmp_path_factory, one_thread):
    """A prepared (untrained) ASD Run on the small data, for calling ASD's pieces directly."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ASDKIT_DATA", str(fmnist_dir))
        return Run(asd_config(**SMALL), root=tmp_path_factory.mktemp("asd-prepared"), quiet=True)


def l1_of(o):
    return lambda logits, y: sce_loss(logits, y, alpha=o["sce_alpha"], beta=o["sce_beta"])


def context_with(prepared, **changes):
    """The prepared run's Context with ASD options changed (validated by make_config)."""
    options = defense_options(asd_config(**{**SMALL, **{f"defense.{k}": v for k, v in changes.items()}}))
    return replace(prepared.ctx, options=options)


def virtual_model(prepared, monkeypatch, **changes):
    """Call virtual_model_losses; return (virtual state, its losses) by capturing the model it scores."""
    seen, real = [], asdkit.context.score
    monkeypatch.setattr(asdkit.context, "score",
                        lambda model, *a, **k: seen.append(copy.deepcopy(model.state_dict())) or real(model, *a, **k))
    ctx = context_with(prepared, **changes)
    losses = asd.virtual_model_losses(ctx, 0, l1_of(ctx.options))
    assert len(seen) == 1
    return seen[0], losses


@pytest.mark.parametrize("k, moved", [(1, {"linear"}), (2, {"layer3", "linear"}), (4, {"layer1", "layer2", "layer3", "linear"}),
                                      ("auto", {"layer3", "linear"})])  # auto: the compact model's last stage + head
def test_switch_meta_layers_updates_only_the_last_k_layer_groups(prepared, monkeypatch, k, moved):
    model = prepared.ctx.model
    before = copy.deepcopy(model.state_dict())
    virtual, _ = virtual_model(prepared, monkeypatch, meta_layers=k)
    after = model.state_dict()
    assert all(torch.equal(before[n], after[n]) for n in before)  # the real model is untouched
    assert all(p.requires_grad for p in model.parameters())
    params = {n for n, _ in model.named_parameters()}
    changed = {n.split(".")[0] for n in params if not torch.equal(virtual[n], before[n])}
    assert changed == moved
    # every parameter of an updated group moved
    assert all(not torch.equal(virtual[n], before[n]) for n in params if n.split(".")[0] in moved)


def test_switch_meta_lr_tiny_gives_almost_no_loss_reduction(prepared, monkeypatch):
    ctx, model = prepared.ctx, prepared.ctx.model
    base = ctx.score(l1_of(ctx.options))
    # meta_layers=3 (layer2, layer3, linear; the default before "auto", which picks 2 here) in both, as when this was measured
    virtual, tiny = virtual_model(prepared, monkeypatch, meta_lr=1e-9, meta_layers=3)
    _, default = virtual_model(prepared, monkeypatch, meta_layers=3)
    r_tiny, r_default = (base - tiny).abs().mean().item(), (base - default).abs().mean().item()
    assert r_tiny < 0.1 * r_default, (r_tiny, r_default)  # seen: 0.09 vs 2.7
    params = dict(model.named_parameters())
    assert all(torch.allclose(virtual[n], p, atol=1e-6) for n, p in params.items())
    # Not exactly 0: the virtual epoch runs in train mode, so BatchNorm running statistics move
    # (also in the layers it does not update), as in the authors' code.
    buffers = {n for n, _ in model.named_buffers() if "running_mean" in n}
    assert any(not torch.equal(virtual[n], model.state_dict()[n]) for n in buffers if n.startswith("layer1"))


def test_switch_meta_epochs_trains_the_virtual_model_that_many_epochs_per_stage3_epoch(runs_env, no_mixmatch, monkeypatch):
    calls, real = [], asdkit.context.train_epoch

    def counting(model, data, index, optimizer, **kwargs):
        calls.append((len(index), kwargs["loss_fn"], kwargs["batch_size"]))
        return real(model, data, index, optimizer, **kwargs)

    monkeypatch.setattr(asdkit.context, "train_epoch", counting)
    switch_run(runs_env, no_mixmatch, epochs=2, **{"defense.t1": 0, "defense.t2": 0, "defense.meta_epochs": 2,
                                                    "defense.meta_batch_size": 256})
    assert calls == [(600, cross_entropy, 256)] * 4  # 2 stage-3 epochs × 2 virtual epochs on all of D with CE
    calls.clear()
    switch_run(runs_env, no_mixmatch, epochs=2, **{"defense.t1": 1, "defense.t2": 1})
    assert len(calls) == 1  # meta_epochs 1, one stage-3 epoch


def test_clean_hard_samples_are_the_largest_l1_clean_samples(reference):
    """002 Section 5.2: the clean-hard set is the fraction·N clean samples of largest L1 loss; hard_in_pool counts them in D_C."""
    rec = reference["record"]
    is_poison = rec.arrays["is_poison"]
    k = round(0.1 * len(is_poison))
    for epoch, m in enumerate(rec.metrics):
        l1, pool = rec.epoch_array("l1_loss", epoch), rec.epoch_array("clean_pool", epoch)
        # the record keeps losses as float16, so samples tied at the k-th value may go either way
        threshold = torch.sort(l1[~is_poison], descending=True).values[k - 1]
        sure, tied = (~is_poison) & (l1 > threshold), (~is_poison) & (l1 == threshold)
        assert m["clean_hard"] == k
        assert int((pool & sure).sum()) <= m["hard_in_pool"] <= int((pool & (sure | tied)).sum())
        # and the poisoned samples never count, however large their loss
        assert m["hard_in_pool"] <= int((pool & ~is_poison).sum())


def test_pool_by_true_class_counts_the_record_pool_and_its_poisoned_samples(reference):
    from asdkit.analysis import pool_by_true_class

    rec = reference["record"]
    true, is_poison = rec.arrays["true_label"], rec.arrays["is_poison"]
    for epoch in range(rec.epochs):
        pool = rec.epoch_array("clean_pool", epoch)
        out = pool_by_true_class(rec, epoch)
        assert sum(out["pool"]) == int(pool.sum()) and sum(out["poisoned"]) == rec.metrics[epoch]["poison_in_pool"]
        for k in range(10):
            assert out["poisoned"][k] == int((pool & is_poison & (true == k)).sum())
        assert out["poisoned"][rec.config["target"]] == 0  # all2one never poisons the target class itself


def test_pool_share_is_each_true_classes_clean_share_of_the_pool_against_a_fair_share(reference):
    """1 = the class's clean samples are in D_C as often as all clean samples are; poisoned samples are never counted."""
    from asdkit.analysis import pool_share

    rec = reference["record"]
    true, clean = rec.arrays["true_label"], ~rec.arrays["is_poison"]
    for epoch in range(rec.epochs):
        pool = rec.epoch_array("clean_pool", epoch)
        share = pool_share(rec, epoch)
        fair = int((pool & clean).sum()) / int(clean.sum())
        for k in range(10):
            mine = int((pool & clean & (true == k)).sum()) / int((clean & (true == k)).sum())
            assert share[k] == pytest.approx(mine / fair)
        sizes = torch.bincount(true[clean], minlength=10).numpy()
        assert float((share * sizes).sum() / sizes.sum()) == pytest.approx(1.0)  # the shares average to a fair share


def test_meta_split_separation_reads_the_stage3_entry_of_the_record(reference):
    """The Fig. 3 numbers come from the first stage-3 epoch's arrays, through scikit-learn's AUROC."""
    from sklearn.metrics import roc_auc_score

    from asdkit.analysis import detection_auroc, meta_split_separation

    rec = reference["record"]
    out = meta_split_separation(rec, top_fraction=0.5)
    assert out["epoch"] == 3
    p = rec.arrays["is_poison"].numpy()
    red = rec.epoch_array("loss_reduction", 3).numpy()
    assert out["auroc_reduction"] == pytest.approx(roc_auc_score(p, red))
    assert 0 <= out["top_auroc_loss"] <= 1 and out["top_size"] == round(0.5 * len(p))
    assert detection_auroc([0.1, 0.9], [False, True]) == 1.0 and detection_auroc([0.9, 0.1], [False, True]) == 0.0
    with pytest.raises(ValueError, match="both poisoned and clean"):
        detection_auroc([1.0, 2.0], [True, True])


def test_a_fractional_warmup_step_scales_with_the_class_size(runs_env, no_mixmatch):
    """warmup_step=0.1 on 600 samples of 10 classes grows D_C by 6 a class per epoch; a bad fraction is refused."""
    rec = switch_run(runs_env, no_mixmatch, **{"defense.t1": 3, "defense.t2": 3, "epochs": 3,
                                                "defense.warmup_every": 1, "defense.warmup_step": 0.1})
    assert rec.metric("pool_size") == [100, 160, 220]
    with pytest.raises(ValueError, match="The 'warmup_step' option of asd must be an int in \\[0, inf\\) or a float in \\(0, 1\\)"):
        switch_run(runs_env, no_mixmatch, **{"defense.warmup_step": 1.5})
    assert not no_mixmatch


# =========================================================================== transfer-based seeds (002 Section 5.4)

def write_source(path, classes=10, per_class=6, side=28, seed=0):
    """A stand-in 'other data set' as an .npz: random images, ``per_class`` of each class in its training part."""
    import numpy as np

    g = np.random.default_rng(seed)
    y = np.repeat(np.arange(classes), per_class)
    x = g.integers(0, 256, size=(len(y), side, side), dtype=np.uint8)
    np.savez(path, x_train=x, y_train=y, x_test=x[:classes], y_test=y[:classes])
    return x, y


def test_transfer_seeds_pretrain_then_stay_labelled_in_every_epoch(runs_env, monkeypatch, tmp_path):
    """seed_source: w seeds a class come from the other set; MixMatch pre-trains on them alone, then they join D_C every epoch."""
    source_x, _ = write_source(tmp_path / "other.npz")
    calls = []

    def stub(model, data, clean_pool, optimizer, *, epoch, **kwargs):
        calls.append((len(data), clean_pool.clone(), data.y[-30:].cpu().clone(), data.x[-30:].cpu().clone()))
        return {"loss": 0.0, "loss_x": 0.0, "loss_u": 0.0, "weight_u": 0.0}

    monkeypatch.setitem(asd.SEMI_METHODS, "mixmatch", stub)
    config = asd_config(**{**SMALL, "defense.seed_source": str(tmp_path / "other.npz"), "defense.seeds_per_class": 3,
                           "defense.transfer_epochs": 2})
    run(config, quiet=True)
    rec = Record.load(folder_of(runs_env, config))
    n, pre = 600, 2 + 1  # two pre-training epochs and the head's epoch come first in the record
    assert rec.metric("phase") == ["transfer", "transfer", "transfer_head", "stage1", "stage1", "stage2", "stage3"]
    assert rec.metric("stage") == [None, None, None, 1, 1, 2, 3]
    assert len(calls) == 2 + (rec.epochs - pre) == 6  # two pre-training epochs, then one MixMatch epoch per ASD epoch
    for size, pool, labels, images in calls:
        assert size == n + 30 and pool[n:].all()  # the 30 transfer seeds are always labelled
        assert torch.bincount(labels, minlength=10).tolist() == [3] * 10
        flat = torch.from_numpy(source_x.reshape(len(source_x), -1))
        assert all((flat == img.reshape(1, -1)).all(1).any() for img in images)  # the seeds are images of the other set
    assert not calls[0][1][:n].any() and not calls[1][1][:n].any()  # pre-training: nothing of D labelled
    for e, (_, pool, _, _) in enumerate(calls[2:]):
        assert torch.equal(pool[:n], rec.epoch_array("clean_pool", pre + e))  # then the pools ASD split from D
    assert rec.metrics[pre]["pool_size"] == 0  # stage 1 starts from the transfer seeds alone (T/t·n = 0 picks)
    assert "seeds" not in rec.arrays and rec.snapshots["transfer_seeds"]["labels"].tolist() == sorted([*range(10)] * 3)
    head = rec.metrics[pre - 1]  # Table 6's "transfer-based pre-training" row: the initialised model's ACC and ASR
    assert head["phase"] == "transfer_head" and 0 <= head["acc"] <= 1 and 0 <= head["asr"] <= 1
    assert "pool_size" not in head and "stage" not in head


def test_transfer_pretraining_moves_only_the_head_in_its_linear_step(runs_env, monkeypatch, tmp_path):
    """After the MixMatch pre-training, one CE epoch on D fits the linear head; every backbone tensor (BN statistics too) stays."""
    write_source(tmp_path / "other.npz")

    def boom(*a, **k):
        pytest.fail("transfer_epochs=0: no MixMatch pre-training epoch")

    monkeypatch.setitem(asd.SEMI_METHODS, "mixmatch", boom)
    config = asd_config(**{**SMALL, "defense.seed_source": str(tmp_path / "other.npz"), "defense.transfer_epochs": 0,
                           "defense.seeds_per_class": 2})
    r = Run(config, quiet=True)
    assert [(p.name, p.epochs, p.train) for p in r.phases[:2]] == [("transfer", 0, "all"), ("transfer_head", 1, "head")]
    r.phases = r.phases[:2]  # the transfer-based initialisation alone, run by the runner
    model = r.ctx.model
    before = {k: v.clone() for k, v in model.state_dict().items()}
    head_modes = []
    real_steps = asdkit.engine.train_steps

    def spying(model_, *a, **k):  # the BatchNorm layers' modes while the head trains
        out = real_steps(model_, *a, **k)
        head_modes.append({n: m.training for n, m in model_.named_modules() if isinstance(m, torch.nn.BatchNorm2d)})
        return out

    monkeypatch.setattr(asdkit.engine, "train_steps", spying)
    r.execute()
    after = model.state_dict()
    moved = {k.split(".")[0] for k in after if not torch.equal(after[k], before[k])}
    assert moved == {"linear"}
    assert len(head_modes) == 1 and head_modes[0] and not any(head_modes[0].values())  # the frozen backbone's BN in eval mode
    assert all(p.requires_grad for p in model.parameters()) and not model.frozen_norms  # unfrozen afterwards
    m = Record.load(r.folder).metrics
    assert [x["phase"] for x in m] == ["transfer_head"] and {"acc", "asr"} <= set(m[0])


def test_a_transfer_source_with_other_classes_is_refused_before_training(runs_env, tmp_path):
    write_source(tmp_path / "five.npz", classes=5)
    config = asd_config(**{**SMALL, "defense.seed_source": str(tmp_path / "five.npz")})
    with pytest.raises(ValueError, match="seed_source.*5 classes"):
        Run(config, quiet=True)


def test_a_transfer_source_too_small_for_the_seeds_is_refused_before_training(runs_env, tmp_path):
    write_source(tmp_path / "six.npz", per_class=6)
    config = asd_config(**{**SMALL, "defense.seed_source": str(tmp_path / "six.npz"), "defense.seeds_per_class": 7})
    with pytest.raises(ValueError, match="seeds_per_class=7 cannot be drawn from seed_source"):
        Run(config, quiet=True)
    assert not folder_of(runs_env, config).exists()
