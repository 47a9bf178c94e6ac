"""Shared plumbing of the file readers: image/label decoding with errors that name the file,
and the `on_error="raise" | "skip"` policy.

Validation policy (the same for every reader):
- Structure is checked when the dataset is built: the layout exists, every image has its
  label/annotation file, annotation files parse and are not empty, CSV rows point at files
  that exist. With on_error="raise" the first problem raises, naming the file.
- Content (decoding each image, label ids against the label table) is checked when an item
  is read (`__getitem__`) with on_error="raise", so building a dataset stays cheap.
- With on_error="skip" everything, content included, is checked eagerly at construction, so
  that `len()` excludes bad items; each skipped item is recorded in `skipped` as
  (path, reason) and a warning states how many were skipped. Nothing is dropped silently.
"""
from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .labels import LabelTable
from .samples import Sample

__all__ = ["DataError", "FileDataset", "read_rgb", "read_label", "ON_ERROR"]

ON_ERROR = ("raise", "skip")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm")


class DataError(ValueError):
    """A data file is unreadable or inconsistent; `path` names it."""

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{path}: {reason}")


def _open(path: Path):  # type: ignore[no-untyped-def]
    from PIL import Image

    if not path.is_file():
        raise FileNotFoundError(f"{path}: file does not exist")
    try:
        im = Image.open(path)
        im.load()
    except Exception as exc:  # PIL raises OSError, SyntaxError, ValueError... for bad files
        raise DataError(path, f"cannot decode image ({exc}); the file is truncated or not an "
                              "image: re-export it or use on_error='skip'") from None
    return im


def read_rgb(path: str | Path) -> torch.Tensor:
    """Decode an image file to float32 (3,H,W) in [0,1] (grey and palette images become RGB)."""
    im = _open(Path(path))
    arr = np.asarray(im.convert("RGB"), dtype=np.uint8).transpose(2, 0, 1)
    return torch.from_numpy(arr.astype(np.float32) / np.float32(255.0))


def read_label(path: str | Path, table: LabelTable | None) -> torch.Tensor:
    """Decode a label-id PNG (mode L, P (palette indices), I or I;16) to int64 (H,W) and
    validate it against `table`."""
    path = Path(path)
    im = _open(path)
    if im.mode not in ("L", "P", "I", "I;16", "I;16B", "I;16L"):
        raise DataError(path, f"a label map must be a single-channel or palette PNG of label ids, "
                              f"got mode {im.mode!r} (a colour image?)")
    seg = torch.from_numpy(np.asarray(im).astype(np.int64))
    if table is not None:
        try:
            table.validate(seg)
        except ValueError as exc:
            raise DataError(path, str(exc)) from None
    return seg


class FileDataset(torch.utils.data.Dataset):
    """Base of the file readers: `items` (one record per sample), `_load(item) -> Sample`,
    `_item_path(item)` for messages, and the on_error policy (see the module docstring)."""

    label_table: LabelTable | None = None

    def __init__(self, on_error: str, transform: Callable[[Sample], Sample] | None) -> None:
        if on_error not in ON_ERROR:
            raise ValueError(f"on_error must be one of {ON_ERROR}, got {on_error!r}")
        self.on_error = on_error
        self.transform = transform
        self.skipped: list[tuple[str, str]] = []
        self.items: list[Any] = []

    # structural problems found while scanning
    def _problem(self, path: str | Path, exc: Exception) -> None:
        if self.on_error == "raise":
            raise exc
        self.skipped.append((str(path), _reason(exc)))

    def _finish(self, items: Sequence[Any]) -> None:
        """Keep `items`; with on_error='skip' decode each now and drop (and record) bad ones."""
        if self.on_error == "skip":
            good = []
            for it in items:
                try:
                    self._load(it)
                except (DataError, FileNotFoundError, OSError, ValueError) as exc:
                    self.skipped.append((getattr(exc, "path", None) or str(self._item_path(it)),
                                         _reason(exc)))
                else:
                    good.append(it)
            items = good
        self.items = list(items)
        if self.skipped:
            shown = "; ".join(f"{p} ({r})" for p, r in self.skipped[:3])
            more = f" and {len(self.skipped) - 3} more" if len(self.skipped) > 3 else ""
            warnings.warn(
                f"{type(self).__name__}: skipped {len(self.skipped)} bad item(s): {shown}{more} "
                "(see .skipped)",
                stacklevel=3,
            )

    def _load(self, item: Any) -> Sample:  # pragma: no cover - abstract
        raise NotImplementedError

    def _item_path(self, item: Any) -> str:  # pragma: no cover - abstract
        raise NotImplementedError

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> Sample:
        if isinstance(index, torch.Tensor):
            index = int(index)
        n = len(self.items)
        if not -n <= index < n:
            raise IndexError(f"{type(self).__name__} index {index} out of range for {n} items")
        sample = self._load(self.items[index])
        return self.transform(sample) if self.transform is not None else sample

    def report(self) -> str:
        """One line per skipped item (empty string when nothing was skipped)."""
        return "\n".join(f"skipped {p}: {r}" for p, r in self.skipped)


def _reason(exc: Exception) -> str:
    if isinstance(exc, DataError):
        return exc.reason
    return str(exc)
