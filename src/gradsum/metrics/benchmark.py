"""The method benchmark table: methods x metrics, like the Ada-SISE comparison table
(EBPG, Bbox, Drop, Increase, + deletion / insertion AUC and cost per image).

`benchmark(model, data, methods, metrics)` explains every batch with every method (one
explainer per method, re-used), evaluates every metric on the maps, and keeps the
per-image values, so the table (mean and 95% confidence interval per cell), the per-image
rows and the mean deletion / insertion curves all come from one run.

`Evaluator` does the work for any subset of a dataset's items and returns one wide row per
explained image (`rows`); `benchmark` runs it on all the data at once and
`gradsum.run.evaluate_job` one resumable shard at a time. Images of different sizes are
batched by size (nothing is resized); batches never exceed `batch_size` images, so memory
stays bounded whatever is handed in.
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from gradsum.core.devices import model_device
from gradsum.core.targets import TargetSpec, label_targets
from gradsum.data.samples import Batch, Sample, batches_by_size
from gradsum.methods._args import check_int, unknown_names
from gradsum.methods.base import ZeroMapLog
from gradsum.metrics._common import boxes_to_masks
from gradsum.metrics.complexity import complexity, sparseness
from gradsum.metrics.faithfulness import (
    confidence_change,
    deletion_insertion,
    faithfulness_correlation,
    road,
)
from gradsum.metrics.localization import (
    attribution_auc,
    bbox,
    ebpg,
    pointing_game,
    relevance_mass,
    relevance_rank,
)

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["benchmark", "Evaluator", "BenchmarkResult", "METRICS", "DEFAULT_METRICS", "CURVE_POINTS",
           "check_metric_options"]

#: metric name -> (needs ground truth, unit). "drop"/"increase" keep the top 15% pixels (the
#: SISE / Ada-SISE tables); "average_drop"/"increase_in_confidence" use E ⊙ x (Grad-CAM++).
METRICS: dict[str, tuple[bool, str]] = {
    "ebpg": (True, "fraction"),
    "bbox": (True, "fraction"),
    "pointing_game": (True, "fraction"),
    "relevance_mass": (True, "fraction"),
    "relevance_rank": (True, "fraction"),
    "attribution_auc": (True, "fraction"),
    "drop": (False, "%"),
    "increase": (False, "%"),
    "average_drop": (False, "%"),
    "increase_in_confidence": (False, "%"),
    "deletion": (False, "AUC"),
    "insertion": (False, "AUC"),
    "road": (False, "score"),
    "faithfulness_correlation": (False, "r"),
    "sparseness": (False, "gini"),
    "complexity": (False, "nats"),
}
DEFAULT_METRICS = ("ebpg", "bbox", "drop", "increase", "deletion", "insertion")
#: metrics computed together, whose options are shared (see `benchmark`)
_PARTNER = {"drop": "increase", "increase": "drop", "average_drop": "increase_in_confidence",
            "increase_in_confidence": "average_drop", "deletion": "insertion", "insertion": "deletion"}
#: deletion / insertion curves are resampled onto the fractions 0, 1/(P-1), ..., 1 (images of
#: different sizes have curves of different lengths; their mean needs one grid)
CURVE_POINTS = 101
_LOCAL = {
    "ebpg": ebpg,
    "bbox": bbox,
    "pointing_game": pointing_game,
    "relevance_mass": relevance_mass,
    "relevance_rank": relevance_rank,
    "attribution_auc": attribution_auc,
}


@dataclass
class BenchmarkResult:
    """per_image: long table (method, sample, target, metric, value); an image explained
    for several classes (multi-label targets) has one row per class. cost: per method,
    seconds, forward and backward passes per image. curves: method -> {"deletion" /
    "insertion": (fractions (P,), mean curve (P,))}. settings: the run's options."""

    per_image: pd.DataFrame
    cost: pd.DataFrame
    curves: dict[str, dict[str, tuple[torch.Tensor, torch.Tensor]]] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> pd.DataFrame:
        """Long form: method, metric, mean, ci_low, ci_high (normal 95% CI), n (finite values)."""
        import pandas as pd

        rows = []
        frame = self.per_image
        for (method, metric), grp in frame.groupby(["method", "metric"], sort=False):
            v = grp["value"].astype(float)
            v = v[v.notna() & (v.abs() != math.inf)]
            n = len(v)
            mean = float(v.mean()) if n else math.nan
            half = 1.959964 * float(v.std(ddof=1)) / math.sqrt(n) if n > 1 else math.nan
            rows.append({"method": method, "metric": metric, "mean": mean, "ci_low": mean - half, "ci_high": mean + half, "n": n})
        return pd.DataFrame(rows)

    def table(self, percent: bool = True) -> pd.DataFrame:
        """Methods x metrics: `<metric>` mean and `<metric> ±` the 95% CI half-width, then
        seconds, forward and backward passes per image. percent: show fraction metrics
        (EBPG, Bbox, ...) in % like the Ada-SISE table."""
        summ = self.summary()
        methods = list(dict.fromkeys(self.per_image["method"]))
        metrics = list(dict.fromkeys(self.per_image["metric"]))
        table = {}
        for metric in metrics:
            scale = 100.0 if percent and METRICS.get(metric, (False, ""))[1] == "fraction" else 1.0
            sub = summ[summ["metric"] == metric].set_index("method")
            table[metric] = [scale * sub.loc[m, "mean"] if m in sub.index else math.nan for m in methods]
            table[f"{metric} ±"] = [
                scale * (sub.loc[m, "ci_high"] - sub.loc[m, "mean"]) if m in sub.index else math.nan for m in methods
            ]
        import pandas as pd

        out = pd.DataFrame(table, index=pd.Index(methods, name="method"))
        cost = self.cost.set_index("method")
        for col in ("seconds_per_image", "forward_per_image", "backward_per_image"):
            out[col] = [float(cost.loc[m, col]) for m in methods]
        return out


