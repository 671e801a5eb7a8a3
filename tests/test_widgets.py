"""The explorers: set their controls as a student would and check what they drew (counts, rates, labels) on hand-made records."""
import numpy as np
import pytest
import torch

pytest.importorskip("ipywidgets")

from asdkit.analysis import detection_auroc  # noqa: E402
from asdkit.records import Record  # noqa: E402
from asdkit.widgets import LossExplorer, MetaSplitExplorer, PIPDExplorer, SplitExplorer  # noqa: E402

N, K = 1000, 10


def ground_truth(rec: Record, poison: torch.Tensor, labels: torch.Tensor) -> None:
    rec.arrays.update(is_poison=poison, observed_label=labels, true_label=labels)


def loss_record(seed: int = 0) -> tuple[Record, torch.Tensor]:
    """Three epochs of per-sample losses: poisoned samples (every 10th) low, clean high; a clean pool from epoch 2."""
    g = torch.Generator().manual_seed(seed)
    poison = torch.arange(N) % 10 == 0
    rec = Record({"defense": "asd", "attack": "badnets", "defense_args": {}})
    ground_truth(rec, poison, torch.arange(N) % K)
    for e in range(3):
        loss = torch.rand(N, generator=g) * 2 + 0.5
        loss[poison] = torch.rand(int(poison.sum()), generator=g) * (0.4 + 0.5 * e)  # they overlap more each epoch
        arrays = {"l1_loss": loss, "train_loss": loss * 2}
        if e:
            arrays["clean_pool"] = loss < loss.median()
        rec.add_epoch({"acc": 0.5, "asr": 0.5, "stage": 1}, arrays)
    return rec, poison


def test_loss_explorer_draws_the_histogram_and_auroc_of_the_chosen_epoch():
    rec, poison = loss_record()
    ex = LossExplorer({"asd": rec}, bins=20)
    assert [v for _, v in ex.loss.options] == ["train_loss", "l1_loss"]
    ex.loss.value = "l1_loss"
    for epoch in (1, 3, 2):
        ex.epoch.value = epoch
        values = rec.epoch_array("l1_loss", epoch - 1).numpy()
        bins = ex.state["bins"]
        clipped = np.clip(values, bins[0], bins[-1])
        assert ex.state["epoch"] == epoch - 1
        np.testing.assert_array_equal(ex.state["counts"]["poisoned"], np.histogram(clipped[poison.numpy()], bins)[0])
        np.testing.assert_array_equal(ex.state["counts"]["clean"], np.histogram(clipped[~poison.numpy()], bins)[0])
        auroc = detection_auroc(-values, poison.numpy())
        assert ex.state["auroc"] == pytest.approx(auroc)
        assert f"{auroc:.3f}" in ex.label.value
    first = ex.image.value
    ex.epoch.value = 1
    assert ex.image.value != first and ex.image.value[:4] == b"\x89PNG"


def test_loss_explorer_colourings_partition_the_samples():
    rec, poison = loss_record()
    ex = LossExplorer({"asd": rec})
    ex.colour.value = "clean-hard"
    counts = ex.state["counts"]
    assert counts["clean-hard"].sum() == round(0.1 * N)  # 002 §5.2: 10 % of N, the clean samples of largest loss
    assert sum(c.sum() for c in counts.values()) == N
    ex.colour.value = "in D_C"
    ex.epoch.value = 2
    pool = rec.epoch_array("clean_pool", 1).numpy()
    assert ex.state["counts"]["in D_C"].sum() == pool.sum()
    assert f"poisoned in D_C: {int((pool & poison.numpy()).sum())}" in ex.label.value
    ex.epoch.value = 1  # no pool logged in the first epoch: one group, said so
    assert list(ex.state["counts"]) == ["no D_C logged at this epoch"]


def test_loss_explorer_switching_run_offers_that_runs_losses():
    rec, _ = loss_record()
    abl = Record({"defense": "abl"})
    ground_truth(abl, rec.arrays["is_poison"], rec.arrays["observed_label"])
    for _ in range(2):
        abl.add_epoch({}, {"lga_loss": torch.rand(N)})
    ex = LossExplorer({"asd": rec, "abl": abl})
    ex.epoch.value = 3
    ex.run.value = "abl"
    assert [v for _, v in ex.loss.options] == ["lga_loss"] and ex.epoch.max == 2 and ex.epoch.value == 2
    assert ex.state["run"] == "abl" and ex.state["loss"] == "lga_loss"


def test_split_explorer_reports_exact_rates_for_a_planned_split():
    poison = torch.zeros(N, dtype=torch.bool)
    poison[:100] = True
    loss = torch.arange(N, dtype=torch.float32) + 1  # sample i has loss i + 1; the poisoned ones are the 100 lowest
    loss[:100] += 2000  # ... now the 100 highest
    loss[:5] = -1  # but five poisoned samples have the lowest loss of all
    rec = Record({"defense_args": {}})
    ground_truth(rec, poison, torch.arange(N) % K)
    rec.add_epoch({}, {"l1_loss": loss})
    ex = SplitExplorer(rec)
    ex.rate.value = 0.5
    s = ex.state
    assert int(s["pool"].sum()) == 500 and s["poisoned_in_pool"] == 5
    assert s["tpr"] == pytest.approx(95 / 100) and s["fpr"] == pytest.approx((900 - 495) / 900)
    assert sum(s["poisoned in D_C"]) == 5 and "TPR 95.0%" in ex.label.value
    assert s["tpr_per_class"][0] == pytest.approx(9 / 10)  # class 0 holds poisoned samples 0 and 10..90: 0 is in D_C
    ex.mode.value = "class-aware"
    assert ex.state["pool"].sum() == 500
    assert all(c + p == 50 for c, p in zip(ex.state["clean in D_C"], ex.state["poisoned in D_C"]))  # 50 of every class


