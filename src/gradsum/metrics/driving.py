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

__all__ = ["autonomy", "Autonomy"]


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
