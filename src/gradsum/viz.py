"""Pictures of heatmaps: colour maps, overlays on images, and a methods x images grid.

Display normalisation is explicit: `normalize="auto"` shows non-negative maps min-max
scaled on a sequential colour map, and signed maps scaled by max|m| on a diverging colour
map centred at zero (so red = pushes the score up, blue = pushes it down).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch

from gradsum.core.attribution import Attribution
from gradsum.core.normalize import maxabs, minmax

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["colorize", "overlay", "grid", "to_hwc", "to_uint8"]

DisplayNorm = Literal["auto", "minmax", "maxabs", "none"]
SEQUENTIAL = "jet"
DIVERGING = "RdBu_r"


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


def _display(heatmap: torch.Tensor | np.ndarray, normalize: DisplayNorm, cmap: str | None) -> tuple[np.ndarray, str]:
    m = torch.as_tensor(np.asarray(heatmap) if not isinstance(heatmap, torch.Tensor) else heatmap).detach().float().cpu()
    if m.ndim != 2:
        raise ValueError(f"expected one heatmap (H,W); got shape {tuple(m.shape)}")
    if m.numel() == 0:
        raise ValueError(f"the heatmap is empty (shape {tuple(m.shape)}); give an (H,W) map with H, W >= 1")
    if not bool(torch.isfinite(m).all()):
        raise ValueError("the heatmap contains NaN or infinite values; clean it first (e.g. torch.nan_to_num)")
    signed = bool((m < 0).any())
    mode = ("maxabs" if signed else "minmax") if normalize == "auto" else normalize
    if mode == "minmax":
        values = minmax(m[None])[0]
    elif mode == "maxabs":
        values = (maxabs(m[None])[0] + 1) / 2  # [-1,1] -> [0,1], zero at 0.5
    elif mode == "none":
        values = m.clamp(0, 1)
    else:
        raise ValueError(f"unknown display normalisation {normalize!r}; use auto, minmax, maxabs or none")
    return values.numpy(), cmap or (DIVERGING if mode == "maxabs" else SEQUENTIAL)


def colorize(heatmap: torch.Tensor | np.ndarray, cmap: str | None = None, normalize: DisplayNorm = "auto") -> np.ndarray:
    """A heatmap (H,W) as an RGB float image (H,W,3) in [0,1]."""
    from matplotlib import colormaps

    values, name = _display(heatmap, normalize, cmap)
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
) -> np.ndarray:
    """Blend a colourised heatmap over an image: (1 - alpha) * image + alpha * colour.
    Returns float32 (H,W,3) in [0,1]; the heatmap is resized (bilinear) to the image if needed."""
    if isinstance(alpha, bool) or not isinstance(alpha, int | float) or not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1]; got {alpha!r}")
    img = to_hwc(image)
    m = heatmap if isinstance(heatmap, torch.Tensor) else torch.as_tensor(np.asarray(heatmap))
    if tuple(m.shape[-2:]) != img.shape[:2]:
        m = torch.nn.functional.interpolate(m.float()[None, None], size=img.shape[:2], mode="bilinear",
                                            align_corners=False)[0, 0]
    return ((1 - alpha) * img + alpha * colorize(m, cmap, normalize)).astype(np.float32)


def grid(
    images: torch.Tensor,
    maps: Mapping[str, Attribution | torch.Tensor],
    *,
    titles: Sequence[str] | None = None,
    alpha: float = 0.5,
    normalize: DisplayNorm = "auto",
    cell: float = 1.8,
    max_images: int = 8,
) -> Figure:
    """A figure with the images in the first row and one row per method (overlays).

    images: (B,C,H,W); maps: method name -> Attribution or (B,H,W) tensor; titles: one per
    image (e.g. ids or predictions)."""
    from matplotlib.figure import Figure

    if not isinstance(images, torch.Tensor) or images.ndim != 4:
        got = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"grid: images must be a (B,C,H,W) tensor; got {got}")
    if isinstance(max_images, bool) or not isinstance(max_images, int) or max_images < 1:
        raise ValueError(f"grid: max_images must be a positive int; got {max_images!r}")
    if not isinstance(maps, Mapping):
        raise TypeError(f"grid: maps must be a dict {{method name: Attribution or (B,H,W) maps}}; got {type(maps).__name__}")
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
    fig = Figure(figsize=(cell * n + 1.2, cell * len(rows) * images.shape[-2] / images.shape[-1] + 0.4))
    axes = fig.subplots(len(rows), n, squeeze=False)
    for r, (name, m) in enumerate(rows):
        for c in range(n):
            ax = axes[r][c]
            picture: Any = to_hwc(images[c]) if m is None else overlay(images[c], m[c], alpha=alpha, normalize=normalize)
            ax.imshow(picture, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(name, fontsize=9)
            if r == 0 and titles is not None:
                ax.set_title(str(titles[c]), fontsize=8)
    fig.tight_layout()
    return fig
