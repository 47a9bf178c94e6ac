"""The `Sample` type every dataset yields, and the collate function that batches samples."""
from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

__all__ = ["Sample", "Batch", "collate", "check_sample", "batches_by_size", "read_samples"]


@dataclass
class Sample:
    """One image with whatever annotations its dataset has.

    image: float32 (3,H,W) in [0,1] (normalisation is a model concern).
    segmentation: int64 (H,W) label ids of the dataset's label table, or None.
    boxes: float32 (N,4) as x1,y1,x2,y2 in pixels (x = column), with box_labels int64 (N,).
    target: class index (int), multi-hot float tensor, or float (regression), or None.
    id: stable string identifying the sample across runs.
    meta: free-form extras (generation parameters, file paths).
    """

    image: torch.Tensor
    id: str
    segmentation: torch.Tensor | None = None
    boxes: torch.Tensor | None = None
    box_labels: torch.Tensor | None = None
    target: Any = None
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class Batch:
    """A batch of samples: images (B,3,H,W); segmentations (B,H,W) when every sample has one;
    boxes and box_labels as lists (their counts differ); targets stacked when possible."""

    images: torch.Tensor
    ids: list[str]
    segmentations: torch.Tensor | None
    boxes: list[torch.Tensor | None]
    box_labels: list[torch.Tensor | None]
    targets: Any
    meta: list[dict[str, Any]]

    def __len__(self) -> int:
        return len(self.ids)


def _stack_targets(targets: list[Any]) -> Any:
    if any(t is None for t in targets):
        return targets
    if all(isinstance(t, torch.Tensor) for t in targets):
        return torch.stack(targets)
    if all(isinstance(t, bool | int) for t in targets):
        return torch.tensor(targets, dtype=torch.int64)
    if all(isinstance(t, int | float) for t in targets):
        return torch.tensor(targets, dtype=torch.float32)
    return targets


def check_sample(sample: Any, where: str = "sample") -> Sample:
    """A Sample whose parts have the documented types: image a floating (C,H,W) tensor,
    segmentation an integer (H,W) tensor of the image's size (whole-number floats are
    converted to int64; 1.5 is an error, never truncated), boxes an (N,4) tensor. Returns
    the sample (a copy when the segmentation was converted)."""
    if not isinstance(sample, Sample):
        raise TypeError(f"{where} must be a gradsum.data.Sample; got {type(sample).__name__}")
    image, name = sample.image, f"{where} {sample.id!r}"
    if not isinstance(image, torch.Tensor):
        raise TypeError(f"the image of {name} must be a torch.Tensor (C,H,W); got {type(image).__name__}")
    if image.ndim != 3:
        raise ValueError(f"the image of {name} must be (C,H,W); got shape {tuple(image.shape)}")
    if not image.is_floating_point():
        raise TypeError(f"the image of {name} must hold floats in [0,1]; got {image.dtype} "
                        "(convert with image.float() / 255)")
    seg = sample.segmentation
    if seg is not None:
        if not isinstance(seg, torch.Tensor) or seg.ndim != 2 or tuple(seg.shape) != tuple(image.shape[-2:]):
            got = tuple(seg.shape) if isinstance(seg, torch.Tensor) else type(seg).__name__
            raise ValueError(f"the segmentation of {name} must be an (H,W) tensor of label ids of the image's size "
                             f"{tuple(image.shape[-2:])}; got {got}")
        if seg.is_floating_point():
            whole = torch.isfinite(seg) & (seg == seg.round())
            if not bool(whole.all()):
                raise ValueError(f"the segmentation of {name} holds non-integer label ids {seg[~whole].unique()[:5].tolist()}"
                                 "; label ids must be whole numbers (store them as int64)")
            sample = dataclasses.replace(sample, segmentation=seg.long())
    boxes = sample.boxes
    if boxes is not None and (not isinstance(boxes, torch.Tensor) or boxes.ndim != 2 or boxes.shape[1] != 4):
        got = tuple(boxes.shape) if isinstance(boxes, torch.Tensor) else type(boxes).__name__
        raise ValueError(f"the boxes of {name} must be an (N,4) tensor of x1,y1,x2,y2; got {got}")
    return sample


