"""Data: the `Sample` type, label tables, the built-in synthetic road scenes, readers for
Cityscapes / PASCAL VOC 2007 / driving logs / image folders / sklearn digits, transforms that
keep segmentation and boxes aligned, and `load_dataset(SPEC)`.

    import gradsum as gs
    ds = gs.data.RoadScenes(500, size=(66, 200), seed=0, shortcut=1.0, task="pothole")
    s = ds[0]            # Sample(image (3,H,W), segmentation (ROADS ids), boxes, target, meta)
    ds = gs.data.load_dataset("cityscapes:/data/cityscapes:split=val")
    ds = gs.data.load_dataset("voc:/data/VOC2007:size=224x224,resize=letterbox")  # one size

File readers check structure (layout, pairs, annotations, CSV paths) when built and decode
content (images, label ids) when an item is read; with on_error="skip" they check everything
when built, drop bad items from len() and list them in `.skipped` as (path, reason).
"""
from __future__ import annotations

from ._files import MAX_IMAGE_PIXELS, DataError
from .cityscapes import Cityscapes
from .digits import Digits
from .folder import ImageFolder
from .labels import CITYSCAPES, ROADS, VOC, VOC_CLASSES, Label, LabelTable
from .preview import preview_grid, save_preview
from .roads import RoadScenes, render_scene
from .samples import Batch, Sample, batches_by_size, collate
from .spec import SPEC_FORMS, load_dataset, parse_spec
from .subsets import Subset, with_boxes
from .transforms import (
    RESIZE_POLICIES,
    Brightness,
    CenterCrop,
    Compose,
    Fit,
    HorizontalFlip,
    RandomCrop,
    RandomHorizontalFlip,
    Resize,
)
from .udacity import DrivingLog
from .voc import VOCDetection

__all__ = [
    "MAX_IMAGE_PIXELS",
    "Sample", "Batch", "collate", "batches_by_size", "Subset", "with_boxes",
    "Label", "LabelTable", "CITYSCAPES", "ROADS", "VOC", "VOC_CLASSES",
    "RoadScenes", "render_scene",
    "Cityscapes", "VOCDetection", "DrivingLog", "ImageFolder", "Digits", "DataError",
    "Compose", "Resize", "Fit", "RESIZE_POLICIES", "CenterCrop", "RandomCrop", "HorizontalFlip", "RandomHorizontalFlip",
    "Brightness",
    "load_dataset", "parse_spec", "SPEC_FORMS",
    "preview_grid", "save_preview",
]  # fmt: skip
