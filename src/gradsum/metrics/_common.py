"""Shared pieces of the metrics: the result type, argument checks, seeded pixel orders,
target binding and the box -> mask helper."""
from __future__ import annotations

import math
import numbers
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from gradsum.core.forward import forward_checked
from gradsum.core.probe import preserved_state
from gradsum.core.targets import BoundTarget, ClassTarget, Target, TargetSpec, resolve_target

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "MetricResult",
    "MetricWarning",
    "boxes_to_masks",
    "check_maps",
    "check_model_inputs",
    "forward_checked",
    "check_masks",
    "pixel_order",
    "bind_target",
    "nanmean",
    "average_ranks",
    "spearman",
]


class MetricWarning(UserWarning):
    """A metric could not be computed for some samples (empty mask, zero map, ...): those
    samples get NaN and this warning says which and why."""


def nanmean(values: torch.Tensor) -> float:
    """Mean over the finite entries (NaN when there are none), as a Python float."""
    flat = values.reshape(values.shape[0], -1) if values.ndim > 1 else values
    ok = torch.isfinite(flat)
    if not bool(ok.any()):
        return math.nan
    return float(flat[ok].double().mean())


@dataclass
class MetricResult:
    """Per-sample values of one metric, their aggregate and how they were computed.

    values: (B,) one number per sample (NaN where undefined), or (B,K) for per-category
    metrics. aggregate: the mean over the finite values (`nanmean`). settings: every option
    that changes the number (score convention, substrate, step, seed, normalisation, ...).
    extras: curves and other per-sample tensors (e.g. deletion curves (B,P) and their x
    positions (P,)).
    """

    name: str
    values: torch.Tensor
    settings: dict[str, Any] = field(default_factory=dict)
    extras: dict[str, torch.Tensor] = field(default_factory=dict)
    columns: list[str] | None = None

    @property
    def aggregate(self) -> float:
        return nanmean(self.values)

    def ci95(self) -> tuple[float, float]:
        """Normal-approximation 95% confidence interval of the mean over finite values."""
        v = self.values.reshape(-1)
        v = v[torch.isfinite(v)].double()
        if v.numel() < 2:
            return (math.nan, math.nan)
        half = 1.959964 * float(v.std(unbiased=True)) / math.sqrt(v.numel())
        m = float(v.mean())
        return (m - half, m + half)

    def to_frame(self, ids: Sequence[str] | None = None) -> pd.DataFrame:
        """One row per sample: `sample` (index or id), then `value` (or one column per
        category for (B,K) values)."""
        import pandas as pd

        vals = self.values.detach().double().cpu()
        rows = ids if ids is not None else list(range(vals.shape[0]))
        if len(rows) != vals.shape[0]:
            raise ValueError(f"to_frame got {len(rows)} ids for {vals.shape[0]} samples")
        if vals.ndim == 1:
            data: dict[str, Any] = {"value": vals.numpy()}
        else:
            cols = self.columns or [str(k) for k in range(vals.shape[1])]
            data = {c: vals[:, k].numpy() for k, c in enumerate(cols)}
        frame = pd.DataFrame(data)
        frame.insert(0, "sample", list(rows))
        frame.insert(0, "metric", self.name)
        return frame

    def __repr__(self) -> str:
        return f"MetricResult({self.name}: aggregate={self.aggregate:.4g}, n={self.values.shape[0]})"


def warn_nan(metric: str, bad: torch.Tensor, why: str) -> None:
    """Warn once (one host sync per call) when `bad` (B,) marks samples set to NaN."""
    if bool(bad.any()):
        idx = bad.nonzero().reshape(-1).tolist()
        shown = ", ".join(str(i) for i in idx[:10]) + (" ..." if len(idx) > 10 else "")
        warnings.warn(f"{metric}: {why} for sample(s) {shown}; their value is NaN", MetricWarning, stacklevel=3)


