"""Every figure's verdict is its FIGURES.md criterion: it holds on a planted example of the phenomenon and fails on a planted counter-example."""
from __future__ import annotations

import copy

import pytest

from asdkit.figures import FIGURES
from asdkit.figures.asd import PRESET
from asdkit.figures.registry import Drawn

B = "badnets"


def _meta(c_poisoned=9.0, c_hard=2.0, a=0.90, d=0.95, a_hard=5.0, b_poisoned=0.01):
    return {"median": {"a": {"clean": 0.1, "clean-hard": a_hard, "poisoned": 8.0}, "b": {"clean": 0.1, "clean-hard": 5.0, "poisoned": b_poisoned},
                       "c": {"clean": 0.1, "clean-hard": c_hard, "poisoned": c_poisoned}, "d": {}}, "auroc_a": a, "auroc_d": d}


def _conv(reached=2):
    return {"dbd_acc": 0.74, "dbd_asr": 0.03, "meta_acc": 0.74, "meta_asr": 0.02, "reached_at": reached, "dbd_epochs": 4}


def _pools(asd_hard=(40, 50), asd_poisoned=(2, 3)):
    return {"DBD": {"clean-hard": [10, 12], "poisoned": [3, 2]}, "ASD": {"clean-hard": list(asd_hard), "poisoned": list(asd_poisoned)},
            "hard_total": 900, "poisoned_total": 1000}


def _t(**variants):
    """An ablation table: variant -> {badnets: {acc, asr}}."""
    return {v: {B: {"acc": acc, "asr": asr}} for v, (acc, asr) in variants.items()}


def _iso(pipd=(0.99, 0.0), abl=(0.9, 0.01)):
    return {"pipd": {B: {"tpr": pipd[0], "fpr": pipd[1]}}, "abl": {B: {"tpr": abl[0], "fpr": abl[1]}},
            "dbd": {B: {"tpr": 0.8, "fpr": 0.4}}, "asd": {B: {"tpr": 0.95, "fpr": 0.4}}}


