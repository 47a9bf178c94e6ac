"""Driving metrics of a steering model, computed offline from a steering sequence.

Autonomy (Bojarski et al., "End to End Learning for Self-Driving Cars", NVIDIA 2016, §7.2):
the share of the time the car drives itself when a human would take over each time the
model's steering is off by more than `threshold`, each take-over costing
`intervention_seconds` (6 s in the paper):

    autonomy = (1 - interventions * intervention_seconds / elapsed_seconds) * 100

Offline, an intervention starts at a frame whose |predicted - actual| exceeds the threshold
and lasts intervention_seconds; frames inside it start no other (the human is driving).
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field
from typing import Any

import torch

from gradsum.core.devices import model_device

__all__ = ["autonomy", "Autonomy", "steering_metrics"]


@dataclass
class Autonomy:
    """percent: the autonomy (may be negative when interventions outlast the drive, as in
    the paper's formula); interventions: how many; starts: their first frames; elapsed_seconds:
    frames / fps; settings: threshold, fps, intervention_seconds."""

    percent: float
    interventions: int
    elapsed_seconds: float
    starts: list[int] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)


def _sequence(values: Any, name: str) -> torch.Tensor:
    try:
        t = torch.as_tensor(values, dtype=torch.float64).detach().cpu()
    except (TypeError, ValueError, RuntimeError):
        raise TypeError(f"autonomy: {name} must be a sequence of steering values (1-D); got {type(values).__name__}") \
            from None
    if t.ndim != 1 or t.numel() == 0:
        raise ValueError(f"autonomy: {name} must be a non-empty 1-D sequence (one value per frame); got shape "
                         f"{tuple(t.shape)}")
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"autonomy: {name} holds NaN or infinite values")
    return t


def _positive(value: Any, name: str, allow_zero: bool = False) -> float:
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < 0 or (value == 0 and not allow_zero):
        raise ValueError(f"autonomy: {name} must be a {'non-negative' if allow_zero else 'positive'} number; "
                         f"got {value!r}")
    return float(value)


def autonomy(predicted: Any, actual: Any, fps: float, threshold: float,
             intervention_seconds: float = 6.0) -> Autonomy:
    """NVIDIA's autonomy of a steering sequence (module docstring). predicted / actual: one
    steering value per frame (same units as `threshold`); fps: frames per second of the log.

    Example: 100 frames at 10 fps (10 s), errors above the threshold at frames 10-12 and 50:
    the intervention starting at frame 10 lasts 60 frames (6 s) and covers the others, so one
    intervention: autonomy = (1 - 6 / 10) * 100 = 40%."""
    p, a = _sequence(predicted, "predicted"), _sequence(actual, "actual")
    if p.shape != a.shape:
        raise ValueError(f"autonomy: predicted and actual must have one value per frame each; got {p.numel()} and "
                         f"{a.numel()} frames")
    fps = _positive(fps, "fps")
    threshold = _positive(threshold, "threshold", allow_zero=True)
    intervention_seconds = _positive(intervention_seconds, "intervention_seconds")
    off = ((p - a).abs() > threshold).tolist()
    span = max(1, math.ceil(intervention_seconds * fps - 1e-9))  # frames one intervention lasts
    starts, frame = [], 0
    while frame < len(off):
        if off[frame]:
            starts.append(frame)
            frame += span
        else:
            frame += 1
    elapsed = len(off) / fps
    percent = (1.0 - len(starts) * intervention_seconds / elapsed) * 100.0
    return Autonomy(percent, len(starts), elapsed, starts,
                    {"threshold": threshold, "fps": fps, "intervention_seconds": intervention_seconds})


def steering_metrics(model: Any, dataset: Any, *, fps: float = 10.0, threshold: float = 0.1,
                     intervention_seconds: float = 6.0, batch_size: int = 64,
                     device: torch.device | str | None = None) -> dict[str, float]:
    """MSE and autonomy of a steering model (one output) over `dataset` (Samples with float
    targets, in drive order, e.g. a driving log): {"mse", "autonomy_percent",
    "interventions", "seconds"}. Images of different sizes are batched by size."""
    from gradsum.core.probe import preserved_state
    from gradsum.data.samples import batches_by_size

    if device is None:
        device = model_device(model)
    n = len(dataset)
    predicted = torch.empty(n, dtype=torch.float64)
    actual = torch.empty(n, dtype=torch.float64)
    with torch.no_grad(), preserved_state(model):
        for positions, batch in batches_by_size(dataset, range(n), batch_size):
            if batch.targets is None or isinstance(batch.targets, list):
                raise ValueError(f"steering_metrics: images {batch.ids[:3]} have no steering target")
            out = model(batch.images.to(device))
            if out.flatten(1).shape[1] != 1:
                raise ValueError(f"steering_metrics: the model has {out.flatten(1).shape[1]} outputs; a steering "
                                 "model has one")
            index = torch.as_tensor(positions)
            predicted[index] = out.flatten().double().cpu()
            actual[index] = torch.as_tensor(batch.targets, dtype=torch.float64).flatten()
    drive = autonomy(predicted, actual, fps=fps, threshold=threshold, intervention_seconds=intervention_seconds)
    return {"mse": float(((predicted - actual) ** 2).mean()), "autonomy_percent": drive.percent,
            "interventions": drive.interventions, "seconds": drive.elapsed_seconds}
