"""The result of an explanation: maps, per-layer maps, scores and what it cost."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from gradsum.core.normalize import NormalizeMode, normalize_maps

__all__ = ["Attribution", "Cost"]


@dataclass
class Cost:
    """What an explanation cost. forward_passes / backward_passes count each image of a
    batched call once (a batch of 8 through one forward = 8 passes); masks counts perturbed
    inputs evaluated (per block for SISE / Ada-SISE in `masks_per_block`)."""

    forward_passes: int = 0
    backward_passes: int = 0
    masks: int = 0
    seconds: float = 0.0
    masks_per_block: dict[str, int] = field(default_factory=dict)

    def __add__(self, other: Cost) -> Cost:
        blocks = dict(self.masks_per_block)
        for k, v in other.masks_per_block.items():
            blocks[k] = blocks.get(k, 0) + v
        return Cost(
            self.forward_passes + other.forward_passes,
            self.backward_passes + other.backward_passes,
            self.masks + other.masks,
            self.seconds + other.seconds,
            blocks,
        )

    def per_image(self, batch: int) -> dict[str, float]:
        """Counters divided by the batch size (seconds included)."""
        b = max(batch, 1)
        return {
            "forward_passes": self.forward_passes / b,
            "backward_passes": self.backward_passes / b,
            "masks": self.masks / b,
            "seconds": self.seconds / b,
        }


@dataclass
class Attribution:
    """An explanation of a batch.

    maps: (B,H,W) float32 at input resolution, on the input's device, RAW (signed where the
    method is signed; not normalised). layer_maps: name -> (B,h,w) before upsampling (CAM
    family). input_maps: (B,C,H,W) per-channel attributions for gradient methods, else None.
    scores: (B,) the explained target's value on the clean input. targets: (B,) explained
    output index per image (None for callable targets). cost: forward/backward passes, masks,
    seconds. settings: the method's options (seed included) as given.
    """

    method: str
    maps: torch.Tensor
    scores: torch.Tensor
    targets: torch.Tensor | None
    cost: Cost
    layer_maps: dict[str, torch.Tensor] = field(default_factory=dict)
    input_maps: torch.Tensor | None = None
    settings: dict[str, Any] = field(default_factory=dict)

    def normalized(self, mode: NormalizeMode = "minmax") -> torch.Tensor:
        """Per-image normalised copy of `maps` (see `gradsum.core.normalize.normalize_maps`)."""
        return normalize_maps(self.maps, mode)

    def __len__(self) -> int:
        return self.maps.shape[0]

    def __repr__(self) -> str:
        b, h, w = self.maps.shape
        return (
            f"Attribution(method={self.method!r}, maps={b}x{h}x{w}, layers={list(self.layer_maps)}, "
            f"forward={self.cost.forward_passes}, backward={self.cost.backward_passes}, "
            f"seconds={self.cost.seconds:.3f})"
        )
