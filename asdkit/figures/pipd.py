"""PIPD's figures (003): isolation quality against the other defenses, one isolation step, FPR per round, unlearning vs selective training."""
from __future__ import annotations

import numpy as np
from matplotlib.ticker import MaxNLocator

from ..records import Record
from .common import attacks, bars, final, hist_groups, pct, run, truth
from .registry import Drawn, register

DEFENSES = ("pipd", "abl", "dbd", "asd")
PIPD_ATTACKS = ("badnets", "blend", "wanet")


def _plt():
    import matplotlib.pyplot as plt

    return plt


def _isolation_needs(scale: str) -> dict:
    return {f"{d} | {a}": run(d, a) for a in attacks(scale, PIPD_ATTACKS) for d in DEFENSES}


@register("pipd_fig01", caption="isolation quality (TPR, FPR) of PIPD vs ABL, DBD, ASD",
          claim="PIPD has the highest TPR and the lowest FPR", needs=_isolation_needs,
          reduced="BadNets and Blend at classroom (paper: six attacks); DBD's and ASD's 'isolated' set is their final polluted pool")
def pipd_fig01(records, scale):
    plt = _plt()
    al = list(dict.fromkeys(k.split(" | ")[1] for k in records))
    fig, axes = plt.subplots(1, 2, figsize=(12, 3.8), constrained_layout=True)
    table = {d: {a: records[f"{d} | {a}"].summary for a in al} for d in DEFENSES}
    for ax, key in zip(axes, ("tpr", "fpr")):
        bars(ax, al, {d.upper(): [table[d][a].get(key) for a in al] for d in DEFENSES}, ylabel=f"{key.upper()} (%)")
        ax.set_title(f"{key.upper()} of the isolated set (003 Fig. 1)", fontsize=10)
    axes[0].legend(fontsize=7, loc="upper center", ncol=len(DEFENSES))
    parts = [f"{a}: " + ", ".join(f"{d.upper()} {pct(table[d][a].get('tpr'))}/{pct(table[d][a].get('fpr'))}" for d in DEFENSES) for a in al]
    ok = all(table["pipd"][a]["tpr"] >= max(table[d][a]["tpr"] for d in DEFENSES) - 1e-9
             and table["pipd"][a]["fpr"] <= min(table[d][a]["fpr"] for d in DEFENSES) + 1e-9 for a in al)
    return Drawn(fig, "TPR/FPR " + "; ".join(parts), ok, {"table": {d: {a: {k: table[d][a].get(k) for k in ("tpr", "fpr")} for a in al} for d in DEFENSES}})


@register("pipd_fig03", caption="one isolation step vs BadNets: channel discrepancy, top-K channels, scores split by Jenks",
          claim="a few channels separate the poisoned subset; the score histogram is bimodal and natural breaks split it",
          needs=lambda s: {"PIPD": run("pipd", "badnets")})
