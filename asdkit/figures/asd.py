"""ASD's figures (002): loss distributions, the meta-split's four panels, the stages' accuracy, and the ablations."""
from __future__ import annotations

import numpy as np
from matplotlib.ticker import MaxNLocator

from ..analysis import clean_hard_mask, detection_auroc
from ..records import Record
from .common import ATTACKS4, ablation_attacks, attacks, bars, final, final_loss, hist_groups, pct, run, same_data, truth
from .registry import Drawn, register

RATE = {"clb": {"rate": 0.25}}  # CLB poisons 25 % of the target class (clean-label); the others 10 % of D


def asd(attack: str = "badnets", **kw):
    """ASD against ``attack`` (its preset at the figure's scale)."""
    return run("asd", attack, **{**RATE.get(attack, {}), **kw})


def _plt():
    import matplotlib.pyplot as plt

    return plt


# -- Fig. 1 -----------------------------------------------------------------------------------
@register("asd_fig01", caption="per-sample losses of the final model, ABL / DBD / ASD, vs WaNet",
          claim="ASD separates clean and poisoned losses best",
          needs=lambda s: {d.upper(): run(d, "wanet") for d in ("abl", "dbd", "asd")})
def asd_fig01(records: dict[str, Record], scale: str) -> Drawn:
    plt = _plt()
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6), constrained_layout=True)
    auc = {}
    for ax, (name, rec) in zip(axes, records.items()):
        poison, _ = truth(rec)
        loss = final_loss(rec)
        auc[name] = detection_auroc(loss, poison)
        hist_groups(ax, loss, {"clean": ~poison, "poisoned": poison}, log=True, xlabel="CE loss (final model)")
        ax.set_title(f"{name}: ACC {pct(rec.summary['acc'])}, ASR {pct(rec.summary['asr'])}\nAUROC of the loss {auc[name]:.3f}", fontsize=9)
    best = max(auc, key=auc.get)
    number = "AUROC of the final loss as a poison detector: " + ", ".join(f"{k} {v:.3f}" for k, v in auc.items())
    return Drawn(fig, number, best == "ASD", {"auroc": auc})


# -- Figs. 3 and 14-17 ------------------------------------------------------------------------
def _meta_panels(rec: Record, title: str) -> Drawn:
    """002 Fig. 3: (a) losses after stages 1-2, (b) the virtual model's, (c) the loss reduction, (d) after stage 3."""
    plt = _plt()
    stages = rec.metric("stage")
    if 3 not in stages:
        raise ValueError(f"{rec!r} has no stage-3 epoch; the meta-split never ran.")
    e3 = stages.index(3)  # its losses were computed by the model at the end of stage 2
    poison, _ = truth(rec)
    loss, virtual = rec.epoch_array("l1_loss", e3).numpy(), rec.epoch_array("virtual_loss", e3).numpy()
    reduction = rec.epoch_array("loss_reduction", e3).numpy()
    frac = rec.config["defense_args"].get("clean_hard_fraction", 0.1)
    hard = clean_hard_mask(loss, poison, frac).numpy()
    groups = {"clean": ~poison & ~hard, "clean-hard": hard, "poisoned": poison}
    end = final_loss(rec, "sce")
    fig, axes = plt.subplots(1, 4, figsize=(16, 3.6), constrained_layout=True)
    panels = [(loss, "(a) after stages 1-2", "L1 loss", True), (virtual, "(b) virtual model, one epoch", "L1 loss", True),
              (reduction, "(c) loss reduction", "L1(θ) − L1(θ')", False), (end, "(d) after stage 3", "L1 loss", True)]
    for ax, (v, t, xl, log) in zip(axes, panels):
        hist_groups(ax, v, groups, log=log, xlabel=xl)
        ax.set_title(t, fontsize=10)
    fig.suptitle(title, fontsize=11)
    top = np.argsort(-loss, kind="stable")[: max(1, int(round(0.2 * len(loss))))]
    vals = {"auroc_a": detection_auroc(loss, poison), "auroc_d": detection_auroc(end, poison),
            "auroc_reduction": detection_auroc(reduction, poison),
            "top_auroc_loss": detection_auroc(loss[top], poison[top]) if poison[top].any() and not poison[top].all() else None,
            "top_auroc_reduction": detection_auroc(reduction[top], poison[top]) if poison[top].any() and not poison[top].all() else None,
            "median_reduction": {k: float(np.median(reduction[m])) for k, m in groups.items() if m.any()}}
    med = vals["median_reduction"]
    number = (f"median loss reduction: poisoned {med.get('poisoned', float('nan')):.2f}, clean-hard {med.get('clean-hard', float('nan')):.2f}, "
              f"clean {med.get('clean', float('nan')):.2f}; AUROC of the loss (a) {vals['auroc_a']:.3f} → after stage 3 (d) {vals['auroc_d']:.3f}")
    shows = med.get("poisoned", -np.inf) > med.get("clean-hard", np.inf) and vals["auroc_d"] > vals["auroc_a"]
    return Drawn(fig, number, bool(shows), vals)


