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

import os
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .labels import LabelTable
from .samples import Sample

__all__ = ["DataError", "FileDataset", "read_rgb", "read_label", "oriented_size", "exif_orientation",
           "inside_root", "outside_root_error", "ON_ERROR", "MAX_IMAGE_PIXELS", "SKIP_HINT",
           "check_pixels"]

ON_ERROR = ("raise", "skip")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm")
#: the environment variable that raises (or lowers) MAX_IMAGE_PIXELS, read at import
MAX_PIXELS_VARIABLE = "GRADSUM_MAX_IMAGE_PIXELS"


def _max_image_pixels(default: int = 64_000_000) -> int:
    text = os.environ.get(MAX_PIXELS_VARIABLE, "").replace("_", "").strip()
    if not text:
        return default
    if not text.isdigit() or int(text) < 1:
        raise ValueError(f"{MAX_PIXELS_VARIABLE}={os.environ[MAX_PIXELS_VARIABLE]!r} must be a whole number of "
                         "pixels, e.g. 200000000")
    return int(text)


#: the most pixels (H*W) gradsum decodes from one image file; a header claiming more (a
#: "decompression bomb" or a mistaken file) is refused before any pixel is decoded.
#: Set the environment variable GRADSUM_MAX_IMAGE_PIXELS to change it.
MAX_IMAGE_PIXELS = _max_image_pixels()
#: how to raise the limit, for the messages that name it
RAISE_LIMIT_HINT = f"or raise the limit with the environment variable {MAX_PIXELS_VARIABLE}=<pixels>"
#: how to leave unreadable files out, in the CLI's words and in Python's
SKIP_HINT = "leave bad files out with the data SPEC option on_error=skip (e.g. folder:DIR:on_error=skip; " \
            "Python: on_error='skip')"


class DataError(ValueError):
    """A data file is unreadable or inconsistent; `path` names it, `reason` says what is
    wrong and `hint` (shown in the message, not in `reason`) how to go on."""

    def __init__(self, path: str | Path, reason: str, hint: str | None = None) -> None:
        self.path = str(path)
        self.reason = reason
        self.hint = hint
        super().__init__(f"{path}: {reason}" + (f"; {hint}" if hint else ""))


def check_pixels(height: int, width: int, what: str = "image") -> None:
    """Refuse an image of more than MAX_IMAGE_PIXELS pixels (ValueError naming size and limit)."""
    if height * width > MAX_IMAGE_PIXELS:
        raise ValueError(f"{what} of {height}x{width} = {height * width:,} pixels is over the limit of "
                         f"{MAX_IMAGE_PIXELS:,} pixels (MAX_IMAGE_PIXELS); use a smaller size")


def match_pillow_limit() -> None:
    """Let Pillow open what gradsum's own limit allows (when the user raised MAX_IMAGE_PIXELS
    above Pillow's decompression-bomb limit with GRADSUM_MAX_IMAGE_PIXELS)."""
    from PIL import Image

    if Image.MAX_IMAGE_PIXELS is not None and Image.MAX_IMAGE_PIXELS < MAX_IMAGE_PIXELS:
        Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS


def _open(path: Path):  # type: ignore[no-untyped-def]
    """Open an image file, check its size from the header (before decoding), then decode it."""
    import re

    from PIL import Image

    if not path.is_file():
        raise FileNotFoundError(f"{path}: file does not exist")
    match_pillow_limit()
    try:
        with warnings.catch_warnings():  # PIL warns from 89 MP; our own limit below is lower
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(path)
    except Image.DecompressionBombError as exc:  # PIL's own (larger) limit, hit inside open()
        found = re.search(r"\((\d+) pixels\)", str(exc))
        size = f"{int(found.group(1)):,} pixels" if found else "too many pixels"
        raise DataError(path, f"the image header claims {size}, over the limit of {MAX_IMAGE_PIXELS:,} pixels "
                              "(MAX_IMAGE_PIXELS); nothing was decoded",
                        f"shrink the image, {RAISE_LIMIT_HINT}, or {SKIP_HINT}") from None
    except Exception as exc:  # PIL raises OSError, SyntaxError, ValueError... for bad files
        raise DataError(path, f"cannot decode image ({exc}): the file is truncated or not an image",
                        f"re-export it, or {SKIP_HINT}") from None
    w, h = im.size
    if w * h > MAX_IMAGE_PIXELS:
        im.close()
        raise DataError(path, f"the image header claims {h}x{w} = {w * h:,} pixels (HxW), over the limit of "
                              f"{MAX_IMAGE_PIXELS:,} pixels (MAX_IMAGE_PIXELS); nothing was decoded",
                        f"shrink the image, {RAISE_LIMIT_HINT}, or {SKIP_HINT}")
    try:
        im.load()
    except Exception as exc:
        im.close()
        raise DataError(path, f"cannot decode image ({exc}): the file is truncated or not an image",
                        f"re-export it, or {SKIP_HINT}") from None
    return im