def collate(samples: list[Sample]) -> Batch:
    """Batch samples of equal image size (use a transform to resize first); each is checked
    by `check_sample`."""
    if isinstance(samples, Sample) or not isinstance(samples, Sequence) or isinstance(samples, str):
        raise TypeError(f"collate takes a list of Samples; got {type(samples).__name__} (wrap one sample as [sample])")
    if not samples:
        raise ValueError("collate got an empty list of samples")
    samples = [check_sample(s, f"samples[{i}]") for i, s in enumerate(samples)]
    shapes = {tuple(s.image.shape) for s in samples}
    if len(shapes) != 1:
        raise ValueError(
            f"collate needs images of one size, got {sorted(shapes)}; "
            "give them one size: --size HxW on the command line, size=HxW in the data SPEC, or "
            "gradsum.data.transforms.Fit(size) in Python"
        )
    segs = [s.segmentation for s in samples]
    return Batch(
        images=torch.stack([s.image for s in samples]),
        ids=[s.id for s in samples],
        segmentations=torch.stack(segs) if all(s is not None for s in segs) else None,
        boxes=[s.boxes for s in samples],
        box_labels=[s.box_labels for s in samples],
        targets=_stack_targets([s.target for s in samples]),
        meta=[s.meta for s in samples],
    )


def batches_by_size(dataset: Any, indices: Sequence[int], batch_size: int, max_pending: int | None = None, *,
                    num_workers: int = 0, pin_memory: bool = False) -> Iterator[tuple[list[int], Batch]]:
    """Batches of the samples of `dataset` at `indices` whose images share one size, with
    the positions (into `indices`) of their samples: nothing is resized, so a dataset of
    mixed sizes (PASCAL VOC, a folder of photos) is explained at each image's own size.

    Samples are read in order and wait in one partial batch per size; a batch is yielded when
    it holds `batch_size` samples, or, when more than `max_pending` samples (default
    4 x batch_size) wait, the fullest partial batch is yielded early (memory stays bounded
    whatever the number of sizes); the rest at the end, in order of first appearance. For a
    dataset of one size these are exactly the batches of consecutive items.

    num_workers > 0 reads the samples in that many worker processes (a torch DataLoader: the
    dataset's decoding and transforms run there, in order, prefetched), so the batches are
    the same for any number of workers; pin_memory pins each batch's images (for a GPU)."""
    if max_pending is None:
        max_pending = 4 * batch_size
    pending: dict[tuple[int, ...], list[tuple[int, Sample]]] = {}
    waiting = 0

    def ready(bucket: list[tuple[int, Sample]]) -> tuple[list[int], Batch]:
        batch = collate([s for _, s in bucket])
        if pin_memory:
            batch.images = batch.images.pin_memory()
        return [p for p, _ in bucket], batch

    for position, sample in enumerate(read_samples(dataset, indices, num_workers)):
        key = tuple(sample.image.shape) if isinstance(sample, Sample) and isinstance(sample.image, torch.Tensor) else ()
        bucket = pending.setdefault(key, [])
        bucket.append((position, sample))
        waiting += 1
        if len(bucket) >= batch_size:
            del pending[key]
            waiting -= len(bucket)
            yield ready(bucket)
        elif waiting > max_pending:
            key = max(pending, key=lambda k: len(pending[k]))
            bucket = pending.pop(key)
            waiting -= len(bucket)
            yield ready(bucket)
    for bucket in pending.values():
        yield ready(bucket)


class _Items:
    """dataset[indices[i]] as a map-style dataset for a DataLoader."""

    def __init__(self, dataset: Any, indices: Sequence[int]) -> None:
        self.dataset, self.indices = dataset, list(indices)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> Any:
        return self.dataset[self.indices[i]]


def _one(sample: Any) -> Any:
    return sample


def read_samples(dataset: Any, indices: Sequence[int], num_workers: int = 0) -> Iterator[Any]:
    """dataset[i] for i in `indices`, in order: in this process (num_workers=0) or read ahead
    by `num_workers` DataLoader worker processes (two samples prefetched per worker)."""
    if num_workers <= 0 or len(indices) <= 1:
        for item in indices:
            yield dataset[item]
        return
    from torch.utils.data import DataLoader

    loader = DataLoader(_Items(dataset, indices), batch_size=None, shuffle=False, num_workers=num_workers,
                        collate_fn=_one, prefetch_factor=2)
    yield from loader
