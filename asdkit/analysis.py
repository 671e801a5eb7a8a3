"""Numbers read off records (never re-training): how well a score separates poisoned from clean samples."""
from __future__ import annotations

import numpy as np

from .records import Record

__all__ = ["detection_auroc", "meta_split_separation", "pool_by_true_class"]


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
