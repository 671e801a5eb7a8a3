"""ASD's figures (002): loss distributions, the meta-split's panels, the stages' accuracy, DBD with the meta-split, the ablations."""
from __future__ import annotations

import numpy as np
from matplotlib.ticker import MaxNLocator

from ..records import Record
from ..style import DEFENSE_COLORS, POOL_COLORS, attack_name, panel, percent_axis, shades
from .common import (ATTACKS4, LOW_ASR, NOISE, ablation_attacks, attacks, bars, caveat, check, clean_hard_reference, data_note,
                     extras, figure, final_loss, hist_groups, names, oriented_auroc, pct, run, same_data, title, truth)
from .registry import Drawn, register

NOT_SUPPRESSED = 0.2  # a backdoor survives: ASR at or above 20 %
CRASH = 0.05  # an accuracy "crash" or "collapse": more than 5 points lost
LETTERS = "abcdefgh"


def asd(attack: str = "badnets", **kw):
    """ASD against ``attack`` (its preset at the figure's scale)."""
    return run("asd", attack, **{**extras(attack), **kw})


def reference(attack: str, scale: str):
    """The no-defense run on ASD's (and DBD's) training images: the common reference of clean-hard samples (002 Section 5.2)."""
    return run("none", attack, **same_data(scale, "asd"), **extras(attack))


# -- Fig. 1 -----------------------------------------------------------------------------------
def verdict_fig01(v: dict) -> list:
    auc = v["auroc"]
    best = max(auc, key=auc.get)
    return [check("ASD's final loss separates clean from poisoned samples best (oriented AUROC)", best == "ASD",
                  ", ".join(f"{k} {a:.3f}" for k, a in auc.items()))]


@register("asd_fig01", caption="per-sample losses of the final model, ABL / DBD / ASD, vs WaNet",
          claim="ASD separates clean and poisoned losses best", verdict=verdict_fig01,
          needs=lambda s: {d.upper(): run(d, "wanet") for d in ("abl", "dbd", "asd")})
def asd_fig01(records: dict[str, Record], scale: str):
    fig, axes = figure("full", 1, 3)
    auc, side, notes = {}, {}, {}
    for letter, ax, (name, rec) in zip(LETTERS, axes[0], records.items()):
        poison, _ = truth(rec)
        loss = final_loss(rec)
        auc[name], side[name] = oriented_auroc(loss, poison)
        notes[name] = caveat(rec.summary)
        hist_groups(ax, loss, {"clean": ~poison, "poisoned": poison}, log=True, xlabel="CE loss of the final model")
        panel(ax, letter, f"{name}: ACC {pct(rec.summary['acc'])}, ASR {pct(rec.summary['asr'])}\n"
                          f"AUROC {auc[name]:.3f} ({side[name]})" + (f"\n{notes[name]}" if notes[name] else ""))
    title(fig, "ASD Fig. 1", "per-sample loss of the final model against WaNet", note=data_note(records))
    number = "oriented AUROC of the final loss as a poison detector: " + ", ".join(f"{k} {v:.3f} ({side[k]})" for k, v in auc.items())
    return Drawn(fig, number, {"auroc": auc, "side": side, "caveats": notes})


# -- Figs. 3 and 14-17: the meta-split's panels --------------------------------------------------------
PANELS = {"a": ("after stages 1-2", "L1 loss", True), "b": ("virtual model, one epoch", "L1 loss", True),
          "c": ("loss reduction", "L1(θ) − L1(θ')", False), "d": ("after stage 3", "L1 loss", True)}


def _meta_arrays(rec: Record, ref: Record) -> dict[str, np.ndarray]:
    """The four panels' per-sample values of one ASD run, and the groups (clean-hard from the no-defense reference)."""
    stages = rec.metric("stage")
    if 3 not in stages:
        raise ValueError(f"{rec!r} has no stage-3 epoch; the meta-split never ran.")
    e3 = stages.index(3)  # its losses were computed by the model at the end of stage 2
    poison, _ = truth(rec)
    hard = clean_hard_reference(ref, {"ASD": rec})
    return {"a": rec.epoch_array("l1_loss", e3).numpy(), "b": rec.epoch_array("virtual_loss", e3).numpy(),
            "c": rec.epoch_array("loss_reduction", e3).numpy(), "d": final_loss(rec, "sce"),
            "poisoned": poison, "clean-hard": hard, "clean": ~poison & ~hard}


def _meta_values(arr: dict) -> dict:
    groups = {g: arr[g] for g in ("clean", "clean-hard", "poisoned")}
    med = {p: {g: float(np.median(arr[p][m])) for g, m in groups.items() if m.any()} for p in "abcd"}
    return {"median": med, "auroc_a": oriented_auroc(arr["a"], arr["poisoned"])[0], "auroc_d": oriented_auroc(arr["d"], arr["poisoned"])[0]}


def _meta_hist(ax, arr: dict, p: str, letter: str, text: str):
    name, xlabel, log = PANELS[p]
    hist_groups(ax, arr[p], {g: arr[g] for g in ("clean", "clean-hard", "poisoned")}, log=log, xlabel=xlabel)
    panel(ax, letter, text or name)


def _check_c(a: str, m: dict):
    c = m["c"]
    return check(f"{attack_name(a)} (c): poisoned samples have the largest loss reduction, clean-hard a smaller one",
                 c["poisoned"] > c["clean-hard"] and c["poisoned"] > c["clean"],
                 f"median reduction poisoned {c['poisoned']:.2f}, clean-hard {c['clean-hard']:.2f}, clean {c['clean']:.2f}")


