"""GradSUM semantic profiles: `gs.gradsum(model, dataset, ...)` -> Profile.

    profile = gs.gradsum(model, gs.data.RoadScenes(500, task="pothole"), method="gradcam",
                         baseline=10)
    profile.summary()            # per (model, method, epoch, level, category)
    gs.semantic.shortcut_verdict(profile)
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from gradsum.core.layers import AUTO, layer_name
from gradsum.core.normalize import NormalizeMode
from gradsum.methods.explain import explain
from gradsum.semantic.baseline import randomized_copy
from gradsum.semantic.labels import CITYSCAPES, ROADS, VOC, LabelIndex, LabelTable
from gradsum.semantic.profile import (
    LabelSums,
    Profile,
    bootstrap_ci,
    iterate_batches,
    label_sums,
    profile_maps,
    profile_rows,
    summarize,
)
from gradsum.semantic.verdict import Finding, shortcut_findings, shortcut_verdict

__all__ = [
    "gradsum",
    "profile_batch",
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
    table: LabelTable,
    methods: Sequence[str],
    *,
    layer: Any = AUTO,
    target: Any = None,
    normalize: NormalizeMode = "relu-minmax",
    threshold: float = 0.5,
    options: dict[str, dict[str, Any]] | None = None,
    context: dict[str, Any] | None = None,
    device: torch.device | str | None = None,
) -> list[dict[str, Any]]:
    """GradSUM rows for one collated batch: explain with every method (CAM methods sharing
    one pass), then per-image, per-label and per-category sums. target="label" explains each
    image's own label (classifiers)."""
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
        spec = torch.as_tensor(batch.targets).long().reshape(-1)
    results = explain(model, images, methods=list(methods), layer=layer, target=spec, options=options)
    rows: list[dict[str, Any]] = []
    for name, attr in results.items():
        ctx = {**(context or {}), "method": name}
        batch_rows = profile_maps(attr.maps, batch.segmentations, table, batch.ids, normalize=normalize,
                                  threshold=threshold, context=ctx)
        if attr.targets is not None:
            targets = attr.targets.tolist()
            position = {image_id: i for i, image_id in enumerate(batch.ids)}
            for row in batch_rows:
                row["target"] = targets[position[row["image_id"]]]
        rows.extend(batch_rows)
    return rows


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
    label_table: LabelTable | None = None,
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
    threshold: t of the threshold mode. baseline: K randomly initialised copies of the
    architecture profiled the same way (seeds seed..seed+K-1), stored in `Profile.baseline`.
    label_table: defaults to `dataset.label_table`. Returns a Profile whose `images` table has
    one row per image x method x level (label, category) x category.
    """
    import pandas as pd

    table = label_table or getattr(dataset, "label_table", None)
    if table is None:
        raise ValueError(
            f"{type(dataset).__name__} has no label_table; pass label_table= (e.g. gs.semantic.CITYSCAPES)"
        )
    if baseline < 0:
        raise ValueError(f"baseline must be the number of random copies (>= 0); got {baseline}")
    methods = [method] if isinstance(method, str) else list(method)
    layer = _layer_spec(model, layer)
    order = list(range(len(dataset))) if indices is None else list(indices)
    if not order:
        raise ValueError("the dataset is empty: nothing to profile")
    models = [(model, {"model": model_name, "epoch": epoch}, False)]
    models += [(randomized_copy(model, seed + k), {"model": model_name, "epoch": epoch, "copy": k}, True)
               for k in range(baseline)]
    total = len(order) * len(models)
    done = 0
    rows: list[dict[str, Any]] = []
    base_rows: list[dict[str, Any]] = []
    for net, context, is_copy in models:
        for batch in iterate_batches(dataset, batch_size, order):
            out = base_rows if is_copy else rows
            out.extend(profile_batch(net, batch, table, methods, layer=layer, target=target, normalize=normalize,
                                     threshold=threshold, options=options, context=context, device=device))
            done += len(batch)
            if progress is not None:
                progress(done, total)
    settings = {"methods": methods, "layer": layer, "normalize": normalize, "threshold": threshold,
                "baseline": baseline, "seed": seed, "label_table": table.name, "target": str(target)}
    return Profile(pd.DataFrame(rows), settings, pd.DataFrame(base_rows) if base_rows else None)
