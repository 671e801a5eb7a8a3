"""The course's exercises and the check a student runs: ``course.check("03.1", answer)`` says right, or gives a hint, never the answer.

Each exercise's answer is computed from the course's records at the notebook's scale, the way
its solution cell computes it, so a check is right at every scale and on every machine.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from .runs import record

__all__ = ["Exercise", "EXERCISES", "check", "expected"]

KINDS = {"int": "a whole number", "number": "a number (a fraction or a percentage)", "name": "a name, as a string"}


@dataclass(frozen=True)
class Exercise:
    """One exercise: what it asks, how its answer is computed from records, what kind of answer it takes and a hint."""

    question: str
    answer: Callable[[], Any]
    kind: str
    hint: str
    tolerance: float = 0.0  # "number": the absolute tolerance, in the answer's own unit (a fraction)


# -- the answers, each computed from the course's records -------------------------------------
def _epochs_for_10k() -> int:
    from ..config import make_config, resolve_epochs

    return resolve_epochs(make_config("classroom"), 10_000)


def _pipd_options() -> int:
    from ..defenses import DEFENSES

    return len(DEFENSES["pipd"].options)


def _fewest_pixels() -> str:
    from ..attacks import make_attack
    from ..data import load
    from .runs import ATTACKS, config

    x = load(config("none-badnets").dataset).test.x[:500]
    changed = {}
    for name in ATTACKS:
        attack = make_attack(name, tuple(x.shape[1:]), seed=config("none-badnets").seed)
        changed[name] = float((attack(x) != x).float().mean())
    return min(changed, key=changed.get)


def _closest_to_floor() -> str:
    from .runs import ATTACKS

    floor = record("clean").summary["asr"]
    gaps = {a: abs(record(f"none-{a}").summary["asr"] - floor) for a in ATTACKS}
    return min(gaps, key=gaps.get)


def _best_auroc_epoch() -> int:
    from ..analysis import detection_auroc

    none = record("none-badnets")
    poison = none.arrays["is_poison"].numpy()
    aurocs = [detection_auroc(-none.epoch_array("train_loss", e).numpy(), poison) for e in range(none.epochs)]
    return int(np.argmax(aurocs)) + 1


def _poison_high_from() -> int:
    asd = record("asd-badnets")
    poison = asd.arrays["is_poison"].numpy().astype(bool)
    above = [float(asd.epoch_array("l1_loss", e).numpy()[poison].mean()) > float(asd.epoch_array("l1_loss", e).numpy()[~poison].mean())
             for e in asd.logged_epochs("l1_loss")]
    epochs = asd.logged_epochs("l1_loss")
    for i in range(len(above)):
        if all(above[i:]):
            return epochs[i] + 1
    return 0


def _abl_tpr_at_5() -> float:
    abl = record("abl-badnets")
    poison = abl.arrays["is_poison"].numpy().astype(bool)
    last = max(e for e, m in enumerate(abl.metrics) if m["phase"] == "isolation")
    losses = abl.epoch_array("lga_loss", last).numpy()
    flagged = np.argsort(losses, kind="stable")[: int(0.05 * len(losses))]
    return float(poison[flagged].sum() / poison.sum())


def _stage2_epoch(asd) -> int:
    stages = asd.metric("stage")
    return max(i for i, s in enumerate(stages) if s == 2) if 2 in stages else len(stages) - 1


def _largest_alpha() -> float:
    from ..defenses.policies import class_agnostic_loss_split

    asd = record("asd-badnets")
    at = asd.metric("stage").index(2) if 2 in asd.metric("stage") else asd.logged_epochs("l1_loss")[-1]
    losses, poison = asd.epoch_array("l1_loss", at), asd.arrays["is_poison"].bool()
    counts = {a: int((class_agnostic_loss_split(losses, rate=a) & poison).sum()) for a in [round(0.05 * k, 2) for k in range(1, 20)]}
    return max((a for a, n in counts.items() if n < 20), default=0.0)


def _class_names(rec) -> list[str]:
    from ..data import class_names

    k = len(rec.metrics[-1]["pool_per_class"])
    return list(class_names(rec.config["dataset"]) or [str(c) for c in range(k)])


def _starved_after_stage2() -> str:
    asd = record("asd-badnets")
    pool = asd.metrics[_stage2_epoch(asd)]["pool_per_class"]
    return _class_names(asd)[int(np.argmin(pool))]


def _meta_split_inputs():
    from ..analysis import clean_hard_mask, meta_split_separation

    asd = record("asd-badnets")
    at = meta_split_separation(asd)["epoch"]
    loss, reduction = asd.epoch_array("l1_loss", at).numpy(), asd.epoch_array("loss_reduction", at).numpy()
    poison = asd.arrays["is_poison"].numpy().astype(bool)
    return loss, reduction, poison, clean_hard_mask(loss, poison, 0.1).numpy()


def _first_poison_gamma() -> float:
    _, reduction, poison, _ = _meta_split_inputs()
    order = np.argsort(reduction, kind="stable")
    return (int(np.argmax(poison[order])) + 1) / len(order)


def _hard_kept_by_meta_split() -> int:
    loss, reduction, _, hard = _meta_split_inputs()
    return int(hard[np.argsort(reduction, kind="stable")[: len(loss) // 2]].sum())


def _pipd_first_round(pipd) -> int:
    return next(e for e, m in enumerate(pipd.metrics) if m["phase"] == "isolation")


def _pipd_best_layer() -> str:
    pipd = record("pipd-badnets")
    first = _pipd_first_round(pipd)
    layers = [k.split("/", 1)[1] for k in pipd.epoch_arrays if k.startswith("discrepancy/")]

    def top_mean(layer: str) -> float:
        d = np.sort(pipd.epoch_array(f"discrepancy/{layer}", first).numpy())
        return float(d[-len(pipd.epoch_array(f"channels/{layer}", first)):].mean())

    return max(layers, key=top_mean)


def _pipd_settled_round() -> int:
    pipd = record("pipd-badnets")
    counts = [m["isolated"] for m in pipd.metrics if m["phase"] == "isolation"]
    return next(t for t in range(1, len(counts) + 1) if all(c == counts[t - 1] for c in counts[t - 1:]))


def _dbd_poison_in_pool() -> int:
    return int([m["poison_in_pool"] for m in record("dbd-badnets").metrics if m["phase"] == "finetune"][-1])


def _dbd_smallest_class() -> str:
    dbd = record("dbd-badnets")
    return _class_names(dbd)[int(np.argmin(dbd.metrics[-1]["pool_per_class"]))]


DEFENSE_RUNS = {"abl": "abl-badnets", "asd": "asd-badnets", "pipd": "pipd-badnets", "dbd": "dbd-badnets"}


def _best_within_floor() -> str:
    floor = record("clean").summary["asr"]
    ok = {d: record(n).summary for d, n in DEFENSE_RUNS.items() if record(n).summary["asr"] <= floor + 0.02}
    return max(ok, key=lambda d: ok[d]["acc"]) if ok else "none"


def _cheapest_asr_point() -> str:
    base = record("none-badnets").summary["asr"]
    cost = {d: record(n).summary["seconds"] / max(1e-9, base - record(n).summary["asr"]) for d, n in DEFENSE_RUNS.items()}
    return min(cost, key=cost.get)


def _fig06_runs() -> int:
    from .. import figures
    from .runs import scale

    _, uses = figures.plan(figures.select("asd_fig06"), scale())
    return len(set(uses["asd_fig06"].values()))


def _most_runs_figure() -> str:
    from .. import figures
    from .runs import scale

    _, uses = figures.plan(figures.select(None), scale())
    return max(sorted(uses), key=lambda f: len(set(uses[f].values())))


EXERCISES: dict[str, Exercise] = {
    "00.1": Exercise("How many epochs does the classroom budget buy on a 10,000-image training set?", _epochs_for_10k, "int",
                     "the budget counts sample visits: divide it by the set's size and round (`asdkit.config.resolve_epochs`)."),
    "00.2": Exercise("How many options does the pipd defense declare?", _pipd_options, "int",
                     "the error of an unknown option lists every option the defense has; count them (or read `asdkit options pipd`)."),
    "01.1": Exercise("Which attack changes the fewest pixels of the first 500 test images?", _fewest_pixels, "name",
                     "compare `(attack(x) != x).float().mean()` over the attacks of the first code cells."),
    "01.2": Exercise("Which attack's ASR is closest to the clean twin's floor?", _closest_to_floor, "name",
                     "subtract the clean twin's ASR from each attack's in the table above."),
    "02.1": Exercise("At which epoch (counting from 1) is the AUROC of −CE highest in the no-defense run?", _best_auroc_epoch, "int",
                     "the histograms' titles print one AUROC per epoch."),
    "02.2": Exercise("From which epoch on does ASD's poison sit at the high-loss end for good (mean SCE of the poisoned above the clean's "
                     "in that epoch and every later one)? 0 if never.", _poison_high_from, "int",
                     "compare the mean of `l1_loss` over poisoned and clean samples, epoch by epoch, in `asd.epoch_array`."),
    "02.3": Exercise("What TPR does ABL's isolation reach if it isolates the lowest 5 % instead of 1 %?", _abl_tpr_at_5, "number",
                     "sort the LGA losses of the last isolation epoch and count the poisoned among the lowest 5 %.", tolerance=0.005),
    "03.1": Exercise("What is the largest class-agnostic split rate α (in steps of 0.05) that puts fewer than 20 poisoned samples in D_C, "
                     "on the losses of the first stage-2 epoch?", _largest_alpha, "number",
                     "call `class_agnostic_loss_split(losses, rate=a)` for each α and count the poisoned samples in the mask.",
                     tolerance=1e-6),
    "03.2": Exercise("Which class has the fewest samples in D_C at the end of stage 2?", _starved_after_stage2, "name",
                     "`pool_per_class` in the metrics of the last stage-2 epoch."),
    "04.1": Exercise("At which γ (a fraction of the training set) does the first poisoned sample enter D_C by the meta-split?",
                     _first_poison_gamma, "number", "sort by loss reduction and find the rank of the first poisoned sample; divide by N.",
                     tolerance=5e-4),
    "04.2": Exercise("How many clean-hard samples does the meta-split keep at γ = 0.5?", _hard_kept_by_meta_split, "int",
                     "take the half with the least loss reduction and count the `hard` samples in it."),
    "05.1": Exercise("Which layer's top-K channels have the largest mean discrepancy in the first round?", _pipd_best_layer, "name",
                     "per layer, the mean of the K largest values of `discrepancy/<layer>`; K is the length of `channels/<layer>`."),
    "05.2": Exercise("After which round does the isolated count stop changing?", _pipd_settled_round, "int",
                     "print `isolated` for every isolation round and find where it stays the same to the end."),
    "06.1": Exercise("How many poisoned samples are in DBD's labelled pool at its last fine-tuning epoch?", _dbd_poison_in_pool, "int",
                     "`poison_in_pool` in the metrics of the fine-tuning epochs."),
    "06.2": Exercise("Which class is the smallest in DBD's labelled pool at the end?", _dbd_smallest_class, "name",
                     "`pool_per_class` in the last epoch's metrics."),
    "07.1": Exercise("Of the four defenses, which keeps the highest accuracy while its ASR is at most 2 points above the clean twin's? "
                     "(\"none\" if none is)", _best_within_floor, "name", "filter the table by ASR %, then take the largest ACC %."),
    "07.2": Exercise("Which defense removes a point of ASR in the fewest seconds?", _cheapest_asr_point, "name",
                     "divide each defense's time by the ASR it removed from the no-defense run's."),
    "99.1": Exercise("How many runs does ASD's Fig. 6 (the stage ablation) read at this scale?", _fig06_runs, "int",
                     "`figures.plan(figures.select(\"asd_fig06\"), SCALE)` returns the runs and which figure uses which."),
    "99.2": Exercise("Which figure reads the most runs at this scale?", _most_runs_figure, "name",
                     "count the distinct runs in each figure's entry of the uses `figures.plan` returns."),
}


def _exercise(key: str) -> Exercise:
    if key not in EXERCISES:
        raise ValueError(f"The course has no exercise {key!r}; its exercises: {', '.join(EXERCISES)}.")
    return EXERCISES[key]


def expected(key: str) -> Any:
    """The answer of exercise ``key`` at the course's scale (for instructors and tests; a student's check never shows it)."""
    return _exercise(key).answer()


def _norm(text: Any) -> str:
    return "".join(ch for ch in str(text).lower() if ch.isalnum())


def _as_number(answer: Any) -> float | None:
    try:
        value = float(str(answer).strip().rstrip("%")) / (100.0 if str(answer).strip().endswith("%") else 1.0)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def check(key: str, answer: Any) -> bool:
    """Whether ``answer`` to exercise ``key`` is right; prints "right" or a hint (and too high / too low for numbers), never the answer."""
    ex = _exercise(key)
    if answer is None or (isinstance(answer, str) and not answer.strip()):
        print(f"{key}: put your answer in `answer` first ({KINDS[ex.kind]}).")
        return False
    want = ex.answer()
    if ex.kind == "name":
        from ..style import attack_name, defense_name

        names = {_norm(want), _norm(attack_name(str(want))), _norm(defense_name(str(want)))}
        ok, direction = _norm(answer) in names, ""
    else:
        got = _as_number(answer)
        if got is None:
            print(f"{key}: {answer!r} is not {KINDS[ex.kind]}.")
            return False
        if ex.kind == "number" and want <= 1.0 < got <= 100.0:  # a percentage for a fraction
            got /= 100.0
        ok = abs(got - want) <= ex.tolerance if ex.kind == "number" else got == want
        direction = "" if ok else ("Too high. " if got > want else "Too low. ")
    print(f"{key}: right." if ok else f"{key}: not yet. {direction}Hint: {ex.hint}")
    return ok
