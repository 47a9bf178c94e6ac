"""Figures for the report: GradSUM profile bars with CIs and the random baseline, model and
method comparisons, per-epoch lines, per-image panels, scene grids. Every function returns a
matplotlib Figure (nothing is written here); axes are labelled with units."""
from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch

from gradsum.data.labels import LabelTable

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

__all__ = ["category_colors", "profile_bars", "comparison_bars", "enrichment_heatmap", "epoch_lines", "image_panel",
           "scene_grid", "COLUMN_LABELS"]

COLUMN_LABELS = {
    "pooled_share": "share of the heatmap (%)",
    "share": "share of the heatmap (%)",
    "value_mean": "mean activation of the category's pixels (%)",
    "pooled": "pooled mean activation (%)",
    "value_threshold": "pixels above the threshold (%)",
    "pooled_enrichment": "enrichment (share / pixel share)",
    "enrichment": "enrichment (share / pixel share)",
}


def category_colors(table: LabelTable) -> dict[str, tuple[float, float, float]]:
    """A colour per category and per label name from the table's palette (a category takes
    the colour of its first evaluated label, e.g. flat -> road purple, nature -> vegetation)."""
    colors: dict[str, tuple[float, float, float]] = {}
    for label in table.labels:
        rgb = tuple(c / 255 for c in label.color)
        colors.setdefault(label.name, rgb)  # type: ignore[arg-type]
    for category in table.categories:
        members = [lab for lab in table.labels if lab.category == category]
        pick = next((lab for lab in members if lab.train_id != 255), members[0])
        colors.setdefault(category, tuple(c / 255 for c in pick.color))  # type: ignore[arg-type]
    return colors


def _figure(width: float, height: float) -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def profile_bars(summary: pd.DataFrame, table: LabelTable, *, baseline: pd.DataFrame | None = None,
                 column: str = "pooled_share", level: str = "category", title: str = "",
                 min_pixel_share: float = 0.0) -> Figure:
    """Bars per category of one (model, method, epoch) summary: `column` with its 95% CI
    (for mean columns) and the random baseline's mean ± std as black markers."""
    rows = summary[(summary["level"] == level)]
    if "pixel_share" in rows and min_pixel_share > 0:
        rows = rows[rows["pixel_share"] >= min_pixel_share]
    rows = rows[rows[column].notna()]
    colors = category_colors(table)
    fig = _figure(max(4.0, 0.6 * len(rows) + 1.5), 3.2)
    ax = fig.subplots()
    x = np.arange(len(rows))
    values = rows[column].to_numpy()
    bar_colors = [colors.get(c, (0.5, 0.5, 0.5)) for c in rows["category"]]
    lo_col, hi_col = f"{column}_lo", f"{column}_hi"
    if lo_col in rows and hi_col in rows:
        err = np.vstack([values - rows[lo_col].to_numpy(), rows[hi_col].to_numpy() - values])
        ax.bar(x, values, color=bar_colors, edgecolor="black", linewidth=0.5, yerr=np.clip(err, 0, None),
               capsize=3, label="model (95% CI)")
    else:
        ax.bar(x, values, color=bar_colors, edgecolor="black", linewidth=0.5, label="model")
    if baseline is not None:
        base = baseline[baseline["level"] == level].set_index("category")
        mean_col, std_col = f"{column}_mean", f"{column}_std"
        if mean_col in base:
            b = base.reindex(rows["category"])
            ax.errorbar(x, b[mean_col].to_numpy(), yerr=b[std_col].fillna(0).to_numpy(), fmt="D", color="black",
                        markersize=4, capsize=2, label="random models (mean ± std)")
    if column.endswith("enrichment"):
        ax.axhline(1.0, color="grey", linestyle="--", linewidth=0.8)
    ax.set_xticks(x, rows["category"], rotation=30, ha="right")
    ax.set_ylabel(COLUMN_LABELS.get(column, column))
    ax.set_xlabel(level)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7, loc="upper right")
    return fig


def comparison_bars(summary: pd.DataFrame, table: LabelTable, *, by: str = "model", column: str = "pooled_share",
                    level: str = "category", categories: Sequence[str] | None = None, title: str = "") -> Figure:
    """Grouped bars: categories on x, one bar per value of `by` (model or method)."""
    rows = summary[summary["level"] == level]
    cats = list(categories) if categories is not None else [c for c in table.categories if c in set(rows["category"])]
    groups = list(dict.fromkeys(rows[by]))
    fig = _figure(max(5.0, 0.35 * len(cats) * max(len(groups), 1) + 2), 3.4)
    ax = fig.subplots()
    width = 0.8 / max(len(groups), 1)
    cmap = __import__("matplotlib").colormaps["tab10"]
    for g, name in enumerate(groups):
        sub = rows[rows[by] == name].set_index("category").reindex(cats)
        ax.bar(np.arange(len(cats)) + (g - (len(groups) - 1) / 2) * width, sub[column].to_numpy(), width,
               label=str(name), color=cmap(g % 10), edgecolor="black", linewidth=0.4)
    if column.endswith("enrichment"):
        ax.axhline(1.0, color="grey", linestyle="--", linewidth=0.8)
    ax.set_xticks(np.arange(len(cats)), cats, rotation=30, ha="right")
    ax.set_ylabel(COLUMN_LABELS.get(column, column))
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7, title=by, title_fontsize=7)
    return fig


