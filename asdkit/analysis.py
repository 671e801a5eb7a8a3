"""Numbers read off records (never re-training): how well a score separates poisoned from clean samples."""
from __future__ import annotations

import numpy as np

from .records import Record

__all__ = ["MEANINGFUL_TARGET_ACC", "COLLAPSED_TARGET_RATE", "class_health", "asr_caveat", "over_seeds", "clean_hard_mask", "isolation_rates", "detection_auroc", "meta_split_separation", "pool_by_true_class", "pool_share", "pipd_rounds", "stage2_separation", "knn_label_agreement",
           "feature_neighbourhoods"]


# Below this clean test accuracy on the target class, a model barely predicts the target at all, so a low ASR
# says nothing about the backdoor (a starved target class "resists" every trigger).
MEANINGFUL_TARGET_ACC = 0.5
# At or above this share of the clean non-target test images put in the target class with no trigger, a high ASR is
# the model's collapse, not a backdoor.
COLLAPSED_TARGET_RATE = 0.5


def class_health(acc_per_class, target: int, classes=None, clean_target_rate: float | None = None) -> dict:
    """The lowest per-class test accuracy and its class, the target class's own, and whether the ASR means anything.

    It does not when the target class is starved (below :data:`MEANINGFUL_TARGET_ACC`), nor when the model puts half or
    more of the clean non-target images in the target class without any trigger (``clean_target_rate``, if measured).
    """
    acc = [float(a) for a in acc_per_class]
    low = int(np.argmin(acc))
    meaningful = acc[target] >= MEANINGFUL_TARGET_ACC and (clean_target_rate is None or clean_target_rate < COLLAPSED_TARGET_RATE)
    health = {"lowest_class_acc": acc[low], "lowest_class": str(classes[low]) if classes is not None else str(low),
              "target_class_acc": acc[target], "asr_meaningful": meaningful}
    if clean_target_rate is not None:
        health["clean_target_rate"] = float(clean_target_rate)
    return health


def asr_caveat(summary: dict) -> str | None:
    """Why a run's ASR means nothing (:func:`class_health`), in words, or None when it does."""
    if summary.get("asr_meaningful", True):
        return None
    if summary.get("target_class_acc", 1.0) < MEANINGFUL_TARGET_ACC:
        return f"the target class itself is at {summary['target_class_acc']:.0%} test accuracy"
    return f"the model puts {summary['clean_target_rate']:.0%} of the clean non-target images in the target class untriggered"


def _spread(values) -> dict[str, float]:
    v = np.asarray([x for x in values if x is not None], dtype=np.float64)
    if not len(v):
        return {}
    return {"median": float(np.median(v)), "min": float(v.min()), "max": float(v.max()), "mean": float(v.mean()),
            "std": float(v.std(ddof=1)) if len(v) > 1 else 0.0}


def over_seeds(summaries: dict[int, dict]) -> dict:
    """One config over several seeds (seed → run summary): median, range, mean and sd of ACC, ASR, lowest class and time.

    Also the worst class over all seeds and the seeds whose ASR means nothing, each with its reason
    (:func:`asr_caveat`). Numbers repeat exactly on one machine, not across CPU models.
    """
    seeds = sorted(summaries)
    rows = [summaries[s] for s in seeds]
    worst = min(seeds, key=lambda s: summaries[s]["lowest_class_acc"])
    caveats = {s: asr_caveat(summaries[s]) for s in seeds if not summaries[s].get("asr_meaningful", True)}
    return {"seeds": seeds, "acc": _spread(r["acc"] for r in rows), "asr": _spread(r.get("asr") for r in rows),
            "lowest_class_acc": _spread(r["lowest_class_acc"] for r in rows), "seconds": _spread(r["seconds"] for r in rows),
            "worst": {"seed": worst, "class": summaries[worst]["lowest_class"], "acc": summaries[worst]["lowest_class_acc"]},
            "asr_not_meaningful": list(caveats), "asr_caveats": caveats}


def clean_hard_mask(score, is_poison, fraction: float = 0.1):
    """The clean-hard samples (002 Section 5.2): the ``fraction``·N clean samples of largest ``score`` (5,000 of 50,000), as a bool mask."""
    import torch

    score, is_poison = torch.as_tensor(score).float(), torch.as_tensor(is_poison, dtype=torch.bool)
    k = int(round(fraction * len(score)))
    clean_index = (~is_poison).nonzero().squeeze(1)
    hard = torch.zeros_like(is_poison)
    hard[clean_index[torch.argsort(score[clean_index], descending=True, stable=True)[:k]]] = True
    return hard


