"""The method benchmark table: methods x metrics, like the Ada-SISE comparison table
(EBPG, Bbox, Drop, Increase, + deletion / insertion AUC and cost per image).

`benchmark(model, data, methods, metrics)` explains every batch with every method (one
explainer per method, re-used), evaluates every metric on the maps, and keeps the
per-image values, so the table (mean and 95% confidence interval per cell), the per-image
rows and the mean deletion / insertion curves all come from one run.
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from gradsum.core.targets import TargetSpec
from gradsum.data.samples import Batch, Sample, collate
from gradsum.methods._args import check_int
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

__all__ = ["benchmark", "BenchmarkResult", "METRICS", "DEFAULT_METRICS"]

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
    """per_image: long table (method, sample, metric, value). cost: per method, seconds,
    forward and backward passes per image. curves: method -> {"deletion"/"insertion":
    (fractions (P,), mean curve (P,))}. settings: the run's options."""

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


def _batches(data: Any, batch_size: int, max_images: int | None) -> Iterable[Batch]:
    """Samples dataset / list of Samples / Batches / tensors -> Batches of <= batch_size."""
    if isinstance(data, torch.Tensor):
        data = [data]
    if isinstance(data, Batch):
        data = [data]
    seen = 0

    def clip(batch: Batch) -> Batch | None:
        nonlocal seen
        if max_images is not None and seen >= max_images:
            return None
        keep = len(batch) if max_images is None else min(len(batch), max_images - seen)
        seen += keep
        if keep == len(batch):
            return batch
        return Batch(
            batch.images[:keep], batch.ids[:keep],
            batch.segmentations[:keep] if batch.segmentations is not None else None,
            batch.boxes[:keep], batch.box_labels[:keep],
            batch.targets[:keep] if batch.targets is not None else None, batch.meta[:keep],
        )

    if hasattr(data, "__len__") and hasattr(data, "__getitem__") and len(data) and isinstance(data[0], Sample):
        for start in range(0, len(data), batch_size):
            b = clip(collate([data[i] for i in range(start, min(len(data), start + batch_size))]))
            if b is None:
                return
            yield b
        return
    for item in data:
        if isinstance(item, torch.Tensor):
            if item.ndim != 4:
                raise ValueError(f"benchmark: image tensors must be (B,C,H,W); got {tuple(item.shape)}")
            item = Batch(item, [str(seen + i) for i in range(item.shape[0])], None, [None] * item.shape[0], [None] * item.shape[0], None, [{}] * item.shape[0])
        if not isinstance(item, Batch):
            raise TypeError(f"benchmark: data must yield Samples, Batches or image tensors; got {type(item).__name__}")
        b = clip(item)
        if b is None:
            return
        yield b


