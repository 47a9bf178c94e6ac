"""Pictures of heatmaps: colour maps, overlays on images, and a methods x images grid.

Display normalisation is explicit: `normalize="auto"` shows non-negative maps min-max
scaled (0..1 per image) on a sequential colour map, and signed maps on a SYMMETRIC diverging
scale per image, [-m, +m] centred at zero (red = pushes the score up, blue = pushes it down),
with m the 99.5th percentile of |map| (`SIGNED_PERCENTILE`; one hot pixel would otherwise
wash the rest of the map out; values beyond ±m take the end colours).
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch

from gradsum.core.attribution import Attribution
from gradsum.core.normalize import minmax

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["colorize", "overlay", "grid", "signed_scale", "signed_per_tile", "display_colorbar", "shown_note",
           "to_hwc", "to_uint8", "SIGNED_PERCENTILE"]

DisplayNorm = Literal["auto", "minmax", "maxabs", "none"]
SEQUENTIAL = "jet"
DIVERGING = "RdBu_r"
#: the percentile of |map| that sets the symmetric scale [-m, +m] of a signed map
SIGNED_PERCENTILE = 99.5


def to_hwc(image: torch.Tensor | np.ndarray) -> np.ndarray:
    """An image as float32 (H,W,3) numpy in [0,1]: accepts (3,H,W)/(1,H,W)/(H,W) tensors or
    (H,W,3)/(H,W) arrays; uint8 is divided by 255."""
    arr = image.detach().cpu().numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
    if arr.dtype == np.uint8:
        arr = arr.astype(np.float32) / 255.0
    arr = arr.astype(np.float32)
    if arr.ndim == 3 and arr.shape[0] in (1, 3) and arr.shape[-1] not in (1, 3):
        arr = arr.transpose(1, 2, 0)
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim != 3 or arr.shape[-1] not in (1, 3):
        raise ValueError(f"expected an image (3,H,W), (H,W,3) or (H,W); got shape {image.shape}")
    if arr.shape[-1] == 1:
        arr = np.repeat(arr, 3, axis=-1)
    return np.clip(arr, 0.0, 1.0)


def to_uint8(image: np.ndarray) -> np.ndarray:
    """float [0,1] -> uint8 [0,255]."""
    return (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def _robust_scale(m: torch.Tensor, percentile: float) -> torch.Tensor:
    """m for the symmetric scale [-m, m]: the `percentile` of |map| (100 = max |map|), the max
    when that percentile is 0 (a sparse map), 1 for an all-zero map."""
    a = m.abs().flatten()
    k = max(1, min(a.numel(), math.ceil(percentile / 100.0 * a.numel())))
    scale = a.kthvalue(k).values
    if not bool(scale > 0):
        scale = a.max()
    return scale if bool(scale > 0) else torch.ones(())


def signed_scale(heatmap: torch.Tensor | np.ndarray, percentile: float = SIGNED_PERCENTILE) -> float:
    """m of the symmetric display scale [-m, +m] of one signed map: the `percentile`-th
    percentile of |map| (default 99.5, so that one hot pixel does not wash the rest out;
    100 = max |map|); values beyond ±m are shown at the ends of the colour map."""
    return float(_robust_scale(_as_map(heatmap), _check_percentile(percentile)))


def _check_percentile(percentile: float) -> float:
    if isinstance(percentile, bool) or not isinstance(percentile, int | float) or not 0 < percentile <= 100:
        raise ValueError(f"percentile must be in (0, 100] (e.g. 99.5, or 100 for max |map|); got {percentile!r}")
    return float(percentile)


def _as_map(heatmap: torch.Tensor | np.ndarray) -> torch.Tensor:
    m = torch.as_tensor(np.asarray(heatmap) if not isinstance(heatmap, torch.Tensor) else heatmap).detach().float().cpu()
    if m.ndim != 2:
        raise ValueError(f"expected one heatmap (H,W); got shape {tuple(m.shape)}")
    if m.numel() == 0:
        raise ValueError(f"the heatmap is empty (shape {tuple(m.shape)}); give an (H,W) map with H, W >= 1")
    if not bool(torch.isfinite(m).all()):
        raise ValueError("the heatmap contains NaN or infinite values; clean it first (e.g. torch.nan_to_num)")
    return m


def _mode(m: torch.Tensor, normalize: DisplayNorm) -> str:
    if normalize == "auto":
        return "maxabs" if bool((m < 0).any()) else "minmax"
    if normalize not in ("minmax", "maxabs", "none"):
        raise ValueError(f"unknown display normalisation {normalize!r}; use auto, minmax, maxabs or none")
    return normalize


def _display(heatmap: torch.Tensor | np.ndarray, normalize: DisplayNorm, cmap: str | None,
             percentile: float = SIGNED_PERCENTILE) -> tuple[np.ndarray, str]:
    m = _as_map(heatmap)
    mode = _mode(m, normalize)
    if mode == "minmax":
        values = minmax(m[None])[0]
    elif mode == "maxabs":  # symmetric: -m -> 0, 0 -> 0.5, +m -> 1
        values = ((m / _robust_scale(m, _check_percentile(percentile))).clamp(-1, 1) + 1) / 2
    else:
        values = m.clamp(0, 1)
    return values.numpy(), cmap or (DIVERGING if mode == "maxabs" else SEQUENTIAL)


def colorize(heatmap: torch.Tensor | np.ndarray, cmap: str | None = None, normalize: DisplayNorm = "auto",
             percentile: float = SIGNED_PERCENTILE) -> np.ndarray:
    """A heatmap (H,W) as an RGB float image (H,W,3) in [0,1] (display scales in the module
    docstring; `percentile` sets the symmetric scale of signed maps)."""
    from matplotlib import colormaps

    values, name = _display(heatmap, normalize, cmap, percentile)
    if name not in colormaps:
        import difflib

        close = difflib.get_close_matches(name, list(colormaps), n=3)
        hint = f"; closest names: {', '.join(close)}" if close else ""
        raise ValueError(f"unknown cmap {name!r} (a matplotlib colour map name, e.g. 'jet', 'viridis'){hint}")
    return colormaps[name](values)[..., :3].astype(np.float32)


def overlay(
    image: torch.Tensor | np.ndarray,
    heatmap: torch.Tensor | np.ndarray,
    cmap: str | None = None,
    alpha: float = 0.5,
    normalize: DisplayNorm = "auto",
    percentile: float = SIGNED_PERCENTILE,
) -> np.ndarray:
    """Blend a colourised heatmap over an image: (1 - a) * image + a * colour, a = alpha for
    min-max scaled maps; for signed maps (diverging scale) a = alpha * sqrt(|value| / m), so the
    image shows through where the map is zero and the strongest values (±m) are drawn at `alpha`.
    Returns float32 (H,W,3) in [0,1]; the heatmap is resized (bilinear) to the image if needed."""
    if isinstance(alpha, bool) or not isinstance(alpha, int | float) or not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1]; got {alpha!r}")
    img = to_hwc(image)
    m = heatmap if isinstance(heatmap, torch.Tensor) else torch.as_tensor(np.asarray(heatmap))
    if tuple(m.shape[-2:]) != img.shape[:2]:
        m = torch.nn.functional.interpolate(m.float()[None, None], size=img.shape[:2], mode="bilinear",
                                            align_corners=False)[0, 0]
    m = _as_map(m)
    colour = colorize(m, cmap, normalize, percentile)
    a: Any = alpha
    if _mode(m, normalize) == "maxabs":  # |value| / m from the same display scale as the colours
        a = alpha * np.sqrt(np.abs(2 * _display(m, "maxabs", cmap, percentile)[0] - 1))[..., None]
    return ((1 - a) * img + a * colour).astype(np.float32)


def signed_per_tile(tiles: torch.Tensor) -> torch.Tensor:
    """Signed tiles (..., C, h, w) shown on their own symmetric scale: t / (2 max|t|) + 0.5, so
    grey = 0 and the tile's largest magnitude reaches 0 or 1 (an all-zero tile stays grey)."""
    tiles = tiles.detach().float()
    peak = tiles.abs().amax(dim=(-3, -2, -1), keepdim=True).clamp_min(1e-12)
    return tiles / (2 * peak) + 0.5