def isolation_rates(flagged, is_poison) -> dict[str, float]:
    """003 Table 2's TPR (share of the poisoned samples flagged) and FPR (share of the clean ones flagged); 0 where a group is empty."""
    import torch

    flagged, is_poison = torch.as_tensor(flagged, dtype=torch.bool), torch.as_tensor(is_poison, dtype=torch.bool)
    return {"tpr": float((flagged & is_poison).sum() / max(1, int(is_poison.sum()))),
            "fpr": float((flagged & ~is_poison).sum() / max(1, int((~is_poison).sum())))}


def detection_auroc(score, is_poison) -> float:
    """AUROC of ``score`` as a poison detector (higher score ⇒ flagged as poisoned), by scikit-learn."""
    from sklearn.metrics import roc_auc_score

    y = np.asarray(is_poison, dtype=bool)
    if y.all() or not y.any():
        raise ValueError("detection_auroc needs both poisoned and clean samples")
    return float(roc_auc_score(y, np.asarray(score, dtype=np.float64)))


def meta_split_separation(record: Record, *, top_fraction: float = 0.2) -> dict[str, float]:
    """002 Fig. 3 as numbers: at the first stage-3 epoch, AUROC of the L1 loss vs of the loss reduction as poison detectors.

    Over all samples and among the ``top_fraction`` with the largest L1 loss, where the
    poisoned and the clean-hard samples overlap (Fig. 3a): the meta-split's claim is that
    the loss reduction L1(θ) − L1(θ') separates them there while the loss does not.
    """
    stages = record.metric("stage")
    if 3 not in stages:
        raise ValueError(f"{record!r} has no stage-3 epoch; the meta-split never ran.")
    epoch = stages.index(3)
    is_poison = record.arrays["is_poison"].numpy()
    loss = record.epoch_array("l1_loss", epoch).numpy()
    reduction = record.epoch_array("loss_reduction", epoch).numpy()
    top = np.argsort(-loss, kind="stable")[: max(1, int(round(top_fraction * len(loss))))]
    return {
        "epoch": epoch,
        "auroc_loss": detection_auroc(loss, is_poison),
        "auroc_reduction": detection_auroc(reduction, is_poison),
        "top_auroc_loss": detection_auroc(loss[top], is_poison[top]),
        "top_auroc_reduction": detection_auroc(reduction[top], is_poison[top]),
        "top_poisoned": int(is_poison[top].sum()),
        "top_size": int(len(top)),
    }


def pool_by_true_class(record: Record, epoch: int = -1) -> dict[str, list[int]]:
    """What D_C held at ``epoch``, counted by *true* class: all its samples, and the poisoned ones among them.

    The poisoned samples a loss-guided split admits are rarely random: they are those whose
    triggered image still looks like the target class (on Fashion-MNIST with target 0,
    T-shirt, they are triggered shirts). Counting them by true class says which.
    """
    pool = record.epoch_array("clean_pool", epoch)
    true, is_poison = record.arrays["true_label"], record.arrays["is_poison"]
    classes = int(max(true.max(), record.arrays["observed_label"].max())) + 1
    return {"pool": np.bincount(true[pool].numpy(), minlength=classes).tolist(),
            "poisoned": np.bincount(true[pool & is_poison].numpy(), minlength=classes).tolist()}


def pool_share(record: Record, epoch: int = -1) -> np.ndarray:
    """Per true class, the share of its clean training samples in D_C at ``epoch`` over D_C's share of all clean ones (002 Alg. 1):
    1 is a fair share, 0 a class starved of labels. Poisoned samples are left out, so the target class is not counted short for
    the poison the splits rightly keep out."""
    pool, true = record.epoch_array("clean_pool", epoch).numpy(), record.arrays["true_label"].numpy()
    clean = ~record.arrays["is_poison"].numpy()
    classes = int(max(true.max(), record.arrays["observed_label"].max())) + 1
    held = np.bincount(true[pool & clean], minlength=classes).astype(float)
    sizes = np.bincount(true[clean], minlength=classes).astype(float)
    return (held / np.maximum(sizes, 1.0)) / (held.sum() / max(sizes.sum(), 1.0))