@register("asd_fig03", caption="the meta-split's four panels vs BadNets", needs=lambda s: {"ASD": asd("badnets")},
          claim="poisoned samples have the largest loss reduction, clean-hard a small one; (d) separates better than (a)")
def asd_fig03(records, scale):
    return _meta_panels(records["ASD"], "ASD vs BadNets: losses around the meta-split (002 Fig. 3)")


for _n, _a in zip(range(14, 18), ATTACKS4):
    def _draw(records, scale, _a=_a):
        return _meta_panels(records["ASD"], f"ASD vs {_a}: losses around the meta-split (002 Fig. {14 + ATTACKS4.index(_a)})")
    register(f"asd_fig{_n}", caption=f"Fig. 3's panels vs {_a}", needs=lambda s, _a=_a: {"ASD": asd(_a)},
             claim="as Fig. 3")(_draw)


# -- Fig. 4 -----------------------------------------------------------------------------------
@register("asd_fig04", caption="clean accuracy per epoch through ASD's stages vs normal training",
          claim="stages 1-2 trail normal training by a visible gap that stage 3 closes",
          needs=lambda s: {"ASD": asd("badnets"), "no defense": run("none", "badnets", **same_data(s, "asd"))})
def asd_fig04(records, scale):
    plt = _plt()
    a, n = records["ASD"], records["no defense"]
    stages = a.metric("stage")
    e2 = max(i for i, s in enumerate(stages) if s in (1, 2))
    fig, ax = plt.subplots(figsize=(7, 4), constrained_layout=True)
    ax.plot(np.arange(1, a.epochs + 1), 100 * np.array(a.metric("acc")), marker="o", label="ASD")
    ax.plot(np.arange(1, n.epochs + 1), 100 * np.array(n.metric("acc")), marker=".", label="no defense (same images)")
    for e in range(len(stages)):
        if e == 0 or stages[e] != stages[e - 1]:  # a stage's name at the top, just right of its boundary
            if e:
                ax.axvline(e + 0.5, ls=":", color="0.5")
            ax.text(e + 0.6, 0.97, f"stage {stages[e]}", transform=ax.get_xaxis_transform(), rotation=90, va="top",
                    fontsize=8, color="0.3")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set(xlabel="epoch", ylabel="clean accuracy (%)", title="ACC through ASD's stages (002 Fig. 4)")
    ax.grid(alpha=0.3)
    ax.legend()
    acc_a2, acc_n2 = a.metric("acc")[e2], n.metric("acc")[min(e2, n.epochs - 1)]
    gap2, gap_end = acc_n2 - acc_a2, final(n, "acc") - final(a, "acc")
    number = (f"epoch {e2 + 1} (end of stage 2): ASD {pct(acc_a2)} vs no defense {pct(acc_n2)} (gap {100 * gap2:.1f} points); "
              f"final: {pct(final(a, 'acc'))} vs {pct(final(n, 'acc'))} (gap {100 * gap_end:.1f})")
    return Drawn(fig, number, bool(gap2 > 0.02 and gap_end < gap2), {"gap_stage2": gap2, "gap_final": gap_end})


# -- Figs. 5, 9, 10: DBD with the meta-split; clean-hard samples in the clean pool ----------------------
def _seeds(scale: str) -> tuple[int, ...]:
    return (0,) if scale == "smoke" else (0, 1) if scale == "classroom" else (0, 1, 2)


