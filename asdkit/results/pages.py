"""The results pages, rendered from the CSV alone: medians and ranges over seeds, a flag where a seed's ASR means nothing,
the machines named once per table. The same CSV always renders the same bytes."""
from __future__ import annotations

import csv
import io
import statistics
from pathlib import Path

from ..config import SCALES
from ..data import display_name
from ..style import attack_name, defense_name
from .rows import COLUMNS
from .sets import SETS

__all__ = ["read_csv", "write_csv_text", "render", "headline", "README_MARKERS", "with_headline", "asd_claim", "claim_checks", "claim_holds"]

README_MARKERS = ("<!-- results:headline:start -->", "<!-- results:headline:end -->")
HEADLINE_ATTACKS = ("badnets", "blend", "wanet", "clb")
# ASD's accuracy claim (002 §5.2, Table 1: the backdoor removed at little cost in accuracy), judged on every table that has both runs
ASD_CLAIM = {"acc_drop": 0.03, "asr": 0.03, "lowest_class": 0.5}


def read_csv(path: Path, *, strict: bool = True) -> list[dict[str, str]]:
    """The rows of ``results.csv`` (empty when it does not exist); ``strict=False`` reads another asdkit's columns, the missing empty."""
    path = Path(path)
    if not path.exists():
        return []
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    if rows and not strict:
        return [{c: r.get(c) or "" for c in COLUMNS} for r in rows]
    if rows and list(rows[0]) != list(COLUMNS):
        have = list(rows[0])
        lacks, extra = [c for c in COLUMNS if c not in have], [c for c in have if c not in COLUMNS]
        raise ValueError(f"{path} was written by another asdkit: it lacks the columns {lacks} and has {extra} besides "
                         f"(or their order differs); run `asdkit results --no-train` to rebuild it from the records.")
    return rows


def write_csv_text(rows: list[dict[str, str]]) -> str:
    """The CSV text of ``rows``, sorted by set, then run (so that a rebuild from the same records is byte for byte the same)."""
    out = io.StringIO()
    w = csv.DictWriter(out, fieldnames=COLUMNS, lineterminator="\n")
    w.writeheader()
    for r in sorted(rows, key=lambda r: (r["set"], r["defense"] != "none", r["defense"], r["attack"], r["rate"], r["seed"], r["run"])):
        w.writerow(r)
    return out.getvalue()


def _num(x: str) -> float | None:
    return float(x) if x not in ("", None) else None


def _spread(values: list[float | None], *, pct: bool = True) -> str:
    """Median (min-max) of ``values``, in % with one decimal (``pct``) or as a number with two."""
    v = [x for x in values if x is not None]
    if not v:
        return "—"
    k, fmt = (100.0, "{:.1f}") if pct else (1.0, "{:.2f}")
    med = fmt.format(k * statistics.median(v))
    return med if len(v) == 1 or min(v) == max(v) else f"{med} ({fmt.format(k * min(v))}-{fmt.format(k * max(v))})"


def _seeds(rows) -> str:
    seeds = sorted(int(r["seed"]) for r in rows)
    return f"{seeds[0]}-{seeds[-1]}" if seeds == list(range(seeds[0], seeds[-1] + 1)) and len(seeds) > 1 else ",".join(map(str, seeds))


def _machines(rows) -> str:
    named = sorted({f"{r['machine']}" + (f" ({r['threads']} thread{'s' * (r['threads'] != '1')} a run)" if r["threads"] else "")
                    for r in rows if r["machine"]})
    return "; ".join(named) or "not recorded"


def _groups(rows) -> dict[tuple[str, str, str, str, str], list[dict]]:
    """Rows by (scale, attack, rate, defense, variant), in a stable order: scales small to large, attacks by name, no defense first,
    the preset before its variants."""
    out: dict[tuple[str, str, str, str, str], list[dict]] = {}
    for r in rows:
        out.setdefault((r["scale"], r["attack"], r["rate"], r["defense"], r.get("variant", "")), []).append(r)
    rank = {s: i for i, s in enumerate(SCALES)}
    return dict(sorted(out.items(), key=lambda kv: (rank.get(kv[0][0], len(rank)), kv[0][1], kv[0][2], kv[0][3] != "none", kv[0][3], kv[0][4])))


def _flag(rows) -> str:
    """'†' and why, where a seed's ASR means nothing."""
    bad = [f"seed {r['seed']}: {r['asr_caveat']}" for r in rows if r["asr_meaningful"] == "false"]
    return f" † ({'; '.join(bad)})" if bad else ""


