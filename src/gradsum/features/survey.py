"""A survey of what a conv net's layers respond to, as one result: the first layer's
filters, the channels of each conv stage that respond most on a dataset, their
activation-maximisation images (Erhan et al. 2009) and the dataset patches that excite the
last stage's channels most (Zeiler & Fergus 2014).

`layer_survey` computes; `LayerSurvey` holds everything a report draws and tabulates
(`gradsum.report.sections_features.features_section` renders it).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from gradsum.core.threads import one_intra_op_thread
from gradsum.data.subsets import dataset_images
from gradsum.features.activation_max import PRESETS, MaxResult, maximize
from gradsum.features.filters import FilterGrid, filter_grid
from gradsum.features.objectives import channel
from gradsum.features.patches import TopPatches, patch_attributions, top_patches

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

__all__ = [
    "FeatureBudget",
    "LayerChannels",
    "LayerSurvey",
    "activation_layers",
    "layer_survey",
]

_ACTIVATIONS = (nn.ReLU, nn.LeakyReLU, nn.ELU, nn.GELU, nn.SiLU, nn.ReLU6, nn.PReLU, nn.Hardswish, nn.Mish,
                nn.SELU, nn.CELU)

#: the activation-maximisation preset of the survey (normalised gradient ascent on unbounded pixels)
PRESET = "keras"


@dataclass(frozen=True)
class FeatureBudget:
    """Sizes of a layer survey: images streamed (channel choice and patches), channels per
    layer, patches per channel, layers at most, side of the square activation-maximisation
    images (capped by the data's smaller side)."""

    images: int = 160
    channels: int = 8
    patches: int = 8
    max_layers: int = 4
    side: int = 96

    @classmethod
    def quick(cls) -> FeatureBudget:
        return cls(images=64, channels=6, patches=6)


# ------------------------------------------------------------------------------------ shared helpers



# ------------------------------------------------------------------------------------ layers

def activation_layers(model: nn.Module, max_layers: int = 4) -> list[str]:
    """The layers whose channels a survey visualises: the activation module (ReLU, GELU,
    ...) that follows each conv layer in registration order (the conv itself when none
    does), at most `max_layers` of them spread from first to last; the last one is the
    model's default explanation layer (`gradsum.models.default_layer_for`) when it has one."""
    from gradsum.models import default_layer_for

    found: list[str] = []
    pending: str | None = None
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d):
            if pending is not None:
                found.append(pending)
            pending = name
        elif isinstance(module, _ACTIVATIONS) and pending is not None:
            found.append(name)
            pending = None
    if pending is not None:
        found.append(pending)
    found = list(dict.fromkeys(found))
    last = default_layer_for(model)
    if last is not None:
        found = found[: found.index(last)] if last in found else found[:-1]
    elif found:
        last = found.pop()
    if last is None:
        raise ValueError(f"{type(model).__name__} has no nn.Conv2d layer: the layer survey needs a conv net")
    keep = max(0, max_layers - 1)
    if len(found) > keep:
        found = [found[round(i * (len(found) - 1) / max(1, keep - 1))] for i in range(keep)] if keep > 1 else found[:keep]
    return [*dict.fromkeys(found), last]