def _dbd_meta_needs(scale: str, attack_list) -> dict:
    out = {}
    for a in attack_list:
        for s in _seeds(scale) if len(attack_list) == 1 else (0,):
            out[f"DBD {a} {s}"] = run("dbd", a, seed=s, **RATE.get(a, {}))
            out[f"DBD+meta {a} {s}"] = run("dbd", a, seed=s, defense__split="meta", **RATE.get(a, {}))
        out[f"ASD {a}"] = asd(a)
    return out


def _finetune(rec: Record, key: str) -> np.ndarray:
    return np.array([m[key] for m in rec.metrics if m.get("phase") == "finetune"], dtype=float)


def _curves_over_seeds(ax, records: dict, prefix: str, attack: str, key: str):
    for variant in ("DBD", "DBD+meta"):
        runs = [r for k, r in records.items() if k.startswith(f"{variant} {attack} ")]
        ys = np.stack([_finetune(r, key) for r in runs]) * 100
        x = np.arange(1, ys.shape[1] + 1)
        ax.plot(x, ys.mean(0), marker="o", label=f"{variant} ({len(runs)} seed{'s' * (len(runs) > 1)})")
        if len(runs) > 1:
            ax.fill_between(x, ys.mean(0) - ys.std(0), ys.mean(0) + ys.std(0), alpha=0.2)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set(xlabel="fine-tuning epoch", ylabel=f"{key.upper()} (%)", title=f"{prefix}{key.upper()} vs {attack}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)


def _pool_counts(rec: Record, last: int = 2) -> tuple[float, float]:
    """Clean-hard and poisoned samples in D_C, averaged over the last ``last`` epochs that logged them."""
    rows = [m for m in rec.metrics if "hard_in_pool" in m][-last:]
    return float(np.mean([m["hard_in_pool"] for m in rows])), float(np.mean([m["poison_in_pool"] for m in rows]))


def _hard_counts(ax, records: dict, attack_list) -> dict:
    counts = {}
    for a in attack_list:
        counts[a] = {"DBD": _pool_counts(records[f"DBD {a} 0"]), "ASD": _pool_counts(records[f"ASD {a}"])}
    labels = list(attack_list)
    series = {f"{d} clean-hard": [counts[a][d][0] for a in labels] for d in ("DBD", "ASD")}
    series.update({f"{d} poisoned": [counts[a][d][1] for a in labels] for d in ("DBD", "ASD")})
    bars(ax, labels, series, ylabel="samples in $D_C$ (last 2 epochs)", scale=1.0)
    ax.set_title("clean-hard and poisoned samples in the clean pool")
    ax.legend(fontsize=7)
    return counts


def _hard_number(counts: dict) -> tuple[str, bool]:
    parts, ok = [], True
    for a, c in counts.items():
        parts.append(f"{a}: clean-hard ASD {c['ASD'][0]:.0f} vs DBD {c['DBD'][0]:.0f}, poisoned {c['ASD'][1]:.0f} vs {c['DBD'][1]:.0f}")
        ok &= c["ASD"][0] > c["DBD"][0]
    return "; ".join(parts), ok


@register("asd_fig05", caption="(a) DBD with the meta-split vs DBD over seeds; (b) clean-hard and poisoned samples in D_C, DBD vs ASD",
          claim="(a) the same ACC/ASR in fewer epochs; (b) ASD admits many more clean-hard samples at a similar small poisoned count",
          needs=lambda s: _dbd_meta_needs(s, ("badnets",)),
          reduced="seeds 0-1 at classroom (paper: several), DBD's classroom fine-tuning is 4 epochs")
def asd_fig05(records, scale):
    plt = _plt()
    fig, axes = plt.subplots(1, 3, figsize=(15, 3.8), constrained_layout=True)
    _curves_over_seeds(axes[0], records, "(a) ", "badnets", "acc")
    _curves_over_seeds(axes[1], records, "(a) ", "badnets", "asr")
    counts = _hard_counts(axes[2], records, ("badnets",))
    hard, ok = _hard_number(counts)
    d = [r for k, r in records.items() if k.startswith("DBD badnets")]
    m = [r for k, r in records.items() if k.startswith("DBD+meta badnets")]
    acc = lambda rs: np.mean([final(r, "acc") for r in rs])  # noqa: E731
    asr = lambda rs: np.mean([final(r, "asr") for r in rs])  # noqa: E731
    number = f"final ACC/ASR DBD {pct(acc(d))}/{pct(asr(d))} vs DBD+meta {pct(acc(m))}/{pct(asr(m))}; {hard}"
    return Drawn(fig, number, ok, {"counts": counts})


@register("asd_fig09", caption="the meta-split applied to DBD, per attack", claim="as Fig. 5a, for every attack",
          needs=lambda s: _dbd_meta_needs(s, attacks(s)), reduced="BadNets and Blend at classroom, seed 0")
def asd_fig09(records, scale):
    plt = _plt()
    al = sorted({k.split()[1] for k in records if k.startswith("DBD ")}, key=ATTACKS4.index)
    fig, axes = plt.subplots(2, len(al), figsize=(4.5 * len(al), 6.5), constrained_layout=True, squeeze=False)
    parts, ok = [], True
    for j, a in enumerate(al):
        _curves_over_seeds(axes[0, j], records, "", a, "acc")
        _curves_over_seeds(axes[1, j], records, "", a, "asr")
        d, m = records[f"DBD {a} 0"], records[f"DBD+meta {a} 0"]
        parts.append(f"{a}: DBD {pct(final(d, 'acc'))}/{pct(final(d, 'asr'))}, +meta {pct(final(m, 'acc'))}/{pct(final(m, 'asr'))}")
        ok &= final(m, "asr") < 0.2 and final(m, "acc") >= final(d, "acc") - 0.02
    return Drawn(fig, "final ACC/ASR " + "; ".join(parts), ok)


@register("asd_fig10", caption="clean-hard and poisoned samples in the clean pool, DBD vs ASD, per attack",
          claim="ASD admits many more clean-hard samples at a similar small poisoned count",
          needs=lambda s: _dbd_meta_needs(s, attacks(s)), reduced="BadNets and Blend at classroom")
def asd_fig10(records, scale):
    plt = _plt()
    al = sorted({k.split()[1] for k in records if k.startswith("ASD ")}, key=ATTACKS4.index)
    fig, ax = plt.subplots(figsize=(2.5 + 2.5 * len(al), 4), constrained_layout=True)
    counts = _hard_counts(ax, records, al)
    number, ok = _hard_number(counts)
    return Drawn(fig, number, ok, {"counts": counts})


# -- Figs. 6, 7, 11-13: ablations as bars of ACC and ASR ------------------------------------------------
def _ablation(records: dict, variants: list[str], title: str, *, extra=None):
    """Bars of ACC and ASR per attack (rows) and variant (bars); records keyed '<variant> | <attack>'."""
    plt = _plt()
    al = sorted({k.split(" | ")[1] for k in records}, key=lambda a: ATTACKS4.index(a) if a in ATTACKS4 else 9)
    fig, axes = plt.subplots(1, 2, figsize=(12, 3.8), constrained_layout=True)
    table = {v: {a: records[f"{v} | {a}"].summary for a in al} for v in variants}
    for ax, key in zip(axes, ("acc", "asr")):
        bars(ax, al, {v: [table[v][a][key] for a in al] for v in variants}, ylabel=f"{key.upper()} (%)")
        ax.set_title(f"{title}: {key.upper()}", fontsize=10)
    axes[1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # beside the bars, never over them
    return fig, table


def _grid(variants: dict[str, dict], attack_list, rate: float | None = None) -> dict:
    out = {}
    for a in attack_list:
        for v, kw in variants.items():
            r = {} if a == "clb" or rate is None else {"rate": rate}
            out[f"{v} | {a}"] = asd(a, **{**r, **kw})
    return out


STAGE_VARIANTS = {"ASD": {}, "w/o stage 1": {"defense__stages": "23"}, "w/o stage 2": {"defense__stages": "13"},
                  "w/o stage 3": {"defense__stages": "12"}}


@register("asd_fig06", caption="ablation: ASD without stage 1, 2 or 3", claim="w/o stage 1 collapses; w/o stage 3 loses accuracy",
          needs=lambda s: _grid(STAGE_VARIANTS, ablation_attacks(s), rate=0.2),
          reduced="BadNets at 20 % at classroom (paper and lab: BadNets, Blend, WaNet, CLB)")
def asd_fig06(records, scale):
    fig, t = _ablation(records, list(STAGE_VARIANTS), "ASD's stages")
    al = list(t["ASD"])
    parts, ok = [], True
    for a in al:
        full, w1, w3 = t["ASD"][a], t["w/o stage 1"][a], t["w/o stage 3"][a]
        parts.append(f"{a}: ASD {pct(full['acc'])}/{pct(full['asr'])}, w/o 1 {pct(w1['acc'])}/{pct(w1['asr'])}, "
                     f"w/o 2 {pct(t['w/o stage 2'][a]['acc'])}/{pct(t['w/o stage 2'][a]['asr'])}, w/o 3 {pct(w3['acc'])}/{pct(w3['asr'])}")
        ok &= (w1["acc"] < full["acc"] - 0.05 or w1["asr"] > 0.2) and w3["acc"] < full["acc"] - 0.01  # a loss beyond a seed's noise
    return Drawn(fig, "ACC/ASR " + "; ".join(parts), ok, {"table": t})


WARMUP = {"t=1, n=5 %": {"defense__warmup_step": 0.05}, "t=2, n=15 %": {"defense__warmup_every": 2},
          "t=1, n=15 % (preset)": {}}  # slowest to fastest; a faster n would fill D_C before stage 1 ends (ASD's check refuses it)


@register("asd_fig07", caption="warming-up speed (t, n) of stage 1", claim="too fast a warm-up lets poison in (ASR rises)",
          needs=lambda s: _grid(WARMUP if s != "smoke" else dict(list(WARMUP.items())[1:]), ablation_attacks(s)),
          reduced="n as a share of the mean class size (5 and 15 % every epoch, 15 % every 2; paper: 5-20 samples every 2-10 "
                  "epochs), BadNets at classroom; the preset is the fastest warm-up that leaves D_P non-empty through stage 1")
def asd_fig07(records, scale):
    variants = [v for v in WARMUP if any(k.startswith(v + " | ") for k in records)]
    fig, t = _ablation(records, variants, "warm-up (t, n)")
    al = list(t[variants[0]])
    most = {v: {a: t[v][a].get("max_poison_in_clean_pool", 0) for a in al} for v in variants}
    slow, fast = variants[0], variants[-1]  # WARMUP runs from the slowest warm-up to the fastest
    parts = [f"{a}: most poisoned samples in D_C " + ", ".join(f"{v} {most[v][a]}" for v in variants)
             + "; ASR " + ", ".join(f"{v} {pct(t[v][a]['asr'])}" for v in variants) for a in al]
    ok = all(most[fast][a] > most[slow][a] for a in al)
    return Drawn(fig, "; ".join(parts), ok, {"table": t, "most": most})


SPLIT_VARIANTS = {"ASD": {}, "class-agnostic stage 1": {"defense__stage1_split": "class-agnostic"},
                  "class-aware stage 2": {"defense__stage2_split": "class-aware"}}


@register("asd_fig11", caption="(a) a class-agnostic split in stage 1, (b) a class-aware split in stage 2",
          claim="(a) accuracy crashes in stage 1 (class imbalance); (b) ASR is not suppressed",
          needs=lambda s: _grid(SPLIT_VARIANTS, ablation_attacks(s)), reduced="BadNets at classroom (paper: four attacks)")
def asd_fig11(records, scale):
    fig, t = _ablation(records, list(SPLIT_VARIANTS), "the split of each stage")
    al = list(t["ASD"])
    # ACC at the end of stage 1 (its first epoch trains on the seed samples alone, the same for both splits)
    stage1 = {v: {a: [m["acc"] for m in records[f"{v} | {a}"].metrics if m.get("stage") == 1][-1] for a in al} for v in SPLIT_VARIANTS}
    parts = [f"{a}: ACC at the end of stage 1 {pct(stage1['ASD'][a])} (class-aware) vs {pct(stage1['class-agnostic stage 1'][a])} (class-agnostic); "
             f"ASR {pct(t['ASD'][a]['asr'])} vs {pct(t['class-aware stage 2'][a]['asr'])} with a class-aware stage 2" for a in al]
    ok = all(stage1["class-agnostic stage 1"][a] < stage1["ASD"][a] and t["class-aware stage 2"][a]["asr"] > t["ASD"][a]["asr"] for a in al)
    return Drawn(fig, "; ".join(parts), ok, {"table": t, "stage1_acc": stage1})


META = {"preset (1 epoch, lr 0.015, auto layers)": {}, "3 epochs": {"defense__meta_epochs": 3}, "lr 0.05": {"defense__meta_lr": 0.05},
        "lr 0.005": {"defense__meta_lr": 0.005}, "1 layer group": {"defense__meta_layers": 1}, "all 4 groups": {"defense__meta_layers": 4}}


@register("asd_fig12", caption="the meta-split's virtual model: epochs, learning rate, layers updated",
          claim="more virtual-model epochs or fewer layers lower ACC (appendix I)",
          needs=lambda s: _grid(META if s != "smoke" else dict(list(META.items())[:2]), ("badnets",)),
          reduced="BadNets only, one or two values either side of the preset")
def asd_fig12(records, scale):
    variants = [v for v in META if f"{v} | badnets" in records]
    fig, t = _ablation(records, variants, "virtual model")
    base = t[variants[0]]["badnets"]
    parts = [f"{v} {pct(t[v]['badnets']['acc'])}/{pct(t[v]['badnets']['asr'])}" for v in variants]
    checks = [t[v]["badnets"]["acc"] < base["acc"] for v in ("3 epochs", "1 layer group") if v in t]
    return Drawn(fig, "ACC/ASR " + ", ".join(parts), all(checks) if checks else None, {"table": t})


RATES = {f"α = γ = {r}": ({"defense__alpha": r, "defense__gamma": r} if r != 0.5 else {}) for r in (0.3, 0.5, 0.7)}


@register("asd_fig13", caption="the split rates α = γ of stages 2 and 3", claim="insensitive: ACC high and ASR low across rates",
          needs=lambda s: _grid(RATES if s != "smoke" else dict(list(RATES.items())[1:]), ablation_attacks(s)),
          reduced="0.3, 0.5, 0.7 (paper 0.1-0.9), BadNets at classroom")
def asd_fig13(records, scale):
    variants = [v for v in RATES if any(k.startswith(v + " | ") for k in records)]
    fig, t = _ablation(records, variants, "split rate")
    al = list(t[variants[0]])
    accs = [t[v][a]["acc"] for v in variants for a in al]
    asrs = [t[v][a]["asr"] for v in variants for a in al]
    number = f"ACC {pct(min(accs))}-{pct(max(accs))}, ASR {pct(min(asrs))}-{pct(max(asrs))} over {len(variants)} rates × {len(al)} attacks"
    return Drawn(fig, number, (max(accs) - min(accs)) < 0.1 and max(asrs) < 0.1, {"table": t})


# -- Fig. 8: purification ---------------------------------------------------------------------------
@register("asd_fig08", caption="label and true-class scores of clean and poisoned samples over training, ABL / DBD / ASD vs IAB",
          claim="ASD purifies the poisoned samples: they end up predicted as their true class",
          needs=lambda s: {d.upper(): run(d, "iab") for d in ("abl", "dbd", "asd")},
          reduced="the score is the softmax probability, on 500 poisoned and 500 clean training images, of the training label "
                  "(for a poisoned image: the target) and of the true class")
def asd_fig08(records, scale):
    plt = _plt()
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.6), constrained_layout=True, sharey=True)
    ends = {}
    for ax, (name, rec) in zip(axes, records.items()):
        rows = [m for m in rec.metrics if "score/poisoned_label" in m]
        x = np.arange(1, len(rows) + 1)
        for key, label, style in (("score/clean_label", "clean: label", "-"), ("score/poisoned_label", "poisoned: label (target)", "-"),
                                  ("score/poisoned_true", "poisoned: true class", "--")):
            ax.plot(x, [m[key] for m in rows], style, marker=".", label=label)
        ends[name] = {k.split("/")[1]: rows[-1][k] for k in rows[-1] if k.startswith("score/")}
        ax.set(title=f"{name} vs IAB: ACC {pct(rec.summary['acc'])}, ASR {pct(rec.summary['asr'])}", xlabel="evaluated epoch",
               ylabel="mean softmax score")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    number = "final score of the poisoned samples, target / true class: " + ", ".join(
        f"{k} {v['poisoned_label']:.2f} / {v['poisoned_true']:.2f}" for k, v in ends.items())
    asd_ = ends["ASD"]
    return Drawn(fig, number, bool(asd_["poisoned_true"] > asd_["poisoned_label"]
                                   and asd_["poisoned_true"] >= max(v["poisoned_true"] for v in ends.values())), {"final": ends})
