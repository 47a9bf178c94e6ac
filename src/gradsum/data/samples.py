"""The `Sample` type every dataset yields, and the collate function that batches samples."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

__all__ = ["Sample", "Batch", "collate"]


@dataclass
class Sample:
    """One image with whatever annotations its dataset has.

    image: float32 (3,H,W) in [0,1] (normalisation is a model concern).
    segmentation: int64 (H,W) label ids of the dataset's label table, or None.
    boxes: float32 (N,4) as x1,y1,x2,y2 in pixels (x = column), with box_labels int64 (N,).
    target: class index (int), multi-hot float tensor, or float (regression), or None.
    id: stable string identifying the sample across runs.
    meta: free-form extras (generation parameters, file paths).
    """

    image: torch.Tensor
    id: str
    segmentation: torch.Tensor | None = None
    boxes: torch.Tensor | None = None
    box_labels: torch.Tensor | None = None
    target: Any = None
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class Batch:
    """A batch of samples: images (B,3,H,W); segmentations (B,H,W) when every sample has one;
    boxes and box_labels as lists (their counts differ); targets stacked when possible."""

    images: torch.Tensor
    ids: list[str]
    segmentations: torch.Tensor | None
    boxes: list[torch.Tensor | None]
    box_labels: list[torch.Tensor | None]
    targets: Any
    meta: list[dict[str, Any]]

    def __len__(self) -> int:
        return len(self.ids)


def _stack_targets(targets: list[Any]) -> Any:
    if any(t is None for t in targets):
        return targets
    if all(isinstance(t, torch.Tensor) for t in targets):
        return torch.stack(targets)
    if all(isinstance(t, bool | int) for t in targets):
        return torch.tensor(targets, dtype=torch.int64)
    if all(isinstance(t, int | float) for t in targets):
        return torch.tensor(targets, dtype=torch.float32)
    return targets


def collate(samples: list[Sample]) -> Batch:
    """Batch samples of equal image size (use a transform to resize first)."""
    if not samples:
        raise ValueError("collate got an empty list of samples")
    shapes = {tuple(s.image.shape) for s in samples}
    if len(shapes) != 1:
        raise ValueError(
            f"collate needs images of one size, got {sorted(shapes)}; "
            "resize them with gradsum.data.transforms.Resize first"
        )
    segs = [s.segmentation for s in samples]
    return Batch(
        images=torch.stack([s.image for s in samples]),
        ids=[s.id for s in samples],
        segmentations=torch.stack(segs) if all(s is not None for s in segs) else None,
        boxes=[s.boxes for s in samples],
        box_labels=[s.box_labels for s in samples],
        targets=_stack_targets([s.target for s in samples]),
        meta=[s.meta for s in samples],
    )
