"""PASCAL VOC 2007 reader (Everingham et al. 2010, "The PASCAL Visual Object Classes
Challenge"): boxes with the difficult flag, multi-label targets, optional segmentation.

Expected layout under `root` (a VOCdevkit folder holding VOC2007/ is accepted too)::

    JPEGImages/<id>.jpg
    Annotations/<id>.xml              <object><name>, <difficult>, <bndbox> xmin..ymax (1-based)
    ImageSets/Main/<split>.txt        one image id per line (split: train, val, trainval, test)
    SegmentationClass/<id>.png        optional: palette PNG of VOC ids (0..20, 255 = border)

Boxes are converted to 0-based pixel edges: x1 = xmin - 1, y1 = ymin - 1, x2 = xmax, y2 = ymax.
`box_labels` and segmentation use VOC ids (1..20 = VOC_CLASSES[id-1], 0 background, 255 void);
`target` is a multi-hot float (20,) over VOC_CLASSES of the objects present (difficult ones
included unless keep_difficult=False). Validation policy: see `gradsum.data._files`.
"""
from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from ._files import DataError, FileDataset, inside_root, outside_root_error, read_label, read_rgb
from .labels import VOC, VOC_CLASSES
from .samples import Sample

__all__ = ["VOCDetection"]


class VOCDetection(FileDataset):
    """PASCAL VOC 2007 images with boxes, multi-hot targets and optional segmentation.

    Args:
        root: the VOC2007 folder (or a VOCdevkit folder containing VOC2007/).
        split: name of a file ImageSets/Main/<split>.txt.
        segmentation: "auto" (read SegmentationClass/<id>.png when it exists), True (required:
            missing is an error), False (never).
        keep_difficult: keep objects marked difficult (boxes and target); default True.
        on_error: "raise" or "skip".
        allow_outside_root: read ids of the ImageSets list that point outside JPEGImages/ ("../x");
            by default such an id is refused (one line naming it).
        transform: Sample -> Sample, applied last.
    """

    label_table = VOC
    classes = list(VOC_CLASSES)

    def __init__(
        self,
        root: str | Path,
        split: str = "trainval",
        segmentation: bool | str = "auto",
        keep_difficult: bool = True,
        on_error: str = "raise",
        transform: Callable[[Sample], Sample] | None = None,
        allow_outside_root: bool = False,
    ) -> None:
        super().__init__(on_error, transform)
        root = Path(root)
        if not (root / "ImageSets").is_dir() and (root / "VOC2007" / "ImageSets").is_dir():
            root = root / "VOC2007"
        self.root, self.split = root, split
        if segmentation not in ("auto", True, False):
            raise ValueError(f"segmentation must be 'auto', True or False, got {segmentation!r}")
        self.segmentation, self.keep_difficult = segmentation, keep_difficult
        listing = root / "ImageSets" / "Main" / f"{split}.txt"
        if not listing.is_file():
            have = sorted(p.stem for p in (root / "ImageSets" / "Main").glob("*.txt"))
            raise FileNotFoundError(
                f"{listing} does not exist: expected the VOC layout <root>/ImageSets/Main/"
                f"<split>.txt, JPEGImages/, Annotations/"
                + (f"; splits found: {have[:10]}" if have else "")
            )
        ids = [ln.split()[0] for ln in listing.read_text().splitlines() if ln.strip()]
        if not ids:
            raise ValueError(f"{listing} lists no image ids")
        items = []
        for iid in ids:
            if not allow_outside_root and not inside_root(root / "JPEGImages" / f"{iid}.jpg", root / "JPEGImages"):
                self._problem(listing, outside_root_error(
                    listing, root, f"image id {iid!r} (read as {root / 'JPEGImages' / f'{iid}.jpg'})"))
                continue
            img = root / "JPEGImages" / f"{iid}.jpg"
            xml = root / "Annotations" / f"{iid}.xml"
            seg = root / "SegmentationClass" / f"{iid}.png"
            try:
                if not img.is_file():
                    raise FileNotFoundError(f"{img}: image listed in {listing} does not exist")
                objects = self._parse(xml)
                if segmentation is True and not seg.is_file():
                    raise FileNotFoundError(f"{seg}: segmentation required but missing")
            except (FileNotFoundError, DataError) as exc:
                self._problem(getattr(exc, "path", None) or xml, exc)
                continue
            use_seg = seg if segmentation is not False and seg.is_file() else None
            items.append((iid, img, objects, use_seg))
        self._finish(items)

    def _parse(self, xml: Path) -> list[tuple[int, tuple[float, ...], bool]]:
        if not xml.is_file():
            raise FileNotFoundError(f"{xml}: annotation file missing")
        try:
            tree = ET.parse(xml)
        except ET.ParseError as exc:
            raise DataError(xml, f"not valid XML ({exc})") from None
        objects = []
        for obj in tree.getroot().iter("object"):
            name = (obj.findtext("name") or "").strip()
            if name not in VOC_CLASSES:
                raise DataError(xml, f"unknown class {name!r}; VOC classes: {list(VOC_CLASSES)}")
            bb = obj.find("bndbox")
            try:
                x1, y1, x2, y2 = (float(bb.findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax"))  # type: ignore[union-attr, arg-type]
            except (AttributeError, TypeError, ValueError):
                raise DataError(xml, f"object {name!r} has no valid <bndbox>") from None
            difficult = (obj.findtext("difficult") or "0").strip() == "1"
            objects.append((VOC_CLASSES.index(name) + 1, (x1 - 1, y1 - 1, x2, y2), difficult))
        if not objects:
            raise DataError(xml, "annotation has no <object>: every VOC image has at least one")
        return objects

    def _item_path(self, item: Any) -> str:
        return str(item[1])

    def _load(self, item: Any) -> Sample:
        iid, img_path, objects, seg_path = item
        image = read_rgb(img_path)
        seg = read_label(seg_path, VOC) if seg_path is not None else None
        if seg is not None and seg.shape != image.shape[1:]:
            raise DataError(seg_path, f"segmentation is {tuple(seg.shape)} but image {img_path} "
                                      f"is {tuple(image.shape[1:])}")
        objs = [o for o in objects if self.keep_difficult or not o[2]]
        target = torch.zeros(len(VOC_CLASSES), dtype=torch.float32)
        for lid, _, _ in objs:
            target[lid - 1] = 1.0
        return Sample(
            image=image,
            id=iid,
            segmentation=seg,
            boxes=torch.tensor([o[1] for o in objs], dtype=torch.float32).reshape(-1, 4),
            box_labels=torch.tensor([o[0] for o in objs], dtype=torch.int64),
            target=target,
            meta={"path": str(img_path), "difficult": [o[2] for o in objs],
                  "classes": [VOC_CLASSES[o[0] - 1] for o in objs]},  # fmt: skip
        )