def check_metric_options(name: str, options: Mapping[str, Any]) -> None:
    """Refuse options that metric `name` does not take (TypeError naming them and the options
    it takes; the ones `benchmark` sets itself — model, images, maps, target — excluded)."""
    import inspect

    if name not in METRICS:
        raise ValueError(f"unknown metric {name!r}; available: {', '.join(METRICS)}")
    function = {"drop": confidence_change, "increase": confidence_change, "average_drop": confidence_change,
                "increase_in_confidence": confidence_change, "deletion": deletion_insertion,
                "insertion": deletion_insertion, "road": road, "faithfulness_correlation": faithfulness_correlation,
                "sparseness": sparseness, "complexity": complexity, **_LOCAL}[name]
    taken = {"model", "x", "maps", "target", "gt", "boxes", "masks", "progress", "modes"}
    known = [p.name for p in inspect.signature(function).parameters.values()
             if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD) and p.name not in taken]
    unknown = [key for key in options if key not in known]
    if unknown:
        raise TypeError(f"metric {name} has no option {unknown_names(unknown, known)}; it takes "
                        f"{', '.join(known) or 'none'}")


def _chunks(batch: Batch, size: int) -> Iterator[Batch]:
    """A batch cut into batches of at most `size` images (the clean pass of every method and
    metric then never sees more)."""
    if len(batch) <= size:
        yield batch
        return
    for start in range(0, len(batch), size):
        yield _slice(batch, start, start + size)


def _slice(batch: Batch, start: int, stop: int) -> Batch:
    return Batch(
        batch.images[start:stop], batch.ids[start:stop],
        batch.segmentations[start:stop] if batch.segmentations is not None else None,
        batch.boxes[start:stop], batch.box_labels[start:stop],
        batch.targets[start:stop] if batch.targets is not None else None, batch.meta[start:stop],
    )


def _is_dataset(data: Any) -> bool:
    return (not isinstance(data, torch.Tensor | Batch) and hasattr(data, "__len__") and hasattr(data, "__getitem__")
            and len(data) > 0 and isinstance(data[0], Sample))


def _batches(data: Any, batch_size: int, max_images: int | None) -> Iterable[Batch]:
    """Batches / tensors / lists of them -> Batches of <= batch_size images, max_images in all."""
    if isinstance(data, torch.Tensor | Batch):
        data = [data]
    seen = 0
    for item in data:
        if isinstance(item, torch.Tensor):
            if item.ndim != 4:
                raise ValueError(f"benchmark: image tensors must be (B,C,H,W); got {tuple(item.shape)}")
            n = item.shape[0]
            item = Batch(item, [str(seen + i) for i in range(n)], None, [None] * n, [None] * n, None, [{}] * n)
        if not isinstance(item, Batch):
            raise TypeError(f"benchmark: data must yield Samples, Batches or image tensors; got {type(item).__name__}")
        for chunk in _chunks(item, batch_size):
            if max_images is not None and seen >= max_images:
                return
            keep = len(chunk) if max_images is None else min(len(chunk), max_images - seen)
            seen += keep
            yield chunk if keep == len(chunk) else _slice(chunk, 0, keep)