def _check_d(a: str, v: dict):
    return check(f"{attack_name(a)} (d): after stage 3 the loss separates better than in (a) (oriented AUROC)",
                 v["auroc_d"] > v["auroc_a"], f"AUROC (a) {v['auroc_a']:.3f}, (d) {v['auroc_d']:.3f}")


def verdict_fig03(v: dict) -> list:
    return [_check_c("badnets", v["median"]), _check_d("badnets", v)]


HARD_NOTE = "clean-hard: the 10 % clean samples of largest loss under the no-defense model on the same images"


@register("asd_fig03", caption="the meta-split's four panels vs BadNets", verdict=verdict_fig03,
          needs=lambda s: {"ASD": asd("badnets"), "no defense": reference("badnets", s)},
          claim="poisoned samples have the largest loss reduction, clean-hard a small one; (d) separates better than (a)")
def asd_fig03(records, scale):
    arr = _meta_arrays(records["ASD"], records["no defense"])
    fig, axes = figure("full", 1, 4)
    for ax, p in zip(axes[0], "abcd"):
        _meta_hist(ax, arr, p, p, "")
    title(fig, "ASD Fig. 3", f"losses around the meta-split, ASD vs BadNets ({HARD_NOTE})")
    v = _meta_values(arr)
    med = v["median"]["c"]
    number = (f"median loss reduction: poisoned {med['poisoned']:.2f}, clean-hard {med['clean-hard']:.2f}, clean {med['clean']:.2f}; "
              f"oriented AUROC of the loss (a) {v['auroc_a']:.3f} → after stage 3 (d) {v['auroc_d']:.3f}")
    return Drawn(fig, number, v)


def _by_attack_needs(scale: str) -> dict:
    out = {}
    for a in ATTACKS4:
        out[f"ASD | {a}"], out[f"no defense | {a}"] = asd(a), reference(a, scale)
    return out


def _meta_by_attack(p: str, n: int, records: dict):
    fig, axes = figure("full", 1, len(ATTACKS4))
    values = {}
    for letter, ax, a in zip(LETTERS, axes[0], ATTACKS4):
        arr = _meta_arrays(records[f"ASD | {a}"], records[f"no defense | {a}"])
        values[a] = _meta_values(arr)
        _meta_hist(ax, arr, p, letter, attack_name(a))
    title(fig, f"ASD Fig. {n}", f"{PANELS[p][0]}, the four attacks (Fig. 3{p}; {HARD_NOTE})")
    return fig, values


def _fig_per_attack(p: str, n: int, verdict, number):
    def draw(records, scale):
        fig, values = _meta_by_attack(p, n, records)
        return Drawn(fig, number(values), {"by_attack": values})
    register(f"asd_fig{n}", caption=f"Fig. 3{p} ({PANELS[p][0]}) for BadNets, Blend, WaNet and CLB", needs=_by_attack_needs,
             claim={"a": "clean-hard samples have losses as high as the poisoned ones", "b": "the poisoned samples' losses drop to ~0",
                    "c": "poisoned samples have the largest loss reduction", "d": "clean and poisoned samples are better separated than in (a)"}[p],
             verdict=verdict)(draw)


def _log_gap(x: float, y: float) -> float:
    return abs(np.log10(max(x, 1e-6)) - np.log10(max(y, 1e-6)))


def verdict_fig14(v: dict) -> list:
    out = []
    for a, x in v["by_attack"].items():
        m = x["median"]["a"]
        out.append(check(f"{attack_name(a)}: clean-hard losses sit nearer the poisoned ones than the clean ones (log medians)",
                         _log_gap(m["clean-hard"], m["poisoned"]) < _log_gap(m["clean-hard"], m["clean"]),
                         f"median L1 clean {m['clean']:.3g}, clean-hard {m['clean-hard']:.3g}, poisoned {m['poisoned']:.3g}"))
    return out


def verdict_fig15(v: dict) -> list:
    return [check(f"{attack_name(a)}: on the virtual model the poisoned losses fall below the clean-hard ones",
                  x["median"]["b"]["poisoned"] < x["median"]["b"]["clean-hard"],
                  f"median L1 poisoned {x['median']['b']['poisoned']:.3g}, clean-hard {x['median']['b']['clean-hard']:.3g}")
            for a, x in v["by_attack"].items()]


def verdict_fig16(v: dict) -> list:
    return [_check_c(a, x["median"]) for a, x in v["by_attack"].items()]


def verdict_fig17(v: dict) -> list:
    return [_check_d(a, x) for a, x in v["by_attack"].items()]


_fig_per_attack("a", 14, verdict_fig14, lambda vs: "median L1 loss after stages 1-2, clean-hard / poisoned: " + ", ".join(
    f"{attack_name(a)} {x['median']['a']['clean-hard']:.3g} / {x['median']['a']['poisoned']:.3g}" for a, x in vs.items()))
_fig_per_attack("b", 15, verdict_fig15, lambda vs: "median L1 loss on the virtual model, clean-hard / poisoned: " + ", ".join(
    f"{attack_name(a)} {x['median']['b']['clean-hard']:.3g} / {x['median']['b']['poisoned']:.3g}" for a, x in vs.items()))
