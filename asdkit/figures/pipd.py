"""PIPD's figures (003): isolation quality against the other defenses, one isolation step, FPR per round, unlearning vs selective training."""
from __future__ import annotations

import numpy as np
from matplotlib.ticker import MaxNLocator

from ..style import ATTACK_MARKERS, DEFENSE_COLORS, attack_name, defense_name, panel, percent_axis
from .common import LOW_ASR, NOISE, attacks, bars, check, data_note, figure, final, hist_groups, names, pct, run, title, truth
from .registry import Drawn, register

DEFENSES = ("pipd", "abl", "dbd", "asd")
PIPD_ATTACKS = ("badnets", "blend", "wanet")


def _isolation_needs(scale: str) -> dict:
    return {f"{d} | {a}": run(d, a) for a in attacks(scale, PIPD_ATTACKS) for d in DEFENSES}


def verdict_fig01(v: dict) -> list:
    t, out = v["table"], []
    for a in t["pipd"]:
        best_tpr = max(t[d][a]["tpr"] for d in DEFENSES)
        best_fpr = min(t[d][a]["fpr"] for d in DEFENSES)
        out.append(check(f"{attack_name(a)}: PIPD has the highest TPR and the lowest FPR (within a point of the best: one seed)",
                         t["pipd"][a]["tpr"] >= best_tpr - NOISE and t["pipd"][a]["fpr"] <= best_fpr + NOISE,
                         ", ".join(f"{defense_name(d)} {pct(t[d][a]['tpr'])}/{pct(t[d][a]['fpr'])}" for d in DEFENSES) + " (TPR/FPR)"))
    return out


@register("pipd_fig01", caption="isolation quality (TPR, FPR) of PIPD vs ABL, DBD, ASD", verdict=verdict_fig01,
          claim="PIPD has the highest TPR and the lowest FPR", needs=_isolation_needs,
          reduced="BadNets and Blend at classroom (paper: six attacks); DBD's and ASD's 'isolated' set is their final polluted pool")
def pipd_fig01(records, scale):
    al = list(dict.fromkeys(k.split(" | ")[1] for k in records))
    fig, axes = figure("full", 1, 2)
    table = {d: {a: {k: records[f"{d} | {a}"].summary.get(k) for k in ("tpr", "fpr")} for a in al} for d in DEFENSES}
    for letter, ax, key in zip("ab", axes[0], ("tpr", "fpr")):
        bars(ax, names(al), {defense_name(d): [table[d][a][key] for a in al] for d in DEFENSES}, ylabel=f"{key.upper()} (%)",
             colors=[DEFENSE_COLORS[d] for d in DEFENSES])
        panel(ax, letter, f"{key.upper()} of the isolated set")
    axes[0, 1].legend(loc="upper left", bbox_to_anchor=(1.01, 1.0))
    title(fig, "PIPD Fig. 1", "isolation quality of PIPD against ABL, DBD and ASD (DBD, ASD: their final polluted pool)",
          note=data_note({defense_name(k.split(" | ")[0]): r for k, r in records.items()}))
    parts = [f"{attack_name(a)}: " + ", ".join(f"{defense_name(d)} {pct(table[d][a]['tpr'])}/{pct(table[d][a]['fpr'])}" for d in DEFENSES)
             for a in al]
    return Drawn(fig, "TPR/FPR " + "; ".join(parts), {"table": table})


def verdict_fig03(v: dict) -> list:
    return [check("a few channels separate the poisoned subset: the round-1 score flags poison (AUROC above 0.9)", v["auroc"] > 0.9,
                  f"AUROC {v['auroc']:.3f}"),
            check("the natural breaks split the histogram at the poison (Jenks flags over half of it)", v["tpr"] > 0.5,
                  f"TPR {pct(v['tpr'])} at FPR {pct(v['fpr'])}")]


@register("pipd_fig03", caption="one isolation step vs BadNets: channel discrepancy, top-K channels, scores split by Jenks",
          claim="a few channels separate the poisoned subset; the score histogram is bimodal and natural breaks split it",
          needs=lambda s: {"PIPD": run("pipd", "badnets")}, verdict=verdict_fig03)
