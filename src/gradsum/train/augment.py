"""Batch augmentations for training, drawn from an explicit torch.Generator.

Each augmentation is called as ``aug(batch, generator) -> Batch`` (the trainer calls it on a
CPU batch before it moves to the device) and keeps segmentation and boxes aligned with the
image. The random numbers are drawn on the generator's device and applied on the batch's, so
a CPU generator gives the same augmentation for a seed on every device.
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from gradsum.data.samples import Batch

__all__ = ["BatchAugment", "BatchFlip", "BatchBrightness", "BatchRotation", "BatchCompose", "parse_augment"]


class BatchAugment:
    """Base class: a random transform of a whole Batch, ``__call__(batch, generator)``."""

    def __call__(self, batch: Batch, generator: torch.Generator) -> Batch:  # pragma: no cover - abstract
        raise NotImplementedError


def _draw(batch: Batch, p: float, generator: torch.Generator) -> torch.Tensor:
    return torch.rand(len(batch), generator=generator, device=generator.device) < p


class BatchFlip(BatchAugment):
    """Mirror each image left-right with probability p; segmentation and boxes follow
    (x1' = W - x2, x2' = W - x1). With ``negate_target=True`` (steering) a flipped sample's
    regression target changes sign: positive = steer right becomes steer left."""

    def __init__(self, p: float = 0.5, negate_target: bool = True) -> None:
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"flip probability p must be in [0, 1], got {p}")
        self.p = p
        self.negate_target = negate_target

    def __call__(self, batch: Batch, generator: torch.Generator) -> Batch:
        flip = _draw(batch, self.p, generator)
        on_images = flip.to(batch.images.device)
        images = torch.where(on_images.view(-1, 1, 1, 1), batch.images.flip(-1), batch.images)
        segs = batch.segmentations
        if segs is not None:
            segs = torch.where(flip.to(segs.device).view(-1, 1, 1), segs.flip(-1), segs)
        width = batch.images.shape[-1]
        flags = flip.tolist()
        boxes = [
            _flip_boxes(b, width) if (f and b is not None) else b
            for b, f in zip(batch.boxes, flags, strict=True)
        ]
        targets = batch.targets
        if self.negate_target and isinstance(targets, torch.Tensor) and targets.is_floating_point():
            sign = 1.0 - 2.0 * flip.to(targets.device, targets.dtype)
            targets = targets * sign.view(-1, *([1] * (targets.ndim - 1)))
        return dataclasses.replace(batch, images=images, segmentations=segs, boxes=boxes, targets=targets)


def _flip_boxes(boxes: torch.Tensor, width: int) -> torch.Tensor:
    out = boxes.clone()
    out[:, 0] = width - boxes[:, 2]
    out[:, 2] = width - boxes[:, 0]
    return out


class BatchBrightness(BatchAugment):
    """x' = clamp(x * f, 0, 1) with f drawn uniformly from [1 - delta, 1 + delta] per image."""

    def __init__(self, delta: float = 0.2) -> None:
        if not 0.0 <= delta < 1.0:
            raise ValueError(f"brightness delta must be in [0, 1), got {delta}")
        self.delta = delta

    def __call__(self, batch: Batch, generator: torch.Generator) -> Batch:
        f = 1.0 + (torch.rand(len(batch), generator=generator, device=generator.device) * 2.0 - 1.0) * self.delta
        images = (batch.images * f.view(-1, 1, 1, 1).to(batch.images.device, batch.images.dtype)).clamp(0.0, 1.0)
        return dataclasses.replace(batch, images=images)


class BatchRotation(BatchAugment):
    """Rotate each image about its centre by an angle uniform in [-degrees, degrees]
    (bilinear for images, nearest for segmentation, zero fill; segmentation fill
    `seg_fill`, Cityscapes 'unlabeled' = 0). Boxes become the bounding box of their rotated
    corners, clipped to the image."""

    def __init__(self, degrees: float = 5.0, seg_fill: int = 0) -> None:
        if degrees < 0:
            raise ValueError(f"rotation degrees must be >= 0, got {degrees}")
        self.degrees = degrees
        self.seg_fill = seg_fill

    def __call__(self, batch: Batch, generator: torch.Generator) -> Batch:
        b, _, h, w = batch.images.shape
        angle = (torch.rand(b, generator=generator, device=generator.device) * 2.0 - 1.0) * math.radians(self.degrees)
        cos, sin = angle.cos(), angle.sin()
        # affine_grid works in normalised coordinates; correct for the aspect ratio
        theta = torch.zeros(b, 2, 3, device=angle.device)
        theta[:, 0, 0] = cos
        theta[:, 0, 1] = -sin * h / w
        theta[:, 1, 0] = sin * w / h
        theta[:, 1, 1] = cos
        grid = F.affine_grid(theta.to(batch.images.device, batch.images.dtype), [b, 1, h, w], align_corners=False)
        images = F.grid_sample(batch.images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        segs = batch.segmentations
        if segs is not None:
            shifted = (segs - self.seg_fill).unsqueeze(1).to(grid.dtype)
            rotated = F.grid_sample(shifted, grid, mode="nearest", padding_mode="zeros", align_corners=False)
            segs = rotated.squeeze(1).round().to(torch.int64) + self.seg_fill
        boxes = [
            _rotate_boxes(bx, float(c), float(s), h, w) if bx is not None and bx.numel() else bx
            for bx, c, s in zip(batch.boxes, cos.tolist(), sin.tolist(), strict=True)
        ]
        return dataclasses.replace(batch, images=images, segmentations=segs, boxes=boxes)


def _rotate_boxes(boxes: torch.Tensor, cos: float, sin: float, h: int, w: int) -> torch.Tensor:
    # output pixel p maps to input R p (about the centre), so content moves by R^-1
    cx, cy = w / 2.0, h / 2.0
    xs = boxes[:, [0, 2, 2, 0]] - cx
    ys = boxes[:, [1, 1, 3, 3]] - cy
    nx = cos * xs + sin * ys + cx
    ny = -sin * xs + cos * ys + cy
    out = torch.stack([nx.amin(1), ny.amin(1), nx.amax(1), ny.amax(1)], dim=1)
    out[:, [0, 2]] = out[:, [0, 2]].clamp(0, w)
    out[:, [1, 3]] = out[:, [1, 3]].clamp(0, h)
    return out


class BatchCompose(BatchAugment):
    """Apply augmentations in order, all drawing from the same generator."""

    def __init__(self, augments: Sequence[BatchAugment]) -> None:
        self.augments = list(augments)

    def __call__(self, batch: Batch, generator: torch.Generator) -> Batch:
        for aug in self.augments:
            batch = aug(batch, generator)
        return batch


def parse_augment(spec: str | None, task: str = "regression") -> BatchAugment | None:
    """'flip,brightness,rotate' -> BatchCompose of those (flip negates the target only for
    regression); None or '' -> None."""
    if not spec:
        return None
    makers = {
        "flip": lambda: BatchFlip(negate_target=task == "regression"),
        "brightness": BatchBrightness,
        "rotate": BatchRotation,
    }
    parts = [p.strip() for p in spec.split(",") if p.strip()]
    unknown = [p for p in parts if p not in makers]
    if unknown:
        raise ValueError(f"unknown augmentation {unknown[0]!r}; choose from {', '.join(makers)} (comma-separated)")
    augs = [makers[p]() for p in parts]
    return augs[0] if len(augs) == 1 else BatchCompose(augs)