def pipd_rounds(record: Record) -> list[dict[str, int]]:
    """003 Eq. 9 as counts, for one PIPD record: per round t (0: after pre-isolation), |P_b| and its poison, and the isolated set and its poison.

    P_b is the benign reference of Eq. 4-5 and only grows; a poisoned sample that a round's
    low class adds to it is counted benign there and, with the authors' output, never
    isolated again. Where the isolated set misses the poison, these counts say whether it
    went into P_b (the channels were not the trigger's) or P_p held none to begin with.
    """
    rounds = [e for e, m in enumerate(record.metrics) if m.get("phase") == "isolation"]
    if not rounds:
        raise ValueError(f"{record!r} has no isolation round; it is not a PIPD record.")
    is_poison = record.arrays["is_poison"].numpy()
    p_p = record.epoch_array("p_p", rounds[0]).numpy()
    first = record.epoch_array("p_b", rounds[0] - 1).numpy()
    rows = [{"round": 0, "p_p": int(p_p.sum()), "p_p_poisoned": int((p_p & is_poison).sum()), "p_b": int(first.sum()),
             "p_b_poisoned": int((first & is_poison).sum()), "isolated": 0, "isolated_poisoned": 0}]
    for e in rounds:
        p_b, isolated = record.epoch_array("p_b", e).numpy(), ~record.epoch_array("clean_pool", e).numpy()
        rows.append({"round": int(record.metrics[e]["round"]), "p_p": rows[0]["p_p"], "p_p_poisoned": rows[0]["p_p_poisoned"],
                     "p_b": int(p_b.sum()), "p_b_poisoned": int((p_b & is_poison).sum()),
                     "isolated": int(isolated.sum()), "isolated_poisoned": int((isolated & is_poison).sum())})
    return rows


def stage2_separation(record: Record) -> dict[str, float]:
    """004 Fig. 3 as numbers, for one DBD record: how well its stage-2 loss (the head's L2) flags poison — AUROC, and the gap of min-max-normalised means.

    The figure compares two heads, one *trained* with SCE and one with CE: run DBD with
    ``head_loss=sce`` and ``head_loss=ce`` and call this on each. The CE and SCE of *one*
    model cannot differ here: with the one-hot label clamped, SCE = α·CE − β·A·(1 − p_y) (A = log 1e-4 < 0), and
    both decrease with p_y, so they rank the samples identically (equal AUROC).
    """
    stage2 = record.snapshots.get("stage2")
    if stage2 is None:
        raise ValueError(f"{record!r} has no 'stage2' snapshot; it is not a DBD record.")
    name = record.config.get("defense_args", {}).get("head_loss", "sce")
    is_poison = record.arrays["is_poison"].numpy()
    loss = stage2[name].double().numpy()
    norm = (loss - loss.min()) / max(loss.max() - loss.min(), 1e-12)  # 004 Fig. 3 normalises the losses to [0, 1]
    return {"head_loss": name, "auroc": detection_auroc(loss, is_poison),
            "normalised_gap": float(norm[is_poison].mean() - norm[~is_poison].mean()),
            "poisoned_median": float(np.median(norm[is_poison])), "clean_median": float(np.median(norm[~is_poison]))}


def knn_label_agreement(features, observed, true, is_poison, *, k: int = 10) -> dict[str, float]:
    """004 Fig. 1 as numbers: for each poisoned point, the share of its k nearest *clean* neighbours (cosine) whose label is
    its observed (target) label, and the share whose label is its true class.

    A backbone that learned the backdoor puts triggered images beside the target class; a
    purified one beside their own class. scikit-learn's NearestNeighbors does the search.
    """
    from sklearn.neighbors import NearestNeighbors

    f = np.asarray(features, dtype=np.float64)
    observed, true, is_poison = (np.asarray(a) for a in (observed, true, is_poison))
    poisoned, clean = np.flatnonzero(is_poison), np.flatnonzero(~is_poison.astype(bool))
    if not len(poisoned) or len(clean) < k:
        raise ValueError(f"knn_label_agreement needs poisoned points and at least k={k} clean ones; got {len(poisoned)} and {len(clean)}.")
    nn = NearestNeighbors(n_neighbors=k, metric="cosine").fit(f[clean])
    _, idx = nn.kneighbors(f[poisoned])
    labels = true[clean][idx]  # clean points: observed = true
    return {"observed": float((labels == observed[poisoned][:, None]).mean()),
            "true": float((labels == true[poisoned][:, None]).mean()),
            "poisoned": int(len(poisoned)), "k": k}


def feature_neighbourhoods(record: Record, snapshot: str, *, k: int = 10) -> dict[str, float]:
    """:func:`knn_label_agreement` on the feature sample a record keeps under ``snapshot`` (DBD: simclr_features; none: features)."""
    snap = record.snapshots.get(snapshot)
    if snap is None:
        raise ValueError(f"{record!r} has no {snapshot!r} snapshot of features.")
    index = snap["index"].numpy()
    a = record.arrays
    return knn_label_agreement(snap["features"].float().numpy(), a["observed_label"].numpy()[index], a["true_label"].numpy()[index],
                               a["is_poison"].numpy()[index], k=k)
