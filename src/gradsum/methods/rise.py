"""RISE: randomized input sampling (Petsiuk et al. 2018).

M = (1 / (N p1)) sum_i p_c(x * m_i) m_i over N random smooth masks m_i: a binary s x s grid
(each cell on with probability p1) upsampled bilinearly to (s+1) * ceil(H/s) and cropped at
a random offset within one cell. The grids and offsets are drawn on the CPU from a
torch.Generator seeded with `seed` (the same masks on every device), materialised on the
input's device and cached by (N, s, p1, H, W, seed, device). Every image of a batch uses the
same N masks, so an image's map depends on the seed and that image alone.

Masked-out pixels take the value 0 of the model's input space (x * m_i), as in the paper. The
reference code masks mean-normalised ImageNet inputs, so its 0 is the mean colour; for a
model fed [0,1] images 0 is black, which on some tasks is itself evidence for the class
(dark potholes: every masked road scene scores p ~ 1). `baseline` makes the masked-out
value explicit: baseline + (x - baseline) * m_i, e.g. "mean" (each image's channel means).
"""
from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from gradsum.core.attribution import Attribution, Cost
from gradsum.core.batching import BatchSize, Progress
from gradsum.core.targets import Target
from gradsum.methods._args import check_choice, check_int, check_number, check_seed
from gradsum.methods.base import Explainer
from gradsum.methods.occlusion import broadcast_baseline
from gradsum.methods.perturbation import (
    ScoreMode,
    check_batch_size,
    mask_target,
    score_items,
    score_label,
)
from gradsum.methods.registry import register

__all__ = ["RISE", "RiseMasks", "rise_masks"]

_CACHE: OrderedDict[tuple, RiseMasks] = OrderedDict()
_CACHE_ENTRIES = 4
_DENSE_BYTES = 128 * 2**20  # keep materialised masks when they fit in this many bytes


@dataclass
class RiseMasks:
    """N RISE masks of size (H, W): the binary grids (N, s, s), the crop offsets (N, 2) and,
    when small enough, the materialised masks (N, H, W)."""

    grids: torch.Tensor
    offsets: torch.Tensor
    size: tuple[int, int]
    cell: tuple[int, int]
    dense: torch.Tensor | None = None

    def __len__(self) -> int:
        return self.grids.shape[0]

    def take(self, index: torch.Tensor) -> torch.Tensor:
        """Masks (n, H, W) float32 for mask indices `index` (n,)."""
        if self.dense is not None:
            return self.dense[index]
        return self._materialise(index)

    def _materialise(self, index: torch.Tensor) -> torch.Tensor:
        s = self.grids.shape[-1]
        (h, w), (ch, cw) = self.size, self.cell
        up = F.interpolate(self.grids[index][:, None], size=((s + 1) * ch, (s + 1) * cw), mode="bilinear",
                           align_corners=False)[:, 0]
        off = self.offsets[index]
        ys = off[:, 0, None] + torch.arange(h, device=up.device)  # (n,H)
        xs = off[:, 1, None] + torch.arange(w, device=up.device)  # (n,W)
        n_idx = torch.arange(up.shape[0], device=up.device)[:, None, None]
        return up[n_idx, ys[:, :, None], xs[:, None, :]]


def rise_masks(n: int, grid: int, p1: float, size: tuple[int, int], seed: int,
               device: torch.device | str = "cpu") -> RiseMasks:
    """The N RISE masks for (grid s, p1, size, seed): drawn on the CPU (the same masks on
    every device), kept on `device`, cached."""
    device = torch.device(device)
    key = (n, grid, float(p1), tuple(size), seed, str(device))
    if key in _CACHE:
        _CACHE.move_to_end(key)
        return _CACHE[key]
    gen = torch.Generator(device="cpu").manual_seed(seed)
    h, w = size
    cell = (math.ceil(h / grid), math.ceil(w / grid))
    grids = (torch.rand((n, grid, grid), generator=gen) < p1).float().to(device)
    offsets = torch.stack([
        torch.randint(0, cell[0], (n,), generator=gen),
        torch.randint(0, cell[1], (n,), generator=gen),
    ], dim=1).to(device)
    masks = RiseMasks(grids, offsets, (h, w), cell)
    if n * h * w * 4 <= _DENSE_BYTES:
        masks.dense = masks._materialise(torch.arange(n, device=device))
    _CACHE[key] = masks
    while len(_CACHE) > _CACHE_ENTRIES:
        _CACHE.popitem(last=False)
    return masks


@register("rise", family="perturbation", passes="N masked forwards (default 4000)",
          paper="Petsiuk et al. 2018, RISE: Randomized Input Sampling for Explanation of Black-box Models")
