"""Driving-log reader (Udacity style): a CSV with image path column(s) and a steering angle.

Accepted CSVs:
- with a header naming an image column (`center`, `image`, `filename`, `path`, `frame_id`
  or `image_path`, or the `image_columns` you give) and a steering column (`steering`, or
  `steering_angle`, or `steering_column`);
- the Udacity simulator's driving_log.csv without header: center,left,right,steering,
  throttle,brake,speed.
Image paths are resolved as given (absolute), relative to `root` (default: the CSV's folder),
or as <root>/IMG/<file name> (the simulator writes absolute paths of the recording machine).
With several cameras (e.g. image_columns=("center","left","right")) each row yields one
sample per camera, and the left/right images get steering +/- `side_correction`.

Steering sign: positive = steer right (the simulator's convention, also RoadScenes').
Optional `segmentation_dir`: label PNG matched by file stem (<stem>.png or
<stem>_gtFine_labelIds.png), validated against `label_table` (default CITYSCAPES).
Validation policy: see `gradsum.data._files`.
"""
from __future__ import annotations

import csv
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ._files import DataError, FileDataset, inside_root, outside_root_error, read_label, read_rgb
from .labels import CITYSCAPES, LabelTable
from .samples import Sample

__all__ = ["DrivingLog"]

_SIM_COLUMNS = ["center", "left", "right", "steering", "throttle", "brake", "speed"]
_IMAGE_NAMES = ("center", "image", "filename", "path", "frame_id", "image_path", "img")
_STEER_NAMES = ("steering", "steering_angle", "angle")