def inside_root(path: Path, root: Path) -> bool:
    """Whether `path` lies under `root` once both are made absolute and their '..' parts
    resolved (lexically: a symlink the user placed inside the dataset is followed as usual)."""
    import os

    full, base = os.path.abspath(path), os.path.abspath(root)
    return full == base or full.startswith(base.rstrip(os.sep) + os.sep)


def outside_root_error(path: Path, root: Path, where: str) -> DataError:
    """The one-line refusal of a listed file outside the dataset root."""
    return DataError(path, f"{where} lies outside the dataset root {root}; gradsum reads only files under the "
                           "root", "add allow_outside_root=true to the data spec (Python: allow_outside_root=True) "
                                  "if you trust this list")


#: Pillow's modes for 16-bit single-channel data (a 16-bit grey PNG opens as "I;16" or "I")
_SIXTEEN_BIT = ("I;16", "I;16B", "I;16L", "I;16N", "I")
#: EXIF orientations (tag 274) that turn the stored image by 90 degrees: height and width swap
_TRANSPOSED = (5, 6, 7, 8)


def exif_orientation(im) -> int:  # type: ignore[no-untyped-def]
    """The EXIF orientation tag of an opened image (1 = as stored; 2-8 mirror/rotate)."""
    try:
        return int(im.getexif().get(0x0112, 1) or 1)
    except Exception:  # a broken EXIF block: show the pixels as stored
        return 1


def oriented_size(im) -> tuple[int, int]:  # type: ignore[no-untyped-def]
    """(H, W) of an opened image as it is displayed, i.e. after its EXIF orientation."""
    w, h = im.size
    return (w, h) if exif_orientation(im) in _TRANSPOSED else (h, w)


def _rgb_array(im) -> np.ndarray:  # type: ignore[no-untyped-def]
    """(H,W,3) float32 in [0,1]: 16-bit grey scaled by 65535 (Pillow would clip it to white
    when converting to RGB), float images clipped to [0,1], every other mode (RGB, 16-bit RGB
    read at 8 bits, grey, palette, CMYK, alpha dropped) through Pillow's RGB conversion / 255."""
    if im.mode in _SIXTEEN_BIT:
        grey = np.clip(np.asarray(im).astype(np.float32) / np.float32(65535.0), 0.0, 1.0)
        return np.repeat(grey[..., None], 3, axis=2)
    if im.mode == "F":
        grey = np.clip(np.asarray(im, dtype=np.float32), 0.0, 1.0)
        return np.repeat(grey[..., None], 3, axis=2)
    return np.asarray(im.convert("RGB"), dtype=np.uint8).astype(np.float32) / np.float32(255.0)


def read_rgb(path: str | Path) -> torch.Tensor:
    """Decode an image file to float32 (3,H,W) in [0,1], as it is displayed: its EXIF
    orientation applied (a phone photo stored sideways comes out upright); 16-bit grey by
    65535; grey, palette, CMYK and alpha images as RGB. The one decoder of the CLI and every
    reader."""
    im = _open(Path(path))
    if exif_orientation(im) != 1:
        from PIL import ImageOps

        im = ImageOps.exif_transpose(im)
    return torch.from_numpy(np.ascontiguousarray(_rgb_array(im).transpose(2, 0, 1)))


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
                "(listed by `gradsum data info SPEC`; Python: .skipped)",
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

    def scan(self, progress: Callable[[int, int], None] | None = None) -> list[tuple[str, str]]:
        """Decode every item now and return the unreadable ones as (path, reason), without
        changing the dataset (with on_error="skip" they were already left out: see `skipped`).
        progress(done, total) is called after each item."""
        bad: list[tuple[str, str]] = []
        total = len(self.items)
        for done, item in enumerate(self.items, 1):
            try:
                self._load(item)
            except (DataError, FileNotFoundError, OSError, ValueError) as exc:
                bad.append((getattr(exc, "path", None) or str(self._item_path(item)), _reason(exc)))
            if progress is not None:
                progress(done, total)
        return bad

    def report(self) -> str:
        """One line per skipped item (empty string when nothing was skipped)."""
        return "\n".join(f"skipped {p}: {r}" for p, r in self.skipped)


def _reason(exc: Exception) -> str:
    if isinstance(exc, DataError):
        return exc.reason
    return str(exc)
