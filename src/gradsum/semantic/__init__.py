"""GradSUM semantic profiles: `gs.gradsum(model, dataset, ...)` -> Profile.

    profile = gs.gradsum(model, gs.data.RoadScenes(500, task="pothole"), method="gradcam",
                         baseline=10)
    profile.summary()            # per (model, method, epoch, level, category)
    gs.semantic.shortcut_verdict(profile)
"""
from __future__ import annotations

import numbers
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from gradsum.core.layers import AUTO, layer_name
from gradsum.core.normalize import NormalizeMode
from gradsum.methods._args import check_int, check_seed
from gradsum.methods.explain import explain
from gradsum.semantic.baseline import randomized_copy
from gradsum.semantic.labels import CITYSCAPES, ROADS, VOC, LabelIndex, LabelTable, label_table_of
from gradsum.semantic.profile import (
    LabelSums,
    Profile,
    bootstrap_ci,
    check_threshold,
    concat_columns,
    iterate_batches,
    label_sums,
    profile_columns,
    profile_maps,
    profile_rows,
    summarize,
)
from gradsum.semantic.verdict import Finding, shortcut_findings, shortcut_verdict

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "gradsum",
    "profile_batch",
    "batch_sums",
    "ProfileComputer",
    "table_of",
    "Profile",
    "LabelSums",
    "LabelIndex",
    "LabelTable",
    "CITYSCAPES",
    "ROADS",
    "VOC",
    "label_sums",
    "profile_maps",
    "profile_rows",
    "summarize",
    "bootstrap_ci",
    "randomized_copy",
    "shortcut_findings",
    "shortcut_verdict",
    "Finding",
]


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
    return pd.DataFrame(concat_columns([
        profile_columns(s, index, batch.ids, {**(context or {}), "method": name}, per_image)
        for name, (s, per_image) in sums.items()
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
) -> dict[str, tuple[LabelSums, dict[str, list[Any]] | None]]:
    """Explain one collated batch with every method (CAM methods sharing one pass) and sum
    each map per image and label: {method: (sums, per-image columns such as the target)}."""
    if batch.segmentations is None:
        raise ValueError(
            f"GradSUM needs a segmentation for every image; images {batch.ids[:3]} have none. "
            "Use a dataset with segmentations (roads, cityscapes, voc with SegmentationClass)"
        )
    images = batch.images if device is None else batch.images.to(device)
    spec = target
    if isinstance(target, str):
        if target != "label":
            raise ValueError(f"target must be None, 'label', a class index or a Target; got {target!r}")
        spec = _label_targets(batch)
    results = explain(model, images, methods=list(methods), layer=layer, target=spec, options=options)
    source = f"images {list(batch.ids)[:3]}"
    return {
        name: (label_sums(attr.maps, batch.segmentations, index, threshold=threshold, normalize=normalize,
                          source=source),
               {"target": attr.targets.tolist()} if attr.targets is not None else None)
        for name, attr in results.items()
    }


def _label_targets(batch: Any) -> torch.Tensor:
    """target="label": each image's own class label as int64 (B,); a regression (float)
    or missing label is an error, never truncated to a class."""
    ids = list(batch.ids)[:3]
    targets = batch.targets
    if targets is None or (isinstance(targets, list) and any(t is None for t in targets)):
        raise ValueError(f"target='label' needs a class label on every image; images {ids} have none")
    try:
        labels = torch.as_tensor(targets)
    except (TypeError, ValueError, RuntimeError):
        raise ValueError(f"target='label' needs one class index per image; the labels of images {ids} are "
                         f"{type(targets).__name__}") from None
    if labels.dtype == torch.bool or labels.ndim > 1 or labels.numel() != len(batch.ids):
        raise ValueError(f"target='label' needs one class index per image; images {ids} have labels of shape "
                         f"{tuple(labels.shape)} ({labels.dtype})")
    if labels.is_floating_point():
        whole = torch.isfinite(labels) & (labels == labels.round())
        if not bool(whole.all()):
            raise ValueError(
                f"target='label' explains each image's class label, but the labels of images {ids} are float "
                f"values such as {float(labels[~whole][0]):.4g} (a regression dataset); use target=None "
                "(output 0) or gs.RegressionTarget(0, sign) instead"
            )
    return labels.long().reshape(-1)


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
        self.kwargs = {"target": target, "normalize": normalize, "threshold": threshold, "options": options,
                       "device": device}
        self.batch_size = batch_size
        context = {"model": model_name, "epoch": epoch}
        self.models = [(model, {**context, "copy": -1})]
        self.models += [(randomized_copy(model, seed + k), {**context, "copy": k}) for k in range(baseline)]
        self.settings = {"methods": self.methods, "layer": self.layer, "normalize": normalize,
                         "threshold": threshold, "baseline": baseline, "seed": seed, "label_table": table.name,
                         "target": str(target), "model": model_name, "epoch": epoch,
                         "label_groups": {label.name: label.category for label in table.labels}}

    def rows(self, dataset: Any, indices: Sequence[int],
             progress: Callable[[int], None] | None = None) -> pd.DataFrame:
        """Rows of the model (copy = -1) and of each random copy (copy = 0..K-1)."""
        import pandas as pd

        index = LabelIndex.of(self.table, self.kwargs["device"])
        blocks = []
        for net, context in self.models:
            collected: dict[str, list[tuple[LabelSums, list[str], dict[str, list[Any]] | None]]] = {}
            for batch in iterate_batches(dataset, self.batch_size, indices):
                for name, (sums, per_image) in batch_sums(net, batch, index, self.methods, layer=self.layer,
                                                          **self.kwargs).items():
                    collected.setdefault(name, []).append((sums, list(batch.ids), per_image))
                if progress is not None:
                    progress(len(batch))
            for name, parts in collected.items():  # the columns of a whole dataset at once
                per_image = None
                if parts[0][2] is not None:
                    per_image = {key: [v for part in parts for v in part[2][key]] for key in parts[0][2]}
                blocks.append(profile_columns(LabelSums.cat([part[0] for part in parts]), index,
                                              [i for part in parts for i in part[1]], {**context, "method": name},
                                              per_image))
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
    dataset (default all). Returns a Profile whose
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
                               model_name=model_name, epoch=epoch, options=options, device=device)
    total = len(order) * len(computer.models)
    done = [0]

    def tick(n: int) -> None:
        done[0] += n
        if progress is not None:
            progress(done[0], total)

    return computer.profile(computer.rows(dataset, order, tick))
