"""Label tables (ids, names, categories, train ids, colours), defined once for the project.

`CITYSCAPES` is the official Cityscapes table (Cordts et al. 2016, "The Cityscapes Dataset for
Semantic Urban Scene Understanding"; ids 0..33 plus `license plate` = -1, the 8 categories and
the official colours). `ROADS` is CITYSCAPES plus `pothole` (id 34, category `flat`), used by the
synthetic road scenes. `VOC` is PASCAL VOC: background 0, the 20 classes 1..20 and 255 =
void/border, with the VOC colour palette; its categories are the VOC super-classes.

A segmentation is an int64 (H,W) tensor of label *ids* (not train ids). GradSUM groups pixels by
`category_of(id)`; `lut("category")` does that for a whole map in one indexing operation.
"""
from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

__all__ = ["Label", "LabelTable", "CITYSCAPES", "ROADS", "VOC", "IGNORE_TRAIN_ID"]

IGNORE_TRAIN_ID = 255
"""The train id of labels that are not evaluated (Cityscapes convention)."""


@dataclass(frozen=True)
class Label:
    """One semantic label: `id` is what segmentation maps store, `train_id` the contiguous
    training index (255 = ignored), `category` the coarse group GradSUM reports on."""

    id: int
    name: str
    category: str
    train_id: int
    color: tuple[int, int, int]


class LabelTable:
    """An ordered, validated set of labels.

    `categories` keeps the order given (or first appearance); ids and names must be unique.
    """

    def __init__(
        self, name: str, labels: Iterable[Label], categories: Sequence[str] | None = None
    ) -> None:
        self.name = name
        self.labels: tuple[Label, ...] = tuple(labels)
        if not self.labels:
            raise ValueError(f"label table {name!r} has no labels")
        self._by_id: dict[int, Label] = {}
        self._by_name: dict[str, Label] = {}
        for lab in self.labels:
            if lab.id in self._by_id:
                raise ValueError(f"label table {name!r}: id {lab.id} appears twice")
            if lab.name in self._by_name:
                raise ValueError(f"label table {name!r}: name {lab.name!r} appears twice")
            if len(lab.color) != 3 or not all(0 <= int(c) <= 255 for c in lab.color):
                raise ValueError(
                    f"label table {name!r}: colour of {lab.name!r} must be 3 ints in 0..255, "
                    f"got {lab.color!r}"
                )
            self._by_id[lab.id] = lab
            self._by_name[lab.name] = lab
        seen = list(dict.fromkeys(lab.category for lab in self.labels))
        if categories is None:
            self._categories = seen
        else:
            missing = [c for c in seen if c not in categories]
            if missing:
                raise ValueError(
                    f"label table {name!r}: categories {missing} are used by labels but not "
                    f"listed in categories={list(categories)}"
                )
            self._categories = list(categories)
        self._luts: dict[tuple[str, str], torch.Tensor] = {}

    # -- lookups ------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.labels)

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self.labels)

    def __contains__(self, key: object) -> bool:
        return key in self._by_id or key in self._by_name

    def __repr__(self) -> str:
        return f"LabelTable({self.name!r}, {len(self.labels)} labels, categories={self._categories})"

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, LabelTable)
            and self.labels == other.labels
            and self._categories == other._categories
        )

    def __hash__(self) -> int:
        return hash((self.labels, tuple(self._categories)))

    @property
    def ids(self) -> list[int]:
        """All label ids in table order."""
        return [lab.id for lab in self.labels]

    @property
    def names(self) -> list[str]:
        """All label names in table order."""
        return [lab.name for lab in self.labels]

    @property
    def categories(self) -> list[str]:
        """Category names in their canonical order."""
        return list(self._categories)

    @property
    def colors(self) -> dict[int, tuple[int, int, int]]:
        """id -> (r, g, b)."""
        return {lab.id: lab.color for lab in self.labels}

    def by_id(self, i: int) -> Label:
        """The label with id `i` (KeyError naming the table and valid range otherwise)."""
        try:
            return self._by_id[int(i)]
        except KeyError:
            raise KeyError(
                f"label id {i} is not in label table {self.name!r} "
                f"(ids {min(self._by_id)}..{max(self._by_id)})"
            ) from None

    def by_name(self, n: str) -> Label:
        """The label called `n` (KeyError listing close names otherwise)."""
        try:
            return self._by_name[n]
        except KeyError:
            import difflib

            close = difflib.get_close_matches(n, list(self._by_name), n=3)
            hint = f"; did you mean {close}?" if close else f"; names: {self.names}"
            raise KeyError(f"no label {n!r} in label table {self.name!r}{hint}") from None

    def category_of(self, i: int) -> str:
        """Category name of label id `i`."""
        return self.by_id(i).category

    def ids_in_category(self, category: str) -> list[int]:
        """Label ids whose category is `category`."""
        if category not in self._categories:
            raise KeyError(
                f"no category {category!r} in label table {self.name!r}; "
                f"categories: {self._categories}"
            )
        return [lab.id for lab in self.labels if lab.category == category]

    # -- tensors ------------------------------------------------------------------------
    @property
    def max_id(self) -> int:
        return max(self._by_id)

    def lut(self, kind: str = "category", device: torch.device | str | None = None) -> torch.Tensor:
        """Lookup table indexed by label id (ids >= 0), so `lut[seg]` maps a whole map at once.

        kind: "category" -> category index into `categories` (int64, -1 for unknown ids);
        "train_id" -> train id (int64, 255 for unknown); "color" -> (max_id+1, 3) uint8;
        "known" -> bool, True where the id is in the table.
        """
        key = (kind, str(device))
        if key in self._luts:
            return self._luts[key]
        size = self.max_id + 1
        pos = [lab for lab in self.labels if lab.id >= 0]
        idx = torch.tensor([lab.id for lab in pos], dtype=torch.int64)
        if kind == "category":
            out = torch.full((size,), -1, dtype=torch.int64)
            out[idx] = torch.tensor([self._categories.index(lab.category) for lab in pos])
        elif kind == "train_id":
            out = torch.full((size,), IGNORE_TRAIN_ID, dtype=torch.int64)
            out[idx] = torch.tensor([lab.train_id for lab in pos], dtype=torch.int64)
        elif kind == "color":
            out = torch.zeros((size, 3), dtype=torch.uint8)
            out[idx] = torch.tensor([lab.color for lab in pos], dtype=torch.uint8)
        elif kind == "known":
            out = torch.zeros((size,), dtype=torch.bool)
            out[idx] = True
        else:
            raise ValueError(
                f"lut kind must be 'category', 'train_id', 'color' or 'known', got {kind!r}"
            )
        out = out.to(device) if device is not None else out
        self._luts[key] = out
        return out

    def _map(self, seg: torch.Tensor, kind: str) -> torch.Tensor:
        """lut(kind)[seg] that also maps negative ids (license plate = -1), which a plain
        index would wrap around to the end of the table."""
        self.validate(seg)
        seg = seg.long()
        lut = self.lut(kind, seg.device)
        negative = [lab for lab in self.labels if lab.id < 0]
        if not negative or not bool((seg < 0).any()):
            return lut[seg]
        out = lut[seg.clamp_min(0)]
        for lab in negative:
            value = {"category": self._categories.index(lab.category), "train_id": lab.train_id,
                     "color": torch.tensor(lab.color, dtype=torch.uint8, device=seg.device)}[kind]
            out[seg == lab.id] = value
        return out

    def to_categories(self, seg: torch.Tensor) -> torch.Tensor:
        """Map an id segmentation (..., H, W) to category indices into `categories`."""
        return self._map(seg, "category")

    def to_train_ids(self, seg: torch.Tensor) -> torch.Tensor:
        """Map an id segmentation to train ids (255 = ignored)."""
        return self._map(seg, "train_id")

    def colorize(self, seg: torch.Tensor) -> torch.Tensor:
        """(H,W) id map -> (3,H,W) uint8 RGB with the table's colours."""
        return self._map(seg, "color").movedim(-1, -3)

    def validate(self, seg: torch.Tensor, source: str | Path | None = None) -> None:
        """Raise ValueError naming `source` and the offending ids if `seg` holds ids that are
        not in this table."""
        seg = torch.as_tensor(seg)
        if seg.is_floating_point():
            raise ValueError(
                f"segmentation{_from(source)} must hold integer label ids, got dtype {seg.dtype}"
            )
        if seg.numel() == 0:
            return
        lo, hi = int(seg.min()), int(seg.max())
        if lo >= 0 and hi <= self.max_id and bool(self.lut("known", seg.device)[seg.long()].all()):
            return
        present = torch.unique(seg).tolist()
        bad = [v for v in present if v not in self._by_id]
        if bad:
            shown = bad[:10] + (["..."] if len(bad) > 10 else [])
            raise ValueError(
                f"segmentation{_from(source)} contains label ids {shown} that are not in label "
                f"table {self.name!r} (valid ids: {_ranges(self.ids)}); pass the matching "
                "label_table or fix the file"
            )

    # -- tables -------------------------------------------------------------------------
    def to_dataframe(self) -> pd.DataFrame:
        """One row per label: id, name, category, category_index, train_id, r, g, b."""
        import pandas as pd

        return pd.DataFrame(self._rows())

    def _rows(self) -> list[dict[str, Any]]:
        return [
            {
                "id": lab.id,
                "name": lab.name,
                "category": lab.category,
                "category_index": self._categories.index(lab.category),
                "train_id": lab.train_id,
                "r": lab.color[0],
                "g": lab.color[1],
                "b": lab.color[2],
            }
            for lab in self.labels
        ]

    def to_csv(self, path: str | Path) -> Path:
        """Write the table as CSV (columns of `to_dataframe`); atomic (temp file + rename)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        rows = self._rows()
        with tmp.open("w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        tmp.replace(path)
        return path

    @classmethod
    def from_csv(cls, path: str | Path, name: str | None = None) -> LabelTable:
        """Read a table written by `to_csv` (category order from `category_index` if present)."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"label table file {path} does not exist")
        with path.open(newline="") as fh:
            rows = list(csv.DictReader(fh))
        need = {"id", "name", "category", "train_id", "r", "g", "b"}
        if not rows or not need <= set(rows[0]):
            raise ValueError(
                f"{path} is not a label table CSV: expected columns {sorted(need)}"
                + (f", got {sorted(rows[0])}" if rows else " and at least one row")
            )
        try:
            labels = [
                Label(
                    int(r["id"]),
                    r["name"],
                    r["category"],
                    int(r["train_id"]),
                    (int(r["r"]), int(r["g"]), int(r["b"])),
                )
                for r in rows
            ]
        except ValueError as exc:
            raise ValueError(f"{path}: bad value in label table ({exc})") from None
        categories = None
        if "category_index" in rows[0]:
            order = sorted({(int(r["category_index"]), r["category"]) for r in rows})
            categories = [c for _, c in order]
        table = cls(name or path.stem, labels, categories)
        if name is None:  # a known table keeps its name (e.g. "roads" written by data synth)
            for known in (CITYSCAPES, ROADS, VOC):
                if table == known:
                    table.name = known.name
        return table


def _from(source: str | Path | None) -> str:
    return f" in {source}" if source is not None else ""


def _ranges(ids: list[int]) -> str:
    s = sorted(ids)
    out, start, prev = [], s[0], s[0]
    for v in s[1:] + [None]:  # type: ignore[list-item]
        if v is not None and v == prev + 1:
            prev = v
            continue
        out.append(str(start) if start == prev else f"{start}..{prev}")
        if v is not None:
            start = prev = v
    return ", ".join(out)


# Official Cityscapes labels (cityscapesScripts helpers/labels.py): name, id, trainId, category,
# colour. Category order as on the Cityscapes website.
_CS = [
    ("unlabeled", 0, 255, "void", (0, 0, 0)),
    ("ego vehicle", 1, 255, "void", (0, 0, 0)),
    ("rectification border", 2, 255, "void", (0, 0, 0)),
    ("out of roi", 3, 255, "void", (0, 0, 0)),
    ("static", 4, 255, "void", (0, 0, 0)),
    ("dynamic", 5, 255, "void", (111, 74, 0)),
    ("ground", 6, 255, "void", (81, 0, 81)),
    ("road", 7, 0, "flat", (128, 64, 128)),
    ("sidewalk", 8, 1, "flat", (244, 35, 232)),
    ("parking", 9, 255, "flat", (250, 170, 160)),
    ("rail track", 10, 255, "flat", (230, 150, 140)),
    ("building", 11, 2, "construction", (70, 70, 70)),
    ("wall", 12, 3, "construction", (102, 102, 156)),
    ("fence", 13, 4, "construction", (190, 153, 153)),
    ("guard rail", 14, 255, "construction", (180, 165, 180)),
    ("bridge", 15, 255, "construction", (150, 100, 100)),
    ("tunnel", 16, 255, "construction", (150, 120, 90)),
    ("pole", 17, 5, "object", (153, 153, 153)),
    ("polegroup", 18, 255, "object", (153, 153, 153)),
    ("traffic light", 19, 6, "object", (250, 170, 30)),
    ("traffic sign", 20, 7, "object", (220, 220, 0)),
    ("vegetation", 21, 8, "nature", (107, 142, 35)),
    ("terrain", 22, 9, "nature", (152, 251, 152)),
    ("sky", 23, 10, "sky", (70, 130, 180)),
    ("person", 24, 11, "human", (220, 20, 60)),
    ("rider", 25, 12, "human", (255, 0, 0)),
    ("car", 26, 13, "vehicle", (0, 0, 142)),
    ("truck", 27, 14, "vehicle", (0, 0, 70)),
    ("bus", 28, 15, "vehicle", (0, 60, 100)),
    ("caravan", 29, 255, "vehicle", (0, 0, 90)),
    ("trailer", 30, 255, "vehicle", (0, 0, 110)),
    ("train", 31, 16, "vehicle", (0, 80, 100)),
    ("motorcycle", 32, 17, "vehicle", (0, 0, 230)),
    ("bicycle", 33, 18, "vehicle", (119, 11, 32)),
    ("license plate", -1, -1, "vehicle", (0, 0, 142)),
]
_CS_CATEGORIES = ["flat", "human", "vehicle", "construction", "object", "nature", "sky", "void"]

