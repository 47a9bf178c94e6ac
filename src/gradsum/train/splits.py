"""Seeded dataset splits: train/validation (optionally stratified) and (stratified) k-fold."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from gradsum.data.subsets import Subset

__all__ = ["Subset", "train_val_split", "kfold", "stratified_kfold", "targets_of", "subset"]


def subset(dataset: Any, indices: Sequence[int]) -> Subset:
    """`Subset(dataset, indices)`."""
    return Subset(dataset, indices)


def targets_of(dataset: Any) -> list[Any]:
    """Every sample's target: ``dataset.targets`` when the dataset provides it (cheap),
    otherwise by reading each sample (slow for generated or on-disk data)."""
    targets = getattr(dataset, "targets", None)
    if targets is not None and not callable(targets) and len(targets) == len(dataset):
        return [t.tolist() if isinstance(t, torch.Tensor) and t.ndim == 0 else t for t in targets]
    return [dataset[i].target for i in range(len(dataset))]


def _labels(labels: Any) -> list[int]:
    if isinstance(labels, torch.Tensor):
        labels = labels.tolist()
    out = []
    for i, y in enumerate(labels):
        if isinstance(y, torch.Tensor):
            y = y.item() if y.numel() == 1 else None
        if isinstance(y, float) and y.is_integer():
            y = int(y)
        if not isinstance(y, int):
            raise ValueError(
                f"stratification needs one class index per sample; sample {i} has {y!r} "
                "(regression or multi-label targets cannot be stratified: pass stratify=None)"
            )
        out.append(y)
    return out


def _size(n_or_dataset: Any) -> int:
    return int(n_or_dataset) if isinstance(n_or_dataset, int) else len(n_or_dataset)


def train_val_split(
    n_or_dataset: Any,
    val_fraction: float = 0.2,
    seed: int = 0,
    stratify: Any = None,
) -> tuple[list[int], list[int]]:
    """Seeded split of indices 0..n-1 into (train, val), about `val_fraction` in val.

    stratify: one class label per sample (list or tensor), or True to read them with
    `targets_of(dataset)`; each class then contributes round(val_fraction * n_c) samples
    to val, so class proportions are kept. Same seed, same split.
    """
    n = _size(n_or_dataset)
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be between 0 and 1 (exclusive), got {val_fraction}")
    if n < 2:
        raise ValueError(f"cannot split {n} sample(s) into train and validation; need at least 2")
    g = torch.Generator().manual_seed(seed)
    if stratify is True:
        stratify = targets_of(n_or_dataset)
    if stratify is None:
        perm = torch.randperm(n, generator=g).tolist()
        n_val = min(max(1, round(val_fraction * n)), n - 1)
        return sorted(perm[n_val:]), sorted(perm[:n_val])
    labels = _labels(stratify)
    if len(labels) != n:
        raise ValueError(f"stratify has {len(labels)} labels for {n} samples")
    val: list[int] = []
    for cls in sorted(set(labels)):
        idx = torch.tensor([i for i, y in enumerate(labels) if y == cls])
        idx = idx[torch.randperm(len(idx), generator=g)].tolist()
        val.extend(idx[: round(val_fraction * len(idx))])
    if not val:
        val = [torch.randperm(n, generator=g)[0].item()]
    val_set = set(val)
    train = [i for i in range(n) if i not in val_set]
    if not train:
        raise ValueError(f"val_fraction {val_fraction} leaves no training samples out of {n}")
    return train, sorted(val)


def kfold(n_or_dataset: Any, k: int = 5, seed: int = 0) -> list[tuple[list[int], list[int]]]:
    """Seeded k-fold: k (train, val) index pairs; the val parts partition 0..n-1 and their
    sizes differ by at most one."""
    n = _size(n_or_dataset)
    _check_k(k, n)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    folds = [sorted(perm[f::k]) for f in range(k)]
    return _pairs(folds, n)


def stratified_kfold(labels: Any, k: int = 5, seed: int = 0) -> list[tuple[list[int], list[int]]]:
    """Seeded stratified k-fold for imbalanced classes: each class's samples are shuffled and
    dealt round-robin over the folds (continuing where the previous class stopped), so every
    fold holds each class's share to within one sample and fold sizes differ by at most one.

    labels: one class index per sample (list or tensor), or a dataset (read by `targets_of`).
    A class with fewer than k samples is missing from some folds.
    """
    if not isinstance(labels, list | tuple | torch.Tensor):
        labels = targets_of(labels)
    y = _labels(labels)
    n = len(y)
    _check_k(k, n)
    g = torch.Generator().manual_seed(seed)
    folds: list[list[int]] = [[] for _ in range(k)]
    slot = 0
    for cls in sorted(set(y)):
        idx = torch.tensor([i for i, v in enumerate(y) if v == cls])
        for i in idx[torch.randperm(len(idx), generator=g)].tolist():
            folds[slot % k].append(i)
            slot += 1
    return _pairs([sorted(f) for f in folds], n)


def _check_k(k: int, n: int) -> None:
    if not isinstance(k, int) or k < 2:
        raise ValueError(f"k-fold needs k >= 2 folds, got {k!r}")
    if k > n:
        raise ValueError(f"cannot make {k} folds from {n} samples; use k <= {n}")


def _pairs(folds: list[list[int]], n: int) -> list[tuple[list[int], list[int]]]:
    out = []
    for fold in folds:
        held = set(fold)
        out.append(([i for i in range(n) if i not in held], fold))
    return out
