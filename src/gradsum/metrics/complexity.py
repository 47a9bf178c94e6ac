"""Complexity of a heatmap: how concentrated its mass is (no model, no ground truth)."""
from __future__ import annotations

import torch

from gradsum.metrics._common import MetricResult, check_maps, warn_nan

__all__ = ["sparseness", "complexity"]


def sparseness(maps: torch.Tensor) -> MetricResult:
    """Gini index of |m| (Chalasani et al., 2020): with a = |m| sorted ascending over the
    n pixels, G = sum_i (2i - n - 1) a_i / (n sum_i a_i), i = 1..n. 0 for a constant map, ->1
    for a single hot pixel. An all-zero map -> NaN."""
    maps = check_maps(maps, "sparseness")
    a = maps.reshape(maps.shape[0], -1).abs().double().sort(dim=1).values
    n = a.shape[1]
    i = torch.arange(1, n + 1, device=a.device, dtype=a.dtype)
    total = a.sum(dim=1)
    zero = total == 0
    warn_nan("sparseness", zero, "the map is all zeros")
    g = ((2 * i - n - 1) * a).sum(dim=1) / (n * torch.where(zero, 1.0, total))
    values = torch.where(zero, torch.nan, g).to(maps.dtype)
    return MetricResult("sparseness", values, {"of": "|map|"})


def complexity(maps: torch.Tensor) -> MetricResult:
    """Entropy of the attribution distribution (Bhatt et al., 2020): p = |m| / sum|m|,
    H = -sum p log p (natural log, 0 log 0 = 0). log(n) for a constant map, 0 for a single
    hot pixel. An all-zero map -> NaN."""
    maps = check_maps(maps, "complexity")
    a = maps.reshape(maps.shape[0], -1).abs().double()
    total = a.sum(dim=1, keepdim=True)
    zero = total[:, 0] == 0
    warn_nan("complexity", zero, "the map is all zeros")
    p = a / torch.where(total == 0, 1.0, total)
    h = -(torch.where(p > 0, p * p.clamp_min(1e-300).log(), torch.zeros_like(p))).sum(dim=1)
    values = torch.where(zero, torch.nan, h).to(maps.dtype)
    return MetricResult("complexity", values, {"of": "|map| / sum|map|", "log": "natural"})
