"""Seeded train/val split and (stratified) k-fold."""
from __future__ import annotations

from collections import Counter

import pytest
import torch

import gradsum.train as T
from gradsum.data.samples import Sample


def test_train_val_split_partition_and_seed() -> None:
    tr, va = T.train_val_split(100, val_fraction=0.2, seed=1)
    assert len(va) == 20 and sorted(tr + va) == list(range(100))
    assert T.train_val_split(100, 0.2, seed=1) == (tr, va)
    assert T.train_val_split(100, 0.2, seed=2) != (tr, va)
    with pytest.raises(ValueError, match="val_fraction"):
        T.train_val_split(10, 1.0)
    with pytest.raises(ValueError, match="at least 2"):
        T.train_val_split(1, 0.5)


def test_stratified_split_keeps_proportions() -> None:
    labels = [0] * 90 + [1] * 10
    tr, va = T.train_val_split(100, 0.2, seed=0, stratify=labels)
    assert Counter(labels[i] for i in va) == {0: 18, 1: 2}
    assert sorted(tr + va) == list(range(100))
    data = [Sample(image=torch.zeros(3, 2, 2), id=str(i), target=y) for i, y in enumerate(labels)]
    assert T.train_val_split(data, 0.2, seed=0, stratify=True) == (tr, va)
    with pytest.raises(ValueError, match="regression or multi-label"):
        T.train_val_split(3, 0.5, stratify=[0.5, 0.1, 0.2])


def test_kfold_partitions() -> None:
    folds = T.kfold(23, k=5, seed=0)
    vals = [v for _, v in folds]
    assert sorted(i for v in vals for i in v) == list(range(23))
    assert max(map(len, vals)) - min(map(len, vals)) <= 1
    for tr, va in folds:
        assert not set(tr) & set(va) and len(tr) + len(va) == 23
    with pytest.raises(ValueError, match="k >= 2"):
        T.kfold(10, k=1)
    with pytest.raises(ValueError, match="cannot make 11 folds"):
        T.kfold(10, k=11)


def test_stratified_kfold_imbalanced() -> None:
    labels = torch.tensor([0] * 47 + [1] * 11 + [2] * 4)
    folds = T.stratified_kfold(labels, k=4, seed=3)
    assert T.stratified_kfold(labels, k=4, seed=3) == folds
    vals = [v for _, v in folds]
    assert sorted(i for v in vals for i in v) == list(range(62))
    assert max(map(len, vals)) - min(map(len, vals)) <= 1
    for cls, total in ((0, 47), (1, 11), (2, 4)):
        counts = [sum(int(labels[i]) == cls for i in v) for v in vals]
        assert sum(counts) == total and max(counts) - min(counts) <= 1


def test_subset_and_targets_of() -> None:
    data = [Sample(image=torch.zeros(3, 2, 2), id=str(i), target=i % 3) for i in range(9)]
    sub = T.subset(data, [2, 5, 8])
    assert len(sub) == 3 and [s.id for s in (sub[0], sub[1], sub[2])] == ["2", "5", "8"]
    assert T.targets_of(sub) == [2, 2, 2]
    with pytest.raises(IndexError, match="outside the dataset of 9"):
        T.subset(data, [9])


def test_cached_dataset_reads_each_sample_once() -> None:
    calls: list[int] = []

    class Counting:
        classes = ["a", "b"]

        def __len__(self) -> int:
            return 4

        def __getitem__(self, i: int) -> Sample:
            calls.append(i)
            return Sample(image=torch.zeros(3, 2, 2), id=str(i), target=i % 2)

    cached = T.CachedDataset(Counting())
    first = [cached[i].id for i in range(4)]
    again = [cached[i].id for i in range(4)] + [cached[-1].id]
    assert first == ["0", "1", "2", "3"] and again == first + ["3"]
    assert calls == [0, 1, 2, 3] and cached.classes == ["a", "b"] and len(cached) == 4
