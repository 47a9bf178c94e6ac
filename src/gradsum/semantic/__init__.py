"""GradSUM semantic profiles: `gs.gradsum(model, dataset, ...)` -> Profile.

    profile = gs.gradsum(model, gs.data.RoadScenes(500, task="pothole"), method="gradcam",
                         baseline=10)
    profile.summary()            # per (model, method, epoch, level, category)
    gs.semantic.shortcut_verdict(profile)
"""
from __future__ import annotations

from gradsum.semantic.baseline import randomized_copy
from gradsum.semantic.engine import ProfileComputer, batch_sums, gradsum, profile_batch, table_of
from gradsum.semantic.labels import CITYSCAPES, ROADS, VOC, LabelIndex, LabelTable
from gradsum.semantic.profile import (
    LabelSums,
    Profile,
    bootstrap_ci,
    label_sums,
    profile_maps,
    profile_rows,
    summarize,
)
from gradsum.semantic.verdict import Finding, shortcut_findings, shortcut_verdict

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
