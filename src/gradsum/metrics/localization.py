"""Ground-truth localisation metrics: does the heatmap sit on the annotated object?

Every function takes maps (B,H,W) and the ground truth as `masks` (B,H,W) bool or `boxes`
(x1,y1,x2,y2 pixels, x = column; converted by `boxes_to_masks`), returns a `MetricResult`
with one value per image, and never normalises the maps (the metrics below are invariant to
positive scaling; none is invariant to shifts, so pass the raw maps you want judged). An
empty mask gives NaN and a `MetricWarning`.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from gradsum.methods._args import check_int, check_number
from gradsum.metrics._common import (
    MetricResult,
    average_ranks,
    boxes_to_masks,
    check_maps,
    check_masks,
    pixel_order,
    top_count,
    warn_nan,
)

__all__ = [
    "ebpg",
    "bbox",
    "relevance_rank",
    "pointing_game",
    "relevance_mass",
    "attribution_auc",
    "category_hit",
    "ground_truth_masks",
]

BoxesLike = torch.Tensor | Sequence[torch.Tensor | None]
_NAN = float("nan")


def ground_truth_masks(
    maps: torch.Tensor,
    masks: torch.Tensor | None = None,
    boxes: BoxesLike | None = None,
    metric: str = "metric",
) -> torch.Tensor:
    """The (B,H,W) bool ground truth of a metric call: `masks` as given, or the union of
    `boxes` per image (exactly one of the two)."""
    maps = check_maps(maps, metric)
    if (masks is None) == (boxes is None):
        raise ValueError(f"{metric}: give exactly one of masks=(B,H,W) or boxes=[(N,4) per image]")
    if boxes is not None:
        masks = boxes_to_masks(boxes, maps.shape[-2], maps.shape[-1], device=maps.device)
        if masks.shape[0] != maps.shape[0]:
            raise ValueError(f"{metric}: got boxes for {masks.shape[0]} images and {maps.shape[0]} maps")
    assert masks is not None
    return check_masks(masks, maps, metric)


def _prepare(maps, masks, boxes, metric) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    maps = check_maps(maps, metric)
    gt = ground_truth_masks(maps, masks, boxes, metric)
    flat_m = maps.reshape(maps.shape[0], -1)
    flat_g = gt.reshape(gt.shape[0], -1)
    empty = ~flat_g.any(dim=1)
    warn_nan(metric, empty, "the ground-truth mask is empty")
    return flat_m, flat_g, empty


def ebpg(maps: torch.Tensor, masks: torch.Tensor | None = None, *, boxes: BoxesLike | None = None) -> MetricResult:
    """Energy-based pointing game (Wang et al., Score-CAM, 2020):
    sum(max(m,0) inside the mask) / sum(max(m,0)).

    Rows are indexed by y and columns by x. The Score-CAM/SISE evaluation code builds the box
    mask as ``mask[x1:x2, y1:y2]`` (rows by x), i.e. it scores the transposed box; this
    implementation deliberately does not copy that. A map with no positive energy -> NaN.
    """
    flat_m, flat_g, empty = _prepare(maps, masks, boxes, "ebpg")
    pos = flat_m.clamp_min(0)
    total = pos.sum(dim=1)
    zero = total <= 0
    warn_nan("ebpg", zero & ~empty, "the map has no positive energy")
    values = (pos * flat_g).sum(dim=1) / torch.where(zero, 1.0, total)
    values = torch.where(empty | zero, _NAN, values)
    return MetricResult("ebpg", values, {"clip": "positive", "index": "rows=y, cols=x"})


def _rank_accuracy(name: str, maps, masks, boxes, seed: int) -> MetricResult:
    flat_m, flat_g, empty = _prepare(maps, masks, boxes, name)
    order = pixel_order(flat_m, seed)  # highest first, ties in seeded order
    n_in = flat_g.sum(dim=1)  # (B,)
    hits = flat_g.gather(1, order)  # (B,N) whether the k-th ranked pixel is inside
    positions = torch.arange(flat_m.shape[1], device=flat_m.device)
    top = positions[None] < n_in[:, None]
    values = (hits & top).sum(dim=1).double() / n_in.clamp_min(1).double()
    values = torch.where(empty, _NAN, values.to(flat_m.dtype))
    return MetricResult(name, values, {"seed": seed, "ties": "seeded random order"})


def bbox(
    maps: torch.Tensor, masks: torch.Tensor | None = None, *, boxes: BoxesLike | None = None, seed: int = 0
) -> MetricResult:
    """Bounding-box accuracy (Schulz et al., ICLR 2020): with n = pixels in the mask, the
    fraction of the n highest-valued map pixels that lie inside the mask (the same number as
    `relevance_rank`). Ties at the n-th value are broken in a seeded random order."""
    return _rank_accuracy("bbox", maps, masks, boxes, seed)


def relevance_rank(
    maps: torch.Tensor, masks: torch.Tensor | None = None, *, boxes: BoxesLike | None = None, seed: int = 0
) -> MetricResult:
    """Relevance rank accuracy (Arras et al., 2022): |top-n pixels ∩ mask| / n with n = |mask|.
    Identical to `bbox`."""
    return _rank_accuracy("relevance_rank", maps, masks, boxes, seed)


def _dilate(masks: torch.Tensor, radius: float) -> torch.Tensor:
    r = int(radius)
    offs = torch.arange(-r, r + 1, device=masks.device, dtype=torch.float32)
    disk = ((offs[:, None] ** 2 + offs[None] ** 2) <= radius**2).float()[None, None]
    grown = F.conv2d(masks[:, None].float(), disk, padding=r)
    return grown[:, 0] > 0.5


def pointing_game(
    maps: torch.Tensor,
    masks: torch.Tensor | None = None,
    *,
    boxes: BoxesLike | None = None,
    tolerance: float = 0.0,
) -> MetricResult:
    """Pointing game (Zhang et al., 2018): 1 if a pixel holding the map's maximum lies in the
    mask, else 0. All pixels tied at the maximum count (any one inside is a hit, so a
    constant map hits whenever the mask is non-empty). tolerance: a radius in pixels (15 in
    Zhang et al.); the mask is grown by a disk of that radius (Euclidean) first."""
    tolerance = check_number(tolerance, "pointing_game: tolerance", low=0.0, meaning="a radius in pixels")
    maps = check_maps(maps, "pointing_game")
    gt = ground_truth_masks(maps, masks, boxes, "pointing_game")
    if tolerance > 0:
        gt = _dilate(gt, float(tolerance))
    flat_m, flat_g, empty = _prepare(maps, gt, None, "pointing_game")
    at_max = flat_m == flat_m.amax(dim=1, keepdim=True)
    hit = (at_max & flat_g).any(dim=1).to(flat_m.dtype)
    values = torch.where(empty, _NAN, hit)
    return MetricResult("pointing_game", values, {"tolerance": float(tolerance), "ties": "any maximum"})


def relevance_mass(
    maps: torch.Tensor,
    masks: torch.Tensor | None = None,
    *,
    boxes: BoxesLike | None = None,
    clip: bool = False,
) -> MetricResult:
    """Relevance mass accuracy (Arras et al., 2022): sum(m inside mask) / sum(m), on the
    signed map (clip=True: on max(m, 0)). A map summing to 0 -> NaN."""
    flat_m, flat_g, empty = _prepare(maps, masks, boxes, "relevance_mass")
    if clip:
        flat_m = flat_m.clamp_min(0)
    total = flat_m.sum(dim=1)
    zero = total == 0
    warn_nan("relevance_mass", zero & ~empty, "the map sums to zero")
    values = (flat_m * flat_g).sum(dim=1) / torch.where(zero, 1.0, total)
    values = torch.where(empty | zero, _NAN, values)
    return MetricResult("relevance_mass", values, {"clip": bool(clip)})


def attribution_auc(
    maps: torch.Tensor, masks: torch.Tensor | None = None, *, boxes: BoxesLike | None = None
) -> MetricResult:
    """ROC-AUC of the map values as a score for "pixel is inside the mask" (Fawcett 2006), by
    the Mann-Whitney statistic with tied values counted 1/2:
    AUC = (sum of ranks of mask pixels - P(P+1)/2) / (P N). An empty or full mask -> NaN."""
    flat_m, flat_g, empty = _prepare(maps, masks, boxes, "attribution_auc")
    n_pos = flat_g.sum(dim=1).double()
    n_neg = flat_g.shape[1] - n_pos
    full = (n_neg == 0) & ~empty
    warn_nan("attribution_auc", full, "the mask covers the whole image (no negatives)")
    ranks = average_ranks(flat_m)
    rank_sum = (ranks * flat_g).sum(dim=1)
    auc = (rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg).clamp_min(1)
    values = torch.where(empty | full, _NAN, auc.to(flat_m.dtype))
    return MetricResult("attribution_auc", values, {})


def category_hit(
    maps: torch.Tensor,
    segmentation: torch.Tensor,
    *,
    top: float | int = 0.15,
    num_categories: int | None = None,
    names: Sequence[str] | None = None,
    ignore_index: int | None = None,
    seed: int = 0,
) -> MetricResult:
    """For segmentation data: which categories the strongest pixels fall on. With n = `top`
    (a fraction of the pixels, or a count), values[b, k] = fraction of image b's n
    highest-valued map pixels whose label is k (rows sum to 1 over the labelled pixels;
    ties at the n-th value in seeded order). It is the hard-threshold cousin of the GradSUM
    semantic profile. ignore_index: a label excluded from the image (its pixels never count).
    """
    maps = check_maps(maps, "category_hit")
    if not isinstance(segmentation, torch.Tensor) or segmentation.is_floating_point():
        raise TypeError("category_hit: segmentation must be an integer tensor (B,H,W) of label ids")
    seg = segmentation.to(maps.device)
    if seg.ndim == 2:
        seg = seg.expand(maps.shape[0], *seg.shape)
    if seg.shape != maps.shape:
        raise ValueError(f"category_hit: segmentation {tuple(seg.shape)} does not match maps {tuple(maps.shape)}")
    if num_categories is not None:
        num_categories = check_int(num_categories, "category_hit: num_categories")
    lo, hi = (int(v) for v in torch.aminmax(seg))
    if lo < 0 and (ignore_index is None or bool(((seg < 0) & (seg != ignore_index)).any())):
        raise ValueError(f"category_hit: segmentation label ids must be >= 0 (or ignore_index); got ids down to {lo}")
    k = int(num_categories) if num_categories is not None else hi + 1
    flat_m = maps.reshape(maps.shape[0], -1)
    flat_s = seg.reshape(seg.shape[0], -1).long()
    valid = torch.ones_like(flat_s, dtype=torch.bool) if ignore_index is None else flat_s != ignore_index
    n = top_count(top, flat_m.shape[1], "top", "category_hit")
    # ignored pixels sort last
    ranked = torch.where(valid, flat_m, torch.full_like(flat_m, -torch.inf))
    order = pixel_order(ranked, seed)[:, :n]
    labels = flat_s.gather(1, order)
    keep = valid.gather(1, order)
    if bool(((labels < 0) | (labels >= k))[keep].any()):
        raise ValueError(f"category_hit: segmentation label ids must lie in 0..{k - 1} (num_categories={k}); got ids "
                         f"up to {hi}: set num_categories to the number of categories")
    counts = torch.zeros((flat_m.shape[0], k), device=maps.device, dtype=torch.float64)
    counts.scatter_add_(1, labels.clamp(0, k - 1), keep.double())
    total = counts.sum(dim=1, keepdim=True)
    values = (counts / total.clamp_min(1)).to(flat_m.dtype)
    values = torch.where(total > 0, values, _NAN)
    cols = list(names) if names is not None else [str(i) for i in range(k)]
    if len(cols) != k:
        raise ValueError(f"category_hit: got {len(cols)} names for {k} categories")
    return MetricResult("category_hit", values, {"top": top, "top_pixels": n, "seed": seed}, columns=cols)
