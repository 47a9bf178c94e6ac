"""Core building blocks: targets, layer resolution, hook probes, results and batching.

Nothing here knows about individual attribution methods.
"""
from gradsum.core.attribution import Attribution, Cost
from gradsum.core.layers import resolve_layers
from gradsum.core.normalize import normalize_maps
from gradsum.core.targets import (
    ClassTarget,
    LogProbabilityTarget,
    NeuronTarget,
    ProbabilityTarget,
    RegressionTarget,
    SegmentationTarget,
    Target,
    resolve_target,
)

__all__ = [
    "Attribution",
    "ClassTarget",
    "Cost",
    "LogProbabilityTarget",
    "NeuronTarget",
    "ProbabilityTarget",
    "RegressionTarget",
    "SegmentationTarget",
    "Target",
    "normalize_maps",
    "resolve_layers",
    "resolve_target",
]
