"""Keep generated or decoded samples in memory after their first use."""
from __future__ import annotations

from typing import Any

from gradsum.data.samples import Sample

__all__ = ["CachedDataset"]


class CachedDataset:
    """Wraps an indexable dataset and remembers each Sample the first time it is read, so
    later epochs do not regenerate (RoadScenes) or decode (image files) it again.
    Memory: about 4*3*H*W bytes per image (317 MB for 2,000 images of 66x200).
    Other attributes (classes, label_table, meta, ...) are those of the wrapped dataset."""

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset
        self._items: list[Sample | None] = [None] * len(dataset)

    def __len__(self) -> int:
        return len(self._items)

    def __getitem__(self, index: int) -> Sample:
        i = int(index)
        if i < 0:
            i += len(self._items)
        item = self._items[i]
        if item is None:
            item = self.dataset[i]
            self._items[i] = item
        return item

    def __getattr__(self, name: str) -> Any:
        if name in ("dataset", "_items"):
            raise AttributeError(name)
        return getattr(self.dataset, name)

    def __repr__(self) -> str:
        cached = sum(x is not None for x in self._items)
        return f"CachedDataset({self.dataset!r}, cached {cached}/{len(self)})"
