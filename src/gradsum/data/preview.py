"""A picture of a dataset: a grid of images beside their colourised segmentations (PNG).

Samples of several sizes (a folder of photos) are each letterboxed into the first sample's
size (segmentation padded with the label table's void id), and a warning says so; give the
dataset a size (data SPEC option size=HxW) to choose one.
"""
from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from .labels import LabelTable
from .samples import Sample

__all__ = ["preview_grid", "save_preview", "preview_shape"]


def _positive(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


def preview_shape(cell: tuple[int, int], n: int, cols: int, pad: int = 2, scale: int = 1) -> tuple[int, int]:
    """(H, W) in pixels of a preview of `n` cells of `cell` (H, W) each, `cols` per row,
    upscaled by `scale` (the layout of `preview_grid`)."""
    cols = min(cols, n)
    rows = -(-n // cols)
    return (rows * (cell[0] + pad) + pad) * scale, (cols * (cell[1] + pad * 3) + pad) * scale


def _check_preview(cell: tuple[int, int], n: int, cols: int, pad: int, scale: int) -> None:
    from ._files import MAX_IMAGE_PIXELS

    h, w = preview_shape(cell, n, cols, pad, scale)
    if h * w > MAX_IMAGE_PIXELS:
        raise ValueError(f"the preview would be {h}x{w} = {h * w:,} pixels ({n} samples, {min(cols, n)} per row, "
                         f"scale {scale}), over the limit of {MAX_IMAGE_PIXELS:,} pixels (MAX_IMAGE_PIXELS); "
                         "use a smaller scale, fewer samples or fewer per row")


def _cell_size(sample: Sample, table: LabelTable | None, pad: int) -> tuple[int, int]:
    h, w = sample.image.shape[-2:]
    panels = 2 if sample.segmentation is not None and table is not None else 1
    return h, panels * w + (panels - 1) * pad


def preview_grid(
    dataset: Any, indices: Sequence[int] | int = 8, cols: int = 2, pad: int = 2,
    label_table: LabelTable | None = None,
) -> torch.Tensor:
    """(3, H', W') uint8 grid: each cell is the image and, when the sample has one, its
    segmentation coloured with the dataset's label table, side by side; pothole/object boxes
    are outlined in the segmentation panel. Samples whose size differs from the first one's
    are letterboxed into it (a UserWarning says so)."""
    if isinstance(indices, int):
        indices = list(range(min(_positive(indices, "indices"), len(dataset))))
    if not indices:
        raise ValueError("preview_grid needs at least one sample index")
    _positive(cols, "cols")
    cols = min(cols, len(indices))
    table = label_table or getattr(dataset, "label_table", None)
    cells = []
    fit: Any = None
    refit: set[tuple[int, int]] = set()
    for k, i in enumerate(indices):
        s: Sample = dataset[i]
        if k == 0:  # refuse an absurd grid before making it (cells may differ: checked again below)
            _check_preview(_cell_size(s, table, pad), len(indices), cols, pad, 1)
            first = (int(s.image.shape[-2]), int(s.image.shape[-1]))
        elif (int(s.image.shape[-2]), int(s.image.shape[-1])) != first:
            if fit is None:
                from .spec import void_label
                from .transforms import Fit

                fit = Fit(first, "letterbox", pad_label=void_label(table))
            refit.add((int(s.image.shape[-2]), int(s.image.shape[-1])))
            s = fit(s)
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
    if refit:
        warnings.warn(f"the preview's images have {len(refit) + 1} sizes: each was letterboxed into the first "
                      f"image's size {first[0]}x{first[1]} (choose one with size=HxW in the data SPEC or --size HxW)",
                      UserWarning, stacklevel=2)
    h = max(c.shape[1] for c in cells)
    w = max(c.shape[2] for c in cells)
    _check_preview((h, w), len(cells), cols, pad, 1)
    rows = -(-len(cells) // cols)
    out = torch.full((3, rows * (h + pad) + pad, cols * (w + pad * 3) + pad), 255, dtype=torch.uint8)
    for k, c in enumerate(cells):
        y, x = pad + (k // cols) * (h + pad), pad + (k % cols) * (w + pad * 3)
        out[:, y : y + c.shape[1], x : x + c.shape[2]] = c
    return out


def save_preview(dataset: Any, path: str | Path, indices: Sequence[int] | int = 8, cols: int = 2,
                 scale: int = 1) -> Path:
    """Write `preview_grid` as an image file (PNG unless `path` names another format PIL
    writes), nearest-neighbour upscaled by `scale`; the result may hold at most
    MAX_IMAGE_PIXELS pixels (checked before the grid is made). Written atomically."""
    from PIL import Image

    from ._files import MAX_IMAGE_PIXELS

    _positive(scale, "scale")
    _positive(cols, "cols")
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{path} is a folder; give the preview's file name, e.g. {path / 'preview.png'}")
    if path.parent.exists() and not path.parent.is_dir():
        raise ValueError(f"{path.parent} is a file, so {path.name} cannot be written inside it; choose another path")
    fmt = Image.registered_extensions().get(path.suffix.lower())
    if fmt is None or fmt not in Image.SAVE:
        raise ValueError(f"cannot tell the image format of {path.name!r} from its extension; use e.g. preview.png")
    if isinstance(indices, int):
        indices = list(range(min(_positive(indices, "indices"), len(dataset))))
    if indices and scale > 1:  # the upscaled size, from the first sample, before anything is drawn
        first: Sample = dataset[indices[0]]
        _check_preview(_cell_size(first, getattr(dataset, "label_table", None), 2), len(indices), cols, 2, scale)
    grid = preview_grid(dataset, indices, cols)
    if grid.shape[1] * grid.shape[2] * scale * scale > MAX_IMAGE_PIXELS:
        raise ValueError(f"the preview would be {grid.shape[1] * scale}x{grid.shape[2] * scale} pixels, over the "
                         f"limit of {MAX_IMAGE_PIXELS:,} pixels (MAX_IMAGE_PIXELS); use a smaller scale")
    arr = grid.permute(1, 2, 0).contiguous().numpy()
    im = Image.fromarray(arr)
    if scale > 1:
        im = im.resize((im.width * scale, im.height * scale), Image.NEAREST)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        im.save(tmp, format=fmt)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