def pipd_fig03(records, scale):
    plt = _plt()
    rec = records["PIPD"]
    poison, _ = truth(rec)
    first = rec.logged_epochs("pipd_score")[0]
    layer = sorted(k.split("/", 1)[1] for k in rec.epoch_arrays if k.startswith("discrepancy/"))[-1]
    disc = rec.epoch_array(f"discrepancy/{layer}", first).numpy()
    chosen = rec.epoch_array(f"channels/{layer}", first).numpy().astype(int)
    score = rec.epoch_array("pipd_score", first).numpy()
    cut = rec.metrics[first]["jenks_break"]
    fig, axes = plt.subplots(1, 2, figsize=(13, 3.8), constrained_layout=True)
    order = np.argsort(-disc)
    colors = np.where(np.isin(order, chosen), "#c44e52", "0.6")
    axes[0].bar(np.arange(len(disc)), disc[order], color=colors)
    axes[0].set(xlabel=f"channel of {layer}, by discrepancy", ylabel="discrepancy (003 Eq. 4)",
                title=f"round 1: {len(chosen)} top-K channels (red) of {len(disc)}")
    hist_groups(axes[1], score, {"clean": ~poison, "poisoned": poison}, log=False, xlabel="PIPD score (003 Eq. 7)")
    axes[1].axvline(cut, color="k", ls="--", lw=1)
    axes[1].annotate(f"Jenks break {cut:.3g}", (cut, axes[1].get_ylim()[1] * 0.9), fontsize=8, xytext=(4, 0), textcoords="offset points")
    flagged = rec.epoch_array("clean_pool", first).numpy() == 0
    tpr, fpr = (flagged & poison).sum() / max(1, poison.sum()), (flagged & ~poison).sum() / max(1, (~poison).sum())
    from ..analysis import detection_auroc

    auc = detection_auroc(score, poison)
    number = f"round 1: AUROC of the score {auc:.3f}; Jenks flags TPR {pct(tpr)} at FPR {pct(fpr)}"
    return Drawn(fig, number, bool(auc > 0.9 and tpr > 0.5), {"auroc": auc, "tpr": float(tpr), "fpr": float(fpr)})


@register("pipd_fig04", caption="FPR per progressive isolation round T", claim="FPR falls as T grows",
          needs=lambda s: {a: run("pipd", a, rate=0.2) for a in attacks(s, PIPD_ATTACKS)},
          reduced="20 % poison as in the paper; BadNets and Blend at classroom")
def pipd_fig04(records, scale):
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.6), constrained_layout=True)
    parts, ok = [], True
    for a, rec in records.items():
        rounds = [m for m in rec.metrics if m.get("phase") == "isolation"]
        t = [m["round"] for m in rounds]
        axes[0].plot(t, [100 * m["fpr"] for m in rounds], marker="o", label=a)
        axes[1].plot(t, [100 * m["tpr"] for m in rounds], marker="o", label=a)
        parts.append(f"{a}: FPR {pct(rounds[0]['fpr'])} at T=1 → {pct(rounds[-1]['fpr'])} at T={t[-1]} (TPR {pct(rounds[-1]['tpr'])})")
        ok &= rounds[-1]["fpr"] < rounds[0]["fpr"] or rounds[-1]["fpr"] == rounds[0]["fpr"] == 0.0  # falls, or is 0 from the start
    for ax, k in zip(axes, ("FPR", "TPR")):
        ax.set(xlabel="round T", ylabel=f"{k} (%)", title=f"{k} per isolation round (003 Fig. 4)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return Drawn(fig, "; ".join(parts), ok)


@register("pipd_fig05", caption="ABL's unlearning vs PIPD's selective training from the same isolation",
          claim="selective training keeps CA while ASR falls; unlearning loses CA",
          needs=lambda s: {"selective training": run("pipd", "badnets"), "unlearning": run("pipd", "badnets", defense__operation="unlearn")})
def pipd_fig05(records, scale):
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.6), constrained_layout=True)
    for name, rec in records.items():
        rows = [m for m in rec.metrics if m.get("phase") == "training"]
        before = [m for m in rec.metrics if m.get("phase") == "pre_isolation"][-1]
        rows = [before] + rows
        x = np.arange(len(rows))
        axes[0].plot(x, [100 * m["acc"] for m in rows], marker="o", label=name)
        axes[1].plot(x, [100 * m["asr"] for m in rows], marker="o", label=name)
    for ax, k in zip(axes, ("CA", "ASR")):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set(xlabel="training epoch after isolation (0: the pre-isolation model)", ylabel=f"{k} (%)", title=f"{k} (003 Fig. 5)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    s, u = records["selective training"], records["unlearning"]
    number = f"final CA/ASR: selective {pct(final(s, 'acc'))}/{pct(final(s, 'asr'))}, unlearning {pct(final(u, 'acc'))}/{pct(final(u, 'asr'))}"
    return Drawn(fig, number, bool(final(s, "acc") > final(u, "acc") and final(s, "asr") < 0.2))
