"""Per-image normalisation of heatmaps. Constant maps become zeros, never NaN."""
from __future__ import annotations

from typing import Literal

import torch

__all__ = ["normalize_maps", "minmax", "minmax_affine", "maxabs", "NormalizeMode"]

NormalizeMode = Literal["minmax", "relu-minmax", "maxabs", "sum", "none"]
_EPS = 1e-12


def _per_image(maps: torch.Tensor) -> torch.Tensor:
    return maps.reshape(maps.shape[0], -1)


def minmax_affine(maps: torch.Tensor, relu: bool = False,
                  sync: bool = True) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """minmax as an affine map per image: (values, lo, scale), each (B, N) / (B, 1) / (B, 1),
    with minmax(maps) = (values - lo) * scale. values = maps flattened (ReLU-ed when `relu`
    and some value is negative); scale = 0 for a constant image. sync=False always applies
    the ReLU instead of asking the device whether it is needed (no host synchronisation)."""
    flat = _per_image(maps)
    lo, hi = flat.amin(dim=1, keepdim=True), flat.amax(dim=1, keepdim=True)  # 20x faster than aminmax(dim=1)
    if relu and (not sync or bool((lo < 0).any())):
        flat, lo, hi = flat.clamp_min(0), lo.clamp_min(0), hi.clamp_min(0)
    span = hi - lo
    return flat, lo, torch.where(span > _EPS, 1 / span.clamp_min(_EPS), torch.zeros_like(span))


def minmax(maps: torch.Tensor, relu: bool = False) -> torch.Tensor:
    """(m - min) / (max - min) per image (leading dim), of max(m, 0) when `relu`; a constant
    image -> zeros."""
    flat, lo, scale = minmax_affine(maps, relu)
    out = torch.addcmul(-lo * scale, flat, scale)  # (m - lo) * scale in one pass
    return out.clamp_(0, 1).reshape(maps.shape)  # rounding may leave the max at 1 + 1 ulp


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
        return minmax(maps, relu=True)
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