_fig_per_attack("c", 16, verdict_fig16, lambda vs: "median loss reduction, clean-hard / poisoned: " + ", ".join(
    f"{attack_name(a)} {x['median']['c']['clean-hard']:.2f} / {x['median']['c']['poisoned']:.2f}" for a, x in vs.items()))
_fig_per_attack("d", 17, verdict_fig17, lambda vs: "oriented AUROC of the loss, (a) → (d): " + ", ".join(
    f"{attack_name(a)} {x['auroc_a']:.3f} → {x['auroc_d']:.3f}" for a, x in vs.items()))


# -- Fig. 4 -----------------------------------------------------------------------------------
def verdict_fig04(v: dict) -> list:
    return [check("stages 1-2 trail normal training by a visible gap (over 2 points) at the end of stage 2", v["gap_stage2"] > 0.02,
                  f"gap {100 * v['gap_stage2']:.1f} points at epoch {v['epoch_stage2']}"),
            check("stage 3 closes the gap (within 1 point at ASD's last epoch, both runs at that epoch)", v["gap_final"] <= NOISE,
                  f"gap {100 * v['gap_final']:.1f} points at epoch {v['epoch_final']}")]


@register("asd_fig04", caption="clean accuracy per epoch through ASD's stages vs normal training", verdict=verdict_fig04,
          claim="stages 1-2 trail normal training by a visible gap that stage 3 closes",
          needs=lambda s: {"ASD": asd("badnets"), "no defense": reference("badnets", s)})
def asd_fig04(records, scale):
    a, n = records["ASD"], records["no defense"]
    stages = a.metric("stage")
    e2 = max(i for i, s in enumerate(stages) if s in (1, 2))
    fig, axes = figure("single", height=3.6)
    ax = axes[0, 0]
    ax.plot(np.arange(1, a.epochs + 1), 100 * np.array(a.metric("acc")), marker="o", color=DEFENSE_COLORS["asd"], label="ASD")
    ax.plot(np.arange(1, n.epochs + 1), 100 * np.array(n.metric("acc")), marker=".", color=DEFENSE_COLORS["none"], label="no defense")
    for e in range(len(stages)):
        if e == 0 or stages[e] != stages[e - 1]:  # a stage's name at the bottom, just right of its boundary
            if e:
                ax.axvline(e + 0.5, ls=":", color="0.5")
            ax.text(e + 0.6, 0.03, f"stage {stages[e]}", transform=ax.get_xaxis_transform(), rotation=90, va="bottom", color="0.3")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    percent_axis(ax, "clean accuracy")
    ax.set(xlabel="epoch")
    ax.legend(loc="lower right")
    last = a.epochs - 1
    acc_a2, acc_n2 = a.metric("acc")[e2], n.metric("acc")[min(e2, n.epochs - 1)]
    acc_a, acc_n = a.metric("acc")[last], n.metric("acc")[min(last, n.epochs - 1)]
    title(fig, "ASD Fig. 4", "ACC through ASD's stages vs normal training", note=data_note(records))
    number = (f"epoch {e2 + 1} (end of stage 2): ASD {pct(acc_a2)} vs no defense {pct(acc_n2)} (gap {100 * (acc_n2 - acc_a2):.1f} points); "
              f"epoch {last + 1} (ASD's last): {pct(acc_a)} vs {pct(acc_n)} (gap {100 * (acc_n - acc_a):.1f})")
    return Drawn(fig, number, {"gap_stage2": acc_n2 - acc_a2, "gap_final": acc_n - acc_a, "epoch_stage2": e2 + 1, "epoch_final": last + 1})


# -- Figs. 5, 9, 10: DBD with the meta-split; clean-hard samples in the clean pool ----------------------
def _seeds(scale: str) -> tuple[int, ...]:
    return (0,) if scale == "smoke" else (0, 1) if scale == "classroom" else (0, 1, 2)


def _dbd_meta_needs(scale: str, attack_list, *, pools: bool = True) -> dict:
    out = {}
    for a in attack_list:
        for s in _seeds(scale) if len(attack_list) == 1 else (0,):
            out[f"DBD {a} {s}"] = run("dbd", a, seed=s, **extras(a))
            out[f"DBD+meta {a} {s}"] = run("dbd", a, seed=s, defense__split="meta", **extras(a))
        if pools:
            out[f"ASD {a}"], out[f"no defense {a}"] = asd(a), reference(a, scale)
    return out


def _finetune(rec: Record, key: str) -> np.ndarray:
    return np.array([m[key] for m in rec.metrics if m.get("phase") == "finetune"], dtype=float)


def _curves(records: dict, attack: str) -> dict:
    """Mean ACC and ASR per fine-tuning epoch of DBD and DBD + meta-split over the seeds, and their spread."""
    out = {}
    for variant in ("DBD", "DBD+meta"):
        runs = [r for k, r in records.items() if k.startswith(f"{variant} {attack} ")]
        out[variant] = {k: np.stack([_finetune(r, k) for r in runs]) for k in ("acc", "asr")}
        out[variant]["seeds"] = len(runs)
        out[variant]["caveats"] = sorted({c for c in (caveat(r.summary) for r in runs) if c})
    return out