class RISE(Explainer):
    """RISE (Petsiuk et al. 2018): M = (1/(N p1)) sum_i p_c(x * m_i) m_i.

    n_masks N (default 4000), grid s (7), p1 (0.5). baseline: the masked-out value, 0 (default,
    the paper's x * m), a number, a tensor broadcastable to the input, or "mean" (each image's
    per-channel mean; the reference code's 0 on mean-normalised inputs). score="probability" (default): the
    softmax probability of the explained class for classifiers, the raw output (x sign) for
    regressors; score="target": the user's target as given. Every image of a batch uses the
    same N masks; each is scored with its own target.
    """

    def __init__(self, model: nn.Module, layer: Any = None, *, n_masks: int = 4000, grid: int = 7, p1: float = 0.5,
                 score: ScoreMode = "probability", seed: int = 0, batch_size: BatchSize = "auto",
                 progress: Progress | None = None, baseline: float | torch.Tensor | str = 0.0):
        super().__init__(model, layer=layer)
        self.n_masks = check_int(n_masks, "n_masks")
        self.grid = check_int(grid, "grid")
        self.p1 = check_number(p1, "p1", low=0, high=1, low_open=True, high_open=True,
                               meaning="probability that a grid cell is kept")
        self.score = check_choice(score, "score", ("probability", "target"))
        self.seed = check_seed(seed)
        if isinstance(baseline, str) and baseline != "mean":
            raise ValueError(f"baseline must be a number, a tensor or 'mean'; got {baseline!r}")
        if isinstance(baseline, bool) or not isinstance(baseline, int | float | torch.Tensor | str):
            raise TypeError(f"baseline must be a number, a tensor or 'mean'; got {type(baseline).__name__}")
        if isinstance(baseline, int | float):
            check_number(baseline, "baseline", meaning="the value of masked-out pixels")
        elif isinstance(baseline, torch.Tensor) and (
                not baseline.is_floating_point() or not bool(torch.isfinite(baseline).all())):
            raise ValueError("baseline tensor must be floating point with finite values")
        self.baseline = baseline
        self.batch_size, self.progress = check_batch_size(batch_size), progress

    def masks(self, size: tuple[int, int], device: torch.device | str = "cpu") -> RiseMasks:
        """The masks this explainer uses for inputs of `size` on `device`."""
        return rise_masks(self.n_masks, self.grid, self.p1, size, self.seed, device)

    def _explain(self, x: torch.Tensor, target: Target) -> Attribution:
        with torch.no_grad():
            output = self.model(x)
        bound = target.bind(output)
        scorer = mask_target(bound, output, self.score)
        batch, (h, w) = x.shape[0], x.shape[-2:]
        masks = self.masks((h, w), x.device)
        n_masks = self.n_masks
        items = batch * n_masks  # sample-major: item t = image t // N, mask t % N
        rows = torch.arange(batch, device=x.device).repeat_interleave(n_masks)

        if isinstance(self.baseline, str):
            base = x.mean(dim=(2, 3), keepdim=True).expand_as(x)  # "mean"
        elif isinstance(self.baseline, torch.Tensor) or self.baseline != 0:
            base = broadcast_baseline(self.baseline, x)
        else:
            base = None

        def make(start: int, stop: int) -> torch.Tensor:
            t = torch.arange(start, stop, device=x.device)
            m = masks.take(t % n_masks)[:, None].to(x.dtype)
            if base is None:
                return x[t // n_masks] * m
            b = base[t // n_masks]
            return b + (x[t // n_masks] - b) * m

        scores = score_items(self.model, items, make, scorer, rows, batch_size=self.batch_size, device=x.device,
                             progress=self.progress).reshape(batch, n_masks)
        saliency = torch.zeros(batch, h * w, device=x.device)
        chunk = max(1, min(n_masks, 2**26 // max(h * w, 1)))
        for start in range(0, n_masks, chunk):
            idx = torch.arange(start, min(n_masks, start + chunk), device=x.device)
            saliency += scores[:, idx] @ masks.take(idx).flatten(1)
        maps = (saliency / (n_masks * self.p1)).reshape(batch, h, w)
        return Attribution(
            method=self.name, maps=maps, scores=bound(output).detach(), targets=bound.indices,
            cost=Cost(forward_passes=batch + items, masks=items),
            settings={"n_masks": n_masks, "grid": self.grid, "p1": self.p1, "score": score_label(scorer),
                      "target": bound.description, "seed": self.seed,
                      "baseline": self.baseline if not isinstance(self.baseline, torch.Tensor) else "tensor"},
        )
