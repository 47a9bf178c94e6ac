"""Argument checks and small helpers shared by the attacks (pixel space [0,1]).

Every attack validates its arguments here, once, before running the model: the model (a
module that classifies: a (B,K) output with K >= 2), the images (a non-empty floating
(B,C,H,W) batch of finite pixels in [0,1], cast to the model's dtype and cast back for the
result), the labels (integer class indices within the model's classes) and the budgets
(eps judged by the rule of its norm: L-inf in [0,1] pixel units, L2 any positive length).
"""
from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from gradsum.methods._args import check_int, check_number

__all__ = [
    "pixel_space",
    "check_model",
    "check_images",
    "prepare_images",
    "check_eps",
    "check_budget",
    "check_positive_int",
    "classifier_logits",
    "labels_or_predictions",
    "predict",
    "device_of",
]


def pixel_space(model: nn.Module, mean: float | Sequence[float] | None = None,
                std: float | Sequence[float] | None = None) -> nn.Module:
    """The model as a function of [0,1] pixels: wraps it with its input normalisation
    ((x - mean) / std, see `gradsum.models.normalize`) when mean/std are given, so that
    every epsilon is in pixel units (8/255 is 8 grey levels). Models that already
    normalise inside (gradsum's own) are returned unchanged when mean and std are None."""
    check_model(model)
    if mean is None and std is None:
        return model
    if mean is None or std is None:
        raise ValueError("give both mean and std of the model's input normalisation, or neither")
    from gradsum.models.normalize import with_normalization

    return with_normalization(model, mean, std)


def check_model(model: Any, what: str = "model") -> nn.Module:
    if not isinstance(model, nn.Module):
        raise TypeError(f"{what} must be a torch.nn.Module (a classifier); got {type(model).__name__}")
    return model


def check_images(x: Any, what: str = "images") -> torch.Tensor:
    """x must be a non-empty floating (B,C,H,W) tensor of finite pixels in [0,1]."""
    from gradsum.methods.base import check_input

    check_input(x, what)
    lo, hi = torch.aminmax(x)
    if bool(lo < 0) or bool(hi > 1):
        raise ValueError(
            f"{what} must be pixels in [0,1] (got values in [{lo.item():.3g}, {hi.item():.3g}]); "
            "attacks work in pixel space: put the normalisation in the model with gradsum.adversarial.pixel_space"
        )
    return x


def prepare_images(model: nn.Module, x: Any, what: str = "images") -> tuple[torch.Tensor, torch.dtype]:
    """`check_images`, then x cast to the model's dtype (float64 or float16 images for a
    float32 model). Returns (x for the model, x's own dtype: the dtype of the result)."""
    from gradsum.methods.base import prepare_input

    check_images(x, what)
    dtype = x.dtype
    x, _ = prepare_input(model, x, what)
    return x.detach(), dtype


def check_eps(eps: float, name: str = "eps") -> float:
    """An L-inf budget (or step) in [0,1] pixel units."""
    if isinstance(eps, bool) or not isinstance(eps, numbers.Real) or not (0.0 <= float(eps) <= 1.0):
        raise ValueError(
            f"{name} must be in [0,1] pixel units (e.g. 8/255 = {8 / 255:.4f}); got {eps!r}. "
            "If your images are normalised, wrap the model with pixel_space(model, mean, std) instead"
        )
    return float(eps)


def check_budget(value: float, norm: str, name: str = "eps") -> float:
    """A budget judged by the rule of its norm: "inf" -> [0,1] pixel units (`check_eps`);
    "2" -> an L2 length in pixel units, >= 0 and finite, no upper cap (the L2 norm of a
    3x224x224 image in [0,1] reaches 388). 0 means no perturbation under both rules."""
    if norm == "inf":
        return check_eps(value, name)
    return check_number(value, name, low=0.0, meaning="an L2 length in pixel units")


def check_positive_int(value: int, name: str, minimum: int = 1) -> int:
    """An int >= minimum (numpy integers accepted); TypeError for 2.5, ValueError for 0."""
    return check_int(value, name, minimum)


def predict(model: nn.Module, x: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """argmax of the model's logits, (B,) int64, without gradients."""
    with torch.no_grad():
        return torch.cat([model(chunk).argmax(1) for chunk in x.split(batch_size)])


def classifier_logits(model: nn.Module, x: torch.Tensor, what: str = "images") -> torch.Tensor:
    """The model's logits (B,K) on x, without gradients, after checking that it is a
    classifier: a (B,K) output with K >= 2. A one-output model (a regressor) is refused: the
    cross-entropy of a single logit is 0 whatever the input, so its gradient is zero and an
    attack would report 100% robustness."""
    from gradsum.metrics._common import forward_checked

    with torch.no_grad():
        out = forward_checked(model, x, what)
    if not isinstance(out, torch.Tensor) or out.ndim != 2 or out.shape[1] < 2:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(
            f"attacks need a classifier: a (B, K) output of K >= 2 class logits; this model outputs {shape}"
            + (" (a one-output regressor: the cross-entropy of one logit has zero gradient, so every attack "
               "would report 100% robustness)" if isinstance(out, torch.Tensor) and out.numel() == out.shape[0]
               else "")
        )
    return out


def labels_or_predictions(model: nn.Module, x: torch.Tensor, y: Any,
                          logits: torch.Tensor | None = None) -> torch.Tensor:
    """y as a (B,) int64 tensor on x's device; None -> the model's predictions (argmax of
    `logits` when given). y: an int, a numpy integer, a sequence, numpy array or tensor of
    integer class indices within the model's classes (known from `logits`)."""
    if y is None:
        return logits.argmax(1) if logits is not None else predict(model, x)
    try:
        t = torch.as_tensor(y, device=x.device)
    except (TypeError, ValueError, RuntimeError):
        raise TypeError(f"labels (y) must be integer class indices (an int, a list, an array or a tensor); "
                        f"got {type(y).__name__}") from None
    if t.dtype == torch.bool:
        raise TypeError(f"labels (y) must be integer class indices; got booleans {t.flatten()[:4].tolist()}")
    if t.is_floating_point() or t.is_complex():
        raise TypeError(
            f"labels (y) must be integer class indices; got float values {t.flatten()[:4].tolist()} "
            "(casting them to int would attack other classes than you meant); convert them with y.long() "
            "if they are whole numbers"
        )
    t = t.to(torch.int64)
    if t.ndim == 0:
        t = t.expand(x.shape[0])
    if t.shape != (x.shape[0],):
        raise ValueError(f"labels must be one int or a (B,) tensor for {x.shape[0]} images; got shape {tuple(t.shape)}")
    if logits is not None:
        k = logits.shape[1]
        bad = t[(t < 0) | (t >= k)]
        if bad.numel():
            raise ValueError(f"label {int(bad[0])} is out of range: the model has {k} classes (labels 0..{k - 1})")
    return t


def device_of(model: nn.Module) -> torch.device:
    try:
        return next(model.parameters()).device
    except StopIteration:
        return torch.device("cpu")