def _table(name: str, rows: list[dict]) -> list[str]:
    scales = len({r["scale"] for r in rows}) > 1
    p_p = any(r["p_p_poison"] for r in rows)
    lines = ["| " + ("scale | " if scales else "") + "attack | rate | defense | seeds | ACC % | ASR % | DER | TPR / FPR % | AUROC | "
             + ("poison in P_p % | " if p_p else "") + "lowest class | minutes |"]
    lines.append("|" + " --- |" * (lines[0].count("|") - 1))
    for (scale, attack, rate, defense, variant), rs in _groups(rows).items():
        low = min(rs, key=lambda r: _num(r["lowest_class_acc"]) if r["lowest_class_acc"] else 1.0)
        iso = "—" if not any(r["tpr"] or r["fpr"] for r in rs) else f"{_spread([_num(r['tpr']) for r in rs])} / {_spread([_num(r['fpr']) for r in rs])}"
        lines.append("| " + (f"{scale} | " if scales else "") + f"{attack_name(attack)} | {100 * float(rate):g} % | {defense_name(defense)}{f' ({variant})' if variant else ''} | {_seeds(rs)} "
                     f"| {_spread([_num(r['acc']) for r in rs])} | {_spread([_num(r['asr']) for r in rs])}{_flag(rs)} "
                     f"| {_spread([_num(r['der']) for r in rs], pct=False)} | {iso} | {_spread([_num(r['auroc']) for r in rs], pct=False)} "
                     + (f"| {_spread([_num(r['p_p_poison']) for r in rs])} " if p_p else "")
                     + f"| {low['lowest_class'] or '—'} {_spread([_num(low['lowest_class_acc'])])} % | {_spread([_num(r['minutes']) for r in rs], pct=False)} |")
    return lines


def claim_holds(acc: float, ref: float, asr: float, lowest: float) -> tuple[bool, bool, bool]:
    """ASD's accuracy claim (002 §5.2) as three checks: ACC within 3 points of no defense's ``ref``, ASR ≤ 3 %, lowest class ≥ 50 %."""
    return ref - acc <= ASD_CLAIM["acc_drop"] + 1e-9, asr <= ASD_CLAIM["asr"] + 1e-9, lowest >= ASD_CLAIM["lowest_class"]


def claim_checks(rows: list[dict]) -> list[dict]:
    """ASD's accuracy claim per (scale, attack, rate) of ``rows``: median ACC within 3 points of no defense's on the same images
    (the rows' references), median ASR ≤ 3 %, no class of any seed below 50 %; the medians, the lowest class and each check."""
    out = []
    for key, rs in _groups(rows).items():
        if key[3] != "asd" or key[4] or not all(r["reference_acc"] for r in rs):
            continue
        acc, ref = statistics.median(float(r["acc"]) for r in rs), statistics.median(float(r["reference_acc"]) for r in rs)
        asr = statistics.median(float(r["asr"]) for r in rs)
        low = min(rs, key=lambda r: float(r["lowest_class_acc"] or 1.0))
        low_acc = float(low["lowest_class_acc"] or 1.0)
        ok = claim_holds(acc, ref, asr, low_acc)
        out.append({"key": key, "rows": rs, "acc": acc, "ref": ref, "asr": asr, "low": low, "low_acc": low_acc, "ok": ok, "holds": all(ok)})
    return out


def _claim_rule() -> str:
    return (f"median ACC at most {100 * ASD_CLAIM['acc_drop']:g} points under no defense on the same images, median ASR ≤ "
            f"{100 * ASD_CLAIM['asr']:g} % and no class of any seed under {100 * ASD_CLAIM['lowest_class']:g} %")


def _mark(ok: bool) -> str:
    return "✓" if ok else "✗"


def asd_claim(rows: list[dict]) -> list[str]:
    """A page's lines judging ASD's accuracy claim per (scale, attack) (:func:`claim_checks`)."""
    out = []
    for c in claim_checks(rows):
        (scale, attack, rate, _, _), n, ok = c["key"], len(c["rows"]), c["ok"]
        out.append(f"- {scale}, {attack_name(attack)} {100 * float(rate):g} %, {n} seed{'s' * (n > 1)}: "
                   f"{'**holds**' if c['holds'] else '**does not hold**'}: "
                   f"ACC {100 * c['acc']:.1f} % against no defense's {100 * c['ref']:.1f} % ({100 * (c['acc'] - c['ref']):+.1f} points) {_mark(ok[0])}; "
                   f"ASR {100 * c['asr']:.1f} % {_mark(ok[1])}; "
                   f"lowest class {c['low']['lowest_class']} {100 * c['low_acc']:.1f} % (seed {c['low']['seed']}) {_mark(ok[2])}.")
    if out:
        out = ["", f"ASD's accuracy claim (002 §5.2: the backdoor removed at little cost in accuracy), judged here as {_claim_rule()}:", ""] + out
    return out