def pipd_fig03(records, scale):
    from ..analysis import detection_auroc

    rec = records["PIPD"]
    poison, _ = truth(rec)
    first = rec.logged_epochs("pipd_score")[0]
    layer = sorted(k.split("/", 1)[1] for k in rec.epoch_arrays if k.startswith("discrepancy/"))[-1]
    disc = rec.epoch_array(f"discrepancy/{layer}", first).numpy()
    chosen = rec.epoch_array(f"channels/{layer}", first).numpy().astype(int)
    score = rec.epoch_array("pipd_score", first).numpy()
    cut = rec.metrics[first]["jenks_break"]
    fig, axes = figure("full", 1, 2)
    order = np.argsort(-disc)
    colors = np.where(np.isin(order, chosen), DEFENSE_COLORS["pipd"], "0.7")
    axes[0, 0].bar(np.arange(len(disc)), disc[order], color=colors)
    axes[0, 0].set(xlabel=f"channel of {layer}, by discrepancy", ylabel="discrepancy (003 Eq. 4)")
    panel(axes[0, 0], "a", f"round 1: the top-K {len(chosen)} channels (coloured) of {len(disc)}")
    hist_groups(axes[0, 1], score, {"clean": ~poison, "poisoned": poison}, log=False, xlabel="PIPD score (003 Eq. 7)")
    axes[0, 1].axvline(cut, color="k", ls="--", lw=1)
    axes[0, 1].annotate(f"Jenks break {cut:.3g}", (cut, axes[0, 1].get_ylim()[1] * 0.9), xytext=(4, 0), textcoords="offset points")
    panel(axes[0, 1], "b", "the score, split by natural breaks")
    title(fig, "PIPD Fig. 3", "one isolation step against BadNets")
    flagged = rec.epoch_array("clean_pool", first).numpy() == 0
    tpr, fpr = (flagged & poison).sum() / max(1, poison.sum()), (flagged & ~poison).sum() / max(1, (~poison).sum())
    auc = detection_auroc(score, poison)
    number = f"round 1: AUROC of the score {auc:.3f}; Jenks flags TPR {pct(tpr)} at FPR {pct(fpr)}"
    return Drawn(fig, number, {"auroc": auc, "tpr": float(tpr), "fpr": float(fpr)})


def verdict_fig04(v: dict) -> list:
    return [check(f"{attack_name(a)}: the FPR falls from round 1 to round T", r["fpr"][-1] < r["fpr"][0],
                  " → ".join(pct(x) for x in r["fpr"]) + (" (0 from round 1: nothing to fall)" if max(r["fpr"]) == 0 else ""))
            for a, r in v["rounds"].items()]


@register("pipd_fig04", caption="FPR per progressive isolation round T", claim="FPR falls as T grows", verdict=verdict_fig04,
          needs=lambda s: {a: run("pipd", a, rate=0.2) for a in attacks(s, PIPD_ATTACKS)},
          reduced="20 % poison as in the paper; BadNets and Blend at classroom")
def pipd_fig04(records, scale):
    fig, axes = figure("full", 1, 2)
    per = {}
    for a, rec in records.items():
        rounds = [m for m in rec.metrics if m.get("phase") == "isolation"]
        t = [m["round"] for m in rounds]
        per[a] = {"round": t, "fpr": [m["fpr"] for m in rounds], "tpr": [m["tpr"] for m in rounds]}
        for ax, k in zip(axes[0], ("fpr", "tpr")):
            ax.plot(t, [100 * x for x in per[a][k]], marker=ATTACK_MARKERS.get(a, "o"), color=DEFENSE_COLORS["pipd"],
                    ls="-" if a == "badnets" else "--", label=attack_name(a))
            i = list(records).index(a)  # the first and last round's value, one attack above the other, inside the axes
            for x, y in ((t[0], per[a][k][0]), (t[-1], per[a][k][-1])):
                dy = (4 + 11 * i) * (-1 if 100 * y > 85 else 1) - (8 if 100 * y > 85 else 0)
                ax.annotate(f"{attack_name(a)} {100 * y:.1f}", (x, 100 * y), xytext=(3, dy), textcoords="offset points",
                            fontsize=8, color="0.25")
    for letter, ax, k in zip("ab", axes[0], ("FPR", "TPR")):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        percent_axis(ax, k)
        ax.set(xlabel="round T")
        panel(ax, letter, f"{k} per isolation round")
        ax.legend()
    title(fig, "PIPD Fig. 4", "the progressive isolation rounds (20 % poison)")
    parts = [f"{attack_name(a)}: FPR {pct(r['fpr'][0])} at T=1 → {pct(r['fpr'][-1])} at T={r['round'][-1]} (TPR {pct(r['tpr'][-1])})"
             for a, r in per.items()]
    return Drawn(fig, "; ".join(parts), {"rounds": per})