def benchmark(
    model: nn.Module,
    data: Any,
    methods: Sequence[str] | Mapping[str, Callable[[nn.Module], Any]],
    metrics: Sequence[str] = DEFAULT_METRICS,
    *,
    layer: Any = "auto",
    target: TargetSpec = None,
    batch_size: int = 16,
    max_images: int | None = None,
    method_options: Mapping[str, Mapping[str, Any]] | None = None,
    metric_options: Mapping[str, Mapping[str, Any]] | None = None,
    transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    device: torch.device | str | None = None,
    seed: int = 0,
    progress: Callable[[str, int], None] | None = None,
) -> BenchmarkResult:
    """Evaluate `methods` with `metrics` on `data`; returns a `BenchmarkResult` whose
    `.table()` is the methods x metrics table (mean, 95% CI, seconds and passes per image).

    data: a dataset of `Sample`s, a list of Samples, Batches, or (B,C,H,W) tensors.
    Localisation metrics use the samples' boxes (union per image; images without boxes get
    NaN). methods: registry names (built with `layer` and `method_options[name]`) or
    {name: factory(model) -> exp(x, target)}. metrics: names in `METRICS`;
    `metric_options[name]` are passed to the metric (e.g. {"deletion": {"step": 8}}).
    transform: applied to the [0,1] images to get the model input (e.g. normalisation);
    perturbations then happen in that model-input space. target: as for explainers (None =
    predicted class); the faithfulness metrics use the same target.
    """
    import pandas as pd

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
    batch_size = check_int(batch_size, "benchmark: batch_size")
    if max_images is not None:
        max_images = check_int(max_images, "benchmark: max_images")
    method_options = dict(method_options or {})
    metric_options = {k: dict(v) for k, v in (metric_options or {}).items()}
    computed = set(metrics) | {_PARTNER[m] for m in metrics if m in _PARTNER}
    stray = [k for k in metric_options if k not in computed]
    if stray:
        raise ValueError(f"benchmark: metric_options are given for {stray}, which are not in metrics={list(metrics)}; "
                         "add them to metrics or drop the options")
    if not isinstance(methods, Mapping):
        stray = [k for k in method_options if k not in methods]
        if stray:
            raise ValueError(f"benchmark: method_options are given for {stray}, which are not in "
                             f"methods={list(methods)}; add them to methods or drop the options")
    dev = torch.device(device) if device is not None else next((p.device for p in model.parameters()), torch.device("cpu"))
    if isinstance(methods, Mapping):
        explainers = {name: factory(model) for name, factory in methods.items()}
    else:
        explainers = {name: explainer(name, model, layer=layer, **method_options.get(name, {})) for name in methods}

    rows: list[pd.DataFrame] = []
    cost_acc = {name: {"seconds": 0.0, "forward": 0, "backward": 0, "images": 0} for name in explainers}
    curve_acc: dict[str, dict[str, list[torch.Tensor]]] = {name: {} for name in explainers}
    fractions: dict[str, torch.Tensor] = {}
    opts = lambda name: dict(metric_options.get(name, {}))  # noqa: E731
    for batch in _batches(data, batch_size, max_images):
        x = batch.images.to(dev)
        if transform is not None:
            x = transform(x)
        h, w = x.shape[-2:]
        gt = boxes_to_masks(batch.boxes, h, w, device=dev) if any(m in _LOCAL for m in metrics) else None
        for name, exp in explainers.items():
            t0 = time.perf_counter()
            attr = exp(x, target)
            elapsed = time.perf_counter() - t0
            maps = attr.maps if hasattr(attr, "maps") else attr
            acc = cost_acc[name]
            acc["images"] += x.shape[0]
            acc["seconds"] += float(attr.cost.seconds) if hasattr(attr, "cost") and attr.cost.seconds else elapsed
            if hasattr(attr, "cost"):
                acc["forward"] += int(attr.cost.forward_passes)
                acc["backward"] += int(attr.cost.backward_passes)
            explained = attr.targets if getattr(attr, "targets", None) is not None else target
            values: dict[str, torch.Tensor] = {}
            import warnings

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # NaNs are kept per image and counted in `n`
                for metric in metrics:
                    if metric in values:
                        continue
                    if metric in _LOCAL:
                        values[metric] = _LOCAL[metric](maps, gt, **opts(metric)).values
                    elif metric in ("drop", "increase"):
                        o = {"keep": 0.15, "seed": seed, **opts("drop"), **opts("increase")}
                        d, i = confidence_change(model, x, maps, target=explained, **o)
                        values["drop"], values["increase"] = d.values, i.values
                    elif metric in ("average_drop", "increase_in_confidence"):
                        o = {"seed": seed, **opts("average_drop"), **opts("increase_in_confidence")}
                        d, i = confidence_change(model, x, maps, target=explained, **o)
                        values["average_drop"], values["increase_in_confidence"] = d.values, i.values
                    elif metric in ("deletion", "insertion"):
                        o = {"seed": seed, **opts("deletion"), **opts("insertion")}
                        res = deletion_insertion(model, x, maps, target=explained, **o)
                        for mode, r in res.items():
                            values[mode] = r.values
                            curve_acc[name].setdefault(mode, []).append(r.extras["curves"])
                            fractions[mode] = r.extras["fractions"]
                    elif metric == "road":
                        values[metric] = road(model, x, maps, target=explained, seed=seed, **opts(metric)).values
                    elif metric == "faithfulness_correlation":
                        values[metric] = faithfulness_correlation(model, x, maps, target=explained, seed=seed, **opts(metric)).values
                    elif metric == "sparseness":
                        values[metric] = sparseness(maps).values
                    elif metric == "complexity":
                        values[metric] = complexity(maps).values
            for metric in metrics:
                rows.append(
                    pd.DataFrame(
                        {"method": name, "sample": list(batch.ids), "metric": metric, "value": values[metric].detach().double().cpu().numpy()}
                    )
                )
            if progress is not None:
                progress(name, acc["images"])
    if not rows:
        raise ValueError("benchmark: the data yielded no images")
    per_image = pd.concat(rows, ignore_index=True)
    cost = pd.DataFrame(
        [
            {
                "method": name,
                "images": a["images"],
                "seconds_per_image": a["seconds"] / max(a["images"], 1),
                "forward_per_image": a["forward"] / max(a["images"], 1),
                "backward_per_image": a["backward"] / max(a["images"], 1),
            }
            for name, a in cost_acc.items()
        ]
    )
    curves = {
        name: {mode: (fractions[mode].cpu(), torch.cat(parts).mean(dim=0).cpu()) for mode, parts in modes.items()}
        for name, modes in curve_acc.items()
    }
    settings = {
        "methods": list(explainers),
        "metrics": list(metrics),
        "layer": str(layer),
        "seed": seed,
        "batch_size": batch_size,
        "metric_options": metric_options,
        "method_options": {k: dict(v) for k, v in method_options.items()},
        "units": {m: METRICS[m][1] for m in metrics},
    }
    return BenchmarkResult(per_image, cost, curves, settings)