def _page(name: str, rows: list[dict]) -> str:
    about = SETS[name].about if name in SETS else ""
    data = ", ".join(sorted({display_name(r["dataset"]) + (f" ({Path(r['dataset']).name})" if Path(r["dataset"]).suffix else "") for r in rows}))
    lines = [f"# Results: {name}", "", f"{about[0].upper() + about[1:]}." if about else "", "",
             f"`asdkit results --set {name}` trains what is missing and rebuilds this page from the records; "
             "`asdkit results --render` rebuilds it from `results.csv` alone.", "",
             f"{len(rows)} run{'s' * (len(rows) != 1)} on {data}. Medians over the seeds, the range in brackets; ACC, ASR, TPR and FPR in %. DER (BackdoorBench): "
             "(max(0, ΔASR) − max(0, ΔACC) + 1) / 2 against the no-defense run on the same images (1 best, 0.5 no change). "
             "AUROC: the defense's isolation score as a poison detector. † : a seed's ASR means nothing (why, in brackets).", "",
             f"Machines: {_machines(rows)}. Numbers repeat exactly on one machine, not across CPU models.", ""]
    return "\n".join(lines + _table(name, rows) + asd_claim(rows)) + "\n"


def render(rows: list[dict[str, str]]) -> dict[str, str]:
    """Every page's file name and text: one page per result set that has rows, and the index."""
    by_set: dict[str, list[dict]] = {}
    for r in rows:
        by_set.setdefault(r["set"], []).append(r)
    pages = {f"{name}.md": _page(name, rs) for name, rs in sorted(by_set.items())}
    index = ["# Results", "", "Every number here is computed from run records by `asdkit results` and kept, one row per run, in "
             "[`results.csv`](results.csv); the pages are rendered from that file alone (`asdkit results --render`).", "",
             "| set | runs | what it holds |", "| --- | --- | --- |"]
    index += [f"| [{n}]({n}.md) | {len(by_set.get(n, []))} | {s.about} |" for n, s in SETS.items() if n in by_set]
    missing = [n for n in SETS if n not in by_set]
    if missing:
        index += ["", "Not computed yet: " + ", ".join(f"`{n}` (`asdkit results --set {n}`)" for n in missing) + "."]
    pages["README.md"] = "\n".join(index) + "\n"
    return pages


def headline(rows: list[dict[str, str]]) -> str:
    """The README's headline: ACC / ASR medians of every defense against BadNets, Blend, WaNet and CLB at classroom scale, then
    ASD's accuracy claim per result set (:func:`claim_by_set`)."""
    rs = [r for r in rows if r["set"] == "classroom"]
    groups = _groups(rs)
    attacks = [a for a in HEADLINE_ATTACKS if any(k[1] == a for k in groups)]
    if not attacks:
        return "\n".join(["No classroom results yet: `asdkit results --set classroom` computes them."] + claim_by_set(rows))
    defenses = [d for d in ("none", "abl", "asd", "dbd", "pipd") if any(k[3] == d for k in groups)]
    lines = ["| defense | " + " | ".join(f"{attack_name(a)}: ACC / ASR %" for a in attacks) + " |", "| --- |" + " --- |" * len(attacks)]
    for d in defenses:
        cells = []
        for a in attacks:
            g = [r for k, v in groups.items() if k[1] == a and k[3] == d and not k[4] for r in v]
            cells.append("—" if not g else f"{_spread([_num(r['acc']) for r in g])} / {_spread([_num(r['asr']) for r in g])}{'†' if _flag(g) else ''} "
                                           f"({len(g)} seed{'s' * (len(g) > 1)})")
        lines.append(f"| {defense_name(d)} | " + " | ".join(cells) + " |")
    lines += ["", "Classroom scale, medians (range) over seeds; † a seed's ASR means nothing. [results/classroom.md](results/classroom.md) "
                  "says why, with every other column and the machines the runs were measured on."]
    return "\n".join(lines + claim_by_set(rows))


def claim_by_set(rows: list[dict[str, str]]) -> list[str]:
    """The README's table of ASD's accuracy claim per result set and attack (:func:`claim_checks`), each set linked to its page."""
    out = []
    for name in [n for n in SETS if n != "no-poison"]:
        for c in claim_checks([r for r in rows if r["set"] == name]):
            (scale, attack, rate, _, _), ok = c["key"], c["ok"]
            data = ", ".join(sorted({display_name(r["dataset"]) for r in c["rows"]}))
            out.append(f"| [{name}](results/{name}.md) | {data} | {scale} | {attack_name(attack)} {100 * float(rate):g} % | {len(c['rows'])} | "
                       f"{'**holds**' if c['holds'] else 'does not hold'} | {100 * (c['acc'] - c['ref']):+.1f} points {_mark(ok[0])} | "
                       f"{100 * c['asr']:.1f} % {_mark(ok[1])} | {c['low']['lowest_class']} {100 * c['low_acc']:.1f} % {_mark(ok[2])} |")
    if not out:
        return []
    return ["", f"ASD's accuracy claim (002 §5.2), judged as {_claim_rule()}:", "",
            "| set | data | scale | attack | seeds | claim | ACC against no defense | ASR | lowest class |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"] + out


def with_headline(readme: str, rows: list[dict[str, str]]) -> str:
    """``readme`` with the text between its results markers replaced by :func:`headline` (unchanged when it has no markers)."""
    start, end = README_MARKERS
    if start not in readme or end not in readme:
        return readme
    head, rest = readme.split(start, 1)
    _, tail = rest.split(end, 1)
    return f"{head}{start}\n{headline(rows)}\n{end}{tail}"
