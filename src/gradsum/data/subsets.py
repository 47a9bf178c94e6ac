"""Subsets of a dataset: the items at given positions, and the items that have boxes."""
from __future__ import annotations

import numbers
from collections.abc import Iterable, Sequence
from typing import Any

from gradsum.data.samples import Sample

__all__ = ["Subset", "IndicesError", "with_boxes"]


class IndicesError(IndexError, ValueError):
    """Positions outside a dataset: a ValueError for the argument, an IndexError for code
    that caught the former one."""


class Subset:
    """The samples of `dataset` at `indices` (indexable, like any gradsum dataset); the
    dataset's `label_table` and `classes` stay visible."""

    def __init__(self, dataset: Any, indices: Sequence[int]) -> None:
        self.dataset = dataset
        if isinstance(indices, str | bytes) or not isinstance(indices, Iterable):
            raise TypeError(f"subset indices must be a list of ints; got {type(indices).__name__}")
        indices = list(indices)
        wrong = [i for i in indices if isinstance(i, bool) or not isinstance(i, numbers.Integral)]
        if wrong:
            raise TypeError(f"subset indices must be ints; got {wrong[0]!r} ({type(wrong[0]).__name__})")
        self.indices = [int(i) for i in indices]
        n = len(dataset)
        bad = [i for i in self.indices if not 0 <= i < n]
        if bad:
            raise IndicesError(f"subset indices {bad[:3]} are outside the dataset of {n} samples "
                               f"(valid 0..{n - 1}; negative positions are not accepted)")

    @property
    def label_table(self) -> Any:
        return getattr(self.dataset, "label_table", None)

    @property
    def classes(self) -> Any:
        return getattr(self.dataset, "classes", None)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> Sample:
        return self.dataset[self.indices[i]]

    def __repr__(self) -> str:
        return f"Subset({len(self)} of {len(self.dataset)})"


def with_boxes(dataset: Any, limit: int | None = None) -> Subset:
    """The samples of `dataset` that have at least one ground-truth box, the first `limit`
    of them (all with None); ValueError when none has a box."""
    keep = []
    for i in range(len(dataset)):
        boxes = dataset[i].boxes
        if boxes is not None and len(boxes) > 0:
            keep.append(i)
            if limit is not None and len(keep) >= limit:
                break
    if not keep:
        raise ValueError("no image of the data has ground-truth boxes; drop --only-with-boxes or use data with boxes")
    return Subset(dataset, keep)