def _plot_curves(ax, curves: dict, key: str, letter: str | None, text: str):
    for variant, color in (("DBD", DEFENSE_COLORS["dbd"]), ("DBD+meta", DEFENSE_COLORS["dbd+meta"])):
        ys = 100 * curves[variant][key]
        x = np.arange(1, ys.shape[1] + 1)
        n = curves[variant]["seeds"]
        ax.plot(x, ys.mean(0), marker="o", color=color, ls="-" if variant == "DBD" else "--",
                label=f"{'DBD + meta-split' if variant != 'DBD' else 'DBD'} ({n} seed{'s' * (n > 1)})")
        if n > 1:
            ax.fill_between(x, ys.mean(0) - ys.std(0), ys.mean(0) + ys.std(0), alpha=0.2, color=color)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    percent_axis(ax, key.upper())
    ax.set(xlabel="fine-tuning epoch")
    panel(ax, letter, text)
    ax.legend(loc="center right")
    notes = sorted({f"{v}: {c}" for v in ("DBD", "DBD+meta") for c in curves[v]["caveats"]})
    if key == "asr" and notes:  # a run whose ASR means little is said where its ASR is drawn
        ax.text(0.02, 0.97, "\n".join(notes), transform=ax.transAxes, va="top", fontsize=8, color="0.3", wrap=True)


def _converge(curves: dict) -> dict:
    """5a as numbers: DBD's final mean ACC/ASR, and the first epoch at which the meta-split's mean reaches them (within a point)."""
    d_acc, d_asr = curves["DBD"]["acc"].mean(0), curves["DBD"]["asr"].mean(0)
    m_acc, m_asr = curves["DBD+meta"]["acc"].mean(0), curves["DBD+meta"]["asr"].mean(0)
    reach = [e for e in range(len(m_acc)) if m_acc[e] >= d_acc[-1] - NOISE and m_asr[e] <= d_asr[-1] + NOISE]
    return {"dbd_acc": float(d_acc[-1]), "dbd_asr": float(d_asr[-1]), "meta_acc": float(m_acc[-1]), "meta_asr": float(m_asr[-1]),
            "reached_at": reach[0] + 1 if reach else None, "dbd_epochs": len(d_acc)}


def _check_converge(a: str, c: dict):
    return check(f"{attack_name(a)} (a): DBD + meta-split reaches DBD's final ACC and ASR (within a point) in fewer epochs",
                 c["reached_at"] is not None and c["reached_at"] < c["dbd_epochs"],
                 f"DBD {pct(c['dbd_acc'])} / {pct(c['dbd_asr'])} after {c['dbd_epochs']} epochs; + meta-split "
                 + (f"reaches it at epoch {c['reached_at']}" if c["reached_at"] else f"never ({pct(c['meta_acc'])} / {pct(c['meta_asr'])} at the end)"))


def _pools(records: dict, attack: str) -> dict:
    """5b as numbers: clean-hard (from the no-defense reference) and poisoned samples in D_C over the last epochs of DBD and ASD."""
    dbd, asd_ = records[f"DBD {attack} 0"], records[f"ASD {attack}"]
    ref = records[f"no defense {attack}"]
    hard = clean_hard_reference(ref, {"DBD": dbd, "ASD": asd_})
    poison, _ = truth(ref)
    out = {}
    last = min(len(dbd.logged_epochs("clean_pool")), len(asd_.logged_epochs("clean_pool")))
    for name, rec in (("DBD", dbd), ("ASD", asd_)):
        pools = [rec.epoch_array("clean_pool", e).numpy().astype(bool) for e in rec.logged_epochs("clean_pool")[-last:]]
        out[name] = {"clean-hard": [int((p & hard).sum()) for p in pools], "poisoned": [int((p & poison).sum()) for p in pools]}
    out["hard_total"], out["poisoned_total"] = int(hard.sum()), int(poison.sum())
    return out


def _check_pools(a: str, p: dict):
    mean = {d: {k: float(np.mean(p[d][k])) for k in ("clean-hard", "poisoned")} for d in ("DBD", "ASD")}
    similar = mean["ASD"]["poisoned"] <= max(mean["DBD"]["poisoned"], 0.01 * p["poisoned_total"])
    return check(f"{attack_name(a)} (b): ASD's D_C holds more clean-hard samples than DBD's, at a similar small poisoned count "
                 "(no more than DBD's or 1 % of the poison)",
                 mean["ASD"]["clean-hard"] > mean["DBD"]["clean-hard"] and similar,
                 f"mean over the last {len(p['ASD']['poisoned'])} epochs: clean-hard ASD {mean['ASD']['clean-hard']:.0f} vs DBD "
                 f"{mean['DBD']['clean-hard']:.0f} of {p['hard_total']}; poisoned ASD {mean['ASD']['poisoned']:.0f} vs DBD "
                 f"{mean['DBD']['poisoned']:.0f} of {p['poisoned_total']}")


def _plot_pools(ax, p: dict, letter: str | None, text: str):
    n = len(p["ASD"]["poisoned"])
    x = np.arange(-n + 1, 1)
    for d in ("DBD", "ASD"):
        c = DEFENSE_COLORS[d.lower()]
        ax.plot(x, p[d]["clean-hard"], marker="o", color=c, label=f"{d}: clean-hard")
        ax.plot(x, p[d]["poisoned"], marker="x", ls="--", color=c, label=f"{d}: poisoned")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set(xlabel="epoch, counted back from the last", ylabel="samples in $D_C$", ylim=(0, None))
    panel(ax, letter, text)
    ax.legend()


def verdict_fig05(v: dict) -> list:
    return [_check_converge("badnets", v["converge"]), _check_pools("badnets", v["pools"])]


