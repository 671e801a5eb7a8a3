"""The papers' main tables, printed beside the figures in figures/README.md with the paper's numbers in a neighbouring column."""
from __future__ import annotations

from ..style import attack_name
from .common import LOW_ASR, NOISE, attacks, check, data_note, extras, pct, run, same_data
from .registry import Drawn, register

# 002 Table 2, CIFAR-10 (ACC, ASR in %): the paper's own numbers, printed beside ours
ASD_TABLE2 = {
    "none": {"badnets": (94.9, 100), "blend": (94.1, 98.3), "wanet": (93.6, 99.9), "clb": (94.4, 99.9)},
    "abl": {"badnets": (93.8, 1.1), "blend": (91.9, 1.6), "wanet": (84.1, 2.2), "clb": (86.6, 1.3)},
    "dbd": {"badnets": (92.3, 0.8), "blend": (91.7, 0.7), "wanet": (91.4, 0.0), "clb": (90.6, 0.1)},
    "asd": {"badnets": (93.4, 1.2), "blend": (93.7, 1.6), "wanet": (93.1, 1.7), "clb": (93.1, 0.9)},
}
# 002 Table 3, CIFAR-10: seconds per stage
ASD_TABLE3 = {"abl": (740, 2450, 10, 3200), "dbd": (30000, 80, 15770, 45850), "asd": (4980, 2490, 2520, 9990)}
TABLE_ATTACKS = ("badnets", "blend", "wanet", "clb")
NAMES = {"none": "no defense", "abl": "ABL", "pipd": "PIPD", "dbd": "DBD", "asd": "ASD"}


def _beside_paper(records, scale: str, rows: dict[str, str], paper: dict, *, corner: str, metrics=("acc", "asr"),
                  heading: str = "ACC / ASR") -> list[str]:
    """Markdown rows: one per ``rows`` (record-key prefix → label), two columns per attack (ours at ``scale``, the paper's)."""
    al = list(dict.fromkeys(k.split(" | ")[1] for k in records))
    lines = [f"| {corner} | " + " | ".join(f"{a}: {heading} ({scale}) | paper (CIFAR-10)" for a in al) + " |",
             "| --- |" + " --- | --- |" * len(al)]
    for prefix, label in rows.items():
        cells = []
        for a in al:
            s = records[f"{prefix} | {a}"].summary
            theirs = paper.get(prefix, {}).get(a)
            cells += [" / ".join(pct(s.get(m)) for m in metrics) + _health(s, "asr" in metrics), f"{theirs[0]} / {theirs[1]}" if theirs else "—"]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    note = data_note({rows.get(k.split(" | ")[0], k): r for k, r in records.items()})
    return lines + ([f"\n*Note:* {note}."] if note else [])


def _health(summary: dict, asr: bool) -> str:
    """A cell's warning: an ASR that means nothing (the target class below 50 %, or the model putting half the clean
    images in it untriggered), else a class below 50 %."""
    if asr and summary.get("asr_meaningful") is False:
        from ..analysis import MEANINGFUL_TARGET_ACC

        if summary.get("target_class_acc", 1.0) < MEANINGFUL_TARGET_ACC:
            return f" (ASR not meaningful: the target class at {pct(summary.get('target_class_acc'))})"
        return f" (ASR not meaningful: {pct(summary.get('clean_target_rate'))} of clean images in the target class untriggered)"
    low = summary.get("lowest_class_acc")
    return f" ({summary.get('lowest_class')} at {pct(low)})" if low is not None and low < 0.5 else ""


def _t2_needs(scale: str) -> dict:
    out = {f"{d} | {a}": run(d, a, **extras(a)) for a in attacks(scale, TABLE_ATTACKS) for d in ("none", "abl", "pipd", "dbd", "asd")}
    return {**out, **_same_images(scale, attacks(scale, TABLE_ATTACKS))}


def _same_images(scale: str, attack_list) -> dict:
    """No defense on ASD's (and DBD's) training images: what an accuracy cost is measured against, like with like."""
    return {f"none on ASD's images | {a}": run("none", a, **same_data(scale, "asd"), **extras(a)) for a in attack_list}