# key -> (values where the phenomenon shows, a counter-example where it does not: the issue's own cases where it gives one)
PLANTED = {
    "asd_fig01": ({"auroc": {"ABL": 0.875, "DBD": 0.906, "ASD": 0.965}}, {"auroc": {"ABL": 0.875, "DBD": 0.906, "ASD": 0.90}}),
    "asd_fig03": ({**_meta()}, _meta(a=0.969, d=0.967)),
    "asd_fig14": ({"by_attack": {B: _meta()}}, {"by_attack": {B: _meta(a_hard=0.15)}}),
    "asd_fig15": ({"by_attack": {B: _meta()}}, {"by_attack": {B: _meta(b_poisoned=6.0)}}),
    "asd_fig16": ({"by_attack": {B: _meta()}}, {"by_attack": {B: _meta(c_poisoned=1.0)}}),
    "asd_fig17": ({"by_attack": {B: _meta()}}, {"by_attack": {B: _meta(a=0.969, d=0.967)}}),
    "asd_fig04": ({"gap_stage2": 0.045, "gap_final": 0.005, "epoch_stage2": 7, "epoch_final": 8},
                  {"gap_stage2": 0.045, "gap_final": 0.061, "epoch_stage2": 7, "epoch_final": 8}),
    "asd_fig05": ({"converge": _conv(), "pools": _pools()}, {"converge": _conv(reached=None), "pools": _pools()}),
    "asd_fig09": ({"converge": {B: _conv()}}, {"converge": {B: _conv(reached=4)}}),
    "asd_fig10": ({"pools": {B: _pools()}}, {"pools": {B: _pools(asd_poisoned=(40, 60))}}),
    "asd_fig06": ({"table": _t(**{"ASD": (0.85, 0.03), "w/o stage 1": (0.34, 1.0), "w/o stage 2": (0.85, 0.03), "w/o stage 3": (0.80, 0.03)})},
                  {"table": _t(**{"ASD": (0.852, 0.028), "w/o stage 1": (0.335, 1.0), "w/o stage 2": (0.848, 0.025), "w/o stage 3": (0.851, 0.03)})}),
    "asd_fig07": ({"table": _t(**{"slow": (0.83, 0.026), "fast": (0.82, 0.40)})}, {"table": _t(**{"slow": (0.83, 0.026), "fast": (0.82, 0.032)})}),
    "asd_fig08": ({"final": {"ASD": {"poisoned_true": 0.6, "poisoned_label": 0.1}}}, {"final": {"ASD": {"poisoned_true": 0.2, "poisoned_label": 0.7}}}),
    "asd_fig11": ({"stage1_acc": {B: {"ASD": 0.834, "class-agnostic stage 1": 0.60}}, "final_asr": {B: {"ASD": 0.026, "class-aware stage 2": 0.6}}},
                  {"stage1_acc": {B: {"ASD": 0.834, "class-agnostic stage 1": 0.789}}, "final_asr": {B: {"ASD": 0.026, "class-aware stage 2": 0.017}}}),
    "asd_fig12": ({"table": _t(**{PRESET: (0.82, 0.02), "3 epochs": (0.79, 0.02), "1 layer group": (0.78, 0.02)})},
                  {"table": _t(**{PRESET: (0.820, 0.02), "3 epochs": (0.811, 0.02), "1 layer group": (0.827, 0.02)})}),
    "asd_fig13": ({"table": _t(**{"0.3": (0.82, 0.02), "0.5": (0.83, 0.03)})}, {"table": _t(**{"0.3": (0.70, 0.02), "0.5": (0.83, 0.03)})}),
    "pipd_fig01": ({"table": _iso()}, {"table": _iso(pipd=(0.044, 0.0))}),
    "pipd_fig03": ({"auroc": 0.99, "tpr": 0.99, "fpr": 0.0}, {"auroc": 0.99, "tpr": 0.2, "fpr": 0.0}),
    "pipd_fig04": ({"rounds": {B: {"round": [1, 2, 3], "fpr": [0.2, 0.05, 0.01], "tpr": [0.9, 0.95, 0.99]}}},
                   {"rounds": {B: {"round": [1, 2, 3], "fpr": [0.0, 0.0, 0.0], "tpr": [0.99, 0.99, 0.99]}}}),
    "pipd_fig05": ({"selective": {"acc": 0.85, "asr": 0.01}, "unlearning": {"acc": 0.5, "asr": 0.0}, "before": {"acc": 0.8, "asr": 0.99}},
                   {"selective": {"acc": 0.85, "asr": 0.01}, "unlearning": {"acc": 0.85, "asr": 0.01}, "before": {"acc": 0.8, "asr": 0.99}}),
    "dbd_fig01": ({"poisoned_neighbours": {"supervised | badnets": 0.99, "supervised | clb": 0.9, "self-supervised | badnets": 0.1,
                                           "self-supervised | clb": 0.2}},
                  {"poisoned_neighbours": {"supervised | badnets": 0.99, "supervised | clb": 0.3, "self-supervised | badnets": 0.1,
                                           "self-supervised | clb": 0.4}}),
    "dbd_fig03": ({"separation": {"SCE": {"normalised_gap": 0.4}, "CE": {"normalised_gap": 0.3}}},
                  {"separation": {"SCE": {"normalised_gap": 0.3}, "CE": {"normalised_gap": 0.3}}}),
    "dbd_fig06": ({"table": {"α = 0.3": {"asr": 0.01, "value": 0.3}, "α = 0.9": {"asr": 0.6, "value": 0.9}}},
                  {"table": {"α = 0.3": {"asr": 0.08, "value": 0.3}, "α = 0.9": {"asr": 0.6, "value": 0.9}}}),
    "dbd_fig07": ({"table": {"5 %": {"asr": 0.01}, "20 %": {"asr": 0.03}}}, {"table": {"5 %": {"asr": 0.01}, "20 %": {"asr": 0.3}}}),
    "asd_table2": ({"asd": {B: {"acc": 0.90, "asr": 0.01}}, "none": {B: {"acc": 0.91, "asr": 1.0}}},
                   {"asd": {B: {"acc": 0.82, "asr": 0.01}}, "none": {B: {"acc": 0.91, "asr": 1.0}}}),
    "asd_table3": ({"totals": {"abl": 100, "dbd": 900, "asd": 400}}, {"totals": {"abl": 500, "dbd": 900, "asd": 400}}),
    "pipd_table2": ({"table": _iso()}, {"table": _iso(pipd=(0.80, 0.0))}),
    "pipd_table3": ({"tpr": {"20%": 0.99, "60%": 0.95}}, {"tpr": {"20%": 0.99, "60%": 0.5}}),
    "pipd_table4": ({"asr": {B: {"T=1": 0.99, "T=5": 0.01}}}, {"asr": {B: {"T=1": 0.0, "T=5": 0.0}}}),
    "dbd_table1": ({"dbd": {B: {"acc": 0.92, "asr": 0.01}}, "none": {B: {"acc": 0.94, "asr": 1.0}}},
                   {"dbd": {B: {"acc": 0.742, "asr": 0.029}}, "none": {B: {"acc": 0.911, "asr": 1.0}}}),
}
NOTHING_TO_CHECK = {"asd_fig02", "pipd_fig02", "dbd_fig02", "dbd_fig04", "dbd_fig05"}  # the diagrams and the example grids


def test_every_figure_with_a_claim_has_a_verdict_and_a_planted_example():
    judged = {k for k, f in FIGURES.items() if f.verdict is not None}
    assert judged == set(FIGURES) - NOTHING_TO_CHECK
    assert set(PLANTED) == judged
    assert len([k for k in judged if FIGURES[k].kind == "figure"]) == 24  # the 24 checkable figures of the three papers


def _judge(key: str, values: dict) -> Drawn:
    return FIGURES[key].judge(Drawn(None, "", copy.deepcopy(values)))


@pytest.mark.parametrize("key", sorted(PLANTED))
def test_a_verdict_holds_on_the_phenomenon_and_fails_on_a_planted_counter_example(key):
    shows, fails = PLANTED[key]
    good = _judge(key, shows)
    assert good.shows is True and good.checks and all(c.passed for c in good.checks), [str(c) for c in good.checks]
    bad = _judge(key, fails)
    assert bad.shows is False, [str(c) for c in bad.checks]
    assert any(not c.passed and c.measured for c in bad.checks)  # the failing check says on which numbers


def test_a_verdict_that_checks_nothing_is_refused():
    from asdkit.figures.registry import PaperFigure

    empty = PaperFigure("x_fig99", "c", "claim", lambda s: {}, lambda r, s: None, verdict=lambda v: [])
    with pytest.raises(ValueError, match="checked nothing"):
        empty.judge(Drawn(None, "", {}))


def test_a_score_whose_direction_is_arbitrary_is_oriented():
    import numpy as np

    from asdkit.figures.common import oriented_auroc

    poison = np.array([0, 0, 0, 1, 1], dtype=bool)
    low = np.array([5.0, 4.0, 3.0, 0.1, 0.2])  # the poison at the low end separates as well as at the high end
    assert oriented_auroc(low, poison) == (1.0, "poison lower")
    assert oriented_auroc(-low, poison) == (1.0, "poison higher")