def _resampled(curves: torch.Tensor, fractions: torch.Tensor) -> list[Any]:
    """Curves (B,P) at `fractions` (P,) -> B float32 arrays on the CURVE_POINTS grid (linear)."""
    import numpy as np

    grid = np.linspace(0.0, 1.0, CURVE_POINTS)
    xs = fractions.detach().double().cpu().numpy()
    return [np.interp(grid, xs, row).astype(np.float32) for row in curves.detach().double().cpu().numpy()]


class Evaluator:
    """Methods x metrics for any subset of a dataset's items: the explainers are built once,
    and every image gives one wide row per method (`rows`), so shards of a dataset can be
    evaluated separately (and resumed) and merged into the same table as one run
    (`result`). Arguments as for `benchmark`; target may also be "label" (each image's own
    label; multi-label datasets such as VOC: every class present, localised against the
    boxes of that class)."""

    def __init__(
        self,
        model: nn.Module,
        methods: Sequence[str] | Mapping[str, Callable[[nn.Module], Any]],
        metrics: Sequence[str] = DEFAULT_METRICS,
        *,
        layer: Any = "auto",
        target: TargetSpec | str = None,
        batch_size: int = 16,
        method_options: Mapping[str, Mapping[str, Any]] | None = None,
        metric_options: Mapping[str, Mapping[str, Any]] | None = None,
        transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
        device: torch.device | str | None = None,
        seed: int = 0,
        num_workers: int = 0,
        precision: str = "float32",
        autocast: str | None = None,
    ) -> None:
        from gradsum.methods.registry import explainer

        if not isinstance(model, nn.Module):
            raise TypeError(f"benchmark: model must be a torch.nn.Module; got {type(model).__name__}")
        if isinstance(metrics, str):
            metrics = [metrics]
        if not metrics:
            raise ValueError(f"benchmark: metrics is empty; give metric names from: {', '.join(METRICS)}")
        unknown = [m for m in metrics if m not in METRICS]
        if unknown:
            raise ValueError(f"unknown metric(s) {unknown}; available: {', '.join(METRICS)}")
        if isinstance(methods, str):
            methods = [methods]
        if not methods:
            raise ValueError("benchmark: methods is empty; give registry names (gs.available_methods()) or "
                             "{name: factory(model)}")
        if isinstance(target, str) and target != "label":
            raise ValueError(f"benchmark: target must be None, 'label', a class index or a Target; got {target!r}")
        self.batch_size = check_int(batch_size, "benchmark: batch_size")
        self.num_workers = check_int(num_workers, "benchmark: num_workers", minimum=0)
        method_options = {k: dict(v) for k, v in (method_options or {}).items()}
        metric_options = {k: dict(v) for k, v in (metric_options or {}).items()}
        computed = set(metrics) | {_PARTNER[m] for m in metrics if m in _PARTNER}
        stray = [k for k in metric_options if k not in computed]
        if stray:
            raise ValueError(f"benchmark: metric_options are given for {stray}, which are not in "
                             f"metrics={list(metrics)}; add them to metrics or drop the options")
        if not isinstance(methods, Mapping):
            stray = [k for k in method_options if k not in methods]
            if stray:
                raise ValueError(f"benchmark: method_options are given for {stray}, which are not in "
                                 f"methods={list(methods)}; add them to methods or drop the options")
        self.model, self.metrics, self.target, self.transform, self.seed = model, list(metrics), target, transform, seed
        self.metric_options, self.method_options = metric_options, method_options
        self.device = (torch.device(device) if device is not None
                       else model_device(model))
        if isinstance(methods, Mapping):
            self.explainers = {name: factory(model) for name, factory in methods.items()}
        else:
            self.explainers = {name: explainer(name, model, layer=layer, precision=precision, autocast=autocast,
                                               **method_options.get(name, {}))
                               for name in methods}
        self.methods = list(self.explainers)
        self.box_labels: dict[int, int] = {}  # class index -> the label id its boxes carry (see rows)
        self.zero_maps = ZeroMapLog()  # images whose map is zero everywhere; result() names them once
        self.settings = {
            "methods": self.methods,
            "metrics": self.metrics,
            "layer": str(layer),
            "target": str(target),
            "seed": seed,
            "batch_size": self.batch_size,
            "metric_options": metric_options,
            "method_options": method_options,
            "units": {m: METRICS[m][1] for m in metrics},
            "precision": precision,
            "autocast": autocast,
        }

    def method_settings(self, name: str) -> dict[str, Any]:
        """What identifies the results of method `name` (for resuming a run folder)."""
        return {**{k: v for k, v in self.settings.items() if k not in ("methods", "method_options")},
                "method": name, "method_options": self.method_options.get(name, {})}

    def rows(self, dataset: Any, indices: Sequence[int], methods: Sequence[str] | None = None,
             progress: Callable[[str, int], None] | None = None) -> pd.DataFrame:
        """One row per method x explained image of dataset[i] for i in `indices` (images of
        one size batched together; rows in item order): method, sample, target, height,
        width, seconds / forward / backward (this image's share of its batch's cost), one
        column per metric, and `deletion_curve` / `insertion_curve` (CURVE_POINTS values)."""
        import pandas as pd

        methods = self.methods if methods is None else list(methods)
        self.box_labels = _box_labels_of_classes(dataset)
        parts: dict[str, list[tuple[list[int], dict[str, Any]]]] = {name: [] for name in methods}
        done = dict.fromkeys(methods, 0)
        pin = self.device.type == "cuda"
        for positions, batch in batches_by_size(dataset, list(indices), self.batch_size, num_workers=self.num_workers,
                                                pin_memory=pin):
            for name in methods:
                columns = self.batch_columns(name, batch)
                rows = columns.pop("_row")
                if rows:  # (a batch without any label present under target="label" gives none)
                    parts[name].append(([positions[r] for r in rows], columns))
                done[name] += len(batch)
                if progress is not None:
                    progress(name, done[name])
        if not any(parts.values()):
            raise ValueError(f"target='label': none of the {len(indices)} images has a label present; nothing to "
                             "evaluate")
        frames = []
        for name in methods:
            where = [p for positions, _ in parts[name] for p in positions]
            order = sorted(range(len(where)), key=where.__getitem__)
            merged = {key: [v for _, cols in parts[name] for v in cols[key]] for key in parts[name][0][1]}
            frames.append(pd.DataFrame({key: [values[i] for i in order] for key, values in merged.items()}))
        return pd.concat(frames, ignore_index=True)

    def batch_columns(self, name: str, batch: Batch) -> dict[str, list[Any]]:
        """The wide rows of one batch for method `name` (and "_row": each row's position in
        the batch)."""
        import warnings

        import numpy as np

        x, boxes, rows, target = batch.images, list(batch.boxes), list(range(len(batch))), self.target
        if isinstance(self.target, str):  # "label": each image's own label(s)
            rows, target = label_targets(batch.targets, batch.ids)
            if not rows:
                return {"_row": []}
            boxes = [_class_boxes(batch.boxes[r], batch.box_labels[r], self.box_labels.get(int(c), int(c)))
                     for r, c in zip(rows, target.tolist(), strict=True)]
            if len(rows) != len(batch):
                x = x[torch.as_tensor(rows)]
        x = x.to(self.device)
        if self.transform is not None:
            x = self.transform(x)
        h, w = x.shape[-2:]
        gt = boxes_to_masks(boxes, h, w, device=self.device) if any(m in _LOCAL for m in self.metrics) else None
        t0 = time.perf_counter()
        with self.zero_maps.batch([batch.ids[r] for r in rows]):
            attr = self.explainers[name](x, target)
        elapsed = time.perf_counter() - t0
        maps = attr.maps if hasattr(attr, "maps") else attr
        cost = getattr(attr, "cost", None)
        seconds = float(cost.seconds) if cost is not None and cost.seconds else elapsed
        explained = attr.targets if getattr(attr, "targets", None) is not None else target
        values: dict[str, torch.Tensor] = {}
        curves: dict[str, list[Any]] = {}
        opts = lambda metric: dict(self.metric_options.get(metric, {}))  # noqa: E731
        model, seed = self.model, self.seed
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # NaNs are kept per image and counted in `n`
            for metric in self.metrics:
                if metric in values:
                    continue
                if metric in _LOCAL:
                    values[metric] = _LOCAL[metric](maps, gt, **opts(metric)).values
                elif metric in ("drop", "increase"):
                    o = {"keep": 0.15, "seed": seed, **opts("drop"), **opts("increase")}
                    values["drop"], values["increase"] = (r.values for r in confidence_change(
                        model, x, maps, target=explained, **o))
                elif metric in ("average_drop", "increase_in_confidence"):
                    o = {"seed": seed, **opts("average_drop"), **opts("increase_in_confidence")}
                    values["average_drop"], values["increase_in_confidence"] = (r.values for r in confidence_change(
                        model, x, maps, target=explained, **o))
                elif metric in ("deletion", "insertion"):
                    o = {"seed": seed, **opts("deletion"), **opts("insertion")}
                    for mode, r in deletion_insertion(model, x, maps, target=explained, **o).items():
                        values[mode] = r.values
                        curves[mode] = _resampled(r.extras["curves"], r.extras["fractions"])
                elif metric == "road":
                    values[metric] = road(model, x, maps, target=explained, seed=seed, **opts(metric)).values
                elif metric == "faithfulness_correlation":
                    values[metric] = faithfulness_correlation(model, x, maps, target=explained, seed=seed,
                                                              **opts(metric)).values
                elif metric == "sparseness":
                    values[metric] = sparseness(maps).values
                elif metric == "complexity":
                    values[metric] = complexity(maps).values
        n = len(rows)
        targets = explained.tolist() if isinstance(explained, torch.Tensor) and explained.numel() == n else [None] * n
        columns: dict[str, list[Any]] = {
            "_row": rows, "method": [name] * n, "sample": [batch.ids[r] for r in rows], "target": targets,
            "height": [int(h)] * n, "width": [int(w)] * n, "seconds": [seconds / n] * n,
            "forward": [int(cost.forward_passes) / n if cost is not None else np.nan] * n,
            "backward": [int(cost.backward_passes) / n if cost is not None else np.nan] * n,
        }
        for metric in self.metrics:
            columns[metric] = values[metric].detach().double().cpu().tolist()
        for mode, per_image in curves.items():
            columns[f"{mode}_curve"] = per_image
        return columns

    def result(self, frame: pd.DataFrame) -> BenchmarkResult:
        """The BenchmarkResult of the wide rows of `rows` (any number of shards, concatenated)."""
        import numpy as np
        import pandas as pd

        if not len(frame):
            raise ValueError("benchmark: the data yielded no images to evaluate")
        self.zero_maps.warn()
        self.zero_maps = ZeroMapLog()
        methods = [m for m in self.methods if m in set(frame["method"])]
        long = []
        for name in methods:
            sub = frame[frame["method"] == name]
            for metric in self.metrics:
                long.append(pd.DataFrame({"method": name, "sample": sub["sample"].to_numpy(),
                                          "target": sub["target"].to_numpy(), "metric": metric,
                                          "value": sub[metric].to_numpy(dtype=np.float64)}))
        per_image = pd.concat(long, ignore_index=True)
        cost = pd.DataFrame([{"method": name, "images": int((frame["method"] == name).sum()),
                              "seconds_per_image": float(frame.loc[frame["method"] == name, "seconds"].mean()),
                              "forward_per_image": float(frame.loc[frame["method"] == name, "forward"].mean()),
                              "backward_per_image": float(frame.loc[frame["method"] == name, "backward"].mean())}
                             for name in methods])
        grid = torch.linspace(0.0, 1.0, CURVE_POINTS)
        curves: dict[str, dict[str, tuple[torch.Tensor, torch.Tensor]]] = {}
        for name in methods:
            sub = frame[frame["method"] == name]
            for mode in ("deletion", "insertion"):
                column = f"{mode}_curve"
                if column in sub.columns and len(sub):
                    mean = np.mean(np.stack([np.asarray(c, dtype=np.float64) for c in sub[column]]), axis=0)
                    curves.setdefault(name, {})[mode] = (grid, torch.as_tensor(mean, dtype=torch.float32))
        images = frame.drop_duplicates("sample")
        sizes = images.groupby(["height", "width"], sort=False).size().sort_values(ascending=False)
        settings = {**self.settings, "methods": methods,
                    "image_sizes": {f"{h}x{w}": int(n) for (h, w), n in sizes.items()}}
        return BenchmarkResult(per_image, cost, curves, settings)


