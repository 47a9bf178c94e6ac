"""A picture of a dataset: a grid of images beside their colourised segmentations (PNG)."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from .labels import LabelTable
from .samples import Sample

__all__ = ["preview_grid", "save_preview"]


def preview_grid(
    dataset: Any, indices: Sequence[int] | int = 8, cols: int = 2, pad: int = 2,
    label_table: LabelTable | None = None,
) -> torch.Tensor:
    """(3, H', W') uint8 grid: each cell is the image and, when the sample has one, its
    segmentation coloured with the dataset's label table, side by side; pothole/object boxes
    are outlined in the segmentation panel."""
    if isinstance(indices, int):
        indices = list(range(min(indices, len(dataset))))
    if not indices:
        raise ValueError("preview_grid needs at least one sample index")
    table = label_table or getattr(dataset, "label_table", None)
    cells = []
    for i in indices:
        s: Sample = dataset[i]
        img = (s.image.clamp(0, 1) * 255).round().to(torch.uint8)
        panels = [img]
        if s.segmentation is not None and table is not None:
            col = table.colorize(s.segmentation).clone()
            if s.boxes is not None:
                for x1, y1, x2, y2 in s.boxes.round().long().tolist():
                    x2, y2 = max(x2 - 1, x1), max(y2 - 1, y1)
                    white = torch.tensor([255, 255, 255], dtype=torch.uint8)[:, None]
                    col[:, y1, x1 : x2 + 1] = white
                    col[:, y2, x1 : x2 + 1] = white
                    col[:, y1 : y2 + 1, x1] = white
                    col[:, y1 : y2 + 1, x2] = white
            panels.append(col)
        gap = torch.full((3, img.shape[1], pad), 255, dtype=torch.uint8)
        row = [panels[0]]
        for p in panels[1:]:
            row += [gap, p]
        cells.append(torch.cat(row, dim=2))
    h = max(c.shape[1] for c in cells)
    w = max(c.shape[2] for c in cells)
    rows = -(-len(cells) // cols)
    out = torch.full((3, rows * (h + pad) + pad, cols * (w + pad * 3) + pad), 255, dtype=torch.uint8)
    for k, c in enumerate(cells):
        y, x = pad + (k // cols) * (h + pad), pad + (k % cols) * (w + pad * 3)
        out[:, y : y + c.shape[1], x : x + c.shape[2]] = c
    return out


def save_preview(dataset: Any, path: str | Path, indices: Sequence[int] | int = 8, cols: int = 2,
                 scale: int = 1) -> Path:
    """Write `preview_grid` as a PNG (nearest-neighbour upscaled by `scale`)."""
    from PIL import Image

    grid = preview_grid(dataset, indices, cols)
    arr = grid.permute(1, 2, 0).contiguous().numpy()
    im = Image.fromarray(arr)
    if scale > 1:
        im = im.resize((im.width * scale, im.height * scale), Image.NEAREST)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.png")
    im.save(tmp)
    tmp.replace(path)
    return path
