"""Subsets of a data set: class-stratified subsets and ASD's clean seed samples."""
from __future__ import annotations

from numbers import Integral

import torch

from .types import ImageSet


def _check_int(value: object, name: str, func: str, low: int, high: int | None = None) -> int:
    if not isinstance(value, Integral) or isinstance(value, bool) or value < low or (high is not None and value > high):
        rng = f"[{low}, {high}]" if high is not None else f"[{low}, inf)"
        raise ValueError(f"The '{name}' parameter of {func} must be an int in the range {rng}. Got {value!r} instead.")
    return int(value)


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def stratified_subset(data: ImageSet, size: int, *, seed: int) -> ImageSet:
    """A class-stratified random subset of exactly ``size`` samples.

    Each class keeps its share of ``data``: ``size · n_c / N`` samples, rounded by the
    largest-remainder method (ties to the lower class index) so the total is exact; which
    samples of a class are kept is random, decided by ``seed``.

    Parameters
    ----------
    data : ImageSet
        The set to draw from.
    size : int
        How many samples to keep, in [0, len(data)].
    seed : int
        Seed of the random choice (≥ 0); the same seed gives the same subset.

    Returns
    -------
    ImageSet
        The subset, samples in their original order, same metadata.

    Raises
    ------
    ValueError
        If ``size`` is outside [0, len(data)] or ``seed`` is negative.
    """
    if not isinstance(data, ImageSet):
        raise ValueError(f"The 'data' parameter of stratified_subset must be an ImageSet. Got {type(data).__name__} instead.")
    size = _check_int(size, "size", "stratified_subset", 0, len(data))
    seed = _check_int(seed, "seed", "stratified_subset", 0)
    return data.subset(_stratified_index(data.y, size, seed))


def _stratified_index(labels: torch.Tensor, size: int, seed: int) -> torch.Tensor:
    n = labels.shape[0]
    if size == 0:
        return torch.empty(0, dtype=torch.int64)
    counts = torch.bincount(labels)
    share = size * counts  # exact integer arithmetic: share // n whole samples, share % n remainder
    take = share // n
    leftover = size - int(take.sum())
    order = torch.sort(share % n, descending=True, stable=True).indices
    take[order[:leftover]] += 1
    gen = _generator(seed)
    chosen = []
    for c in torch.nonzero(take).flatten().tolist():
        members = torch.nonzero(labels == c).flatten()
        chosen.append(members[torch.randperm(members.numel(), generator=gen)[: int(take[c])]])
    return torch.cat(chosen).sort().values


def seed_samples(labels: torch.Tensor, per_class: int, *, seed: int, exclude: torch.Tensor | None = None) -> torch.Tensor:
    """``per_class`` random indices of every class: ASD's clean seed samples (w = 10 a class).

    Parameters
    ----------
    labels : torch.Tensor
        Integer labels, shape (N,). The classes are the values that occur in it.
    per_class : int
        Samples to draw from each class (≥ 1).
    seed : int
        Seed of the random choice (≥ 0); the same seed gives the same indices.
    exclude : torch.Tensor of bool, shape (N,), optional
        Indices where it is True are never drawn (for example the samples an attack
        poisoned, when the seed set must be clean).

    Returns
    -------
    torch.LongTensor
        ``per_class × number of classes`` distinct indices into ``labels``, ascending.

    Raises
    ------
    ValueError
        If ``labels`` is not a 1-D integer tensor, ``exclude`` does not match it, or a class
        has fewer than ``per_class`` samples available (the message names the class and
        how many it has).
    """
    labels = torch.as_tensor(labels)
    if labels.dim() != 1 or labels.dtype.is_floating_point or labels.dtype.is_complex or labels.dtype == torch.bool:
        raise ValueError(
            f"The 'labels' parameter of seed_samples must be a 1-D integer tensor. Got {labels.dtype} {tuple(labels.shape)} instead."
        )
    per_class = _check_int(per_class, "per_class", "seed_samples", 1)
    seed = _check_int(seed, "seed", "seed_samples", 0)
    available = torch.ones_like(labels, dtype=torch.bool)
    if exclude is not None:
        exclude = torch.as_tensor(exclude)
        if exclude.dtype != torch.bool or exclude.shape != labels.shape:
            raise ValueError(
                f"The 'exclude' parameter of seed_samples must be a bool tensor of shape {tuple(labels.shape)}. "
                f"Got {exclude.dtype} {tuple(exclude.shape)} instead."
            )
        available = ~exclude
    gen = _generator(seed)
    chosen = []
    for c in torch.unique(labels).tolist():
        members = torch.nonzero((labels == c) & available).flatten()
        if members.numel() < per_class:
            raise ValueError(
                f"The 'per_class' parameter of seed_samples must be at most the size of every class: "
                f"class {c} has {members.numel()} samples available"
                f"{' (after exclusion)' if exclude is not None else ''}. Got {per_class} instead."
            )
        chosen.append(members[torch.randperm(members.numel(), generator=gen)[:per_class]])
    if not chosen:
        return torch.empty(0, dtype=torch.int64)
    return torch.cat(chosen).sort().values.to(torch.int64)
