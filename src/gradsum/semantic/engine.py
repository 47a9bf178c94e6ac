"""The GradSUM engine: explain batches of a dataset with one or more methods (and the
random-model copies of the baseline) and sum every heatmap per image and label.

    profile = gradsum(model, dataset, method="gradcam", baseline=10)

`ProfileComputer` computes the rows of any subset of a dataset's items (used by `gradsum`
for all items at once and by `gradsum.run.profile_job` one shard at a time); `batch_sums`
and `profile_batch` do one collated batch.
"""
from __future__ import annotations

import contextlib
import numbers
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from gradsum.core.layers import AUTO, layer_name
from gradsum.core.normalize import NormalizeMode
from gradsum.core.precision import check_precision
from gradsum.core.targets import label_targets
from gradsum.data.samples import batches_by_size
from gradsum.methods._args import check_int, check_seed
from gradsum.methods.base import ZeroMapLog, ZeroMapWarning
from gradsum.methods.explain import explain
from gradsum.semantic.baseline import randomized_copy
from gradsum.semantic.labels import DeferredChecks, LabelIndex, LabelTable, label_table_of
from gradsum.semantic.profile import (
    LabelSums,
    Profile,
    check_threshold,
    concat_columns,
    label_sums,
    profile_columns,
)

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["gradsum", "profile_batch", "batch_sums", "BatchSums", "ProfileComputer", "table_of"]


def _layer_spec(model: nn.Module, layer: Any) -> Any:
    """Module objects -> names, so the same layer can be found in a model's copies."""
    if isinstance(layer, nn.Module):
        return layer_name(model, layer)
    if isinstance(layer, list | tuple):
        return [_layer_spec(model, each) for each in layer]
    return layer


def profile_batch(
    model: nn.Module,
    batch: Any,
    table: LabelTable | LabelIndex,
    methods: Sequence[str],
    *,
    context: dict[str, Any] | None = None,
    **kwargs: Any,
) -> pd.DataFrame:
    """GradSUM rows for one collated batch: explain with every method (CAM methods sharing
    one pass), then per-image, per-label and per-category sums; `context` values (model,
    epoch...) become constant columns. Keyword arguments (layer, target, normalize,
    threshold, options, device) as for `batch_sums`; target="label" explains each image's
    own label (classifiers)."""
    import pandas as pd

    index = table if isinstance(table, LabelIndex) else LabelIndex.of(label_table_of(table, "table"))
    sums = batch_sums(model, batch, index, methods, **kwargs)
    if not sums:
        raise ValueError(f"target='label': no image of the batch ({list(batch.ids)[:3]}) has a label present")
    return pd.DataFrame(concat_columns([
        profile_columns(s.sums, index, s.ids, {**(context or {}), "method": name},
                        {key: _joined([values]) for key, values in s.per_image.items()})
        for name, s in sums.items()
    ]))