def check_maps(maps: torch.Tensor, metric: str) -> torch.Tensor:
    """maps must be a float tensor (B,H,W) of finite values, B >= 1; a (H,W) map is promoted
    to a batch of one, integer maps are converted to float."""
    if not isinstance(maps, torch.Tensor):
        raise TypeError(f"{metric}: maps must be a torch.Tensor (B,H,W); got {type(maps).__name__}")
    if maps.ndim == 2:
        maps = maps[None]
    if maps.ndim == 4 and maps.shape[1] == 1:
        maps = maps[:, 0]
    if maps.ndim != 3:
        raise ValueError(
            f"{metric}: maps must have shape (B,H,W); got {tuple(maps.shape)}. "
            "Pass Attribution.maps (one map per image, not per channel)"
        )
    if maps.shape[0] == 0 or maps[0].numel() == 0:
        raise ValueError(f"{metric}: maps is empty (shape {tuple(maps.shape)}); give at least one (H,W) map")
    if not maps.is_floating_point():
        maps = maps.float()
    check_finite(maps, "maps", metric)
    return maps


def check_finite(values: torch.Tensor, name: str, metric: str) -> None:
    """A ValueError naming the images of `values` (B,...) that hold NaN or infinity (a NaN
    map has no pixel order: it would be scored from an arbitrary order)."""
    if bool(torch.isfinite(values.sum())) or bool(torch.isfinite(values).all()):
        return
    bad = (~torch.isfinite(values.reshape(values.shape[0], -1))).any(dim=1).nonzero().reshape(-1).tolist()
    shown = ", ".join(map(str, bad[:10])) + (" ..." if len(bad) > 10 else "")
    raise ValueError(
        f"{metric}: {name} of image(s) {shown} contain NaN or infinite values; "
        f"clean them first (e.g. torch.nan_to_num) or drop those images"
    )


def check_masks(masks: torch.Tensor, maps: torch.Tensor, metric: str, what: str = "mask") -> torch.Tensor:
    """Ground-truth masks (B,H,W) or (H,W) bool on the maps' device, same H,W as the maps."""
    if not isinstance(masks, torch.Tensor):
        raise TypeError(f"{metric}: {what} must be a torch.Tensor (B,H,W); got {type(masks).__name__}")
    if masks.ndim == 2:
        masks = masks.expand(maps.shape[0], *masks.shape)
    if masks.ndim != 3 or masks.shape[-2:] != maps.shape[-2:] or masks.shape[0] != maps.shape[0]:
        raise ValueError(
            f"{metric}: {what} has shape {tuple(masks.shape)} but the maps are {tuple(maps.shape)}; "
            "give one (H,W) mask per map (use gradsum.metrics.boxes_to_masks for boxes)"
        )
    return masks.to(device=maps.device) != 0