@register("asd_fig05", caption="(a) DBD with the meta-split vs DBD over seeds; (b) clean-hard and poisoned samples in D_C, DBD vs ASD",
          claim="(a) the same ACC/ASR in fewer epochs; (b) ASD admits many more clean-hard samples at a similar small poisoned count",
          needs=lambda s: _dbd_meta_needs(s, ("badnets",)), verdict=verdict_fig05,
          reduced="seeds 0-1 at classroom (paper: five), DBD's classroom fine-tuning is 4 epochs (paper: 190, the meta-split's 25)")
def asd_fig05(records, scale):
    fig, axes = figure("full", 1, 3)
    curves = _curves(records, "badnets")
    _plot_curves(axes[0, 0], curves, "acc", "a", "ACC, BadNets")
    _plot_curves(axes[0, 1], curves, "asr", "a", "ASR, BadNets")
    pools = _pools(records, "badnets")
    _plot_pools(axes[0, 2], pools, "b", "clean-hard and poisoned samples in $D_C$")
    title(fig, "ASD Fig. 5", f"DBD with the meta-split, and the clean pools of DBD and ASD ({HARD_NOTE})")
    c = _converge(curves)
    v = {"converge": c, "pools": pools}
    return Drawn(fig, f"final ACC/ASR DBD {pct(c['dbd_acc'])}/{pct(c['dbd_asr'])} vs DBD + meta-split {pct(c['meta_acc'])}/{pct(c['meta_asr'])}; "
                       + _check_pools("badnets", pools).measured, v)


def verdict_fig09(v: dict) -> list:
    return [_check_converge(a, c) for a, c in v["converge"].items()]


@register("asd_fig09", caption="the meta-split applied to DBD, per attack", claim="as Fig. 5a, for every attack", verdict=verdict_fig09,
          needs=lambda s: _dbd_meta_needs(s, attacks(s), pools=False), reduced="BadNets and Blend at classroom, seed 0")
def asd_fig09(records, scale):
    al = sorted({k.split()[1] for k in records if k.startswith("DBD ")}, key=ATTACKS4.index)
    fig, axes = figure("full", 2, len(al), height=3.0)
    conv = {}
    for j, a in enumerate(al):
        curves = _curves(records, a)
        _plot_curves(axes[0, j], curves, "acc", LETTERS[j], f"ACC, {attack_name(a)}")
        _plot_curves(axes[1, j], curves, "asr", LETTERS[j], f"ASR, {attack_name(a)}")
        conv[a] = _converge(curves)
    title(fig, "ASD Fig. 9", "DBD with the meta-split replacing its split, per attack")
    return Drawn(fig, "final ACC/ASR " + "; ".join(f"{attack_name(a)}: DBD {pct(c['dbd_acc'])}/{pct(c['dbd_asr'])}, + meta-split "
                                                    f"{pct(c['meta_acc'])}/{pct(c['meta_asr'])}" for a, c in conv.items()), {"converge": conv})


def verdict_fig10(v: dict) -> list:
    return [_check_pools(a, p) for a, p in v["pools"].items()]


@register("asd_fig10", caption="clean-hard and poisoned samples in the clean pool, DBD vs ASD, per attack", verdict=verdict_fig10,
          claim="ASD admits many more clean-hard samples at a similar small poisoned count",
          needs=lambda s: {k: v for k, v in _dbd_meta_needs(s, attacks(s)).items() if "meta" not in k}, reduced="BadNets and Blend at classroom")
def asd_fig10(records, scale):
    al = sorted({k.split()[1] for k in records if k.startswith("ASD ")}, key=ATTACKS4.index)
    fig, axes = figure("full", 1, len(al))
    pools = {}
    for j, a in enumerate(al):
        pools[a] = _pools(records, a)
        _plot_pools(axes[0, j], pools[a], LETTERS[j], attack_name(a))
    title(fig, "ASD Fig. 10", f"clean-hard and poisoned samples in $D_C$, DBD vs ASD ({HARD_NOTE})")
    return Drawn(fig, "; ".join(f"{attack_name(a)}: " + _check_pools(a, p).measured for a, p in pools.items()), {"pools": pools})


# -- Figs. 6, 7, 11-13: ablations --------------------------------------------------------------------
def _grid(variants: dict[str, dict], attack_list, rate: float | None = None) -> dict:
    out = {}
    for a in attack_list:
        for v, kw in variants.items():
            r = {} if a == "clb" or rate is None else {"rate": rate}
            out[f"{v} | {a}"] = asd(a, **{**r, **kw})
    return out


def _table(records: dict, variants: list[str]) -> dict:
    al = sorted({k.split(" | ")[1] for k in records}, key=lambda a: ATTACKS4.index(a) if a in ATTACKS4 else 9)
    return {v: {a: {k: records[f"{v} | {a}"].summary.get(k) for k in ("acc", "asr", "asr_meaningful", "target_class_acc",
                                                                       "clean_target_rate", "max_poison_in_clean_pool")} for a in al}
            for v in variants}


def _ablation_bars(axes, table: dict, *, letters: str | None = None, variant_title: str = ""):
    """ACC and ASR bars per attack (groups) and variant (shades of ASD's colour, the preset darkest); a hatched bar: ASR means little."""
    variants = list(table)
    al = list(table[variants[0]])
    colors = shades("asd", len(variants))
    for i, (ax, key) in enumerate(zip(axes, ("acc", "asr"))):
        hatched = {v: [bool(caveat(table[v][a])) for a in al] for v in variants} if key == "asr" else None
        bars(ax, names(al), {v: [table[v][a][key] for a in al] for v in variants}, ylabel=f"{key.upper()} (%)", colors=colors, hatched=hatched)
        panel(ax, letters[i] if letters else None, f"{key.upper()}{variant_title}")
    axes[-1].legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), title="hatched: ASR means little" if any(
        caveat(table[v][a]) for v in variants for a in al) else None)


