"""Training the small models the analyses need.

    import gradsum as gs
    history = gs.train.fit(gs.models.build("pilotnet"), train, val, task="regression",
                           epochs=5, out="runs/pilotnet")
    history.best_epoch, history.final["val_mae"], history.checkpoints[0]

`device=` ("cuda", "cuda:1", "mps", "auto"; default the model's own device) trains there and
hands the model back on the device it came from.
"""
from __future__ import annotations

from gradsum.train.augment import (
    BatchAugment,
    BatchBrightness,
    BatchCompose,
    BatchFlip,
    BatchRotation,
    parse_augment,
)
from gradsum.train.cache import CachedDataset
from gradsum.train.metrics import TASKS, confusion_matrix
from gradsum.train.splits import (
    Subset,
    kfold,
    stratified_kfold,
    subset,
    targets_of,
    train_val_split,
)
from gradsum.train.trainer import History, checkpoint_path, evaluate, fit

__all__ = [
    "fit",
    "evaluate",
    "History",
    "checkpoint_path",
    "TASKS",
    "confusion_matrix",
    "BatchAugment",
    "BatchFlip",
    "BatchBrightness",
    "BatchRotation",
    "BatchCompose",
    "parse_augment",
    "CachedDataset",
    "Subset",
    "subset",
    "train_val_split",
    "kfold",
    "stratified_kfold",
    "targets_of",
]