def channel_statistics(model: nn.Module, layers: list[str], x: torch.Tensor, border: int,
                       batch_size: int = 8) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Per layer: (C,) mean over images of each channel's mean activation (the
    activation-maximisation objective, `border` positions cropped on each side) and (C,) its
    maximum over images. One forward pass per `batch_size` images; the model's state is kept."""
    from gradsum.core.layers import resolve_layer
    from gradsum.core.probe import Probe, preserved_state

    resolved = [resolve_layer(model, name) for name in layers]
    sums: dict[str, torch.Tensor] = {}
    best: dict[str, torch.Tensor] = {}
    with preserved_state(model), Probe(model, resolved) as probe, torch.no_grad():
        for chunk in x.split(batch_size):
            probe.reset()
            model(chunk)
            for name, _ in resolved:
                a = probe.activation(name, spatial=True, method="the layer survey")
                b = min(border, (min(a.shape[-2:]) - 1) // 2)
                if b > 0:
                    a = a[..., b:a.shape[-2] - b, b:a.shape[-1] - b]
                m = a.mean(dim=(2, 3))                                   # (B, C)
                sums[name] = sums.get(name, 0) + m.sum(0)
                top = m.max(0).values
                best[name] = torch.maximum(best[name], top) if name in best else top
    n = x.shape[0]
    return {name: (sums[name] / n, best[name]) for name, _ in resolved}


# ------------------------------------------------------------------------------------ results

@dataclass
class LayerChannels:
    """One surveyed layer. mean (C,): each channel's mean activation (border cropped)
    averaged over the images; best (C,): its largest value on one image; chosen: the
    channels with the highest `mean` (at most the budget's `channels`), in ascending index
    order; maxima: their activation-maximisation result (image i maximises chosen[i])."""

    layer: str
    mean: torch.Tensor
    best: torch.Tensor
    chosen: list[int]
    maxima: MaxResult

    @property
    def n_channels(self) -> int:
        return int(self.mean.shape[0])


@dataclass
class LayerSurvey:
    """What a conv net's layers respond to on a dataset.

    filters: the first conv layer's weights as tiles; layers: one `LayerChannels` per
    surveyed layer (from `activation_layers`, first to last); patches: the dataset patches
    that activate the chosen channels of the last layer most (`top_patches`, at most one per
    image); n_images: images streamed; side: side of the square optimised images; preset,
    steps: the activation-maximisation preset and its steps; seed: its seed;
    patch_attributions: (C,k,3,r,r) attribution of each patch's unit, cropped like `patches`
    (`gradsum.features.patch_attributions`), computed with `patch_method` (None when not computed)."""

    filters: FilterGrid
    layers: list[LayerChannels]
    patches: TopPatches
    n_images: int
    side: int
    preset: str
    steps: int
    seed: int
    budget: FeatureBudget
    patch_attributions: torch.Tensor | None = None
    patch_method: str | None = None

    @property
    def layer_names(self) -> list[str]:
        return [lc.layer for lc in self.layers]

    @property
    def last(self) -> str:
        return self.layers[-1].layer

    def table(self) -> pd.DataFrame:
        """One row per layer and chosen channel: layer, channel, channels_in_layer, data_mean,
        data_best (its mean / best value on the images), optimised (the objective on its
        optimised image) and ratio_to_best_scene = optimised / max(data_best, 1e-12)."""
        import pandas as pd

        records = []
        for lc in self.layers:
            values = lc.maxima.values.tolist()
            mean, best = lc.mean.tolist(), lc.best.tolist()
            for i, c in enumerate(lc.chosen):
                records.append({"layer": lc.layer, "channel": c, "channels_in_layer": lc.n_channels,
                                "data_mean": float(mean[c]), "data_best": float(best[c]),
                                "optimised": float(values[i]),
                                "ratio_to_best_scene": float(values[i]) / max(float(best[c]), 1e-12)})
        return pd.DataFrame(records)


# ------------------------------------------------------------------------------------ survey

def layer_survey(
    model: nn.Module,
    dataset: Any,
    *,
    budget: FeatureBudget | None = None,
    seed: int = 0,
    device: str | torch.device | None = None,
    patch_method: str | None = "guided-backprop",
) -> LayerSurvey:
    """Survey `model`'s conv stages on the first `budget.images` images of `dataset` (an
    (N,C,H,W) tensor or a dataset of Samples, pixels in [0,1]).

    For each layer of `activation_layers(model, budget.max_layers)`: each channel's mean
    activation on the images (the objective, keras border cropped), the `budget.channels`
    channels with the highest mean, and their activation maximisation (keras preset:
    x += 10 g / ||g||_2 on unbounded pixels, 30 steps, one batch per layer, `seed`) on
    square images of side min(budget.side, H, W). Then the `budget.patches` dataset patches
    (receptive-field crops) that activate the last layer's chosen channels most, and the
    first conv layer's filters. patch_method: the attribution method whose image of each patch's
    unit (NeuronTarget at the patch's position) is kept, cropped like the patch, as
    `patch_attributions` (Springenberg et al. 2015 for "guided-backprop"; None = skip). Runs
    with one intra-op thread (restored after) on `device`
    (None = the model's device; the model is not moved). The model's state is kept.
    """
    from gradsum.core.devices import model_device, resolve_device

    bud = budget or FeatureBudget()
    if not isinstance(bud, FeatureBudget):
        raise TypeError(f"budget must be a FeatureBudget (e.g. FeatureBudget.quick()); got {type(bud).__name__}")
    home = model_device(model)
    asked = home if device is None else resolve_device(device)
    if asked.type != home.type or None not in (asked.index, home.index) and asked.index != home.index:
        raise ValueError(f"device={device!r} but the model's parameters are on {home}; move the model there "
                         "(model.to(device)) or leave device=None")
    x, _, _ = dataset_images(dataset, bud.images)
    x = x.to(home)
    layers = activation_layers(model, bud.max_layers)
    border = int(PRESETS[PRESET]["border"])
    side = min(bud.side, *x.shape[-2:])
    with one_intra_op_thread():
        grid = filter_grid(model)
        stats = channel_statistics(model, layers, x, border)
        surveyed = []
        for layer in layers:
            mean, best = stats[layer]
            chosen = mean.argsort(descending=True)[: min(bud.channels, mean.shape[0])].sort().values.tolist()
            res = maximize(model, channel(layer, chosen), image_size=(side, side), preset=PRESET, seed=seed)
            surveyed.append(LayerChannels(layer, mean, best, chosen, res))
        tp = top_patches(model, layers[-1], x, k=bud.patches, channels=surveyed[-1].chosen, batch_size=8)
        attributions = None if patch_method is None else patch_attributions(model, tp, x, patch_method)
    steps = int(surveyed[0].maxima.settings["steps"])
    return LayerSurvey(grid, surveyed, tp, x.shape[0], side, PRESET, steps, seed, bud, attributions, patch_method)
