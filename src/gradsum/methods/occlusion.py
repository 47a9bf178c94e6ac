"""Occlusion (Zeiler & Fergus 2014): slide a window over the image, replace it with a
baseline value, and record how much the explained score drops.

Attribution of a pixel = the mean, over the windows covering it, of f(x) - f(x occluded)
(captum's `Occlusion` convention: windows start at 0 and step by `stride` until the image
is covered; the last window in a direction may be cut off).
"""
from __future__ import annotations

import math
import numbers
from typing import Any

import torch
from torch import nn

from gradsum.core.attribution import Attribution, Cost
from gradsum.core.batching import BatchSize, Progress
from gradsum.core.targets import Target
from gradsum.methods._args import check_number, check_seed
from gradsum.methods.base import Explainer
from gradsum.methods.perturbation import check_batch_size, score_items, score_label
from gradsum.methods.registry import register

__all__ = ["Occlusion", "window_starts", "broadcast_baseline"]


def _pair(value: Any, name: str) -> tuple[int, int] | None:
    if value is None:
        return None
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        pair = (int(value), int(value))
    elif isinstance(value, tuple | list):
        pair = tuple(int(v) if isinstance(v, numbers.Integral) and not isinstance(v, bool) else v for v in value)
    else:
        raise TypeError(f"{name} must be a positive int or a pair (height, width) of them; got {value!r}")
    if len(pair) != 2 or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in pair):
        raise ValueError(f"{name} must be a positive int or a pair (height, width) of them; got {value!r}")
    return pair  # type: ignore[return-value]


def window_starts(size: int, window: int, stride: int) -> torch.Tensor:
    """Start offsets 0, stride, ... of windows covering `size` (ceil((size-window)/stride)+1)."""
    count = math.ceil((size - window) / stride) + 1
    return torch.arange(count) * stride


def broadcast_baseline(baseline: float | torch.Tensor, x: torch.Tensor, name: str = "baseline") -> torch.Tensor:
    """A baseline (number or tensor broadcastable to x) as a (B,C,H,W) tensor on x's device."""
    if isinstance(baseline, bool) or not isinstance(baseline, int | float | torch.Tensor):
        raise TypeError(f"{name} must be a number or a tensor broadcastable to the input; got {type(baseline).__name__}")
    if not isinstance(baseline, torch.Tensor):
        return torch.full_like(x, float(baseline))
    try:
        return torch.broadcast_to(baseline.to(device=x.device, dtype=x.dtype), x.shape)
    except RuntimeError:
        raise ValueError(
            f"{name} of shape {tuple(baseline.shape)} does not broadcast to the input {tuple(x.shape)}; "
            "give a number, a (C,1,1) / (C,H,W) / (B,C,H,W) tensor"
        ) from None


@register("occlusion", family="perturbation", passes="one forward per window position (default about 15 x 15)",
          paper="Zeiler & Fergus 2014, Visualizing and Understanding Convolutional Networks", signed=True)
class Occlusion(Explainer):
    """Occlusion: window (h, w) (default 1/8 of the image side), stride (default half the
    window), baseline value (default 0, in the model's input space) over all channels.
    map = mean over covering windows of target(x) - target(x occluded), with the user's
    target (the logit by default). Signed."""

    def __init__(self, model: nn.Module, layer: Any = None, *, window: int | tuple[int, int] | None = None,
                 stride: int | tuple[int, int] | None = None, baseline: float | torch.Tensor = 0.0,
                 batch_size: BatchSize = "auto", progress: Progress | None = None, seed: int = 0):
        super().__init__(model, layer=layer)
        self.window, self.stride = _pair(window, "window"), _pair(stride, "stride")
        if isinstance(baseline, bool) or not isinstance(baseline, int | float | torch.Tensor):
            raise TypeError(f"baseline must be a number or a tensor; got {type(baseline).__name__}")
        if isinstance(baseline, torch.Tensor):
            if not baseline.is_floating_point() or not bool(torch.isfinite(baseline).all()):
                raise ValueError("baseline tensor must be floating point with finite values")
        else:
            check_number(baseline, "baseline", meaning="the value put in the occluding window")
        self.baseline, self.seed = baseline, check_seed(seed)
        self.batch_size, self.progress = check_batch_size(batch_size), progress

    def geometry(self, size: tuple[int, int]) -> tuple[tuple[int, int], tuple[int, int]]:
        """(window, stride) used for an image of `size`."""
        h, w = size
        window = self.window or (max(1, h // 8), max(1, w // 8))
        stride = self.stride or (max(1, window[0] // 2), max(1, window[1] // 2))
        if window[0] > h or window[1] > w:
            raise ValueError(f"occlusion window {window} is larger than the image {size}; use a smaller window")
        if stride[0] > window[0] or stride[1] > window[1]:
            raise ValueError(f"occlusion stride {stride} is larger than the window {window}: pixels would be skipped")
        return window, stride

    def _explain(self, x: torch.Tensor, target: Target) -> Attribution:
        batch, (h, w) = x.shape[0], (x.shape[-2], x.shape[-1])
        (wh, ww), (sh, sw) = self.geometry((h, w))
        base = broadcast_baseline(self.baseline, x)
        with torch.no_grad():
            output = self.model(x)
        bound = target.bind(output)
        clean = bound(output).float()
        ys, xs = window_starts(h, wh, sh).to(x.device), window_starts(w, ww, sw).to(x.device)
        ny, nx = ys.shape[0], xs.shape[0]
        per = ny * nx
        rows = torch.arange(batch, device=x.device).repeat_interleave(per)
        ar_h, ar_w = torch.arange(h, device=x.device), torch.arange(w, device=x.device)

        def make(start: int, stop: int) -> torch.Tensor:
            t = torch.arange(start, stop, device=x.device)
            b, p = t // per, t % per
            y0, x0 = ys[p // nx], xs[p % nx]
            inside = ((ar_h >= y0[:, None]) & (ar_h < y0[:, None] + wh))[:, :, None] & (
                (ar_w >= x0[:, None]) & (ar_w < x0[:, None] + ww))[:, None, :]
            return torch.where(inside[:, None], base[b], x[b])

        occluded = score_items(self.model, batch * per, make, bound, rows, batch_size=self.batch_size,
                               device=x.device, progress=self.progress)
        diff = (clean[:, None] - occluded.reshape(batch, per)).reshape(batch, ny, nx).double()
        row_cover = ((ar_h >= ys[:, None]) & (ar_h < ys[:, None] + wh)).double()  # (ny,H)
        col_cover = ((ar_w >= xs[:, None]) & (ar_w < xs[:, None] + ww)).double()  # (nx,W)
        total = torch.einsum("iy,bij,jx->byx", row_cover, diff, col_cover)
        count = torch.einsum("iy,jx->yx", row_cover, col_cover)
        maps = (total / count).float()
        return Attribution(
            method=self.name, maps=maps, scores=clean, targets=bound.indices,
            cost=Cost(forward_passes=batch * (per + 1), masks=batch * per),
            settings={"window": (wh, ww), "stride": (sh, sw), "positions": per,
                      "baseline": self.baseline if not isinstance(self.baseline, torch.Tensor) else "tensor",
                      "score": score_label(bound), "target": bound.description, "seed": self.seed},
        )