STAGE_VARIANTS = {"ASD": {}, "w/o stage 1": {"defense__stages": "23"}, "w/o stage 2": {"defense__stages": "13"},
                  "w/o stage 3": {"defense__stages": "12"}}


def verdict_fig06(v: dict) -> list:
    t, out = v["table"], []
    for a in t["ASD"]:
        full, w1, w3 = t["ASD"][a], t["w/o stage 1"][a], t["w/o stage 3"][a]
        out.append(check(f"{attack_name(a)}: without stage 1 ASD collapses (ACC over 5 points lower, or ASR at or above 20 %)",
                         w1["acc"] < full["acc"] - CRASH or w1["asr"] >= NOT_SUPPRESSED,
                         f"ACC/ASR {pct(w1['acc'])}/{pct(w1['asr'])} vs ASD {pct(full['acc'])}/{pct(full['asr'])}"))
        out.append(check(f"{attack_name(a)}: without stage 3 ASD loses accuracy (over 1 point)", w3["acc"] < full["acc"] - NOISE,
                         f"ACC {pct(w3['acc'])} vs {pct(full['acc'])}"))
    return out


@register("asd_fig06", caption="ablation: ASD without stage 1, 2 or 3", claim="w/o stage 1 collapses; w/o stage 3 loses accuracy",
          needs=lambda s: _grid(STAGE_VARIANTS, ablation_attacks(s), rate=0.2), verdict=verdict_fig06,
          reduced="BadNets at 20 % at classroom (paper and lab: BadNets, Blend, WaNet, CLB)")
def asd_fig06(records, scale):
    t = _table(records, list(STAGE_VARIANTS))
    fig, axes = figure("full", 1, 2)
    _ablation_bars(axes[0], t)
    title(fig, "ASD Fig. 6", "ASD without one of its stages")
    parts = [f"{attack_name(a)}: " + ", ".join(f"{v} {pct(t[v][a]['acc'])}/{pct(t[v][a]['asr'])}" for v in t) for a in t["ASD"]]
    return Drawn(fig, "ACC/ASR " + "; ".join(parts), {"table": t})


WARMUP = {"t=1, n=5 %": {"defense__warmup_step": 0.05}, "t=2, n=15 %": {"defense__warmup_every": 2},
          "t=1, n=15 % (preset)": {}}  # slowest to fastest; a faster n would fill D_C before stage 1 ends (ASD's check refuses it)


def verdict_fig07(v: dict) -> list:
    t = v["table"]
    slow, fast = list(t)[0], list(t)[-1]  # WARMUP runs from the slowest warm-up to the fastest
    return [check(f"{attack_name(a)}: the fastest warm-up lets the backdoor in (ASR over 1 point above the slowest's)",
                  t[fast][a]["asr"] > t[slow][a]["asr"] + NOISE,
                  f"ASR {slow} {pct(t[slow][a]['asr'])}, {fast} {pct(t[fast][a]['asr'])}") for a in t[slow]]


@register("asd_fig07", caption="warming-up speed (t, n) of stage 1", claim="too fast a warm-up lets poison in (ASR rises)", verdict=verdict_fig07,
          needs=lambda s: _grid(WARMUP if s != "smoke" else dict(list(WARMUP.items())[1:]), ablation_attacks(s)),
          reduced="n as a share of the mean class size (5 and 15 % every epoch, 15 % every 2; paper: 5-20 samples every 2-10 "
                  "epochs), BadNets at classroom; the preset is the fastest warm-up that leaves D_P non-empty through stage 1")
def asd_fig07(records, scale):
    variants = [v for v in WARMUP if any(k.startswith(v + " | ") for k in records)]
    t = _table(records, variants)
    fig, axes = figure("full", 1, 3)
    _ablation_bars(axes[0, :2], t, variant_title=" (slowest warm-up left)")
    al = list(t[variants[0]])
    bars(axes[0, 2], names(al), {v: [t[v][a]["max_poison_in_clean_pool"] for a in al] for v in variants}, percent=False,
         ylabel="samples", colors=shades("asd", len(variants)))
    panel(axes[0, 2], None, "most poisoned samples in $D_C$ in an epoch")
    axes[0, 1].get_legend().remove()
    axes[0, 2].legend(loc="upper left", bbox_to_anchor=(1.01, 1.0))
    title(fig, "ASD Fig. 7", "the warm-up speed of stage 1 (t: epochs between splits, n: samples added per class)")
    parts = [f"{attack_name(a)}: ASR " + ", ".join(f"{v} {pct(t[v][a]['asr'])}" for v in variants)
             + "; most poisoned samples in D_C " + ", ".join(f"{v} {t[v][a]['max_poison_in_clean_pool']}" for v in variants) for a in al]
    return Drawn(fig, "; ".join(parts), {"table": t})


SPLIT_VARIANTS = {"ASD": {}, "class-agnostic stage 1": {"defense__stage1_split": "class-agnostic"},
                  "class-aware stage 2": {"defense__stage2_split": "class-aware"}}