def _box_labels_of_classes(dataset: Any) -> dict[int, int]:
    """Class index (the model's output, the position in a multi-hot target) -> the label id
    the dataset's boxes carry for that class, matched by name through the dataset's
    `classes` and `label_table` (VOC: class 0 "aeroplane" has boxes labelled 1); {} when the
    dataset names no classes (box labels are then taken to be class indices)."""
    classes, table = getattr(dataset, "classes", None), getattr(dataset, "label_table", None)
    if not classes or table is None:
        return {}
    ids = {label.name: label.id for label in table.labels}
    return {i: ids[name] for i, name in enumerate(classes) if name in ids}


def _class_boxes(boxes: torch.Tensor | None, labels: torch.Tensor | None, cls: int) -> torch.Tensor | None:
    """The boxes of class `cls` (all boxes when they carry no labels)."""
    if boxes is None or labels is None or len(boxes) == 0:
        return boxes
    return boxes[labels.to(boxes.device) == cls]


def benchmark(
    model: nn.Module,
    data: Any,
    methods: Sequence[str] | Mapping[str, Callable[[nn.Module], Any]],
    metrics: Sequence[str] = DEFAULT_METRICS,
    *,
    layer: Any = "auto",
    target: TargetSpec | str = None,
    batch_size: int = 16,
    max_images: int | None = None,
    method_options: Mapping[str, Mapping[str, Any]] | None = None,
    metric_options: Mapping[str, Mapping[str, Any]] | None = None,
    transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    device: torch.device | str | None = None,
    seed: int = 0,
    num_workers: int = 0,
    precision: str = "float32",
    autocast: str | None = None,
    progress: Callable[[str, int], None] | None = None,
) -> BenchmarkResult:
    """Evaluate `methods` with `metrics` on `data`; returns a `BenchmarkResult` whose
    `.table()` is the methods x metrics table (mean, 95% CI, seconds and passes per image).

    data: a dataset of `Sample`s (images of mixed sizes are batched by size, never resized),
    a list of Samples, Batches, or (B,C,H,W) tensors (cut into batches of `batch_size`).
    Localisation metrics use the samples' boxes (union per image; images without boxes get
    NaN). methods: registry names (built with `layer` and `method_options[name]`) or
    {name: factory(model) -> exp(x, target)}. metrics: names in `METRICS`;
    `metric_options[name]` are passed to the metric (e.g. {"deletion": {"step": 8}}).
    transform: applied to the [0,1] images to get the model input (e.g. normalisation);
    perturbations then happen in that model-input space. target: as for explainers (None =
    predicted class), or "label": each image's own label (multi-label data: each class
    present, localised against that class's boxes); the faithfulness metrics use the same
    target. num_workers: processes reading a dataset's samples ahead of the model (the same
    results for any number). precision / autocast: see `gradsum.core.precision` (registry
    methods only; default float32: TF32 off on GPUs). For large datasets use `gradsum.run.evaluate_job`, which shards
    and resumes.
    """
    import pandas as pd

    if max_images is not None:
        max_images = check_int(max_images, "benchmark: max_images")
    evaluator = Evaluator(model, methods, metrics, layer=layer, target=target, batch_size=batch_size,
                          method_options=method_options, metric_options=metric_options, transform=transform,
                          device=device, seed=seed, num_workers=num_workers, precision=precision, autocast=autocast)
    if _is_dataset(data):
        n = len(data) if max_images is None else min(len(data), max_images)
        return evaluator.result(evaluator.rows(data, range(n), progress=progress))
    parts: dict[str, list[dict[str, Any]]] = {name: [] for name in evaluator.methods}
    done = dict.fromkeys(evaluator.methods, 0)
    for batch in _batches(data, evaluator.batch_size, max_images):
        for name in evaluator.methods:
            columns = evaluator.batch_columns(name, batch)
            columns.pop("_row")
            parts[name].append(columns)
            done[name] += len(batch)
            if progress is not None:
                progress(name, done[name])
    frames = [pd.DataFrame(cols) for name in evaluator.methods for cols in parts[name] if cols.get("method")]
    if not frames:
        raise ValueError("benchmark: the data yielded no images")
    return evaluator.result(pd.concat(frames, ignore_index=True))