def verdict_fig05(v: dict) -> list:
    s, u = v["selective"], v["unlearning"]
    return [check("selective training keeps CA (within a point of the pre-isolation model) while its ASR falls under 5 %",
                  s["acc"] >= v["before"]["acc"] - NOISE and s["asr"] < LOW_ASR,
                  f"CA {pct(v['before']['acc'])} → {pct(s['acc'])}, ASR {pct(v['before']['asr'])} → {pct(s['asr'])}"),
            check("unlearning loses CA (over a point below selective training)", u["acc"] < s["acc"] - NOISE,
                  f"CA unlearning {pct(u['acc'])} vs selective {pct(s['acc'])}")]


@register("pipd_fig05", caption="ABL's unlearning vs PIPD's selective training from the same isolation", verdict=verdict_fig05,
          claim="selective training keeps CA while ASR falls; unlearning loses CA",
          needs=lambda s: {"selective training": run("pipd", "badnets"), "unlearning": run("pipd", "badnets", defense__operation="unlearn")})
def pipd_fig05(records, scale):
    fig, axes = figure("full", 1, 2)
    styles = {"selective training": (DEFENSE_COLORS["pipd"], "-", "o", 4.0), "unlearning": (DEFENSE_COLORS["abl"], "--", "s", 1.5)}
    for name, rec in records.items():
        rows = [m for m in rec.metrics if m.get("phase") == "training"]
        before = [m for m in rec.metrics if m.get("phase") == "pre_isolation"][-1]
        rows = [before] + rows
        x = np.arange(len(rows))
        color, ls, marker, lw = styles[name]
        for ax, k in zip(axes[0], ("acc", "asr")):  # a wide line under a thin dashed one: where they coincide, both stay visible
            ax.plot(x, [100 * m[k] for m in rows], ls=ls, lw=lw, marker=marker, color=color, label=name, mfc="none" if ls == "--" else color,
                    alpha=0.6 if lw > 2 else 1.0)
    for letter, ax, k in zip("ab", axes[0], ("CA", "ASR")):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        percent_axis(ax, k)
        ax.set(xlabel="training epoch after isolation (0: the pre-isolation model)")
        panel(ax, letter, k)
        ax.legend()
    title(fig, "PIPD Fig. 5", "ABL's unlearning vs PIPD's selective training, from the same isolation, against BadNets")
    s, u = records["selective training"], records["unlearning"]
    for ax, k in zip(axes[0], ("acc", "asr")):
        if [m[k] for m in s.metrics if m.get("phase") == "training"] == [m[k] for m in u.metrics if m.get("phase") == "training"]:
            ax.text(0.5, 0.5, "the two curves coincide", transform=ax.transAxes, ha="center", color="0.3")
    before = [m for m in s.metrics if m.get("phase") == "pre_isolation"][-1]
    number = f"final CA/ASR: selective {pct(final(s, 'acc'))}/{pct(final(s, 'asr'))}, unlearning {pct(final(u, 'acc'))}/{pct(final(u, 'asr'))}"
    return Drawn(fig, number, {"selective": {"acc": final(s, "acc"), "asr": final(s, "asr")}, "unlearning": {"acc": final(u, "acc"), "asr": final(u, "asr")},
                               "before": {"acc": before["acc"], "asr": before["asr"]}})
