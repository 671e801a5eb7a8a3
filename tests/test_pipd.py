"""Tests of PIPD on the shared core: selective training's weights (Eq. 10), the progressive rounds (Eq. 9), isolation, resume."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

import asdkit
from helpers import dies_after_checkpoint
from asdkit import make_config
from asdkit.defenses.pipd import selective_weights
from asdkit.engine import Images, Normalizer, train_epoch
from asdkit.records import Record
from asdkit.runner import Run

pytestmark = pytest.mark.usefixtures("one_thread")


def _one_step(benign, sample, operation="selective"):
    """One SGD step (no momentum) on the single training sample ``sample``; returns (parameters moved?, model)."""
    torch.manual_seed(0)
    x = torch.randint(0, 256, (4, 1, 4, 4), dtype=torch.uint8)
    y = torch.tensor([0, 1, 0, 1])
    data = Images(x, y, Normalizer((0.5,), (0.25,), torch.device("cpu"), channels_last=False), 2, pad=0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 2))
    before = [p.detach().clone() for p in model.parameters()]
    with torch.no_grad():
        predicted = model(data.normalize(x)).argmax(1)
    train_epoch(model, data, torch.tensor([sample]), torch.optim.SGD(model.parameters(), lr=0.5), generator=torch.Generator(),
                batch_size=1, reweight=selective_weights(benign, 1.0, operation))
    moved = any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
    return moved, predicted


def test_selective_training_leaves_untouched_what_a_sample_not_mapped_to_its_label_would_move():
    benign = torch.tensor([True, True, False, False])  # samples 2 and 3 are in D̂_p
    _, predicted = _one_step(benign, 0)
    y = torch.tensor([0, 1, 0, 1])
    right = [i for i in (2, 3) if predicted[i] == y[i]]
    wrong = [i for i in (2, 3) if predicted[i] != y[i]]
    assert right and wrong, "the toy must have one D̂_p sample of each kind"
    assert _one_step(benign, wrong[0])[0] is False  # 1(f(x) = y) = 0: no gradient
    assert _one_step(benign, right[0])[0] is True  # ascent where the model still maps it to its label
    assert _one_step(benign, wrong[0], operation="unlearn")[0] is True  # ABL's unlearning ascends on every isolated sample
    assert _one_step(benign, 0)[0] is True  # descent on D̂_b


def test_selective_weights_give_each_set_its_own_mean():
    benign = torch.tensor([True, True, True, False])
    losses, labels = torch.ones(4), torch.tensor([0, 0, 0, 1])
    logits = torch.tensor([[1.0, 0.0]] * 3 + [[0.0, 1.0]])  # sample 3 is mapped to its label
    w = selective_weights(benign, 2.0, "selective")(losses, logits, labels, torch.arange(4)) / 4  # as the step divides by B
    assert w.tolist() == pytest.approx([1 / 3] * 3 + [-2.0])


@pytest.fixture(scope="module")
def pipd_run(fmnist_dir, tmp_path_factory, one_thread):
    root = tmp_path_factory.mktemp("pipd")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ASDKIT_DATA", str(fmnist_dir))
        summary = asdkit.run(make_config("smoke", defense="pipd"), quiet=True, root=root)
        none = asdkit.run(make_config("smoke", overrides={"train_size": 10000, "budget": 20000}), quiet=True, root=root)
    return summary, none, Record.load(summary["record"])


def test_pipd_isolates_the_poison_and_lowers_asr_at_smoke_scale(pipd_run):
    summary, none, rec = pipd_run
    assert rec.metric("phase") == ["pre_isolation"] * 2 + ["isolation"] * 8 + ["training"] * 2
    assert summary["tpr"] >= 0.95 and summary["fpr"] <= 0.01, (summary["tpr"], summary["fpr"])
    assert summary["asr"] < none["asr"] - 0.5, (summary["asr"], none["asr"])


def test_each_round_is_recorded_and_the_benign_pool_only_grows(pipd_run):
    _, _, rec = pipd_run
    rounds = [e for e, m in enumerate(rec.metrics) if m["phase"] == "isolation"]
    assert [rec.metrics[e]["round"] for e in rounds] == list(range(1, 9))
    p_b_before = None
    for e in rounds:
        scores, pool, cut = rec.epoch_array("pipd_score", e), rec.epoch_array("clean_pool", e), rec.metrics[e]["jenks_break"]
        assert scores[~pool].min() >= cut * 0.999 - 1e-3  # only the high natural class is isolated (scores kept as float16)
        assert rec.metrics[e]["isolated"] == int((~pool).sum()) <= rec.metrics[e]["high"]
        if p_b_before is not None:  # the authors' output: the high class less this round's P_b
            assert not (~pool & p_b_before).any()
            assert not (pool & ~p_b_before & (scores.float() > cut * 1.001 + 1e-3)).any()
        p_b_before = rec.epoch_array("p_b", e)
        for layer in ("layer2.conv", "layer3.res.0"):
            assert len(rec.epoch_array(f"channels/{layer}", e)) >= 1
    p_b = [rec.epoch_array("p_b", e) for e in rounds]
    assert all(bool((a <= b).all()) for a, b in zip(p_b, p_b[1:]))  # Eq. 9: P_b^{t+1} ⊇ P_b^t


def test_pipd_rounds_counts_what_p_b_and_the_isolated_set_hold_each_round(pipd_run):
    from asdkit.analysis import pipd_rounds

    summary, _, rec = pipd_run
    rows, poison = pipd_rounds(rec), rec.arrays["is_poison"]
    assert [r["round"] for r in rows] == list(range(9))
    assert rows[0]["p_b"] == round(0.2 * len(poison)) and rows[0]["isolated"] == 0  # P_b^1: the q = 20 % highest LGA losses
    assert [r["p_b"] for r in rows] == sorted(r["p_b"] for r in rows)  # Eq. 9: P_b only grows
    last = rows[-1]
    assert last["isolated_poisoned"] == round(summary["tpr"] * int(poison.sum()))
    assert last["isolated"] - last["isolated_poisoned"] == round(summary["fpr"] * int((~poison).sum()))
    assert all(r["p_b_poisoned"] + r["isolated_poisoned"] <= int(poison.sum()) for r in rows)  # the output leaves P_b out


def test_a_killed_pipd_run_resumes_identically(runs_env, monkeypatch):
    config = make_config("smoke", defense="pipd", overrides={"train_size": 3000, "budget": 3000, "defense.rounds": 3,
                                                              "defense.train_epochs": 1})
    reference = asdkit.run(config, quiet=True, root=runs_env / "a")
    with dies_after_checkpoint(monkeypatch, 3):  # after the second isolation round
        asdkit.run(config, quiet=True, root=runs_env / "b")
    resumed = asdkit.run(config, quiet=True, root=runs_env / "b")
    a, b = Record.load(reference["record"]), Record.load(resumed["record"])
    assert a.metric("acc") == b.metric("acc") and a.metric("jenks_break") == b.metric("jenks_break")
    assert torch.equal(a.epoch_array("clean_pool"), b.epoch_array("clean_pool"))
    assert Path(resumed["record"]).name == Path(reference["record"]).name


@pytest.fixture(scope="module")
def small_pipd(fmnist_dir, tmp_path_factory, one_thread):
    """Tiny PIPD runs (one round, no selective training) with and without Table 3's faults and with only the last layer."""
    root = tmp_path_factory.mktemp("pipd-switches")
    base = {"train_size": 3000, "budget": 3000, "defense.rounds": 1, "defense.train_epochs": 0}
    out = {}
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ASDKIT_DATA", str(fmnist_dir))
        for name, extra in {"plain": {}, "faults": {"defense.fault_ratio": 0.6}, "last": {"defense.layers": 1},
                            "high": {"defense.output": "high"}}.items():
            summary = asdkit.run(make_config("smoke", defense="pipd", overrides={**base, **extra}), quiet=True, root=root)
            out[name] = Record.load(summary["record"])
    return out


