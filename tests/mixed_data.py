"""Small real-photo datasets of mixed image sizes, written as a user's folders would be: a
PASCAL VOC folder (JPEG photos from scikit-image, XML boxes, palette segmentations,
ImageSets) and a Cityscapes folder (PNG photos, labelId segmentations, targets.csv with
boxes). Each object is painted pure magenta inside its box, so an oracle "heatmap" (the
magenta pixels) lies exactly on the boxes and on the object's segment whatever resizing the
reader applies."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from gradsum.data.labels import VOC_CLASSES, VOC_PALETTE

MAGENTA = (255, 0, 255)
#: (id, photo, (height, width), objects as (class, (x1, y1, x2, y2)))
VOC_IMAGES = [
    ("000001", "astronaut", (48, 48), [("person", (10, 6, 30, 40))]),
    ("000002", "chelsea", (40, 60), [("cat", (5, 8, 25, 30)), ("dog", (36, 4, 56, 20))]),
    ("000003", "coffee", (44, 66), [("bottle", (40, 10, 60, 40))]),
    ("000004", "rocket", (64, 42), [("aeroplane", (8, 20, 30, 56))]),
    ("000005", "astronaut", (40, 60), [("person", (2, 2, 20, 30))]),
]


def photo(name: str, size: tuple[int, int]) -> np.ndarray:
    """A scikit-image sample photo resized to (height, width), uint8 RGB."""
    import skimage.data

    image = getattr(skimage.data, name)()
    if image.ndim == 2:
        image = np.stack([image] * 3, axis=-1)
    return np.asarray(Image.fromarray(image[..., :3]).resize((size[1], size[0]), Image.BILINEAR))


def _xml(objects: list[tuple[str, tuple[int, int, int, int]]], size: tuple[int, int]) -> str:
    body = "".join(
        f"<object><name>{n}</name><difficult>0</difficult><bndbox><xmin>{b[0]}</xmin>"
        f"<ymin>{b[1]}</ymin><xmax>{b[2]}</xmax><ymax>{b[3]}</ymax></bndbox></object>"
        for n, b in objects
    )
    return f"<annotation><size><width>{size[1]}</width><height>{size[0]}</height></size>{body}</annotation>"


def make_voc(root: Path, images: list = VOC_IMAGES) -> Path:
    """A VOC2007 folder (split "test") of photos of mixed sizes; VOC boxes are 1-based pixel
    indices (x1..x2 inclusive), so the painted region is columns x1-1 .. x2-1."""
    for sub in ("JPEGImages", "Annotations", "SegmentationClass", "ImageSets/Main"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for iid, name, size, objects in images:
        rgb = photo(name, size).copy()
        seg = np.zeros(size, dtype=np.uint8)
        for cls, (x1, y1, x2, y2) in objects:
            rgb[y1 - 1:y2, x1 - 1:x2] = MAGENTA
            seg[y1 - 1:y2, x1 - 1:x2] = VOC_CLASSES.index(cls) + 1
        Image.fromarray(rgb).save(root / "JPEGImages" / f"{iid}.jpg", quality=100, subsampling=0)
        (root / "Annotations" / f"{iid}.xml").write_text(_xml(objects, size))
        im = Image.fromarray(seg, mode="P")
        im.putpalette([c for rgb_ in VOC_PALETTE for c in rgb_])
        im.save(root / "SegmentationClass" / f"{iid}.png")
    (root / "ImageSets/Main/test.txt").write_text("".join(f"{iid}\n" for iid, *_ in images))
    return root


#: (name, photo, (height, width), pothole box (x1, y1, x2, y2) in pixel edges)
CITYSCAPES_IMAGES = [
    ("aachen_000000_000019", "coffee", (32, 64), (10, 18, 26, 28)),
    ("aachen_000001_000019", "chelsea", (40, 56), (30, 20, 50, 36)),
    ("bonn_000000_000019", "rocket", (48, 32), (4, 30, 20, 44)),
    ("bonn_000001_000019", "coffee", (32, 64), (40, 4, 60, 14)),
]


def make_cityscapes(root: Path, images: list = CITYSCAPES_IMAGES) -> Path:
    """A Cityscapes folder (split "val") of mixed sizes: sky on top, road below, a car (id 26)
    painted magenta in its box; targets.csv holds `pothole` (always 1) and the box."""
    rows = ["id,pothole,boxes"]
    for name, photo_name, size, (x1, y1, x2, y2) in images:
        city = name.split("_")[0]
        rgb = photo(photo_name, size).copy()
        rgb[y1:y2, x1:x2] = MAGENTA
        seg = np.full(size, 23, dtype=np.uint8)  # sky
        seg[size[0] // 2:] = 7  # road
        seg[y1:y2, x1:x2] = 26  # car
        for folder, suffix, array in (("leftImg8bit", "leftImg8bit", rgb), ("gtFine", "gtFine_labelIds", seg)):
            path = root / folder / "val" / city / f"{name}_{suffix}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(array).save(path)
        rows.append(f'{city}/{name},1,"{json.dumps([[x1, y1, x2, y2]])}"')
    (root / "targets.csv").write_text("\n".join(rows) + "\n")
    return root


def magenta_map(x: torch.Tensor) -> torch.Tensor:
    """(B,3,H,W) images in [0,1] -> (B,H,W) maps: 1 on pure magenta, falling to 0 at a
    distance of 0.35 (photo pixels are never that close; pixels blended with magenta by a
    resize still count)."""
    target = torch.tensor([1.0, 0.0, 1.0], device=x.device).view(1, 3, 1, 1)
    distance = (x - target).pow(2).sum(dim=1).sqrt()
    return (1 - distance / 0.35).clamp_min(0)