def meta_record() -> Record:
    g = torch.Generator().manual_seed(1)
    poison = torch.arange(N) % 10 == 0
    rec = Record({"defense_args": {"gamma": 0.5, "clean_hard_fraction": 0.1}})
    ground_truth(rec, poison, torch.arange(N) % K)
    rec.add_epoch({"stage": 2}, {"l1_loss": torch.rand(N, generator=g)})
    loss = torch.rand(N, generator=g)
    reduction = torch.rand(N, generator=g) * 0.1
    reduction[poison] += 1.0  # the virtual model learns the poisoned samples: their loss drops most
    rec.add_epoch({"stage": 3}, {"l1_loss": loss, "loss_reduction": reduction, "virtual_loss": loss - reduction})
    return rec


def test_meta_split_explorer_moves_the_cut_and_counts():
    rec = meta_record()
    ex = MetaSplitExplorer(rec)
    assert ex.at == 1 and ex.gamma.value == 0.5
    assert ex.state["poisoned_in_pool"] == 0 and ex.state["auroc_reduction"] == pytest.approx(1.0)
    ex.gamma.value = 0.95  # 950 least reduced: every clean sample and 50 poisoned
    assert ex.state["poisoned_in_pool"] == 50 and int(ex.state["pool"].sum()) == 950
    assert ex.state["hard_in_pool"] == 100 and "poisoned in D_C: <span class='asdkit-poisoned'>50</span>" in ex.label.value


def pipd_record() -> Record:
    g = torch.Generator().manual_seed(2)
    poison = torch.arange(N) % 10 == 0
    rec = Record({"defense_args": {}})
    ground_truth(rec, poison, torch.arange(N) % K)
    rec.add_epoch({"phase": "pre_isolation"}, {"lga_loss": torch.rand(N, generator=g)})
    for t, (tpr, fpr) in enumerate([(0.9, 0.02), (0.99, 0.001)]):
        arrays = {"pipd_score": torch.rand(N, generator=g) + poison.float() * 3, "p_p": poison.clone(), "p_b": ~poison,
                  "discrepancy/layer3.0": torch.rand(64, generator=g), "channels/layer3.0": torch.tensor([3, 7, 11]),
                  "discrepancy/layer2.0": torch.rand(32, generator=g), "channels/layer2.0": torch.tensor([t])}
        rec.add_epoch({"phase": "isolation", "round": t + 1, "tpr": tpr, "fpr": fpr, "jenks_break": 2.0, "isolated": 100 + t}, arrays)
    rec.add_epoch({"phase": "training", "tpr": 0.99, "fpr": 0.001})
    return rec


def test_pipd_explorer_shows_the_round_and_the_layer_asked_for():
    ex = PIPDExplorer(pipd_record())
    assert ex.round.max == 2 and ex.layer.options == ("layer3.0", "layer2.0")
    assert ex.layer.value == "layer2.0"  # the record's last layer (the deepest, in a real record)
    assert ex.state["tpr"] == 0.9 and list(ex.state["chosen"]) == [0]
    ex.layer.value = "layer3.0"
    assert list(ex.state["chosen"]) == [3, 7, 11]
    ex.round.value = 2
    assert "TPR <span class='asdkit-tpr'>99.0%</span>" in ex.label.value and ex.state["isolated"] == 101
    ex.layer.value = "layer2.0"
    assert list(ex.state["chosen"]) == [1] and ex.state["break"] == 2.0


def test_explorers_refuse_records_that_lack_what_they_show():
    rec, _ = loss_record()
    with pytest.raises(ValueError, match="no meta-split epoch"):
        MetaSplitExplorer(rec)
    with pytest.raises(ValueError, match="no isolation rounds"):
        PIPDExplorer(rec)
    with pytest.raises(ValueError, match="at least one record"):
        LossExplorer({})


def test_a_slider_move_reuses_the_epochs_precomputed_values(monkeypatch):
    """The callback's cost stays a redraw: histogram bins, clean-hard masks and AUROC are computed once per epoch (timed in benchmarks/)."""
    import asdkit.widgets as widgets

    rec, _ = loss_record()
    calls = []
    real = widgets.detection_auroc
    monkeypatch.setattr(widgets, "detection_auroc", lambda *a: calls.append(1) or real(*a))
    ex = LossExplorer({"asd": rec})
    for e in (1, 2, 3, 1, 2, 3, 2):
        ex.epoch.value = e
    ex.colour.value = "clean-hard"
    ex.log.value = True
    assert len(calls) == 3 and ex.seconds > 0