def batch_sums(
    model: nn.Module,
    batch: Any,
    index: LabelIndex,
    methods: Sequence[str],
    *,
    layer: Any = AUTO,
    target: Any = None,
    normalize: NormalizeMode = "relu-minmax",
    threshold: float = 0.5,
    options: dict[str, dict[str, Any]] | None = None,
    device: torch.device | str | None = None,
    precision: str = "float32",
    autocast: str | None = None,
    zero_maps: ZeroMapLog | None = None,
    checks: DeferredChecks | None = None,
) -> dict[str, BatchSums]:
    """Explain one collated batch with every method (CAM methods sharing one pass) and sum
    each map per image and label: {method: BatchSums}.

    target="label" explains each image's own label; with multi-label targets (multi-hot, as
    PASCAL VOC's) every class present in an image is explained, one row set per (image,
    class), and an image without any present class is left out. zero_maps: collects the
    images whose map is zero everywhere (by id) instead of warning per batch. checks: defers
    the validity checks of the sums to `checks.verify()` (no per-batch host synchronisation)."""
    if batch.segmentations is None:
        raise ValueError(
            f"GradSUM needs a segmentation for every image; images {batch.ids[:3]} have none. "
            "Use a dataset with segmentations (roads, cityscapes, voc with SegmentationClass)"
        )
    images, segmentations, rows = batch.images, batch.segmentations, list(range(len(batch.ids)))
    spec = target
    if isinstance(target, str):
        if target != "label":
            raise ValueError(f"target must be None, 'label', a class index or a Target; got {target!r}")
        rows, spec = label_targets(batch.targets, batch.ids)
        if not rows:
            return {}
        if len(rows) != len(batch.ids) or rows != sorted(rows):
            picked = torch.as_tensor(rows, device=images.device)
            images, segmentations = images[picked], segmentations[picked.to(segmentations.device)]
    if device is not None:
        images = images.to(device)
    ids = [batch.ids[i] for i in rows]
    height, width = int(images.shape[-2]), int(images.shape[-1])
    with zero_maps.batch(ids) if zero_maps is not None else contextlib.nullcontext():
        results = explain(model, images, methods=list(methods), layer=layer, target=spec, options=options,
                          precision=precision, autocast=autocast)
    source = f"images {ids[:3]}"
    out = {}
    for name, attr in results.items():
        per_image: dict[str, Any] = {"height": [height] * len(ids), "width": [width] * len(ids)}
        if attr.targets is not None:
            per_image["target"] = attr.targets  # a tensor, read back once per shard (no per-batch sync)
        sums = label_sums(attr.maps, segmentations, index, threshold=threshold, normalize=normalize, source=source,
                          checks=checks)
        out[name] = BatchSums(sums, ids, rows, per_image)
    return out


@dataclass
class BatchSums:
    """The label sums of one batch for one method: `sums` per explained image, their `ids`,
    `rows` (their positions in the batch: an image explained for two classes appears twice)
    and `per_image` columns (height, width, the explained target)."""

    sums: LabelSums
    ids: list[str]
    rows: list[int]
    per_image: dict[str, Any]


def _joined(parts: list[Any]) -> list[Any]:
    """Per-image values of several batches as one list (tensors concatenated and copied to the
    host once)."""
    if parts and isinstance(parts[0], torch.Tensor):
        return torch.cat([p.reshape(-1) for p in parts]).cpu().tolist()
    return [v for part in parts for v in part]


def _check_indices(indices: Any, n: int) -> list[int]:
    """indices as a list of distinct ints in 0..n-1 (numpy integers accepted)."""
    if isinstance(indices, str | bytes):
        raise TypeError(f"indices must be a list of dataset positions (ints); got the string {indices!r}")
    if isinstance(indices, torch.Tensor):
        indices = indices.flatten().tolist()
    try:
        order = list(indices)
    except TypeError:
        raise TypeError(f"indices must be a list of dataset positions (ints); got {type(indices).__name__}") from None
    if not order:
        raise ValueError("indices is empty: nothing to profile; give dataset positions, or indices=None for all")
    wrong = [i for i in order if isinstance(i, bool) or not isinstance(i, numbers.Integral)]
    if wrong:
        raise TypeError(f"indices must be ints (dataset positions); got {wrong[0]!r} ({type(wrong[0]).__name__})")
    order = [int(i) for i in order]
    outside = [i for i in order if not 0 <= i < n]
    if outside:
        raise ValueError(
            f"indices {outside[:5]} are outside the dataset of {n} images (valid positions 0..{n - 1}; "
            "negative positions are not accepted)"
        )
    if len(set(order)) != len(order):
        seen: set[int] = set()
        twice = next(i for i in order if i in seen or seen.add(i))
        raise ValueError(f"index {twice} is listed twice in indices; each image can be profiled once")
    return order


def _check_methods(method: Any) -> list[str]:
    methods = [method] if isinstance(method, str) else method
    if not isinstance(methods, Sequence) or not all(isinstance(m, str) for m in methods):
        raise TypeError(f"method must be a method name or a list of names (gs.available_methods()); got {method!r}")
    if not methods:
        raise ValueError("method is empty; give at least one method name (gs.available_methods())")
    return list(methods)