def boxes_to_masks(
    boxes: torch.Tensor | Sequence[torch.Tensor | None],
    height: int,
    width: int,
    *,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Boxes (x1,y1,x2,y2) in pixels (x = column) -> union masks (B,H,W) bool.

    A pixel (row r, column c) belongs to a box when its unit square overlaps the box:
    columns floor(x1) .. ceil(x2)-1 and rows floor(y1) .. ceil(y2)-1, clipped to the image
    (boxes reaching past a border are cut at it; boxes fully outside give nothing).
    `boxes` is one (N,4) tensor per image (a list, as in `Batch.boxes`; None = no box) or a
    (B,4) / (B,N,4) tensor. Images without boxes get an empty mask.
    """
    for value, name in ((height, "height"), (width, "width")):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
            raise ValueError(f"boxes_to_masks: {name} must be a positive int (pixels); got {value!r}")
    if isinstance(boxes, torch.Tensor):
        if boxes.ndim == 2:
            boxes = boxes[:, None, :]
        if boxes.ndim != 3 or boxes.shape[-1] != 4:
            raise ValueError(f"boxes must be (B,4) or (B,N,4) as x1,y1,x2,y2; got {tuple(boxes.shape)}")
        per_image: list[torch.Tensor | None] = list(boxes)
    else:
        per_image = list(boxes)
    dev = torch.device(device) if device is not None else None
    if dev is None:
        dev = next((b.device for b in per_image if isinstance(b, torch.Tensor)), torch.device("cpu"))
    counts = []
    flat = []
    for i, b in enumerate(per_image):
        if b is None:
            counts.append(0)
            continue
        b = torch.as_tensor(b).to(device=dev, dtype=torch.float32)
        if b.numel() % 4 != 0 or b.ndim > 2:
            raise ValueError(f"boxes of image {i} must be (N,4) x1,y1,x2,y2; got {tuple(b.shape)}")
        b = b.reshape(-1, 4)
        if not bool(torch.isfinite(b).all()):
            raise ValueError(f"boxes of image {i} hold NaN or infinite coordinates: {b.tolist()[:3]}")
        counts.append(b.shape[0])
        flat.append(b)
    n_img = len(per_image)
    if not flat or sum(counts) == 0:
        return torch.zeros((n_img, height, width), dtype=torch.bool, device=dev)
    allb = torch.cat(flat)  # (M,4)
    owner = torch.repeat_interleave(torch.arange(n_img, device=dev), torch.tensor(counts, device=dev))
    x1 = allb[:, 0].floor().clamp(0, width)
    x2 = allb[:, 2].ceil().clamp(0, width)
    y1 = allb[:, 1].floor().clamp(0, height)
    y2 = allb[:, 3].ceil().clamp(0, height)
    cols = torch.arange(width, device=dev, dtype=torch.float32)
    rows = torch.arange(height, device=dev, dtype=torch.float32)
    in_c = (cols[None] >= x1[:, None]) & (cols[None] < x2[:, None])  # (M,W)
    in_r = (rows[None] >= y1[:, None]) & (rows[None] < y2[:, None])  # (M,H)
    per_box = in_r[:, :, None] & in_c[:, None, :]  # (M,H,W)
    union = torch.zeros((n_img, height * width), dtype=torch.int32, device=dev)
    union.index_add_(0, owner, per_box.reshape(per_box.shape[0], -1).to(torch.int32))
    return union.reshape(n_img, height, width) > 0


def pixel_order(maps: torch.Tensor, seed: int = 0, *, descending: bool = True) -> torch.Tensor:
    """(B,H*W) pixel indices sorted by map value (highest first when `descending`), ties in
    a seeded random order. Equivalent to adding a tiny seeded noise before sorting, but a
    tie-break never reorders two distinct values."""
    flat = maps.reshape(maps.shape[0], -1)
    gen = torch.Generator().manual_seed(int(seed))  # CPU draws: the same tie order on every device
    perm = torch.argsort(torch.rand(flat.shape, generator=gen).to(flat.device), dim=1)
    shuffled = flat.gather(1, perm)
    order = torch.sort(shuffled, dim=1, descending=descending, stable=True).indices
    return perm.gather(1, order)


def rank_of_pixels(order: torch.Tensor) -> torch.Tensor:
    """Inverse of `pixel_order`: rank (0 = first) of every pixel, (B,H*W) int64."""
    ranks = torch.empty_like(order)
    ranks.scatter_(1, order, torch.arange(order.shape[1], device=order.device).expand_as(order).contiguous())
    return ranks


def top_count(amount: float | int, n_pixels: int, arg: str, metric: str) -> int:
    """A fraction in (0,1] of the pixels or a pixel count >= 1 -> a pixel count."""
    if isinstance(amount, bool) or not isinstance(amount, int | float):
        raise TypeError(f"{metric}: {arg} must be a fraction in (0,1] or a pixel count; got {amount!r}")
    if isinstance(amount, float):
        if not 0.0 < amount <= 1.0:
            raise ValueError(f"{metric}: {arg}={amount} must be a fraction in (0,1] (or an int pixel count)")
        return max(1, int(round(amount * n_pixels)))
    if not 1 <= amount <= n_pixels:
        raise ValueError(f"{metric}: {arg}={amount} pixels is outside 1..{n_pixels} (the image has {n_pixels})")
    return int(amount)


def check_model_inputs(
    model: nn.Module, x: torch.Tensor, maps: torch.Tensor, metric: str
) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
    """The model, the images x (B,C,H,W) and their maps checked together: x a non-empty
    floating tensor of finite values, cast to the model's dtype (float64 / float16 images for
    a float32 model; noted in the returned settings), the maps (see `check_maps`) one per
    image at x's resolution, moved to x's device. Returns (x, maps, settings notes)."""
    from gradsum.methods.base import prepare_input

    if not isinstance(model, nn.Module):
        raise TypeError(f"{metric}: model must be a torch.nn.Module; got {type(model).__name__}")
    if isinstance(x, torch.Tensor) and x.ndim != 4:
        raise ValueError(f"{metric}: x must be a (B,C,H,W) image batch; got shape {tuple(x.shape)}")
    x, notes = prepare_input(model, x, "x")
    maps = check_maps(maps, metric)
    if maps.shape[0] != x.shape[0] or maps.shape[-2:] != x.shape[-2:]:
        raise ValueError(
            f"{metric}: maps {tuple(maps.shape)} do not match the images {tuple(x.shape)}; "
            "give one (H,W) map per image at input resolution (Attribution.maps)"
        )
    return x, maps.to(x.device), notes


def bind_target(
    model: nn.Module, x: torch.Tensor, target: TargetSpec, score: str
) -> tuple[BoundTarget, torch.Tensor, str]:
    """Bind the target on the clean batch; returns (bound target, clean scores (B,), the
    score convention actually used).

    None / int / list / tensor targets become `ClassTarget(index, score=score)`; a one-output
    model with target None explains output 0 (regression, raw value). A Target instance is
    used as given (its own score convention wins, and is what gets recorded).
    """
    if score not in ("logit", "probability", "log_probability"):
        raise ValueError(f"score must be 'logit', 'probability' or 'log_probability'; got {score!r}")
    with preserved_state(model), torch.inference_mode():
        out = forward_checked(model, x)
    spec: Target
    if isinstance(target, Target) or callable(target) and not isinstance(target, torch.Tensor):
        spec = resolve_target(target)
    else:
        n_out = out.reshape(out.shape[0], -1).shape[1] if out.ndim > 1 else 1
        if target is None and n_out == 1:
            spec = resolve_target(None)
        else:
            resolved = resolve_target(target) if target is not None else ClassTarget(None)
            index = resolved.index if isinstance(resolved, ClassTarget) else None
            spec = ClassTarget(index, score=score)  # type: ignore[arg-type]
    bound = spec.bind(out)
    return bound, bound(out).detach(), bound.score


def average_ranks(values: torch.Tensor) -> torch.Tensor:
    """1-based ranks along dim 1 with ties given their average rank (batched)."""
    b, n = values.shape
    sorted_v, idx = values.sort(dim=1)
    pos = torch.arange(n, device=values.device).expand(b, n)
    new_group = torch.ones_like(sorted_v, dtype=torch.bool)
    new_group[:, 1:] = sorted_v[:, 1:] != sorted_v[:, :-1]
    first = torch.where(new_group, pos, torch.zeros_like(pos)).cummax(dim=1).values
    last_group = torch.ones_like(new_group)
    last_group[:, :-1] = new_group[:, 1:]
    last_rev = torch.where(last_group, pos, torch.full_like(pos, n)).flip(1).cummin(dim=1).values.flip(1)
    avg = (first + last_rev).double() / 2 + 1
    ranks = torch.empty_like(avg)
    ranks.scatter_(1, idx, avg)
    return ranks


def spearman(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Spearman rank correlation per row of (B,N) tensors (ties get average ranks), float64.
    A constant row has no ranking: correlation 0 when only one of the two rows is constant,
    NaN when both are."""
    ra, rb = average_ranks(a.reshape(a.shape[0], -1)), average_ranks(b.reshape(b.shape[0], -1))
    da = ra - ra.mean(dim=1, keepdim=True)
    db = rb - rb.mean(dim=1, keepdim=True)
    va, vb = da.square().sum(dim=1), db.square().sum(dim=1)
    corr = (da * db).sum(dim=1) / (va * vb).sqrt().clamp_min(1e-300)
    const_a, const_b = va <= 1e-12, vb <= 1e-12
    corr = torch.where(const_a ^ const_b, 0.0, corr)
    return torch.where(const_a & const_b, torch.nan, corr)
