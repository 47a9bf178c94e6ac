"""Per-image normalisation of heatmaps. Constant maps become zeros, never NaN."""
from __future__ import annotations

from typing import Literal

import torch

__all__ = ["normalize_maps", "minmax", "maxabs", "NormalizeMode"]

NormalizeMode = Literal["minmax", "relu-minmax", "maxabs", "sum", "none"]
_EPS = 1e-12


def _per_image(maps: torch.Tensor) -> torch.Tensor:
    return maps.reshape(maps.shape[0], -1)


def minmax(maps: torch.Tensor) -> torch.Tensor:
    """(m - min) / (max - min) per image (leading dim); a constant image -> zeros."""
    flat = _per_image(maps)
    lo = flat.amin(dim=1, keepdim=True)
    span = flat.amax(dim=1, keepdim=True) - lo
    out = torch.where(span > _EPS, (flat - lo) / span.clamp_min(_EPS), torch.zeros_like(flat))
    return out.reshape(maps.shape)


def maxabs(maps: torch.Tensor) -> torch.Tensor:
    """m / max|m| per image, into [-1, 1], sign kept; an all-zero image -> zeros."""
    flat = _per_image(maps)
    scale = flat.abs().amax(dim=1, keepdim=True)
    out = torch.where(scale > _EPS, flat / scale.clamp_min(_EPS), torch.zeros_like(flat))
    return out.reshape(maps.shape)


def normalize_maps(maps: torch.Tensor, mode: NormalizeMode = "minmax") -> torch.Tensor:
    """Normalise each map of a batch (B, ...) independently.

    minmax: (m - min)/(max - min) into [0,1]; relu-minmax: minmax of max(m, 0) (the GradSUM
    convention); maxabs: m / max|m| into [-1,1]; sum: m / sum(m) (zeros when the sum is 0);
    none: unchanged. Constant maps give zeros, never NaN.
    """
    if mode == "minmax":
        return minmax(maps)
    if mode == "relu-minmax":
        return minmax(maps.clamp_min(0))
    if mode == "maxabs":
        return maxabs(maps)
    if mode == "sum":
        flat = _per_image(maps)
        total = flat.sum(dim=1, keepdim=True)
        out = torch.where(total.abs() > _EPS, flat / torch.where(total.abs() > _EPS, total, 1.0), 0.0)
        return out.reshape(maps.shape)
    if mode == "none":
        return maps
    raise ValueError(f"unknown normalisation {mode!r}; use one of minmax, relu-minmax, maxabs, sum, none")
