"""Cityscapes reader (Cordts et al. 2016), also reading what `gradsum data synth` writes.

Expected layout under `root`::

    leftImg8bit/<split>/<city>/<name>_leftImg8bit.png
    gtFine/<split>/<city>/<name>_gtFine_labelIds.png      (label ids, single channel)
    labels.csv      optional: a label table (LabelTable.to_csv); default: CITYSCAPES
    targets.csv     optional: one row per image with an `id` column (= "<city>/<name>") and
                    target columns (e.g. steering, pothole) and `boxes` (JSON [[x1,y1,x2,y2],..])

Polygon JSON files and other gtFine files are ignored. Validation policy: see `_files`.
"""
from __future__ import annotations

import csv
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from ._files import DataError, FileDataset, read_label, read_rgb
from .labels import CITYSCAPES, LabelTable
from .samples import Sample

__all__ = ["Cityscapes"]

_IMG_SUFFIX = "_leftImg8bit.png"
_LBL_SUFFIX = "_gtFine_labelIds.png"


class Cityscapes(FileDataset):
    """Images with id segmentations from a Cityscapes-style directory (layout above).

    Args:
        root: directory holding leftImg8bit/ and gtFine/.
        split: "train", "val", "test" or any sub-directory of leftImg8bit/.
        cities: only these city folders (default all).
        label_table: table for validation; default root/labels.csv if present, else CITYSCAPES.
        task: a targets.csv column to use as `target` (e.g. "steering" -> float, "pothole" ->
            int); None = no target. Needs targets.csv.
        require_labels: if False, images without a label file yield segmentation=None.
        on_error: "raise" or "skip" (see `gradsum.data._files`).
        transform: Sample -> Sample, applied last.
    """

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        cities: Sequence[str] | None = None,
        label_table: LabelTable | None = None,
        task: str | None = None,
        require_labels: bool = True,
        on_error: str = "raise",
        transform: Callable[[Sample], Sample] | None = None,
    ) -> None:
        super().__init__(on_error, transform)
        self.root = Path(root)
        self.split = split
        img_dir = self.root / "leftImg8bit" / split
        if not img_dir.is_dir():
            have = sorted(p.name for p in (self.root / "leftImg8bit").glob("*") if p.is_dir())
            raise FileNotFoundError(
                f"{img_dir} does not exist: expected the Cityscapes layout "
                f"<root>/leftImg8bit/<split>/<city>/<name>{_IMG_SUFFIX}"
                + (f"; splits found: {have}" if have else "")
            )
        if label_table is None:
            label_table = (
                LabelTable.from_csv(self.root / "labels.csv")
                if (self.root / "labels.csv").is_file()
                else CITYSCAPES
            )
        self.label_table = label_table
        self.task = task
        self.targets = self._read_targets(task)
        items = []
        for city_dir in sorted(p for p in img_dir.iterdir() if p.is_dir()):
            if cities is not None and city_dir.name not in cities:
                continue
            for img in sorted(city_dir.glob(f"*{_IMG_SUFFIX}")):
                name = img.name[: -len(_IMG_SUFFIX)]
                lbl = self.root / "gtFine" / split / city_dir.name / f"{name}{_LBL_SUFFIX}"
                sid = f"{city_dir.name}/{name}"
                if not lbl.is_file():
                    if require_labels:
                        self._problem(lbl, FileNotFoundError(
                            f"{lbl}: label file missing for image {img} (expected "
                            f"gtFine/<split>/<city>/<name>{_LBL_SUFFIX}); pass "
                            "require_labels=False to read images without labels"))
                        continue
                    lbl = None
                if task is not None and sid not in self.targets:
                    self._problem(img, DataError(
                        self.root / "targets.csv", f"no row with id {sid!r} for image {img}"))
                    continue
                items.append((sid, img, lbl, city_dir.name))
        if not items and not self.skipped:
            raise ValueError(f"no images matching *{_IMG_SUFFIX} under {img_dir}")
        self._finish(items)

    def _read_targets(self, task: str | None) -> dict[str, dict[str, Any]]:
        path = self.root / "targets.csv"
        if not path.is_file():
            if task is not None:
                raise FileNotFoundError(
                    f"{path} does not exist: task={task!r} needs a targets.csv with an id column "
                    "and a column per target (written by `gradsum data synth`)"
                )
            return {}
        with path.open(newline="") as fh:
            rows = list(csv.DictReader(fh))
        if rows and "id" not in rows[0]:
            raise DataError(path, f"needs an 'id' column, got columns {list(rows[0])}")
        if task is not None and rows and task not in rows[0]:
            raise ValueError(
                f"task {task!r} is not a column of {path}; columns: {sorted(rows[0])}"
            )
        return {r["id"]: r for r in rows}

    def _item_path(self, item: Any) -> str:
        return str(item[1])

    def _load(self, item: Any) -> Sample:
        sid, img_path, lbl_path, city = item
        image = read_rgb(img_path)
        seg = read_label(lbl_path, self.label_table) if lbl_path is not None else None
        if seg is not None and seg.shape != image.shape[1:]:
            raise DataError(lbl_path, f"label map is {tuple(seg.shape)} but its image "
                                      f"{img_path} is {tuple(image.shape[1:])}")
        row = self.targets.get(sid, {})
        target: Any = None
        if self.task is not None:
            target = _parse_value(row[self.task])
        boxes = box_labels = None
        if row.get("boxes"):
            try:
                b = json.loads(row["boxes"])
            except json.JSONDecodeError as exc:
                raise DataError(self.root / "targets.csv", f"bad boxes for {sid!r}: {exc}") from None
            boxes = torch.tensor(b, dtype=torch.float32).reshape(-1, 4)
            pid = self.label_table.by_name("pothole").id if "pothole" in self.label_table else 0
            box_labels = torch.full((len(boxes),), pid, dtype=torch.int64)
        meta = {"path": str(img_path), "label_path": str(lbl_path) if lbl_path else None,
                "city": city, "split": self.split}  # fmt: skip
        meta.update({k: _parse_value(v) for k, v in row.items() if k not in ("id", "boxes")})
        if self.task is not None:
            meta["task"] = self.task
        return Sample(image=image, id=sid, segmentation=seg, boxes=boxes, box_labels=box_labels,
                      target=target, meta=meta)  # fmt: skip


def _parse_value(v: str) -> Any:
    """'3' -> 3, '0.25' -> 0.25, 'True' -> True, other strings unchanged."""
    if v in ("True", "False"):
        return v == "True"
    try:
        return int(v)
    except ValueError:
        pass
    try:
        return float(v)
    except ValueError:
        return v
