"""Label tables as GradSUM uses them: a dense index per label and the label -> category
(group) matrix. The tables themselves (Cityscapes with its 8 categories, the road scenes'
table with `pothole`, PASCAL VOC) are defined once, in `gradsum.data.labels`."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from gradsum.data.labels import CITYSCAPES, ROADS, VOC, LabelTable

__all__ = ["CITYSCAPES", "ROADS", "VOC", "LabelTable", "LabelIndex"]


@dataclass
class LabelIndex:
    """Dense positions 0..L-1 for the labels of `table` (table order), handling negative ids
    (Cityscapes' license plate is -1) by an offset, and the (L, C) 0/1 matrix from labels
    to the table's categories."""

    table: LabelTable
    offset: int
    lookup: torch.Tensor  # (max_id - min_id + 1,) id + offset -> dense position, -1 if unknown
    groups: torch.Tensor  # (L, C) float64

    @classmethod
    def of(cls, table: LabelTable, device: torch.device | str | None = None) -> LabelIndex:
        ids = table.ids
        offset = -min(0, min(ids))
        lookup = torch.full((max(ids) + offset + 1,), -1, dtype=torch.int64)
        lookup[torch.tensor(ids) + offset] = torch.arange(len(ids))
        categories = table.categories
        groups = torch.zeros(len(ids), len(categories), dtype=torch.float64)
        for i, label in enumerate(table.labels):
            groups[i, categories.index(label.category)] = 1.0
        return cls(table, offset, lookup.to(device), groups.to(device))

    @property
    def names(self) -> list[str]:
        return self.table.names

    @property
    def categories(self) -> list[str]:
        return self.table.categories

    def dense(self, seg: torch.Tensor, source: str = "") -> torch.Tensor:
        """Label ids (..., H, W) -> dense positions; ids outside the table are an error that
        names them (and `source`, e.g. the image ids of the batch)."""
        seg = seg.long()
        lo, hi = int(seg.min()), int(seg.max())
        lookup = self.lookup.to(seg.device)
        if lo + self.offset >= 0 and hi + self.offset < lookup.numel():
            pos = lookup[seg + self.offset]
            if not bool((pos < 0).any()):
                return pos
        shifted = seg + self.offset
        inside = (shifted >= 0) & (shifted < lookup.numel())
        pos = torch.where(inside, lookup[shifted.clamp(0, lookup.numel() - 1)], -1)
        bad = torch.unique(seg[pos < 0]).tolist()[:10]
        where = f" in {source}" if source else ""
        raise ValueError(
            f"segmentation{where} holds label ids {bad} that are not in label table '{self.table.name}'; "
            "pass the dataset's label_table (or map those ids to a label of the table first)"
        )