def _acc_asr(records: dict, defense: str, al) -> dict:
    return {a: {k: records[f"{defense} | {a}"].summary[k] for k in ("acc", "asr")} for a in al}


ACC_COST = 0.03  # "at high ACC": within 3 points of no defense


def verdict_table2(v: dict) -> list:
    return [check(f"{attack_name(a)}: ASD's ASR is low (under 5 %) at an ACC within 3 points of no defense on the same images",
                  x["asr"] < LOW_ASR and x["acc"] >= v["none"][a]["acc"] - ACC_COST,
                  f"ASD {pct(x['acc'])} / {pct(x['asr'])}, no defense {pct(v['none'][a]['acc'])} / {pct(v['none'][a]['asr'])}")
            for a, x in v["asd"].items()]


@register("asd_table2", caption="ACC / ASR of the defenses against the attacks", needs=_t2_needs, kind="table", verdict=verdict_table2,
          claim="ASD: low ASR at high ACC against every attack (CIFAR-10: ACC 93.1-93.7 %, ASR 0.9-1.7 %)",
          reduced="Fashion-MNIST at classroom scale, BadNets and Blend (paper: six attacks, three data sets); PIPD added")
def asd_table2(records, scale):
    al = list(dict.fromkeys(k.split(" | ")[1] for k in records))
    lines = _beside_paper(records, scale, {d: NAMES[d] for d in ("none", "abl", "pipd", "dbd", "asd")}, ASD_TABLE2, corner="defense")
    asd = [records[f"asd | {a}"].summary for a in al]
    number = f"ASD: ACC {pct(min(s['acc'] for s in asd))}-{pct(max(s['acc'] for s in asd))}, ASR {pct(min(s['asr'] for s in asd))}-{pct(max(s['asr'] for s in asd))}"
    return Drawn(None, number, {"markdown": lines, "asd": _acc_asr(records, "asd", al), "none": _acc_asr(records, "none on ASD's images", al)})


def verdict_table3(v: dict) -> list:
    t = v["totals"]
    measured = ", ".join(f"{NAMES[d]} {x:.0f} s" for d, x in t.items())
    return [check("ABL is the fastest", t["abl"] < min(t["asd"], t["dbd"]), measured),
            check("ASD costs less than DBD", t["asd"] < t["dbd"], measured)]


@register("asd_table3", caption="training time per stage of ABL, DBD and ASD", kind="table", verdict=verdict_table3,
          needs=lambda s: {d: run(d, "badnets") for d in ("abl", "dbd", "asd")},
          claim="ABL is fastest; DBD's self-supervised stage dominates; ASD costs a fraction of DBD (CIFAR-10: 3,200 / 45,850 / 9,990 s)",
          reduced="BadNets at the figure's scale; a 'stage' is a phase of the run (ASD: its three stages)")
def asd_table3(records, scale):
    lines = [f"| defense | phases: seconds ({scale}, this machine) | total | paper stages 1 / 2 / 3 (CIFAR-10) | paper total |",
             "| --- | --- | --- | --- | --- |"]
    totals = {}
    for d, rec in records.items():
        per = {k[len("seconds_"):]: v for k, v in rec.summary.items() if k.startswith("seconds_")}
        if d == "asd":  # ASD's phases are its three stages
            per = {f"stage {m['stage']}": 0.0 for m in rec.metrics if "stage" in m} or per
            for m in rec.metrics:
                if "stage" in m:
                    per[f"stage {m['stage']}"] += m["seconds"]
        totals[d] = sum(per.values())
        p = ASD_TABLE3[d]
        lines.append(f"| {NAMES[d]} | " + ", ".join(f"{k} {v:.0f}" for k, v in per.items()) + f" | {totals[d]:.0f} | "
                     f"{p[0]:,} / {p[1]:,} / {p[2]:,} | {p[3]:,} |")
    number = "total seconds: " + ", ".join(f"{NAMES[d]} {t:.0f}" for d, t in totals.items())
    return Drawn(None, number, {"markdown": lines, "totals": totals})


