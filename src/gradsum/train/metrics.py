"""Losses and running metrics for the trainer: regression (MSE; MAE, RMSE) and
classification (cross-entropy or BCE-with-logits; accuracy, confusion matrix)."""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

__all__ = ["TASKS", "confusion_matrix", "Meter", "prepare_targets", "output_logits"]

TASKS = ("regression", "classification", "multilabel")


def confusion_matrix(pred: torch.Tensor, true: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(C,C) int64 counts, rows = true class, columns = predicted class:
    M[i, j] = #{n : true_n = i and pred_n = j}."""
    pred = pred.reshape(-1).to(torch.int64)
    true = true.reshape(-1).to(torch.int64)
    if pred.shape != true.shape:
        raise ValueError(f"confusion_matrix needs as many predictions as targets, got {pred.numel()} and {true.numel()}")
    if true.numel() and (int(true.min()) < 0 or int(true.max()) >= num_classes):
        raise ValueError(
            f"class targets must lie in [0, {num_classes - 1}] for a model with {num_classes} outputs; "
            f"got values from {int(true.min())} to {int(true.max())}"
        )
    return _counts(pred, true, num_classes)


def _counts(pred: torch.Tensor, true: torch.Tensor, num_classes: int) -> torch.Tensor:
    """The confusion counts of checked class indices, on their device."""
    flat = true.reshape(-1).to(torch.int64) * num_classes + pred.reshape(-1).to(torch.int64)
    return torch.bincount(flat, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def output_logits(out: Any) -> torch.Tensor:
    """The main output of a model: tensors pass through; torchvision's InceptionOutputs /
    GoogLeNetOutputs (training mode) give `.logits`; tuples give their first element."""
    if isinstance(out, torch.Tensor):
        return out
    if hasattr(out, "logits"):
        return out.logits
    if isinstance(out, tuple | list) and out and isinstance(out[0], torch.Tensor):
        return out[0]
    raise TypeError(f"the model returned {type(out).__name__}; the trainer needs a tensor of outputs")


def prepare_targets(targets: Any, task: str, ids: list[str]) -> torch.Tensor:
    """Targets of a batch as a tensor: float32 for regression and multi-label, int64 class
    indices for classification; a clear error when a sample has none."""
    if isinstance(targets, list):
        missing = [i for i, t in zip(ids, targets, strict=True) if t is None]
        if missing:
            raise ValueError(
                f"samples without a target: {', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''}; "
                f"the {task} trainer needs a target for every training sample"
            )
        try:
            targets = torch.stack([torch.as_tensor(t) for t in targets])
        except (RuntimeError, TypeError) as exc:
            raise ValueError(f"cannot batch the targets of samples {ids[:3]}: {exc}") from None
    if not isinstance(targets, torch.Tensor):
        raise TypeError(f"batch targets must be a tensor, got {type(targets).__name__}")
    if task == "classification":
        if targets.is_floating_point() and bool((targets != targets.round()).any()):
            raise ValueError(
                "classification targets must be class indices; got non-integer values "
                "(use task='regression' for continuous targets, 'multilabel' for multi-hot vectors)"
            )
        return targets.to(torch.int64).reshape(-1)
    return targets.to(torch.float32)


class Meter:
    """Accumulates loss and metric sums over batches on the outputs' device; one host sync
    in `compute()`.

    regression: loss = mean (y - t)^2; mae = mean |y - t|; rmse = sqrt(mean (y - t)^2).
    classification: loss = cross-entropy; accuracy = mean 1[argmax y = t]; confusion matrix.
    multilabel: loss = BCE-with-logits; accuracy = mean over labels 1[(y > 0) = t];
    exact_match = mean over samples of all labels right.
    """

    def __init__(self, task: str, class_weights: torch.Tensor | None = None) -> None:
        if task not in TASKS:
            raise ValueError(f"task must be one of {', '.join(TASKS)}; got {task!r}")
        self.task = task
        self.class_weights = class_weights
        self.n = 0
        self.sums: dict[str, torch.Tensor] = {}
        self.confusion: torch.Tensor | None = None

    def loss(self, out: torch.Tensor, target: torch.Tensor, host_target: torch.Tensor | None = None) -> torch.Tensor:
        """The training loss of one batch (mean over the batch). host_target: the same
        targets on the CPU, where the class-range check then runs (no device sync)."""
        if self.task == "regression":
            return F.mse_loss(out, self._shape_regression(out, target))
        if self.task == "multilabel":
            self._check_multilabel(out, target)
            return F.binary_cross_entropy_with_logits(out, target)
        if out.ndim != 2:
            raise ValueError(f"a classifier must output (batch, classes) logits, got shape {tuple(out.shape)}")
        classes = out.shape[1]
        check = target if host_target is None else host_target
        if bool(((check < 0) | (check >= classes)).any()):
            raise ValueError(
                f"class targets must lie in [0, {classes - 1}] for a model with {classes} outputs; got "
                f"values from {int(check.min())} to {int(check.max())} (set num_classes to match the data)"
            )
        weight = None if self.class_weights is None else self.class_weights.to(out.device, out.dtype)
        if weight is not None and weight.numel() != classes:
            raise ValueError(
                f"class_weights has {weight.numel()} entries but the model has {classes} outputs; "
                "give one weight per class"
            )
        return F.cross_entropy(out, target, weight=weight)

    @staticmethod
    def _shape_regression(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if target.numel() != out.numel():
            raise ValueError(
                f"regression targets of shape {tuple(target.shape)} do not match the model's outputs "
                f"{tuple(out.shape)}; the model needs one output per target value"
            )
        return target.reshape(out.shape).to(out.dtype)

    @staticmethod
    def _check_multilabel(out: torch.Tensor, target: torch.Tensor) -> None:
        if target.shape != out.shape:
            raise ValueError(
                f"multi-label targets {tuple(target.shape)} must match the model's outputs {tuple(out.shape)}"
            )

    def update(self, out: torch.Tensor, target: torch.Tensor, loss: torch.Tensor, checked: bool = False) -> None:
        """Add one batch to the sums (on the outputs' device). checked: the class targets
        were already range-checked (by `loss`), so the confusion matrix is counted without
        reading them back to the host."""
        out = out.detach()
        b = out.shape[0]
        self._add("loss", loss.detach() * b)
        if self.task == "regression":
            err = out - self._shape_regression(out, target)
            self._add("abs", err.abs().sum() / err[0].numel())
            self._add("sq", err.pow(2).sum() / err[0].numel())
        elif self.task == "multilabel":
            right = (out > 0) == (target > 0.5)
            self._add("correct", right.float().mean(dim=1).sum())
            self._add("exact", right.all(dim=1).float().sum())
        else:
            pred = out.argmax(dim=1)
            self._add("correct", (pred == target).float().sum())
            k = out.shape[1]
            cm = _counts(pred, target, k) if checked else confusion_matrix(pred, target, k)
            self.confusion = cm if self.confusion is None else self.confusion + cm
        self.n += b

    def _add(self, key: str, value: torch.Tensor) -> None:
        self.sums[key] = self.sums[key] + value if key in self.sums else value

    def compute(self) -> dict[str, float]:
        if self.n == 0:
            raise ValueError("no batches were evaluated (is the dataset empty?)")
        s = {k: float(v) for k, v in self.sums.items()}
        m = {"loss": s["loss"] / self.n}
        if self.task == "regression":
            m["mae"] = s["abs"] / self.n
            m["rmse"] = (s["sq"] / self.n) ** 0.5
        else:
            m["accuracy"] = s["correct"] / self.n
            if self.task == "multilabel":
                m["exact_match"] = s["exact"] / self.n
        return m
