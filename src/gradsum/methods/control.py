"""The random map: the control every evaluation needs. A heatmap method whose deletion AUC
or EBPG does not beat a map of random numbers explains nothing on that model.

Each image gets its own map, drawn from a generator seeded with `seed` and the image's own
values (a hash of its bytes), so the map of an image is the same whichever batch it is in.
`grid=None` draws one uniform value per pixel; `grid=n` draws an n x n (or h x w) grid and
upsamples it bilinearly, a control with the blob size of a CAM.
"""
from __future__ import annotations

import hashlib
from typing import Any

import torch
from torch import nn

from gradsum.core.attribution import Attribution, Cost
from gradsum.core.targets import Target
from gradsum.methods._args import check_int, check_seed
from gradsum.methods.base import Explainer, upsample
from gradsum.methods.registry import register

__all__ = ["RandomMap"]


def _image_seed(seed: int, image: torch.Tensor) -> int:
    digest = hashlib.blake2b(image.detach().float().cpu().contiguous().numpy().tobytes(), digest_size=8)
    return (int.from_bytes(digest.digest(), "little") ^ (seed % 2**63)) % 2**63


@register("random", family="control", passes="1 forward (the score only)",
          paper="control: uniform random map (e.g. Hooker et al. 2019; Adebayo et al. 2018 use random baselines)")
class RandomMap(Explainer):
    """A uniform random map U(0,1) per image (see the module docstring); `grid` = cells per
    side of a coarse random map (int or (h, w)), None = one value per pixel. Scores and targets
    are those of the model on x, so the metrics treat it as any other method."""

    def __init__(self, model: nn.Module, layer: Any = "auto", *, seed: int = 0, grid: int | tuple[int, int] | None = None):
        super().__init__(model, layer=layer)
        self.seed = check_seed(seed)
        if grid is not None:
            cells = (grid, grid) if not isinstance(grid, tuple | list) else tuple(grid)
            if len(cells) != 2:
                raise ValueError(f"grid must be an int or (h, w); got {grid!r}")
            grid = tuple(check_int(c, "grid", minimum=1) for c in cells)  # type: ignore[assignment]
        self.grid = grid

    def _explain(self, x: torch.Tensor, target: Target) -> Attribution:
        with torch.no_grad():
            output = self.model(x)
        bound = target.bind(output)
        scores = bound(output).detach()
        size = (x.shape[-2], x.shape[-1])
        cells = self.grid or size
        maps = []
        for image in x:
            gen = torch.Generator().manual_seed(_image_seed(self.seed, image))
            maps.append(torch.rand(cells, generator=gen))
        stacked = torch.stack(maps).to(device=x.device, dtype=torch.float32)
        return Attribution(
            method=self.name, maps=upsample(stacked, size), scores=scores, targets=bound.indices,
            cost=Cost(forward_passes=x.shape[0]),
            settings={"seed": self.seed, "grid": self.grid, "target": bound.description},
        )