def test_fault_ratio_swaps_that_share_of_p_p_for_benign_samples(small_pipd):
    """003 Table 3: the runner replaces 60 % of P_p (the lowest 1 % = 30 samples) by random benign samples outside it."""
    plain, faulty = small_pipd["plain"], small_pipd["faults"]
    is_poison = plain.arrays["is_poison"]
    pre = [e for e, m in enumerate(faulty.metrics) if m["phase"] == "pre_isolation"]
    assert faulty.metrics[pre[-1]]["faults/p_p"] == 18 and "faults/p_p" not in plain.metrics[pre[-1]]
    e = plain.metric("phase").index("isolation")
    a, b = plain.epoch_array("p_p", e), faulty.epoch_array("p_p", e)
    assert int(a.sum()) == int(b.sum()) == 30
    assert int((a & ~b).sum()) == 18  # 18 members dropped ...
    assert not (b & ~a & is_poison).any()  # ... for benign samples only
    assert faulty.metrics[pre[-1]]["benign_in/p_p"] == int((b & ~is_poison).sum()) >= 18
    assert torch.equal(plain.epoch_array("lga_loss", 0), faulty.epoch_array("lga_loss", 0))  # same pre-isolation


def test_layers_keeps_only_the_last_channel_layers(small_pipd):
    plain, last = small_pipd["plain"], small_pipd["last"]
    e = plain.metric("phase").index("isolation")
    layers = sorted(k[len("channels/"):] for k in plain.epoch_arrays if k.startswith("channels/"))
    assert len(layers) == 4
    assert sorted(k[len("channels/"):] for k in last.epoch_arrays if k.startswith("channels/")) == ["layer3.res.0"]
    assert not torch.equal(plain.epoch_array("pipd_score", e).float(), last.epoch_array("pipd_score", e).float())


def test_bad_layers_are_refused_before_training(runs_env):
    with pytest.raises(ValueError, match=r"'layers' option of pipd must be an int in \[0, 4\].*Got 9"):
        Run(make_config("smoke", defense="pipd", overrides={"train_size": 600, "defense.layers": 9}), quiet=True)


def test_the_authors_output_leaves_out_the_rounds_p_b_and_eq_8s_keeps_the_whole_high_class(small_pipd):
    """The authors' code reports the high natural class less P_b; output=high isolates all of it; both grow P_b alike (Eq. 9)."""
    plain, high = small_pipd["plain"], small_pipd["high"]
    e = plain.metric("phase").index("isolation")
    assert torch.equal(plain.epoch_array("pipd_score", e), high.epoch_array("pipd_score", e))
    assert torch.equal(plain.epoch_array("p_b", e), high.epoch_array("p_b", e))
    whole, reported = ~high.epoch_array("clean_pool", e), ~plain.epoch_array("clean_pool", e)
    p_b = plain.epoch_array("p_b", plain.logged_epochs("p_b")[0])  # P_b^1: the q highest losses after pre-isolation
    assert plain.logged_epochs("p_b")[0] == e - 1 and int(p_b.sum()) == int(0.2 * len(p_b))
    assert high.metrics[e]["isolated"] == high.metrics[e]["high"] == int(whole.sum())
    assert torch.equal(reported, whole & ~p_b) and bool((whole & p_b).any())  # P_b members were in the high class, and are left out
