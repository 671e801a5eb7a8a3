"""The papers' main tables, printed beside the figures in figures/README.md with the paper's numbers in a neighbouring column."""
from __future__ import annotations

from .common import attacks, pct, run
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


def _rate(a: str) -> dict:
    return {"rate": 0.25} if a == "clb" else {}


def _t2_needs(scale: str) -> dict:
    return {f"{d} | {a}": run(d, a, **_rate(a)) for a in attacks(scale, TABLE_ATTACKS) for d in ("none", "abl", "pipd", "dbd", "asd")}


@register("asd_table2", caption="ACC / ASR of the defenses against the attacks", needs=_t2_needs, kind="table",
          claim="ASD: low ASR at high ACC against every attack (CIFAR-10: ACC 93.1-93.7 %, ASR 0.9-1.7 %)",
          reduced="Fashion-MNIST at classroom scale, BadNets and Blend (paper: six attacks, three data sets); PIPD added")
def asd_table2(records, scale):
    al = list(dict.fromkeys(k.split(" | ")[1] for k in records))
    head = "| defense | " + " | ".join(f"{a}: ACC / ASR ({scale}) | paper (CIFAR-10)" for a in al) + " |"
    lines = [head, "| --- |" + " --- | --- |" * len(al)]
    for d in ("none", "abl", "pipd", "dbd", "asd"):
        cells = []
        for a in al:
            s = records[f"{d} | {a}"].summary
            paper = ASD_TABLE2.get(d, {}).get(a)
            cells += [f"{pct(s['acc'])} / {pct(s['asr'])}", f"{paper[0]} / {paper[1]}" if paper else "—"]
        lines.append(f"| {NAMES[d]} | " + " | ".join(cells) + " |")
    asd = [records[f"asd | {a}"].summary for a in al]
    number = f"ASD: ACC {pct(min(s['acc'] for s in asd))}-{pct(max(s['acc'] for s in asd))}, ASR {pct(min(s['asr'] for s in asd))}-{pct(max(s['asr'] for s in asd))}"
    return Drawn(None, number, all(s["asr"] < 0.1 for s in asd), {"markdown": lines})


@register("asd_table3", caption="training time per stage of ABL, DBD and ASD", kind="table",
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
    return Drawn(None, number, bool(totals["abl"] < totals["asd"] < totals["dbd"]), {"markdown": lines})
