"""One CSV row per run, read off its record: the config, where it ran, ACC, ASR and whether it means anything, what the defense
set apart, and DER against the no-defense run on the same images."""
from __future__ import annotations

import json
from typing import Any

from ..analysis import asr_caveat
from ..config import RunConfig
from ..records import Record

__all__ = ["COLUMNS", "der", "row", "isolation_auroc", "p_p_poison", "variant"]
# the axes a results table spans by itself (a row, a column, the seeds): not part of a run's variant
AXES = ("attack", "attack_args", "rate", "target", "seed", "dataset", "precision", "device", "defense", "scale")

CONFIG_COLUMNS = ("defense", "attack", "rate", "target", "label_mode", "dataset", "resolution", "scale", "seed", "train_size",
                  "test_size", "model", "model_args", "precision", "epochs", "budget", "batch_size", "optimizer", "lr", "momentum",
                  "weight_decay", "schedule", "milestones", "pad", "eval_batch_size", "attack_args", "defense_args")
COLUMNS = ("set", "run", "variant", *CONFIG_COLUMNS, "machine", "threads", "acc", "asr", "asr_meaningful", "asr_caveat", "lowest_class",
           "lowest_class_acc", "tpr", "fpr", "auroc", "p_p_poison", "minutes", "reference", "reference_acc", "reference_asr", "der")
# the per-sample score each defense sets samples apart by, the one of its last split, and the side the poison is meant to be on
ISOLATION_SCORE = {"abl": ("lga_loss", -1.0), "asd": ("l1_loss", 1.0), "dbd": ("sce_loss", 1.0), "pipd": ("pipd_score", 1.0)}


def der(acc: float, asr: float, ref_acc: float, ref_asr: float) -> float:
    """BackdoorBench's defense effectiveness rating: (max(0, ΔASR) − max(0, ΔACC) + 1) / 2, Δ the drop from the no-defense run.

    1 is the best (the whole ASR removed at no accuracy cost), 0 the worst, 0.5 nothing gained or lost.
    """
    return (max(0.0, ref_asr - asr) - max(0.0, ref_acc - acc) + 1.0) / 2.0


def isolation_auroc(record: Record) -> float | None:
    """The AUROC of the defense's isolation score of its last split as a poison detector (None without one, or without poison)."""
    from ..analysis import detection_auroc

    name, sign = ISOLATION_SCORE.get(record.config["defense"], (None, 1.0))
    if name is None or name not in record.epoch_arrays:
        return None
    poison = record.arrays["is_poison"].numpy().astype(bool)
    if not poison.any() or poison.all():
        return None
    score = record.epoch_array(name, record.logged_epochs(name)[-1]).numpy()
    return detection_auroc(sign * score, poison)


def variant(config: RunConfig) -> str:
    """What ``config`` changes from its scale's preset beyond a table's axes, as ``key=value`` pairs (empty: the preset)."""
    from ..config import make_config

    base, mine = make_config(config.scale, defense=config.defense).to_dict(), config.to_dict()
    out = [f"{k}={mine[k]}" for k in mine if k not in AXES and k not in ("defense_args",) and mine[k] != base.get(k)]
    out += [f"{k}={v}" for k, v in mine["defense_args"].items() if base["defense_args"].get(k) != v]
    return ", ".join(out)


def p_p_poison(record: Record) -> float | None:
    """PIPD: the share of P_p, the lowest LGA losses after pre-isolation (003 §3.1), that is poisoned (None for other defenses)."""
    if "p_p" not in record.epoch_arrays:
        return None
    p_p = record.epoch_array("p_p", record.logged_epochs("p_p")[0]).bool()
    return float(record.arrays["is_poison"].bool()[p_p].float().mean()) if p_p.any() else None


def _cell(value: Any) -> str:
    """A CSV cell: numbers as Python writes them, dicts and lists as JSON, None as empty; the shared subsets' folder written
    as ``$ASDKIT_SHARED_DATA``, so that the committed CSV names no machine's paths."""
    from ..data import shared_folder

    if value is None:
        return ""
    if isinstance(value, (dict, list, tuple)):
        text = json.dumps(value, sort_keys=True)
    elif isinstance(value, bool):
        return "true" if value else "false"
    else:
        text = str(value)
    return text.replace(str(shared_folder()), "$ASDKIT_SHARED_DATA")


def row(set_name: str, config: RunConfig, record: Record, reference: Record | None) -> dict[str, str]:
    """The CSV row of one run (``reference``: the no-defense record on the same images, for DER)."""
    s, c = record.summary, config.to_dict()
    machine, _, threads = (s.get("machine") or "").rpartition(", ")
    if not threads.endswith(("thread", "threads")):
        machine, threads = s.get("machine") or "", ""
    values: dict[str, Any] = {"set": set_name, "run": record.path.parent.name if record.path else "", "variant": variant(config),
                              **{k: c.get(k) for k in CONFIG_COLUMNS},
                              "precision": s.get("precision", c.get("precision")), "machine": machine,
                              "threads": threads.split()[0] if threads else "", "acc": s.get("acc"), "asr": s.get("asr"),
                              "asr_meaningful": s.get("asr_meaningful"), "asr_caveat": asr_caveat(s), "lowest_class": s.get("lowest_class"),
                              "lowest_class_acc": s.get("lowest_class_acc"), "tpr": s.get("tpr") if config.rate > 0 else None,  # no poison: no TPR
                              "fpr": s.get("fpr"),
                              "auroc": isolation_auroc(record), "p_p_poison": p_p_poison(record), "minutes": round(s.get("seconds", 0.0) / 60.0, 2)}
    if reference is not None:
        r = reference.summary
        values.update(reference=reference.path.parent.name if reference.path else "", reference_acc=r.get("acc"), reference_asr=r.get("asr"),
                      der=der(s["acc"], s["asr"], r["acc"], r["asr"]) if config.rate > 0 else None)
    return {k: _cell(values.get(k)) for k in COLUMNS}
