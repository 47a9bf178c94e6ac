"""Tile grids as matplotlib Figures (built without pyplot, so no global state)."""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

__all__ = ["tile_figure", "minmax_per_tile"]


def minmax_per_tile(tiles: torch.Tensor) -> torch.Tensor:
    """Scale each tile (N,C,h,w) to [0,1] on its own; a constant tile becomes 0.5."""
    flat = tiles.flatten(1)
    lo = flat.min(dim=1).values.view(-1, 1, 1, 1)
    hi = flat.max(dim=1).values.view(-1, 1, 1, 1)
    span = hi - lo
    out = (tiles - lo) / span.clamp_min(1e-12)
    return torch.where(span > 0, out, torch.full_like(out, 0.5))


def tile_figure(
    tiles: torch.Tensor,
    *,
    titles: Sequence[str] | None = None,
    title: str | None = None,
    ncols: int | None = None,
    cmap: str = "gray",
    tile_inches: float = 1.2,
) -> Figure:
    """A grid of image tiles (N,C,h,w) with C in {1,3}, values in [0,1] (clipped)."""
    from matplotlib.figure import Figure

    tiles = tiles.detach().float().cpu().clamp(0, 1)
    n = tiles.shape[0]
    ncols = ncols or max(1, math.ceil(math.sqrt(n)))
    nrows = max(1, math.ceil(n / ncols))
    fig = Figure(figsize=(ncols * tile_inches, nrows * tile_inches + (0.4 if title else 0.0)))
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.set_axis_off()
        if i >= n:
            continue
        tile = tiles[i]
        if tile.shape[0] == 1:
            ax.imshow(tile[0].numpy(), cmap=cmap, vmin=0, vmax=1, interpolation="nearest")
        else:
            ax.imshow(tile[:3].permute(1, 2, 0).numpy(), interpolation="nearest")
        if titles is not None and i < len(titles):
            ax.set_title(str(titles[i]), fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig
