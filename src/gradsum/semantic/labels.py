"""Label tables as GradSUM uses them: a dense index per label and the label -> category
(group) matrix. The tables themselves (Cityscapes with its 8 categories, the road scenes'
table with `pothole`, PASCAL VOC) are defined once, in `gradsum.data.labels`."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple

import torch

from gradsum.data.labels import CITYSCAPES, ROADS, VOC, LabelTable

__all__ = ["CITYSCAPES", "ROADS", "VOC", "TABLES", "LabelTable", "LabelIndex", "Workspace", "label_table_of",
           "DeferredChecks"]

#: the built-in label tables by name (what a string label_table= may name)
TABLES: dict[str, LabelTable] = {table.name: table for table in (CITYSCAPES, ROADS, VOC)}


def label_table_of(table: object, what: str = "label_table") -> LabelTable:
    """A LabelTable as given, or a built-in one by name ("cityscapes", "roads", "voc")."""
    if isinstance(table, LabelTable):
        return table
    if isinstance(table, str):
        key = table.strip().lower()
        if key in TABLES:
            return TABLES[key]
        raise ValueError(
            f"unknown {what} {table!r}; built-in tables are {', '.join(map(repr, TABLES))} "
            "(or pass a gradsum.data.LabelTable)"
        )
    raise TypeError(
        f"{what} must be a gradsum.data.LabelTable or the name of a built-in table "
        f"({', '.join(map(repr, TABLES))}); got {type(table).__name__}"
    )


class Workspace(NamedTuple):
    """Buffers of one (B, N) batch shape, reused from batch to batch."""

    keys: torch.Tensor  # (B, N) int64 bins
    parity: torch.Tensor  # (N,) int64: offset * BINS + pixel parity
    above: torch.Tensor  # (B, N) bool: value > cut
    values: torch.Tensor  # (B, N) float64 copy of the values (float64 accumulation)


@dataclass
class LabelIndex:
    """The label ids of `table` as slots 0..S-1 (slot = id + offset, so negative ids such as
    Cityscapes' license plate -1 fit), the table-order columns `slots` (L,), the slots that
    belong to no label (`unknown`), and the (L, C) 0/1 matrix from labels to categories.
    It keeps work buffers for the last batch shape (see `workspace`): use one index per thread."""

    table: LabelTable
    offset: int
    n_slots: int
    slots: torch.Tensor  # (L,) int64: table order -> slot
    unknown: torch.Tensor  # (U,) int64: slots of ids that are not in the table
    groups: torch.Tensor  # (L, C) float64
    _workspace: dict = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def of(cls, table: LabelTable, device: torch.device | str | None = None) -> LabelIndex:
        ids = table.ids
        offset = -min(0, min(ids))
        n_slots = max(ids) + offset + 1
        slots = torch.tensor(ids, dtype=torch.int64) + offset
        used = torch.zeros(n_slots, dtype=torch.bool)
        used[slots] = True
        categories = table.categories
        groups = torch.zeros(len(ids), len(categories), dtype=torch.float64)
        for i, label in enumerate(table.labels):
            groups[i, categories.index(label.category)] = 1.0
        unknown = torch.nonzero(~used).flatten()
        return cls(table, offset, n_slots, slots.to(device), unknown.to(device), groups.to(device))

    def to(self, device: torch.device | str) -> LabelIndex:
        """This index with its tensors on `device` (itself when already there)."""
        if self.slots.device == torch.device(device):
            return self
        return LabelIndex(self.table, self.offset, self.n_slots, self.slots.to(device), self.unknown.to(device),
                          self.groups.to(device))

    @property
    def names(self) -> list[str]:
        return self.table.names

    @property
    def categories(self) -> list[str]:
        return self.table.categories

    BINS = 4  # bins per image x slot: 2 * (above the threshold) + pixel parity

    def keys(self, seg: torch.Tensor, values: torch.Tensor, cut: torch.Tensor, source: str = "",
             checks: DeferredChecks | None = None) -> torch.Tensor:
        """Label ids (B, H, W), values (B, N) and per-image cuts (B, 1) -> (B, N) int64 bins
        (slot * 2 + [value > cut]) * 2 + pixel parity, in 0..S*BINS-1 for each image, so a
        row-wise scatter gives every label's pixels / mass below and above the threshold.
        The parity bit sends neighbouring pixels to different bins, which breaks the
        add-after-add dependency on long runs of one label (a ~2x faster scatter); sum over it
        afterwards. The result is a reused buffer (valid until the next call).

        Ids outside the table's id range give bins outside 0..S*BINS-1 (`check_range` names
        them); ids inside the range but missing from the table show up as counts in `unknown`
        slots (see `check_known`). With `checks`, a GPU batch is not synchronised to check the
        range: ids outside it are counted as the first label and reported by `checks.verify()`."""
        if seg.device.type != "cpu":  # on CPU the scatter itself rejects such bins; see check_range
            if checks is None:
                self.check_range(seg, source)
            else:
                outside = (seg + self.offset < 0) | (seg + self.offset >= self.n_slots)
                checks.add(outside.any(), lambda seg=seg: self.check_range(seg, source))
                seg = seg.masked_fill(outside, -self.offset)
        work = self.workspace(values.shape, values.device)
        key = work.keys.copy_(torch.gt(values, cut, out=work.above))  # 0 / 1 (gt into int64 goes through a temporary)
        torch.add(work.parity, key, alpha=2, out=key)  # + offset * BINS + pixel parity
        return key.add_(seg.reshape(key.shape), alpha=self.BINS)

    def workspace(self, shape: torch.Size, device: torch.device) -> Workspace:
        """The buffers of a (B, N) batch, kept for the last batch shape and reused from batch
        to batch: a fresh multi-megabyte tensor per batch costs a page fault every 4 KiB, more
        than the sums themselves."""
        cache_key = (tuple(shape), str(device))
        if cache_key not in self._workspace:
            self._workspace.clear()
            parity = torch.arange(shape[1], device=device, dtype=torch.int64) % 2 + self.offset * self.BINS
            self._workspace[cache_key] = Workspace(
                torch.empty(tuple(shape), dtype=torch.int64, device=device), parity,
                torch.empty(tuple(shape), dtype=torch.bool, device=device),
                torch.empty(tuple(shape), dtype=torch.float64, device=device))
        return self._workspace[cache_key]

    def check_range(self, seg: torch.Tensor, source: str = "") -> None:
        """An error naming the ids of `seg` outside the table's id range, if there are any."""
        lo, hi = (int(v) for v in torch.aminmax(seg))
        if lo + self.offset < 0 or hi + self.offset >= self.n_slots:
            self._unknown_error(torch.unique(seg[(seg + self.offset < 0) | (seg + self.offset >= self.n_slots)]),
                                source)

    def check_known(self, pixels: torch.Tensor, source: str = "", checks: DeferredChecks | None = None) -> None:
        """`pixels` (B, S) per-slot counts: an error if any id outside the table was seen (with
        `checks`: when `checks.verify()` runs, without a host synchronisation now)."""
        if self.unknown.numel() == 0:
            return
        seen = pixels[:, self.unknown].sum(dim=0) > 0
        if checks is not None:
            checks.add(seen.any(), lambda: self.check_known(pixels, source))
            return
        if bool(seen.any()):
            self._unknown_error(self.unknown[seen] - self.offset, source)

    def _unknown_error(self, bad: torch.Tensor, source: str) -> None:
        where = f" in {source}" if source else ""
        raise ValueError(
            f"segmentation{where} holds label ids {bad.tolist()[:10]} that are not in label table "
            f"'{self.table.name}'; pass the dataset's label_table (or map those ids to a label of the table first)"
        )


class DeferredChecks:
    """Validity checks kept on the device and read back once (`verify`), instead of one host
    synchronisation per check and batch: GradSUM on a GPU checks a whole shard at once. Each
    check is a 0-d bool tensor (True: a problem) and the eager check to re-run for its message."""

    def __init__(self) -> None:
        self.items: list[tuple[torch.Tensor, Callable[[], None]]] = []

    def add(self, problem: torch.Tensor, explain: Callable[[], None]) -> None:
        self.items.append((problem, explain))

    def verify(self) -> None:
        """Raise the first failed check's own error (with its message naming the images)."""
        if not self.items:
            return
        flags = torch.stack([problem.reshape(()) for problem, _ in self.items]).cpu().tolist()
        items, self.items = self.items, []
        for flag, (_, explain) in zip(flags, items, strict=True):
            if flag:
                explain()