class ProfileComputer:
    """GradSUM rows for any subset of a dataset's items: the model and its K random copies
    (built once), the same method, layer, target and normalisation for all of them. Used by
    `gradsum` (all items at once) and by the sharded runner (one shard at a time)."""

    def __init__(
        self,
        model: nn.Module,
        table: LabelTable,
        methods: Sequence[str],
        *,
        layer: Any = AUTO,
        target: Any = None,
        normalize: NormalizeMode = "relu-minmax",
        threshold: float = 0.5,
        batch_size: int = 16,
        baseline: int = 0,
        seed: int = 0,
        model_name: str = "model",
        epoch: int | None = None,
        options: dict[str, dict[str, Any]] | None = None,
        device: torch.device | str | None = None,
        num_workers: int = 0,
        precision: str = "float32",
        autocast: str | None = None,
    ):
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module; got {type(model).__name__}")
        baseline = check_int(baseline, "baseline", minimum=0)
        batch_size = check_int(batch_size, "batch_size")
        seed = check_seed(seed)
        check_threshold(threshold, normalize)
        table = label_table_of(table)
        self.table = table
        self.methods = _check_methods(methods)
        self.layer = _layer_spec(model, layer)
        precision, autocast = check_precision(precision, autocast)
        self.kwargs = {"target": target, "normalize": normalize, "threshold": threshold, "options": options,
                       "device": device, "precision": precision, "autocast": autocast}
        self.batch_size = batch_size
        # worker processes that read (decode, resize) the samples; results do not depend on them
        self.num_workers = check_int(num_workers, "num_workers", minimum=0)
        self.pin_memory = device is not None and torch.device(device).type == "cuda"
        context = {"model": model_name, "epoch": epoch}
        self.models = [(model, {**context, "copy": -1})]
        self.models += [(randomized_copy(model, seed + k), {**context, "copy": k}) for k in range(baseline)]
        self.settings = {"methods": self.methods, "layer": self.layer, "normalize": normalize,
                         "threshold": threshold, "baseline": baseline, "seed": seed, "label_table": table.name,
                         "target": str(target), "model": model_name, "epoch": epoch, "options": options or {},
                         "precision": precision, "autocast": autocast,
                         "label_groups": {label.name: label.category for label in table.labels}}

    def rows(self, dataset: Any, indices: Sequence[int],
             progress: Callable[[int], None] | None = None) -> pd.DataFrame:
        """Rows of the model (copy = -1) and of each random copy (copy = 0..K-1)."""
        import pandas as pd

        index = LabelIndex.of(self.table, self.kwargs["device"])
        zero_maps = ZeroMapLog()  # the model's blank maps, named once at the end
        checks = DeferredChecks()  # read back once per call, not once per batch (GPU)
        # each batch is read once and explained by the model and every random copy
        collected: list[dict[str, list[tuple[list[int], BatchSums]]]] = [{} for _ in self.models]
        for positions, batch in batches_by_size(dataset, indices, self.batch_size, num_workers=self.num_workers,
                                                pin_memory=self.pin_memory):
            for (net, context), parts in zip(self.models, collected, strict=True):
                with warnings.catch_warnings():
                    if context["copy"] >= 0:  # random copies: blank maps are part of the baseline
                        warnings.simplefilter("ignore", ZeroMapWarning)
                    sums = batch_sums(net, batch, index, self.methods, layer=self.layer,
                                      zero_maps=zero_maps if context["copy"] < 0 else None, checks=checks,
                                      **self.kwargs)
                for name, part in sums.items():
                    parts.setdefault(name, []).append(([positions[r] for r in part.rows], part))
                if progress is not None:
                    progress(len(batch))
        checks.verify()
        blocks = []
        for (_, context), per_method in zip(self.models, collected, strict=True):
            for name, parts in per_method.items():  # the columns of a whole shard at once, in item order
                where = [p for positions, _ in parts for p in positions]
                order = sorted(range(len(where)), key=where.__getitem__)
                sums = LabelSums.cat([part.sums for _, part in parts]).take(torch.as_tensor(order))
                ids = [i for _, part in parts for i in part.ids]
                per_image = {key: _joined([part.per_image[key] for _, part in parts]) for key in parts[0][1].per_image}
                blocks.append(profile_columns(sums, index, [ids[i] for i in order], {**context, "method": name},
                                              {key: [values[i] for i in order] for key, values in per_image.items()}))
        if not blocks:
            raise ValueError(f"target='label': none of the {len(indices)} images has a label present; nothing to "
                             "profile")
        zero_maps.warn()
        return pd.DataFrame(concat_columns(blocks))

    def profile(self, frame: Any) -> Profile:
        """Split a rows table into the model's images table and the baseline's."""
        mine = frame["copy"].to_numpy() < 0
        if mine.all():  # no baseline: no row filtering (a copy of every column)
            return Profile(frame.drop(columns="copy"), dict(self.settings), None)
        own = frame[mine].drop(columns="copy").reset_index(drop=True)
        base = frame[~mine].reset_index(drop=True)
        return Profile(own, dict(self.settings), base if len(base) else None)


