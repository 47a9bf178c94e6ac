"""Filter grids (what the weights look like) and feature-map grids (what one image does
to a layer), after the CS231n/ConvNetJS visualisations (seeds/004, "First Layers")."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
from torch import nn

from gradsum.core.layers import resolve_layer
from gradsum.core.probe import Probe, preserved_state
from gradsum.features._plot import minmax_per_tile, tile_figure

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

__all__ = ["FilterGrid", "FeatureMaps", "filter_grid", "feature_maps", "first_conv"]


def first_conv(model: nn.Module) -> tuple[str, nn.Conv2d]:
    """The first nn.Conv2d of `model` in registration order."""
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d):
            return name, module
    raise ValueError(f"{type(model).__name__} has no nn.Conv2d layer; give layer=<name> of a conv layer")


@dataclass
class FilterGrid:
    """Tiles of a conv layer's weights, each min-max scaled on its own to [0,1].

    tiles: (N,3,k,k) RGB tiles (one per filter) when the layer reads 3 channels, else
    (N,1,k,k) grayscale tiles, one per (filter, input channel) pair; labels name them.
    """

    layer: str
    shape: tuple[int, ...]
    tiles: torch.Tensor
    labels: list[str]
    rgb: bool
    total_tiles: int

    @property
    def title(self) -> str:
        shape = "x".join(str(s) for s in self.shape)
        shown = "" if self.tiles.shape[0] == self.total_tiles else f" (first {self.tiles.shape[0]} of {self.total_tiles} tiles)"
        return f"{self.layer} weights {shape}{shown}"

    def figure(self, ncols: int | None = None) -> Figure:
        return tile_figure(self.tiles, titles=self.labels, title=self.title, ncols=ncols, tile_inches=0.8)


def filter_grid(model: nn.Module, layer: str | nn.Module | None = None, *, max_tiles: int = 64) -> FilterGrid:
    """Weights of conv `layer` (default: the first conv) as tiles.

    A layer with 3 input channels shows each filter as one FxFx3 RGB tile (AlexNet
    64x3x11x11, ResNet 64x3x7x7); any other layer shows one grayscale FxF tile per input
    channel of each filter, filter by filter, capped at `max_tiles`.
    """
    if isinstance(max_tiles, bool) or not isinstance(max_tiles, int) or max_tiles < 1:
        raise ValueError(f"max_tiles must be a positive int, got {max_tiles!r}")
    if layer is None:
        name, module = first_conv(model)
    else:
        name, module = resolve_layer(model, layer)
    weight = getattr(module, "weight", None)
    if not isinstance(weight, torch.Tensor) or weight.ndim != 4:
        got = "no weight" if weight is None else f"weight of shape {tuple(weight.shape)}"
        raise ValueError(f"filter_grid needs a conv layer with a 4-D weight; layer '{name}' has {got}")
    w = weight.detach().float()
    out_ch, in_ch = w.shape[:2]
    if in_ch == 3:
        tiles = minmax_per_tile(w[:max_tiles])
        labels = [str(i) for i in range(tiles.shape[0])]
        total = out_ch
    else:
        n = min(max_tiles, out_ch * in_ch)
        flat = w.reshape(out_ch * in_ch, 1, *w.shape[2:])[:n]
        tiles = minmax_per_tile(flat)
        labels = [f"{i // in_ch}.{i % in_ch}" for i in range(n)]
        total = out_ch * in_ch
    return FilterGrid(name, tuple(w.shape), tiles.cpu(), labels, in_ch == 3, total)


@dataclass
class FeatureMaps:
    """A layer's feature maps for one image: maps (C,h,w) raw, total = maps.sum(0)."""

    layer: str
    maps: torch.Tensor
    total: torch.Tensor = field(repr=False)

    def figure(self, max_maps: int = 64, ncols: int | None = None) -> Figure:
        """Grid of the first `max_maps` maps (each min-max scaled) followed by their sum."""
        shown = self.maps[:max_maps].unsqueeze(1)
        tiles = minmax_per_tile(torch.cat([shown, self.total[None, None]], 0))
        labels = [str(i) for i in range(shown.shape[0])] + ["sum"]
        c, h, w = self.maps.shape
        return tile_figure(tiles, titles=labels, title=f"{self.layer} feature maps {c}x{h}x{w} and their sum",
                           ncols=ncols, cmap="viridis", tile_inches=0.9)


def feature_maps(model: nn.Module, image: torch.Tensor, layer: str | nn.Module) -> FeatureMaps:
    """Run one image (C,H,W) or (1,C,H,W) through `model` in eval mode and return the
    output maps of `layer` (C,h,w) and their sum over channels (the "layer visualisation")."""
    from gradsum.methods.base import prepare_input
    from gradsum.metrics._common import forward_checked

    if not isinstance(image, torch.Tensor):
        raise TypeError(f"feature_maps: image must be a torch.Tensor (C,H,W); got {type(image).__name__}")
    if image.ndim == 3:
        image = image.unsqueeze(0)
    if image.ndim != 4 or image.shape[0] != 1:
        raise ValueError(f"feature_maps takes one image (C,H,W) or (1,C,H,W); got shape {tuple(image.shape)}")
    image, _ = prepare_input(model, image, "image")
    name, module = resolve_layer(model, layer)
    with preserved_state(model), Probe(model, [(name, module)]) as probe, torch.no_grad():
        forward_checked(model, image, "image")
        act = probe.activation(name, spatial=True, method="feature_maps").detach()[0]
    return FeatureMaps(name, act, act.sum(0))