def verdict_fig11(v: dict) -> list:
    out = []
    for a, s1 in v["stage1_acc"].items():
        out.append(check(f"{attack_name(a)} (a): a class-agnostic stage 1 crashes accuracy (over 5 points lower at the end of stage 1)",
                         s1["class-agnostic stage 1"] < s1["ASD"] - CRASH,
                         f"ACC at the end of stage 1 {pct(s1['class-agnostic stage 1'])} vs {pct(s1['ASD'])} class-aware"))
        asr = v["final_asr"][a]
        out.append(check(f"{attack_name(a)} (b): with a class-aware stage 2 the ASR is not suppressed (at or above 20 %)",
                         asr["class-aware stage 2"] >= NOT_SUPPRESSED, f"ASR {pct(asr['class-aware stage 2'])} vs ASD {pct(asr['ASD'])}"))
    return out


def _per_epoch(ax, records: dict, a: str, variants: tuple[str, str], key: str, letter: str, text: str):
    for v, color, ls in zip(variants, shades("asd", 2), ("-", "--")):
        rec = records[f"{v} | {a}"]
        ax.plot(np.arange(1, rec.epochs + 1), 100 * np.array(rec.metric(key)), marker="o", color=color, ls=ls, label=v)
    stages = records[f"{variants[0]} | {a}"].metric("stage")
    for e in range(1, len(stages)):
        if stages[e] != stages[e - 1]:
            ax.axvline(e + 0.5, ls=":", color="0.5")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    percent_axis(ax, key.upper())
    ax.set(xlabel="epoch (dotted: a new stage)")
    panel(ax, letter, text)
    ax.legend()


@register("asd_fig11", caption="(a) a class-agnostic split in stage 1, (b) a class-aware split in stage 2", verdict=verdict_fig11,
          claim="(a) accuracy crashes in stage 1 (class imbalance); (b) ASR is not suppressed",
          needs=lambda s: _grid(SPLIT_VARIANTS, ablation_attacks(s)), reduced="BadNets at classroom (paper: four attacks)")
def asd_fig11(records, scale):
    al = sorted({k.split(" | ")[1] for k in records}, key=ATTACKS4.index)
    fig, axes = figure("full", len(al), 2)
    stage1, asr = {}, {}
    for i, a in enumerate(al):
        _per_epoch(axes[i, 0], records, a, ("ASD", "class-agnostic stage 1"), "acc", "a", f"ACC, {attack_name(a)}")
        _per_epoch(axes[i, 1], records, a, ("ASD", "class-aware stage 2"), "asr", "b", f"ASR, {attack_name(a)}")
        # ACC at the end of stage 1 (its first epoch trains on the seed samples alone, the same for both splits)
        stage1[a] = {v: [m["acc"] for m in records[f"{v} | {a}"].metrics if m.get("stage") == 1][-1] for v in SPLIT_VARIANTS}
        asr[a] = {v: records[f"{v} | {a}"].summary["asr"] for v in SPLIT_VARIANTS}
    title(fig, "ASD Fig. 11", "the split of each stage: (a) class-agnostic in stage 1, (b) class-aware in stage 2")
    parts = [f"{attack_name(a)}: ACC at the end of stage 1 {pct(stage1[a]['ASD'])} (class-aware) vs {pct(stage1[a]['class-agnostic stage 1'])} "
             f"(class-agnostic); ASR {pct(asr[a]['ASD'])} vs {pct(asr[a]['class-aware stage 2'])} with a class-aware stage 2" for a in al]
    return Drawn(fig, "; ".join(parts), {"stage1_acc": stage1, "final_asr": asr})


META = {"preset (1 epoch, lr 0.015, auto layers)": {}, "3 epochs": {"defense__meta_epochs": 3}, "lr 0.05": {"defense__meta_lr": 0.05},
        "lr 0.005": {"defense__meta_lr": 0.005}, "1 layer group": {"defense__meta_layers": 1}, "all 4 groups": {"defense__meta_layers": 4}}
PRESET = "preset (1 epoch, lr 0.015, auto layers)"
META_SWEEPS = {"a": ("virtual-model epochs", {"1": PRESET, "3": "3 epochs"}),
               "b": ("learning rate β", {"0.005": "lr 0.005", "0.015": PRESET, "0.05": "lr 0.05"}),
               "c": ("layer groups updated", {"1": "1 layer group", "auto": PRESET, "4": "all 4 groups"})}


def verdict_fig12(v: dict) -> list:
    t, out = v["table"], []
    base = t[PRESET]["badnets"]["acc"]
    for variant, what in (("3 epochs", "(a) more virtual-model epochs"), ("1 layer group", "(c) fewer layers updated")):
        if variant in t:
            out.append(check(f"{what} lower ACC (over 1 point)", t[variant]["badnets"]["acc"] < base - NOISE,
                             f"ACC {pct(t[variant]['badnets']['acc'])} vs {pct(base)} at the preset"))
    return out


@register("asd_fig12", caption="the meta-split's virtual model: (a) epochs, (b) learning rate, (c) layers updated", verdict=verdict_fig12,
          claim="more virtual-model epochs or fewer layers lower ACC (appendix I)",
          needs=lambda s: _grid(META if s != "smoke" else dict(list(META.items())[:2]), ("badnets",)),
          reduced="BadNets only (paper: four attacks), one or two values either side of the preset")