def enrichment_heatmap(summary: pd.DataFrame, table: LabelTable, *, baseline: pd.DataFrame | None = None,
                       column: str = "pooled_enrichment", level: str = "category",
                       categories: Sequence[str] | None = None, methods: Sequence[str] | None = None,
                       baseline_methods: Sequence[str] | None = None, limit: float = 4.0,
                       title: str = "") -> Figure:
    """One panel per model: methods (rows) x categories (columns) of an enrichment column
    (share of the heatmap / share of the pixels), each cell annotated with its value.

    Colours: log2(enrichment) on a diverging scale centred on 1 (white; red = attended more
    often than the category occurs, blue = less), clipped at `limit` and 1/`limit`; one colour
    bar labelled in enrichment. Grey "–": category absent from the images. `baseline` (a
    `Profile.baseline_summary()`: `<column>_mean` per method) adds a row "random (<method>)"
    under each panel's methods for every method it holds (or `baseline_methods`): the mean
    over randomly initialised copies of the architecture, the level a method reaches without
    learning anything. Categories default to those of `table` present in the images."""
    from matplotlib import colormaps
    from matplotlib.colors import Normalize

    rows = summary[summary["level"] == level]
    if "images" in rows:
        rows = rows[rows["images"] > 0]
    if column not in rows:
        raise ValueError(f"enrichment_heatmap: the summary has no column {column!r}; it has {list(rows.columns)}")
    present = set(rows.loc[rows[column].notna(), "category"])
    cats = list(categories) if categories is not None else [c for c in table.categories if c in present]
    models = list(dict.fromkeys(rows["model"])) if "model" in rows else [""]
    if not models or not cats:
        raise ValueError(f"enrichment_heatmap: nothing to draw at level {level!r} (models {models}, categories {cats}); "
                         "give a GradSUM summary with rows for that level")
    method_rows = list(methods) if methods is not None else list(dict.fromkeys(rows["method"]))
    base_rows: list[str] = []
    base = None
    mean_col = f"{column}_mean"
    if baseline is not None and mean_col in baseline:
        base = baseline[baseline["level"] == level]
        held = list(dict.fromkeys(base["method"]))
        base_rows = [m for m in (baseline_methods if baseline_methods is not None else held) if m in held]
    labels = method_rows + [f"random ({m})" for m in base_rows]
    limit = float(limit)
    if not limit > 1:
        raise ValueError(f"enrichment_heatmap: limit must be > 1 (the colour scale runs from 1/limit to limit); got {limit}")
    norm = Normalize(-np.log2(limit), np.log2(limit))
    cmap = colormaps["RdBu_r"].with_extremes(bad=(0.85, 0.85, 0.85))
    fig = _figure(max(4.0, 0.62 * len(cats) + 1.6) * len(models) + 1.2, 0.3 * len(labels) + 1.6)
    axes = np.atleast_1d(fig.subplots(1, len(models), sharey=True, squeeze=False)[0])
    image = None
    for ax, model in zip(axes, models, strict=True):
        sub = rows[rows["model"] == model] if "model" in rows else rows
        grid = sub.pivot_table(index="method", columns="category", values=column, sort=False, dropna=False)
        values = grid.reindex(index=method_rows, columns=cats).to_numpy(dtype=float)
        if base_rows and base is not None:
            b = base.pivot_table(index="method", columns="category", values=mean_col, sort=False, dropna=False)
            values = np.vstack([values, b.reindex(index=base_rows, columns=cats).to_numpy(dtype=float)])
        with np.errstate(divide="ignore", invalid="ignore"):
            logs = np.log2(np.where(values > 0, values, np.nan))
        image = ax.imshow(np.ma.masked_invalid(logs), cmap=cmap, norm=norm, aspect="auto")
        for (i, j), v in np.ndenumerate(values):
            strong = np.isfinite(logs[i, j]) and abs(logs[i, j]) > 0.6 * np.log2(limit)
            ax.text(j, i, "–" if not np.isfinite(v) else f"{v:.2f}", ha="center", va="center", fontsize=7,
                    color="white" if strong else "black")
        if base_rows:
            ax.axhline(len(method_rows) - 0.5, color="black", linewidth=1.2)
        ax.set_xticks(np.arange(len(cats)), cats, rotation=30, ha="right", fontsize=8)
        ax.set_yticks(np.arange(len(labels)), labels, fontsize=8)
        ax.tick_params(length=0)
        ax.set_title(str(model), fontsize=9)
    ticks = [t for t in (0.25, 0.5, 1.0, 2.0, 4.0, 8.0) if 1 / limit <= t <= limit]
    bar = fig.colorbar(image, ax=list(axes), shrink=0.9, pad=0.02, extend="both")
    bar.set_ticks(np.log2(ticks), labels=[f"{t:g}" for t in ticks])
    bar.set_label(COLUMN_LABELS.get(column, column) + ", log scale", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def epoch_lines(summary: pd.DataFrame, table: LabelTable, *, column: str = "pooled_share", level: str = "category",
                title: str = "") -> Figure:
    """One line per category across training epochs."""
    rows = summary[(summary["level"] == level) & summary["epoch"].notna()].sort_values("epoch")
    colors = category_colors(table)
    fig = _figure(5.5, 3.4)
    ax = fig.subplots()
    drawn = 0
    for category, sub in rows.groupby("category", sort=False):
        if sub[column].notna().any():
            ax.plot(sub["epoch"], sub[column], marker="o", label=str(category),
                    color=colors.get(str(category), None))
            drawn += 1
    if not drawn:
        ax.text(0.5, 0.5, "no heatmap mass at any epoch\n(all maps are zero after ReLU)", ha="center", va="center",
                transform=ax.transAxes)
    ax.set_xlabel("training epoch")
    ax.set_ylabel(COLUMN_LABELS.get(column, column))
    ax.set_title(title, fontsize=10)
    if drawn:
        ax.legend(fontsize=7, ncol=2)
    return fig


def image_panel(image: torch.Tensor, segmentation: torch.Tensor, heatmap: torch.Tensor, rows: pd.DataFrame,
                table: LabelTable, *, column: str = "share", title: str = "", heatmap_title: str = "heatmap") -> Figure:
    """image | segmentation | heatmap overlay (with its colour bar: min-max scaled 0..1, or
    signed on a symmetric scale, as in `gradsum.viz`) | category bars for one image."""
    from gradsum.viz import display_colorbar, overlay, to_hwc

    fig = _figure(11.0, 2.6)
    axes = fig.subplots(1, 4, width_ratios=[1, 1, 1, 1.2])
    axes[0].imshow(to_hwc(image))
    axes[0].set_title("image", fontsize=9)
    axes[1].imshow(table.colorize(segmentation).permute(1, 2, 0).cpu().numpy())
    axes[1].set_title("segmentation", fontsize=9)
    signed = bool((heatmap < 0).any())
    axes[2].imshow(overlay(image, heatmap))
    axes[2].set_title(heatmap_title, fontsize=9)
    bar = display_colorbar(fig, axes[2].inset_axes((1.03, 0.0, 0.05, 1.0)), signed)  # as high as the picture
    bar.set_label("signed, ±m" if signed else "min-max scaled", fontsize=7)
    for ax in axes[:3]:
        ax.set_xticks([])
        ax.set_yticks([])
    cats = rows[(rows["level"] == "category") & (rows["pixels"] > 0)]
    colors = category_colors(table)
    axes[3].barh(cats["category"], cats[column], color=[colors.get(c, (0.5, 0.5, 0.5)) for c in cats["category"]],
                 edgecolor="black", linewidth=0.4)
    axes[3].invert_yaxis()
    axes[3].set_xlabel(COLUMN_LABELS.get(column, column), fontsize=8)
    axes[3].tick_params(labelsize=7)
    fig.suptitle(title, fontsize=10)
    return fig


def scene_grid(images: torch.Tensor, segmentations: torch.Tensor | None, table: LabelTable | None, *,
               titles: Sequence[str] | None = None, columns: int = 4, max_images: int | None = None) -> Figure:
    """Example scenes (and their segmentations underneath, when given); at most `max_images`
    (None: all), the title saying "first N of M images" when some are left out."""
    from gradsum.viz import shown_note, to_hwc

    if max_images is not None and (isinstance(max_images, bool) or not isinstance(max_images, int) or max_images < 1):
        raise ValueError(f"scene_grid: max_images must be a positive int or None; got {max_images!r}")
    n = images.shape[0] if max_images is None else min(images.shape[0], max_images)
    cols = min(columns, n)
    blocks = -(-n // cols)
    per = 2 if segmentations is not None and table is not None else 1
    aspect = images.shape[-2] / images.shape[-1]
    fig = _figure(2.6 * cols, 2.6 * aspect * blocks * per + 0.3)
    axes = np.atleast_2d(fig.subplots(blocks * per, cols, squeeze=False))
    for ax in axes.flat:
        ax.set_axis_off()
    for i in range(n):
        r, c = divmod(i, cols)
        axes[r * per, c].imshow(to_hwc(images[i]))
        if titles is not None:
            axes[r * per, c].set_title(str(titles[i]), fontsize=7)
        if per == 2:
            axes[r * per + 1, c].imshow(table.colorize(segmentations[i]).permute(1, 2, 0).cpu().numpy())  # type: ignore[union-attr]
    if note := shown_note(n, images.shape[0]):
        fig.suptitle(note, fontsize=8)
    return fig