# 003 Table 2 (CIFAR-10, TPR / FPR in %) for the attacks both papers share
PIPD_TABLE2 = {"abl": {"badnets": (94.76, 0.68), "blend": (87.68, 0.64)}, "dbd": {"badnets": (80.67, 48.52), "blend": (99.44, 47.39)},
               "asd": {"badnets": (97.77, 47.70), "blend": (100.0, 47.36)}, "pipd": {"badnets": (100.0, 0.0), "blend": (100.0, 0.0)}}


def verdict_ptable2(v: dict) -> list:
    t = v["table"]
    return [check(f"{attack_name(a)}: PIPD has the highest TPR and the lowest FPR (within a point of the best: one seed)",
                  t["pipd"][a]["tpr"] >= max(t[d][a]["tpr"] for d in t) - NOISE and t["pipd"][a]["fpr"] <= min(t[d][a]["fpr"] for d in t) + NOISE,
                  ", ".join(f"{NAMES[d]} {pct(t[d][a]['tpr'])} / {pct(t[d][a]['fpr'])}" for d in t)) for a in t["pipd"]]


@register("pipd_table2", caption="TPR / FPR of the isolated set", kind="table", verdict=verdict_ptable2,
          needs=lambda s: {f"{d} | {a}": run(d, a) for a in attacks(s, ("badnets", "blend", "wanet")) for d in ("abl", "dbd", "asd", "pipd")},
          claim="PIPD: the highest TPR and the lowest FPR (CIFAR-10: TPR 99.95 %, FPR 0.06 % on average)",
          reduced="BadNets and Blend at classroom (paper: seven attacks); DBD's and ASD's isolated set is their final polluted pool")
def pipd_table2(records, scale):
    al = list(dict.fromkeys(k.split(" | ")[1] for k in records))
    lines = _beside_paper(records, scale, {d: NAMES[d] for d in ("abl", "dbd", "asd", "pipd")}, PIPD_TABLE2, corner="defense",
                          metrics=("tpr", "fpr"), heading="TPR / FPR")
    p = [records[f"pipd | {a}"].summary for a in al]
    number = "PIPD: " + ", ".join(f"{a} TPR {pct(s['tpr'])} FPR {pct(s['fpr'])}" for a, s in zip(al, p))
    table = {d: {a: {k: records[f"{d} | {a}"].summary[k] for k in ("tpr", "fpr")} for a in al} for d in ("abl", "dbd", "asd", "pipd")}
    return Drawn(None, number, {"markdown": lines, "table": table})


FAULTS = (0.2, 0.4, 0.6, 0.8)


def verdict_ptable3(v: dict) -> list:
    return [check(f"at a fault ratio of {k} PIPD still isolates the poison (TPR above 90 %)", x > 0.9, pct(x)) for k, x in v["tpr"].items()]


@register("pipd_table3", caption="PIPD when the poisoned subset P_p holds benign samples (fault ratio)", kind="table", verdict=verdict_ptable3,
          needs=lambda s: {f"{r:.0%}": run("pipd", "badnets", rate=0.05, defense__fault_ratio=r) for r in (FAULTS if s not in ("smoke", "classroom") else (0.2, 0.6))},
          claim="TPR falls and FPR rises slowly as more benign samples are mixed in (BadNets: 100 % / 0 % up to 80 %)",
          reduced="BadNets 5 %, fault ratios 20 % and 60 % at classroom (paper 20-80 %, five attacks)")
def pipd_table3(records, scale):
    lines = ["| fault ratio | TPR / FPR | CA / ASR | benign samples in P_p after the swap |", "| --- | --- | --- | --- |"]
    for k, rec in records.items():
        s = rec.summary
        benign = next((v for m in rec.metrics for key, v in m.items() if key.startswith("benign_in/")), None)
        lines.append(f"| {k} | {pct(s['tpr'])} / {pct(s['fpr'])} | {pct(s['acc'])} / {pct(s['asr'])} | {benign} |")
    tprs = [r.summary["tpr"] for r in records.values()]
    number = "TPR " + ", ".join(f"{k} {pct(r.summary['tpr'])}" for k, r in records.items())
    return Drawn(None, number, {"markdown": lines, "tpr": dict(zip(records, tprs))})