def asd_fig12(records, scale):
    variants = [v for v in META if f"{v} | badnets" in records]
    t = _table(records, variants)
    sweeps = {p: (name, {x: v for x, v in xs.items() if v in t}) for p, (name, xs) in META_SWEEPS.items()}
    sweeps = {p: s for p, s in sweeps.items() if len(s[1]) > 1}
    fig, axes = figure("full", 1, len(sweeps))
    acc_c, asr_c = shades("asd", 2)
    for ax, (p, (name, xs)) in zip(axes[0], sweeps.items()):
        bars(ax, list(xs), {"ACC": [t[v]["badnets"]["acc"] for v in xs.values()], "ASR": [t[v]["badnets"]["asr"] for v in xs.values()]},
             ylabel="%", colors=[acc_c, asr_c])
        ax.set_xlabel(name)
        panel(ax, p, name)
    axes[0, -1].legend(loc="upper left", bbox_to_anchor=(1.01, 1.0))
    title(fig, "ASD Fig. 12", "the meta-split's virtual model vs BadNets")
    return Drawn(fig, "ACC/ASR " + ", ".join(f"{v} {pct(t[v]['badnets']['acc'])}/{pct(t[v]['badnets']['asr'])}" for v in variants), {"table": t})


RATES = {f"α = γ = {r}": ({"defense__alpha": r, "defense__gamma": r} if r != 0.5 else {}) for r in (0.3, 0.5, 0.7)}


def verdict_fig13(v: dict) -> list:
    t = v["table"]
    al = list(next(iter(t.values())))
    accs = [t[r][a]["acc"] for r in t for a in al]
    asrs = [t[r][a]["asr"] for r in t for a in al]
    return [check("ACC stays within 5 points across the rates", max(accs) - min(accs) <= CRASH, f"ACC {pct(min(accs))}-{pct(max(accs))}"),
            check("ASR stays low (under 5 %) at every rate", max(asrs) < LOW_ASR, f"ASR {pct(min(asrs))}-{pct(max(asrs))}")]


@register("asd_fig13", caption="the split rates α = γ of stages 2 and 3", claim="insensitive: ACC high and ASR low across rates",
          needs=lambda s: _grid(RATES if s != "smoke" else dict(list(RATES.items())[1:]), ablation_attacks(s)), verdict=verdict_fig13,
          reduced="0.3, 0.5, 0.7 (paper 0.1-0.9), BadNets at classroom")
def asd_fig13(records, scale):
    variants = [v for v in RATES if any(k.startswith(v + " | ") for k in records)]
    t = _table(records, variants)
    fig, axes = figure("full", 1, 2)
    _ablation_bars(axes[0], t)
    title(fig, "ASD Fig. 13", "the split rate α = γ of stages 2 and 3")
    al = list(t[variants[0]])
    accs, asrs = [t[v][a]["acc"] for v in variants for a in al], [t[v][a]["asr"] for v in variants for a in al]
    return Drawn(fig, f"ACC {pct(min(accs))}-{pct(max(accs))}, ASR {pct(min(asrs))}-{pct(max(asrs))} over {len(variants)} rates × "
                       f"{len(al)} attack(s)", {"table": t})


# -- Fig. 8: purification ---------------------------------------------------------------------------
def verdict_fig08(v: dict) -> list:
    e = v["final"]["ASD"]
    return [check("ASD's poisoned samples end up predicted as their true class (true-class score above the target's)",
                  e["poisoned_true"] > e["poisoned_label"], f"true class {e['poisoned_true']:.2f}, target {e['poisoned_label']:.2f}")]


@register("asd_fig08", caption="label and true-class scores of clean and poisoned samples over training, ABL / DBD / ASD vs IAB",
          claim="ASD purifies the poisoned samples: they end up predicted as their true class", verdict=verdict_fig08,
          needs=lambda s: {d.upper(): run(d, "iab") for d in ("abl", "dbd", "asd")},
          reduced="the score is the softmax probability, on 500 poisoned and 500 clean training images, of the training label "
                  "(for a poisoned image: the target) and of the true class")
def asd_fig08(records, scale):
    fig, axes = figure("full", 1, 3, sharey=True)
    ends = {}
    for letter, ax, (name, rec) in zip(LETTERS, axes[0], records.items()):
        rows = [m for m in rec.metrics if "score/poisoned_label" in m]
        x = np.arange(1, len(rows) + 1)
        for key, label, color, style in (("score/clean_label", "clean: label", POOL_COLORS["clean"], "-"),
                                         ("score/poisoned_label", "poisoned: label (target)", POOL_COLORS["poisoned"], "-"),
                                         ("score/poisoned_true", "poisoned: true class", POOL_COLORS["poisoned"], "--")):
            ax.plot(x, [m[key] for m in rows], style, marker=".", color=color, label=label)
        ends[name] = {k.split("/")[1]: rows[-1][k] for k in rows[-1] if k.startswith("score/")}
        note = caveat(rec.summary)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set(xlabel="evaluated epoch", ylabel="mean softmax score", ylim=(0, 1.02))
        panel(ax, letter, f"{name}: ACC {pct(rec.summary['acc'])}, ASR {pct(rec.summary['asr'])}" + (f"\n{note}" if note else ""))
    axes[0, 0].legend()
    title(fig, "ASD Fig. 8", "label and true-class scores over training against IAB", note=data_note(records))
    number = "final score of the poisoned samples, target / true class: " + ", ".join(
        f"{k} {v['poisoned_label']:.2f} / {v['poisoned_true']:.2f}" for k, v in ends.items())
    return Drawn(fig, number, {"final": ends})