class DrivingLog(FileDataset):
    """Images with a float steering target from a driving-log CSV (formats above).

    Args:
        csv_path: the CSV file.
        image_columns: column(s) holding image paths; default: the first known name present.
        steering_column: column with the angle; default: the first known name present.
        root: folder that relative paths are relative to (default: the CSV's folder).
        side_correction: steering added for a "left" camera column, subtracted for "right".
        segmentation_dir: optional folder of label-id PNGs matched by image file stem.
        label_table: table the segmentations are validated with.
        where: keep only rows whose columns equal these values, e.g. {"frame_id":
            "center_camera"} for the Udacity self-driving-car data's interpolated.csv.
        on_error: "raise" or "skip".
        transform: Sample -> Sample, applied last.
        allow_outside_root: read image paths that lie outside `root` (absolute paths elsewhere,
            "../" rows); by default such a row is refused (one line naming it).
    """

    def __init__(
        self,
        csv_path: str | Path,
        image_columns: Sequence[str] | str | None = None,
        steering_column: str | None = None,
        root: str | Path | None = None,
        side_correction: float = 0.2,
        segmentation_dir: str | Path | None = None,
        label_table: LabelTable = CITYSCAPES,
        where: Mapping[str, str] | None = None,
        on_error: str = "raise",
        transform: Callable[[Sample], Sample] | None = None,
        allow_outside_root: bool = False,
    ) -> None:
        super().__init__(on_error, transform)
        self.allow_outside_root = bool(allow_outside_root)
        self.csv_path = Path(csv_path)
        if not self.csv_path.is_file():
            raise FileNotFoundError(f"{self.csv_path}: driving-log CSV does not exist")
        self.root = Path(root) if root is not None else self.csv_path.parent
        self.label_table = label_table
        self.seg_dir = Path(segmentation_dir) if segmentation_dir is not None else None
        if self.seg_dir is not None and not self.seg_dir.is_dir():
            raise FileNotFoundError(f"{self.seg_dir}: segmentation directory does not exist")
        with self.csv_path.open(newline="") as fh:
            rows = [r for r in csv.reader(fh) if r and any(c.strip() for c in r)]
        if not rows:
            raise ValueError(f"{self.csv_path} is empty")
        header = [c.strip() for c in rows[0]]
        lower = [c.lower() for c in header]
        if any(n in lower for n in _STEER_NAMES) or steering_column in header:
            body, first_line = rows[1:], 2
        elif len(header) >= 4 and _is_float(header[3]):
            header, lower, body, first_line = _SIM_COLUMNS[: len(rows[0])], _SIM_COLUMNS, rows, 1
        else:
            raise ValueError(
                f"{self.csv_path}: cannot tell the columns: expected a header with a steering "
                f"column ({', '.join(_STEER_NAMES)}) or the simulator's headerless "
                f"{','.join(_SIM_COLUMNS)}; first row: {rows[0][:6]}"
            )
        if isinstance(image_columns, str):
            image_columns = [image_columns]
        if image_columns is None:
            found = [n for n in _IMAGE_NAMES if n in lower]
            if not found:
                raise ValueError(f"{self.csv_path}: no image column among {header}; "
                                 f"pass image_columns=")
            image_columns = [header[lower.index(found[0])]]
        steering_column = steering_column or next(
            (header[lower.index(n)] for n in _STEER_NAMES if n in lower), None)
        for col in [*image_columns, steering_column]:
            if col not in header:
                raise ValueError(f"{self.csv_path}: column {col!r} not found; columns: {header}")
        icols = [header.index(c) for c in image_columns]
        filters = []
        for col, val in (where or {}).items():
            if col not in header:
                raise ValueError(f"{self.csv_path}: where= column {col!r} not found; columns: {header}")
            filters.append((header.index(col), str(val)))
        scol = header.index(steering_column)  # type: ignore[arg-type]
        items = []
        for k, row in enumerate(body):
            line = first_line + k
            if any(ci >= len(row) or row[ci].strip() != val for ci, val in filters):
                continue
            try:
                angle = float(row[scol])
            except (IndexError, ValueError):
                self._problem(self.csv_path, DataError(
                    self.csv_path, f"line {line}: steering value "
                    f"{row[scol] if scol < len(row) else '(missing)'!r} is not a number"))
                continue
            for col, ci in zip(image_columns, icols, strict=True):
                raw = row[ci].strip() if ci < len(row) else ""
                path = self._resolve(raw)
                if isinstance(path, DataError):
                    self._problem(raw, DataError(self.csv_path, f"line {line}: image {raw!r} ({path.path}) "
                                                 f"{path.reason}", path.hint))
                    continue
                if path is None:
                    self._problem(raw or self.csv_path, FileNotFoundError(
                        f"{self.csv_path} line {line}: image {raw!r} not found (tried as given, "
                        f"relative to {self.root}, and {self.root / 'IMG'})"))
                    continue
                seg = None
                if self.seg_dir is not None:
                    seg = next((p for p in (self.seg_dir / f"{path.stem}.png",
                                            self.seg_dir / f"{path.stem}_gtFine_labelIds.png")
                                if p.is_file()), None)  # fmt: skip
                    if seg is None:
                        self._problem(path, FileNotFoundError(
                            f"{self.seg_dir / (path.stem + '.png')}: segmentation missing for "
                            f"image {path} ({self.csv_path} line {line})"))
                        continue
                corr = side_correction if col.lower() == "left" else (
                    -side_correction if col.lower() == "right" else 0.0)
                items.append((path, seg, angle + corr, col, line))
        if not items and not self.skipped:
            raise ValueError(f"{self.csv_path} has no data rows")
        self._finish(items)

    def _resolve(self, raw: str) -> Path | DataError | None:
        """The image file a CSV cell names: as given (absolute), relative to the root, or by
        file name under root/IMG or root. A file outside the root is refused (a DataError is
        returned) unless allow_outside_root; None when nothing exists."""
        if not raw:
            return None
        p = Path(raw)
        name = raw.replace("\\", "/").rsplit("/", 1)[-1]
        outside = None
        for cand in (p if p.is_absolute() else None, self.root / p, self.root / "IMG" / name,
                     self.root / name):  # fmt: skip
            if cand is not None and cand.is_file():
                if self.allow_outside_root or inside_root(cand, self.root):
                    return cand
                outside = outside or cand
        return outside_root_error(outside, self.root, "is a file that") if outside is not None else None

    def _item_path(self, item: Any) -> str:
        return str(item[0])

    def _load(self, item: Any) -> Sample:
        path, seg_path, angle, col, line = item
        image = read_rgb(path)
        seg = read_label(seg_path, self.label_table) if seg_path is not None else None
        if seg is not None and seg.shape != image.shape[1:]:
            raise DataError(seg_path, f"segmentation is {tuple(seg.shape)} but image {path} is "
                                      f"{tuple(image.shape[1:])}")
        try:
            sid = str(path.relative_to(self.root))
        except ValueError:
            sid = str(path)
        return Sample(image=image, id=sid, segmentation=seg, target=float(angle),
                      meta={"path": str(path), "camera": col, "csv_line": line,
                            "steering": float(angle), "task": "steering"})  # fmt: skip


def _is_float(s: str) -> bool:
    try:
        float(s)
    except ValueError:
        return False
    return True