def display_colorbar(fig: Figure, cax: Any, signed: bool) -> Any:
    """The colour bar of a displayed map on axes `cax`: "0 .. 1" on the sequential colour map
    for min-max scaled maps, "-m 0 +m" on the diverging one for signed maps."""
    from matplotlib import colormaps
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    bar = fig.colorbar(ScalarMappable(Normalize(0, 1), colormaps[DIVERGING if signed else SEQUENTIAL]), cax=cax)
    if signed:
        bar.set_ticks([0, 0.5, 1], labels=["−m", "0", "+m"])
    else:
        bar.set_ticks([0, 1], labels=["0", "1"])
    bar.ax.tick_params(labelsize=6)
    return bar


def shown_note(shown: int, given: int, noun: str = "images") -> str:
    """'first 8 of 10 images' when a figure shows fewer than it was given, else ''. Every
    grid in gradsum says so in its title rather than dropping pictures silently."""
    return f"first {shown} of {given} {noun}" if shown < given else ""


def grid(
    images: torch.Tensor,
    maps: Mapping[str, Attribution | torch.Tensor],
    *,
    titles: Sequence[str] | None = None,
    alpha: float = 0.5,
    signed_alpha: float = 0.9,
    normalize: DisplayNorm = "auto",
    percentile: float = SIGNED_PERCENTILE,
    cell: float = 1.8,
    max_images: int = 8,
    title: str = "",
) -> Figure:
    """A figure with the images in the first row and one row per method (overlays), a colour
    bar per method row at the right.

    images: (B,C,H,W); maps: method name -> Attribution or (B,H,W) tensor; titles: one per
    image (e.g. ids or predictions). Colours per row (`normalize="auto"`): a row whose maps
    are all >= 0 is min-max scaled to 0..1 per image (sequential map, bar "0 .. 1"); a row
    with negative values is signed, on a symmetric scale per image [-m, +m], m = the
    `percentile`-th percentile of |map| (default 99.5; 100 = max |map|), zero in the middle
    (diverging map, bar "-m 0 +m"), drawn with opacity `signed_alpha` * sqrt(|value| / m) (the image
    shows where the map is zero, so sparse signed maps are not washed out in white). At most `max_images` columns: when fewer than B images are shown the title says
    "first N of B images" (after `title`, when given). Method names are written horizontally left of their row and the
    figure size follows the images' aspect, so labels do not overlap on wide images."""
    from matplotlib.figure import Figure

    if not isinstance(images, torch.Tensor) or images.ndim != 4:
        got = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"grid: images must be a (B,C,H,W) tensor; got {got}")
    if isinstance(max_images, bool) or not isinstance(max_images, int) or max_images < 1:
        raise ValueError(f"grid: max_images must be a positive int; got {max_images!r}")
    if not isinstance(maps, Mapping):
        raise TypeError(f"grid: maps must be a dict {{method name: Attribution or (B,H,W) maps}}; got {type(maps).__name__}")
    for name, a in (("alpha", alpha), ("signed_alpha", signed_alpha)):
        if isinstance(a, bool) or not isinstance(a, int | float) or not 0.0 <= a <= 1.0:
            raise ValueError(f"grid: {name} must be in [0, 1]; got {a!r}")
    _check_percentile(percentile)
    n = min(images.shape[0], max_images)
    rows = [("image", None)] + [(name, m.maps if isinstance(m, Attribution) else m) for name, m in maps.items()]
    for name, m in rows[1:]:
        if not isinstance(m, torch.Tensor | np.ndarray) or m.ndim != 3:
            got = tuple(m.shape) if isinstance(m, torch.Tensor | np.ndarray) else type(m).__name__
            raise ValueError(f"grid: maps of '{name}' must be (B,H,W); got {got}")
        if m.shape[0] < n:
            raise ValueError(f"maps of '{name}' hold {m.shape[0]} images; the grid shows {n}")
    if titles is not None and len(titles) < n:
        raise ValueError(f"grid: got {len(titles)} titles for {n} images; give one title per image")
    shown = [(name, None if m is None else torch.as_tensor(m[:n]).detach().float().cpu()) for name, m in rows]
    modes = [None] + [_mode(m, normalize) for _, m in shown[1:]]  # one scale per row: one colour bar
    aspect = images.shape[-2] / images.shape[-1]
    width = max(cell, 0.55 / aspect)  # a row at least ~0.55 in high: two lines of label fit
    label_w = 0.09 * max((len(name) for name, _ in rows), default=5) + 0.3
    fig = Figure(figsize=(width * n + label_w + 0.9, (width * aspect + 0.12) * len(rows) + 0.4 + 0.25 * bool(titles)),
                 layout="constrained")
    axes = fig.subplots(len(rows), n + 1, squeeze=False, width_ratios=[1.0] * n + [0.05])
    for r, ((name, m), mode) in enumerate(zip(shown, modes, strict=True)):
        for c in range(n):
            ax = axes[r][c]
            if m is None:
                picture: Any = to_hwc(images[c])
            else:
                picture = overlay(images[c], m[c], alpha=signed_alpha if mode == "maxabs" else alpha,
                                  normalize=mode, percentile=percentile)  # type: ignore[arg-type]
            ax.imshow(picture, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                scale = {"maxabs": "signed ±m", "minmax": "min-max 0..1", "none": "raw, clipped 0..1"}.get(str(mode))
                ax.set_ylabel(name if scale is None else f"{name}\n({scale})", fontsize=8, rotation=0,
                              ha="right", va="center", labelpad=4)
            if r == 0 and titles is not None:
                ax.set_title(str(titles[c]), fontsize=7)
        cax = axes[r][n]
        if mode is None:
            cax.set_axis_off()
            continue
        display_colorbar(fig, cax, signed=mode == "maxabs").ax.tick_params(length=2)
    signed = any(mode == "maxabs" for mode in modes)
    note = ", ".join(p for p in (
        title, shown_note(n, images.shape[0]),
        "min-max: each map scaled to 0..1" if any(mode == "minmax" for mode in modes) else "",
        f"signed: symmetric per map, m = {percentile:g}th percentile of |map|, red > 0 > blue" if signed else "",
    ) if p)
    if note:
        fig.suptitle(note, fontsize=8)
    return fig