ROUNDS = (1, 2, 3, 5)
PIPD_TABLE4 = {"badnets": {1: (92.98, 99.81), 2: (94.14, 0.54), 3: (94.24, 0.54), 5: (94.23, 0.52)},
               "blend": {1: (93.28, 98.73), 2: (93.61, 50.46), 3: (94.06, 0.72), 5: (94.04, 0.72)}}


def verdict_ptable4(v: dict) -> list:
    out = []
    for a, asr in v["asr"].items():
        ts = list(asr)
        out.append(check(f"{attack_name(a)}: one round leaves the backdoor (ASR at or above 20 %)", asr[ts[0]] >= 0.2, f"{pct(asr[ts[0]])} at {ts[0]}"))
        out.append(check(f"{attack_name(a)}: more rounds remove it (ASR under 5 %)", asr[ts[-1]] < LOW_ASR, f"{pct(asr[ts[-1]])} at {ts[-1]}"))
    return out


@register("pipd_table4", caption="CA / ASR of PIPD with T progressive rounds", kind="table", verdict=verdict_ptable4,
          needs=lambda s: {f"T={t} | {a}": run("pipd", a, defense__rounds=t) for a in attacks(s, ("badnets", "blend"))
                           for t in (ROUNDS if s != "smoke" else (1, 2))},
          claim="one round leaves the backdoor (ASR ~99 %); two or three rounds remove it (BadNets: 99.81 → 0.54 %)",
          reduced="BadNets and Blend at 10 % (paper: four attacks)")
def pipd_table4(records, scale):
    al = list(dict.fromkeys(k.split(" | ")[1] for k in records))
    ts = list(dict.fromkeys(k.split(" | ")[0] for k in records))
    paper = {t: {a: PIPD_TABLE4.get(a, {}).get(int(t[2:])) for a in al} for t in ts}
    lines = _beside_paper(records, scale, {t: t[2:] for t in ts}, paper, corner="T", heading="CA / ASR")
    first, last = ts[0], ts[-1]
    number = "ASR " + ", ".join(f"{a}: {pct(records[f'{first} | {a}'].summary['asr'])} at {first} → {pct(records[f'{last} | {a}'].summary['asr'])} at {last}" for a in al)
    asr = {a: {t: records[f"{t} | {a}"].summary["asr"] for t in ts} for a in al}
    return Drawn(None, number, {"markdown": lines, "asr": asr})


def _t1_attacks(scale: str) -> tuple[str, ...]:
    return ("badnets",) if scale == "smoke" else ("badnets", "blend", "wanet")


DBD_TABLE1 = {"none": {"badnets": (94.92, 100), "blend": (94.14, 98.25), "wanet": (94.29, 98.64)},
              "dbd": {"badnets": (92.41, 0.96), "blend": (92.18, 1.73), "wanet": (91.20, 0.39)}}


def verdict_dtable1(v: dict) -> list:
    return [check(f"{attack_name(a)}: DBD's ASR is under 2 % at a BA within 3 points of no defense on the same images",
                  x["asr"] < 0.02 and x["acc"] >= v["none"][a]["acc"] - ACC_COST,
                  f"DBD {pct(x['acc'])} / {pct(x['asr'])}, no defense {pct(v['none'][a]['acc'])}") for a, x in v["dbd"].items()]


@register("dbd_table1", caption="DBD against BadNets, Blended and WaNet", kind="table", verdict=verdict_dtable1,
          needs=lambda s: {**{f"{d} | {a}": run(d, a) for a in _t1_attacks(s) for d in ("none", "dbd")}, **_same_images(s, _t1_attacks(s))},
          claim="ASR below 2 % against every attack, BA within 2-3 points of no defense (CIFAR-10)")
def dbd_table1(records, scale):
    al = list(dict.fromkeys(k.split(" | ")[1] for k in records))
    lines = _beside_paper(records, scale, {d: NAMES[d] for d in ("none", "dbd")}, DBD_TABLE1, corner="defense", heading="BA / ASR")
    number = "DBD: " + ", ".join(f"{a} {pct(records[f'dbd | {a}'].summary['acc'])} / {pct(records[f'dbd | {a}'].summary['asr'])}" for a in al)
    return Drawn(None, number, {"markdown": lines, "dbd": _acc_asr(records, "dbd", al), "none": _acc_asr(records, "none on ASD's images", al)})