def table_of(dataset: Any, label_table: LabelTable | str | None) -> LabelTable:
    """label_table (a LabelTable or a built-in table's name) or else the dataset's own."""
    table = label_table if label_table is not None else getattr(dataset, "label_table", None)
    if table is None:
        raise ValueError(
            f"{type(dataset).__name__} has no label_table; pass label_table= (e.g. gs.semantic.CITYSCAPES or "
            "'cityscapes')"
        )
    return label_table_of(table)


def gradsum(
    model: nn.Module,
    dataset: Any,
    method: str | Sequence[str] = "gradcam",
    layer: Any = AUTO,
    *,
    target: Any = None,
    normalize: NormalizeMode = "relu-minmax",
    threshold: float = 0.5,
    batch_size: int = 16,
    label_table: LabelTable | str | None = None,
    baseline: int = 0,
    seed: int = 0,
    model_name: str = "model",
    epoch: int | None = None,
    options: dict[str, dict[str, Any]] | None = None,
    indices: Sequence[int] | None = None,
    device: torch.device | str | None = None,
    num_workers: int = 0,
    precision: str = "float32",
    autocast: str | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Profile:
    """GradSUM profile of `model` on `dataset` (indexable, Samples with segmentations).

    method: one name or several (CAM-family methods share one pass). normalize: how each raw
    heatmap is brought to [0,1] first (default min-max of ReLU(M), as in GradSUM).
    threshold: t of the threshold mode. target: None (predicted class / output 0), "label"
    (each image's own label), a class index or a Target. baseline: K randomly initialised
    copies of the architecture profiled the same way (seeds seed..seed+K-1), stored in
    `Profile.baseline`. label_table: a LabelTable or a built-in table's name ("cityscapes",
    "roads", "voc"); defaults to `dataset.label_table`. indices: distinct positions in the
    dataset (default all). num_workers: processes that read the samples (decoding, resizing)
    ahead of the model, through a torch DataLoader; the results are the same for any number.
    precision / autocast: `gradsum.core.precision` (default float32: TF32 off on GPUs).
    Returns a Profile whose
    `images` table has one row per image x method x level (label, category) x category.
    For large datasets use `gradsum.run.profile_job`, which shards and resumes.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module; got {type(model).__name__}")
    if isinstance(dataset, torch.Tensor) or not (hasattr(dataset, "__len__") and hasattr(dataset, "__getitem__")):
        raise TypeError(
            f"dataset must be an indexable dataset of Samples with segmentations (len() and [i]); got "
            f"{type(dataset).__name__}. For heatmaps you already have, use gs.semantic.profile_maps"
        )
    table = table_of(dataset, label_table)
    methods = _check_methods(method)
    if indices is None:
        order = list(range(len(dataset)))
        if not order:
            raise ValueError("the dataset is empty: nothing to profile")
    else:
        order = _check_indices(indices, len(dataset))
    if progress is not None and not callable(progress):
        raise TypeError(f"progress must be a callable progress(done, total) or None; got {type(progress).__name__}")
    computer = ProfileComputer(model, table, methods, layer=layer, target=target, normalize=normalize,
                               threshold=threshold, batch_size=batch_size, baseline=baseline, seed=seed,
                               model_name=model_name, epoch=epoch, options=options, device=device,
                               num_workers=num_workers, precision=precision, autocast=autocast)
    total = len(order) * len(computer.models)
    done = [0]

    def tick(n: int) -> None:
        done[0] += n
        if progress is not None:
            progress(done[0], total)

    return computer.profile(computer.rows(dataset, order, tick))
