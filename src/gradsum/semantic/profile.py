"""GradSUM: the share of a heatmap on each semantic category, per image and per dataset.

For an image with segmentation S and heatmap M normalised to [0,1] (default: min-max of
ReLU(M)), with P_k = [S == k] and N_k = sum P_k (Chalom & Klein, GradSUM slides):

    mean        G_k = 100 * sum(P_k M) / N_k          (NaN when N_k = 0)
    pooled      100 * sum_images sum(P_k M) / sum_images N_k
    threshold   100 * #(P_k and M > t) / N_k          (t = 0.5, strictly greater)
    share       100 * sum(P_k M) / sum(M)             (sums to 100 over categories)
    enrichment  share_k / (100 N_k / HW)              (1 = attended as often as it occurs)

A category (group) sums the numerators and denominators of its labels; it is not an
average of label percentages. Sums are accumulated in float64 on the maps' device: one
index_add for the activation, integer bincounts for pixels and above-threshold counts.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from gradsum.core.normalize import NormalizeMode, minmax_affine, normalize_maps
from gradsum.semantic.labels import DeferredChecks, LabelIndex, LabelTable

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["LabelSums", "label_sums", "Profile", "profile_rows", "profile_columns", "concat_columns",
           "profile_maps", "bootstrap_ci", "summarize", "check_threshold", "integer_ids"]

LEVELS = ("label", "category")
VALUE_COLUMNS = ["pixels", "activation_sum", "above_threshold", "value_mean", "value_threshold", "share",
                 "pixel_share", "enrichment"]


@dataclass
class LabelSums:
    """Per image x label sums (float64): pixels N_k, activation sum(P_k M), count of
    P_k and M > t; and per image sum(M) and H*W."""

    pixels: torch.Tensor  # (B, L)
    mass: torch.Tensor  # (B, L)
    above: torch.Tensor  # (B, L)
    total_mass: torch.Tensor  # (B,)
    area: torch.Tensor  # (B,)

    @classmethod
    def cat(cls, parts: Sequence[LabelSums]) -> LabelSums:
        """The sums of several batches as one (images concatenated in order)."""
        return cls(*(torch.cat([getattr(p, f) for p in parts]) for f in ("pixels", "mass", "above", "total_mass",
                                                                          "area")))

    def take(self, order: torch.Tensor) -> LabelSums:
        """The sums of the images at positions `order` (a permutation or a selection)."""
        order = order.to(self.pixels.device)
        return LabelSums(*(getattr(self, f).index_select(0, order) for f in ("pixels", "mass", "above", "total_mass",
                                                                             "area")))

    def grouped(self, groups: torch.Tensor) -> LabelSums:
        """Sum labels into categories with the (L, C) 0/1 matrix."""
        return LabelSums(self.pixels @ groups, self.mass @ groups, self.above @ groups, self.total_mass, self.area)


def label_sums(maps: torch.Tensor, segmentations: torch.Tensor, index: LabelIndex, *,
               threshold: float = 0.5, normalize: NormalizeMode = "none", source: str = "",
               checks: DeferredChecks | None = None) -> LabelSums:
    """Sums for maps (B,H,W), normalised here with `normalize`, and id segmentations (B,H,W)
    of the same size.

    min-max normalisation is folded into the sums instead of materialised: with
    M = (m - lo) * scale per image, sum_k M = scale * (sum_k m - lo * N_k) and M > t iff
    m > lo + t / scale. Per pixel that leaves one comparison, one bin index and two
    row-wise float64 scatter-adds (pixels below / above t, and mass).

    checks: when given, the validity checks (label ids in the table, finite maps) are kept on
    the device and raised by `checks.verify()`, so that a GPU batch needs no host
    synchronisation (the GradSUM engine verifies once per shard)."""
    if not isinstance(maps, torch.Tensor) or not isinstance(segmentations, torch.Tensor):
        raise TypeError("label_sums: maps and segmentations must be torch.Tensors (B,H,W)")
    if maps.shape != segmentations.shape:
        raise ValueError(
            f"heatmaps {tuple(maps.shape)} and segmentations {tuple(segmentations.shape)} must have the same "
            "shape (B,H,W); resize the segmentation with nearest neighbour or the maps bilinearly"
        )
    check_threshold(threshold, normalize)
    if not maps.is_floating_point():
        maps = maps.float()
    index = index.to(maps.device)
    b, n_slots, n_bins = maps.shape[0], index.n_slots, index.BINS
    if normalize in ("minmax", "relu-minmax"):
        values, lo, scale = minmax_affine(maps, relu=normalize == "relu-minmax", sync=maps.device.type == "cpu")
        cut = torch.where(scale > 0, lo + threshold / scale.clamp_min(1e-300),
                          torch.full_like(lo, float("-inf") if threshold < 0 else float("inf")))
    else:
        values = normalize_maps(maps, normalize).reshape(b, -1)
        lo, scale = torch.zeros(b, 1, device=maps.device), torch.ones(b, 1, device=maps.device)
        cut = torch.full_like(lo, threshold)
    seg = integer_ids(segmentations.to(maps.device), source)
    keys = index.keys(seg, values, cut, source, checks)
    # row-wise scatters (parallel over images): pixel counts (exact in float64) and mass
    ones = torch.ones(1, dtype=torch.float64, device=maps.device).expand(keys.shape)
    try:
        counts = torch.zeros(b, n_slots * n_bins, dtype=torch.float64, device=maps.device).scatter_add_(1, keys, ones)
    except RuntimeError:  # a bin out of range: an id outside the table (named by check_range)
        index.check_range(seg, source)
        raise
    counts = counts.reshape(b, n_slots, 2, 2).sum(dim=3)  # (b, S, below/above)
    index.check_known(counts.sum(dim=2), source, checks)
    exact = index.workspace(keys.shape, keys.device).values.copy_(values)  # float64 accumulation
    raw = torch.zeros(b, n_slots * n_bins, dtype=torch.float64, device=maps.device).scatter_add_(1, keys, exact)
    columns = index.slots
    counts = counts[:, columns]
    pixels = counts.sum(dim=2)
    raw = raw.reshape(b, n_slots, n_bins).sum(dim=2)[:, columns]
    mass = scale.double() * (raw - lo.double() * pixels)
    if checks is None:
        _check_finite_mass(mass, source)
    else:
        checks.add(~torch.isfinite(mass).all(), lambda: _check_finite_mass(mass, source))
    return LabelSums(
        pixels,
        mass,
        counts[:, :, 1],
        mass.sum(dim=1),
        torch.full((b,), float(maps.shape[-1] * maps.shape[-2]), dtype=torch.float64, device=maps.device),
    )


#: the value range of each normalisation (None: raw maps, any finite threshold)
_RANGES = {"minmax": (0.0, 1.0), "relu-minmax": (0.0, 1.0), "maxabs": (-1.0, 1.0), "sum": (-1.0, 1.0), "none": None}


def check_threshold(threshold: float, normalize: str) -> float:
    """t of the threshold mode: a finite number inside the range of the normalised maps
    ([0,1] for min-max, [-1,1] for maxabs), any finite number for raw maps."""
    from gradsum.methods._args import check_choice, check_number

    check_choice(normalize, "normalize", tuple(_RANGES))
    bounds = _RANGES[normalize]
    lo, hi = bounds if bounds is not None else (None, None)
    return check_number(threshold, "threshold", low=lo, high=hi,
                        meaning=f"a value of the {normalize}-normalised heatmap" if bounds else "a heatmap value")


def integer_ids(seg: torch.Tensor, source: str = "") -> torch.Tensor:
    """Segmentation ids as an integer tensor: integer tensors as they are, floating ones only
    when every value is a whole number (1.0 -> 1; 1.5 is an error, never truncated)."""
    if not seg.is_floating_point():
        return seg
    whole = torch.isfinite(seg) & (seg == seg.round())
    if not bool(whole.all()):
        where = f" of {source}" if source else ""
        bad = seg[~whole].unique()[:5].tolist()
        raise ValueError(
            f"segmentations{where} hold non-integer label ids {bad} (a float segmentation); label ids must be "
            "whole numbers: resize segmentations with nearest neighbour and store them as int64"
        )
    return seg.long()


def _check_finite_mass(mass: torch.Tensor, source: str) -> None:
    """NaN or infinite heatmap values reach the per-label sums (B,L): name those images."""
    finite = torch.isfinite(mass).all(dim=1)
    if bool(finite.all()):
        return
    images = (~finite).nonzero().flatten().tolist()
    where = f" of {source}" if source else ""
    raise ValueError(
        f"the heatmaps{where} (batch positions {images[:10]}) contain NaN or infinite values; "
        "GradSUM sums need finite maps (check the explanation method on those images)"
    )


def _values(s: LabelSums) -> dict[str, torch.Tensor]:
    nan = torch.tensor(float("nan"), dtype=torch.float64, device=s.pixels.device)
    present = s.pixels > 0
    safe_pixels = s.pixels.clamp_min(1)
    total = s.total_mass[:, None]
    share = torch.where(total > 0, 100 * s.mass / total.clamp_min(1e-300), nan)
    pixel_share = 100 * s.pixels / s.area[:, None]
    return {
        "pixels": s.pixels,
        "activation_sum": s.mass,
        "above_threshold": s.above,
        "value_mean": torch.where(present, 100 * s.mass / safe_pixels, nan),
        "value_threshold": torch.where(present, 100 * s.above / safe_pixels, nan),
        "share": share,
        "pixel_share": pixel_share,
        "enrichment": torch.where(present, share / pixel_share.clamp_min(1e-300), nan),
    }


Columns = dict[str, np.ndarray]


def _constant(value: Any, n: int) -> np.ndarray:
    return np.full(n, value, dtype=object if value is None or isinstance(value, str) else None)


def concat_columns(blocks: Sequence[Columns]) -> Columns:
    """Row blocks with the same columns -> one block (one DataFrame is built at the end,
    instead of one per batch: pandas construction dominates GradSUM's bookkeeping)."""
    return {key: np.concatenate([block[key] for block in blocks]) for key in blocks[0]}


def profile_columns(sums: LabelSums, index: LabelIndex, image_ids: Sequence[str],
                    context: dict[str, Any] | None = None,
                    per_image: dict[str, Sequence[Any]] | None = None) -> Columns:
    """The rows of `profile_rows` as numpy columns: context columns, image_id, level,
    category, every value column, then `per_image` columns (one value per image)."""
    ids = np.asarray(list(image_ids), dtype=object)
    blocks = []
    for level, level_sums, names in (
        ("label", sums, index.names),
        ("category", sums.grouped(index.groups.to(sums.pixels.device)), index.categories),
    ):
        n_names = len(names)
        n_rows = len(ids) * n_names
        computed = _values(level_sums)
        stacked = torch.stack([computed[col] for col in VALUE_COLUMNS]).reshape(len(VALUE_COLUMNS), -1).cpu().numpy()
        block = {key: _constant(value, n_rows) for key, value in (context or {}).items()}
        block["image_id"] = np.repeat(ids, n_names)
        block["level"] = _constant(level, n_rows)
        block["category"] = np.tile(np.asarray(names, dtype=object), len(ids))
        block.update(zip(VALUE_COLUMNS, stacked, strict=True))
        block.update({key: np.repeat(np.asarray(values), n_names) for key, values in (per_image or {}).items()})
        blocks.append(block)
    return concat_columns(blocks)


def profile_rows(sums: LabelSums, index: LabelIndex, image_ids: Sequence[str],
                 context: dict[str, Any] | None = None) -> pd.DataFrame:
    """Tidy table: one row per image x (labels, then categories), every value column;
    `context` values (model, method, epoch...) become constant columns."""
    import pandas as pd

    return pd.DataFrame(profile_columns(sums, index, image_ids, context))


def bootstrap_ci(values: np.ndarray, *, n_boot: int = 1000, level: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean of `values` (NaNs dropped); (nan, nan) if empty."""
    v = np.asarray(values, dtype=np.float64)
    v = v[~np.isnan(v)]
    if v.size == 0:
        return float("nan"), float("nan")
    if v.size == 1:
        return float(v[0]), float(v[0])
    rng = np.random.default_rng(seed)
    means = v[rng.integers(0, v.size, size=(n_boot, v.size))].mean(axis=1)
    alpha = (1 - level) / 2
    return float(np.quantile(means, alpha)), float(np.quantile(means, 1 - alpha))


GROUP_KEYS = ["model", "method", "epoch", "level", "category"]


def summarize(images: pd.DataFrame, *, n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Dataset summary per (model, method, epoch, level, category).

    value_mean / value_threshold / share / enrichment: the mean over images and its 95%
    bootstrap CI (`_lo`, `_hi`), images where the category is absent skipped (share keeps
    them: 0% of the mass). pooled: 100 * sum mass / sum pixels (the original GradSUM
    dataset figure). pooled_share: 100 * sum mass / sum of the images' total mass;
    pixel_share: 100 * sum pixels / sum area; pooled_enrichment = pooled_share / pixel_share.
    """
    import pandas as pd

    keys = [k for k in GROUP_KEYS if k in images.columns]
    # one image explained for several classes (multi-label targets) is one unit per class
    per_image = [k for k in keys if k != "category"] + ["image_id"] + (["target"] if "target" in images.columns else [])
    totals = images.groupby(per_image, sort=False, dropna=False)[["activation_sum", "pixels"]].transform("sum")
    frame = images.assign(_total=totals["activation_sum"], _area=totals["pixels"])
    out = []
    for key, group in frame.groupby(keys, sort=False, dropna=False):
        row: dict[str, Any] = dict(zip(keys, key if isinstance(key, tuple) else (key,), strict=True))
        present = (group["pixels"] > 0).to_numpy()
        row["images"] = int(present.sum())
        for col in ("value_mean", "value_threshold", "share", "enrichment"):
            vals = group[col].to_numpy() if col == "share" else group[col].to_numpy()[present]
            finite = vals[np.isfinite(vals)]
            row[col] = float(finite.mean()) if finite.size else float("nan")
            row[f"{col}_lo"], row[f"{col}_hi"] = bootstrap_ci(finite, n_boot=n_boot, seed=seed)
        mass, pixels = group["activation_sum"].sum(), group["pixels"].sum()
        total, area = group["_total"].sum(), group["_area"].sum()
        row["pooled"] = float(100 * mass / pixels) if pixels > 0 else float("nan")
        row["pooled_share"] = float(100 * mass / total) if total > 0 else float("nan")
        row["pixel_share"] = float(100 * pixels / area) if area > 0 else float("nan")
        row["pooled_enrichment"] = (
            row["pooled_share"] / row["pixel_share"] if pixels > 0 and total > 0 else float("nan")
        )
        out.append(row)
    return pd.DataFrame(out)


@dataclass
class Profile:
    """GradSUM results: `images` (tidy, one row per image x model x method x epoch x level x
    category) and, on demand, `summary()` per (model, method, epoch, level, category).
    `baseline` holds the random-model profile's images table when computed."""

    images: pd.DataFrame
    settings: dict[str, Any] = field(default_factory=dict)
    baseline: pd.DataFrame | None = None

    def summary(self, *, n_boot: int = 1000, seed: int | None = None) -> pd.DataFrame:
        return summarize(self.images, n_boot=n_boot, seed=self.settings.get("seed", 0) if seed is None else seed)

    def baseline_summary(self, *, n_boot: int = 1000) -> pd.DataFrame | None:
        """Random-model baseline per category: mean and std over the K random copies of the
        pooled share / enrichment (each copy summarised on its own)."""
        if self.baseline is None:
            return None
        per_copy = summarize(self.baseline, n_boot=1).copy()
        keys = [k for k in ("method", "epoch", "level", "category") if k in per_copy.columns]
        stats = per_copy.groupby(keys, sort=False, dropna=False)[
            ["value_mean", "pooled", "pooled_share", "pooled_enrichment"]].agg(["mean", "std"])
        stats.columns = [f"{a}_{b}" for a, b in stats.columns]
        return stats.reset_index()

    def table(self, level: str = "category", column: str = "pooled_enrichment") -> pd.DataFrame:
        """A (model, method, epoch) x category pivot of one summary column."""
        s = self.summary(n_boot=200)
        s = s[s["level"] == level]
        index = [k for k in ("model", "method", "epoch") if k in s.columns]
        return s.pivot_table(index=index, columns="category", values=column, sort=False, dropna=False)

    def concat(self, other: Profile) -> Profile:
        import pandas as pd

        base = None
        if self.baseline is not None or other.baseline is not None:
            base = pd.concat([b for b in (self.baseline, other.baseline) if b is not None], ignore_index=True)
        return Profile(pd.concat([self.images, other.images], ignore_index=True), {**self.settings}, base)


def profile_maps(maps: torch.Tensor, segmentations: torch.Tensor, table: LabelTable, image_ids: Sequence[str], *,
                 normalize: NormalizeMode = "relu-minmax", threshold: float = 0.5,
                 context: dict[str, Any] | None = None) -> pd.DataFrame:
    """GradSUM rows for one batch of raw heatmaps (normalised here with `normalize`)."""
    from gradsum.semantic.labels import label_table_of

    table = label_table_of(table, "table")
    image_ids = list(image_ids) if not isinstance(image_ids, str) else [image_ids]
    if isinstance(maps, torch.Tensor) and len(image_ids) != maps.shape[0]:
        raise ValueError(f"profile_maps: got {len(image_ids)} image_ids for {maps.shape[0]} maps; give one id per map")
    index = LabelIndex.of(table, maps.device)
    sums = label_sums(maps, segmentations, index, threshold=threshold, normalize=normalize,
                      source=f"images {list(image_ids)[:3]}")
    return profile_rows(sums, index, image_ids, context)
