"""What the ground truth says of a run, measured beside it: never shown to the defense, added to the record by the runner.

:class:`PoolTruth` counts poisoned and clean-hard samples in the clean pool a defense logs
(002 Tables 11-12, 003 Table 2's TPR and FPR); :class:`Purification` follows the softmax scores
of fixed poisoned and clean samples (002 Fig. 8); :func:`inject_faults` swaps a share of a
defense's mask for benign samples (003 Table 3), as the paper's authors did by hand.
"""
from __future__ import annotations

from typing import Any

import torch

from .analysis import clean_hard_mask, isolation_rates
from .attacks import PoisonedSet
from .context import EpochLog
from .engine import predict, stream

__all__ = ["PoolTruth", "Purification", "inject_faults"]


class PoolTruth:
    """Poisoned samples in the logged clean pool D_C, clean-hard ones (002 §5.2), TPR/FPR of the isolated rest (003 Table 2)."""

    def __init__(self, is_poison: torch.Tensor) -> None:
        self.is_poison = is_poison

    def epoch(self, log: EpochLog) -> dict[str, Any]:
        """What the ground truth says of this epoch's pool (nothing when the defense logged none)."""
        pool = log.arrays.get("clean_pool")
        if pool is None:
            return {}
        flagged = ~pool  # isolated as (possibly) poisoned
        out = {"poison_in_pool": int((pool & self.is_poison).sum()), **isolation_rates(flagged, self.is_poison)}
        if log.pool_score is not None:  # clean-hard: the hard_fraction·N clean samples of largest score
            hard = clean_hard_mask(log.pool_score, self.is_poison, log.hard_fraction)
            out.update(hard_in_pool=int((pool & hard).sum()), clean_hard=int(hard.sum()))
        return out

    def summary(self, record) -> dict[str, Any]:
        """Over the run: the most poisoned samples ever in D_C (002 Tables 11-12) and the last pool's TPR/FPR."""
        if "clean_pool" not in record.epoch_arrays:
            return {}
        n_poison = int(self.is_poison.sum())
        counts = [m["poison_in_pool"] for m in record.metrics if "poison_in_pool" in m]
        flagged = ~record.epoch_array("clean_pool")  # D_P: what the defense treats as possibly poisoned
        return {
            "max_poison_in_clean_pool": max(counts) if counts else 0,
            "max_poison_fraction_in_clean_pool": max(counts) / n_poison if counts and n_poison else 0.0,
            **isolation_rates(flagged, self.is_poison),
        }


class Purification:
    """002 Fig. 8: the mean softmax score of the training label and of the true class, on fixed poisoned and clean samples."""

    SAMPLE = 500  # poisoned and as many clean training images whose scores each epoch logs

    def __init__(self, truth: PoisonedSet, seed: int, batch_size: int) -> None:
        self.truth, self.batch_size = truth, batch_size
        g = stream(seed, "purification sample")
        pick = lambda m: m.nonzero().squeeze(1)[torch.randperm(int(m.sum()), generator=g)[:self.SAMPLE]]  # noqa: E731
        self.index = torch.cat([pick(truth.is_poison), pick(~truth.is_poison)]).sort().values

    @torch.no_grad()
    def measure(self, model: torch.nn.Module, data) -> dict[str, float]:
        """The three mean scores under ``model`` (the weight average when kept) on the fixed samples of ``data``."""
        t, idx = self.truth, self.index
        if not bool(t.is_poison[idx].any()):
            return {}
        p = predict(model, data.x[idx.to(data.x.device)], normalize=data.normalize, batch_size=self.batch_size).softmax(1).cpu()
        observed = p.gather(1, t.observed_label[idx][:, None]).squeeze(1)
        true = p.gather(1, t.true_label[idx][:, None]).squeeze(1)
        poisoned = t.is_poison[idx]
        return {"score/poisoned_label": round(float(observed[poisoned].mean()), 5), "score/poisoned_true": round(float(true[poisoned].mean()), 5),
                "score/clean_label": round(float(observed[~poisoned].mean()), 5)}


def inject_faults(faults: dict[str, float], state: dict[str, Any], is_poison: torch.Tensor, seed: int) -> dict[str, int]:
    """003 Table 3: swap the requested share of each mask ``state[key]`` for random benign samples outside it; the counts."""
    out: dict[str, int] = {}
    for key, ratio in sorted(faults.items()):
        mask = state[key]
        members = mask.nonzero().squeeze(1)
        k = int(round(ratio * len(members)))
        g = stream(seed, "faults", key)
        outside = (~mask.cpu() & ~is_poison).nonzero().squeeze(1)
        drop = members[torch.randperm(len(members), generator=g)[:k]]
        add = outside[torch.randperm(len(outside), generator=g)[:k]].to(mask.device)
        new = mask.clone()
        new[drop], new[add] = False, True
        state[key] = new
        out.update({f"faults/{key}": k, f"benign_in/{key}": int((new.cpu() & ~is_poison).sum())})
    return out
