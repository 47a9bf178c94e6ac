"""Subsets of a dataset: the items at given positions, the items that have boxes, and the
first images of a dataset as one tensor (`dataset_images`), and its class names for display
(`class_names`)."""
from __future__ import annotations

import numbers
from collections.abc import Iterable, Sequence
from typing import Any

import torch

from gradsum.data.samples import Sample

__all__ = ["Subset", "IndicesError", "with_boxes", "dataset_images", "class_names"]


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


def dataset_images(dataset: Any, limit: int | None = None) -> tuple[torch.Tensor, torch.Tensor | None, list[str]]:
    """(images (N,C,H,W) float in [0,1], int labels (N,) or None, ids) of the first `limit`
    items of a tensor (N,C,H,W) or an indexable dataset of Samples. labels is None unless
    every sample's target is one integer."""
    if isinstance(dataset, torch.Tensor):
        if dataset.ndim != 4:
            raise ValueError(f"an image tensor must be (N,C,H,W); got shape {tuple(dataset.shape)}")
        x = dataset[:limit].float()
        return x, None, [str(i) for i in range(x.shape[0])]
    if not (hasattr(dataset, "__len__") and hasattr(dataset, "__getitem__")):
        raise TypeError(f"dataset must be an (N,C,H,W) tensor or an indexable dataset of Samples; got {type(dataset).__name__}")
    n = len(dataset) if limit is None else min(limit, len(dataset))
    if n == 0:
        raise ValueError("the dataset is empty; the layer and attack surveys need images")
    samples = [dataset[i] for i in range(n)]
    x = torch.stack([s.image for s in samples]).float()
    targets = [getattr(s, "target", None) for s in samples]
    labels = None
    if all(isinstance(t, int | torch.Tensor) and not isinstance(t, bool) and torch.as_tensor(t).numel() == 1
           for t in targets):
        labels = torch.as_tensor([int(t) for t in targets], dtype=torch.int64)
    return x, labels, [str(getattr(s, "id", i)) for i, s in enumerate(samples)]


def class_names(dataset: Any, n_classes: int, given: Sequence[str] | None = None) -> list[str]:
    """Display names of `n_classes` classes: `given`, else the dataset's `classes` attribute,
    underscores as spaces ("no_pothole" -> "no pothole"); "class k" when neither names them all."""
    names = list(given) if given is not None else getattr(dataset, "classes", None)
    if not names or len(names) < n_classes:
        return [f"class {k}" for k in range(n_classes)]
    return [str(c).replace("_", " ") for c in names]