CITYSCAPES = LabelTable(
    "cityscapes", [Label(i, n, c, t, col) for n, i, t, c, col in _CS], _CS_CATEGORIES
)
"""The official Cityscapes label table (34 labels 0..33 and license plate -1)."""

ROADS = LabelTable(
    "roads",
    [*CITYSCAPES.labels, Label(34, "pothole", "flat", 19, (0, 255, 255))],
    _CS_CATEGORIES,
)
"""CITYSCAPES plus `pothole` (id 34, category flat, train id 19, cyan): the synthetic scenes."""


def _voc_palette(n: int = 256) -> list[tuple[int, int, int]]:
    """The PASCAL VOC colour map: bits of the index spread over the high bits of r, g, b."""
    out = []
    for i in range(n):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        out.append((r, g, b))
    return out


VOC_CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor",
)  # fmt: skip
_VOC_GROUP = {
    "person": "person",
    **dict.fromkeys(("bird", "cat", "cow", "dog", "horse", "sheep"), "animal"),
    **dict.fromkeys(
        ("aeroplane", "bicycle", "boat", "bus", "car", "motorbike", "train"), "vehicle"
    ),
    **dict.fromkeys(
        ("bottle", "chair", "diningtable", "pottedplant", "sofa", "tvmonitor"), "indoor"
    ),
}
_PAL = _voc_palette()
VOC = LabelTable(
    "voc",
    [Label(0, "background", "background", 0, _PAL[0])]
    + [Label(i + 1, n, _VOC_GROUP[n], i + 1, _PAL[i + 1]) for i, n in enumerate(VOC_CLASSES)]
    + [Label(255, "void", "void", 255, (224, 224, 192))],
    ["background", "person", "animal", "vehicle", "indoor", "void"],
)
"""PASCAL VOC: background 0, classes 1..20, 255 = void/border; categories = VOC super-classes."""
VOC_PALETTE = _PAL
__all__ += ["VOC_CLASSES", "VOC_PALETTE"]
