"""Evaluation of heatmaps: ground-truth localisation, model-truth faithfulness,
complexity, sanity checks (`gradsum.metrics.sanity`) and the method benchmark table.

Every metric returns a `MetricResult`: per-sample `values`, an `aggregate` (mean over
finite values), `settings` (score convention, substrate, step, seed, ...) and `extras`
(curves); `to_frame()` gives one row per sample.
"""
from gradsum.metrics import sanity
from gradsum.metrics._common import MetricResult, MetricWarning, boxes_to_masks
from gradsum.metrics.benchmark import METRICS, BenchmarkResult, benchmark
from gradsum.metrics.complexity import complexity, sparseness
from gradsum.metrics.driving import Autonomy, autonomy, steering_metrics
from gradsum.metrics.faithfulness import (
    average_drop,
    confidence_change,
    deletion,
    deletion_insertion,
    faithfulness_correlation,
    gaussian_blur,
    increase_in_confidence,
    insertion,
    make_substrate,
    road,
)
from gradsum.metrics.imputation import noisy_linear_impute
from gradsum.metrics.localization import (
    attribution_auc,
    bbox,
    category_hit,
    ebpg,
    ground_truth_masks,
    pointing_game,
    relevance_mass,
    relevance_rank,
)

__all__ = [
    "METRICS",
    "BenchmarkResult",
    "benchmark",
    "sanity",
    "MetricResult",
    "MetricWarning",
    "attribution_auc",
    "autonomy",
    "Autonomy",
    "average_drop",
    "bbox",
    "boxes_to_masks",
    "category_hit",
    "complexity",
    "confidence_change",
    "deletion",
    "deletion_insertion",
    "ebpg",
    "faithfulness_correlation",
    "gaussian_blur",
    "ground_truth_masks",
    "increase_in_confidence",
    "insertion",
    "make_substrate",
    "noisy_linear_impute",
    "pointing_game",
    "relevance_mass",
    "relevance_rank",
    "road",
    "sparseness",
    "steering_metrics",
]
