"""Image-folder reader: one sub-directory per class, e.g. a pothole set with `normal/` and
`potholes/`. Classes are the sub-directory names in sorted order (target = index).

Layout::

    <root>/<class>/<any name>.{png,jpg,jpeg,bmp,gif,webp,tif,tiff,ppm}

Images may differ in size: GradSUM and the evaluation batch them by size; training needs one
size (`folder:DIR:size=224x224,resize=letterbox`, or `--size`). Files with other
extensions are ignored; an empty class folder is an error (raise) or recorded (skip).
Validation policy: see `gradsum.data._files`.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ._files import IMAGE_EXTENSIONS, DataError, FileDataset, read_rgb
from .samples import Sample

__all__ = ["ImageFolder"]


class ImageFolder(FileDataset):
    """Images labelled by their folder.

    Args:
        root: folder with one sub-directory per class.
        classes: use only these class folders, in this order (default: all, sorted).
        on_error: "raise" or "skip".
        transform: Sample -> Sample, applied last.
    """

    label_table = None

    def __init__(
        self,
        root: str | Path,
        classes: Sequence[str] | None = None,
        on_error: str = "raise",
        transform: Callable[[Sample], Sample] | None = None,
    ) -> None:
        super().__init__(on_error, transform)
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"{self.root}: image folder does not exist")
        found = sorted(p.name for p in self.root.iterdir() if p.is_dir() and not p.name.startswith("."))
        if classes is None:
            classes = found
        missing = [c for c in classes if c not in found]
        if missing:
            raise FileNotFoundError(f"{self.root}: class folders {missing} not found; found {found}")
        if not classes:
            raise ValueError(f"{self.root} has no class sub-directories (expected <root>/<class>/<image>)")
        self.classes = list(classes)
        items = []
        for k, c in enumerate(self.classes):
            files = sorted(p for p in (self.root / c).rglob("*")
                           if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)  # fmt: skip
            if not files:
                self._problem(self.root / c, DataError(
                    self.root / c, f"class folder has no images ({', '.join(IMAGE_EXTENSIONS)})"))
            items += [(p, k) for p in files]
        self._finish(items)

    def _item_path(self, item: Any) -> str:
        return str(item[0])

    def _load(self, item: Any) -> Sample:
        path, k = item
        return Sample(image=read_rgb(path), id=str(path.relative_to(self.root)), target=k,
                      meta={"path": str(path), "class": self.classes[k]})  # fmt: skip
