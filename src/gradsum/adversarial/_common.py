"""Argument checks and small helpers shared by the attacks (pixel space [0,1])."""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["pixel_space", "check_images", "check_eps", "labels_or_predictions", "predict", "device_of"]


def pixel_space(model: nn.Module, mean: float | Sequence[float] | None = None,
                std: float | Sequence[float] | None = None) -> nn.Module:
    """The model as a function of [0,1] pixels: wraps it with its input normalisation
    ((x - mean) / std, see `gradsum.models.normalize`) when mean/std are given, so that
    every epsilon is in pixel units (8/255 is 8 grey levels). Models that already
    normalise inside (gradsum's own) are returned unchanged when mean and std are None."""
    if mean is None and std is None:
        return model
    if mean is None or std is None:
        raise ValueError("give both mean and std of the model's input normalisation, or neither")
    from gradsum.models.normalize import with_normalization

    return with_normalization(model, mean, std)


def check_images(x: torch.Tensor, what: str = "images") -> None:
    if not isinstance(x, torch.Tensor) or x.ndim != 4 or not x.is_floating_point():
        got = f"shape {tuple(x.shape)} {x.dtype}" if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"{what} must be a float tensor (B,C,H,W); got {got}")
    lo, hi = torch.aminmax(x)
    if bool(lo < 0) or bool(hi > 1):
        raise ValueError(
            f"{what} must be pixels in [0,1] (got values in [{lo.item():.3g}, {hi.item():.3g}]); "
            "attacks work in pixel space: put the normalisation in the model with gradsum.adversarial.pixel_space"
        )


def check_eps(eps: float, name: str = "eps") -> float:
    if isinstance(eps, bool) or not isinstance(eps, int | float) or not (0.0 <= float(eps) <= 1.0):
        raise ValueError(
            f"{name} must be in [0,1] pixel units (e.g. 8/255 = {8 / 255:.4f}); got {eps!r}. "
            "If your images are normalised, wrap the model with pixel_space(model, mean, std) instead"
        )
    return float(eps)


def check_positive_int(value: int, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


def predict(model: nn.Module, x: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """argmax of the model's logits, (B,) int64, without gradients."""
    with torch.no_grad():
        return torch.cat([model(chunk).argmax(1) for chunk in x.split(batch_size)])


def labels_or_predictions(model: nn.Module, x: torch.Tensor, y: torch.Tensor | int | None) -> torch.Tensor:
    """y as a (B,) int64 tensor on x's device; None -> the model's predictions."""
    if y is None:
        return predict(model, x)
    y = torch.as_tensor(y, dtype=torch.int64, device=x.device)
    if y.ndim == 0:
        y = y.expand(x.shape[0])
    if y.shape != (x.shape[0],):
        raise ValueError(f"labels must be one int or a (B,) tensor for {x.shape[0]} images; got shape {tuple(y.shape)}")
    return y


def device_of(model: nn.Module) -> torch.device:
    try:
        return next(model.parameters()).device
    except StopIteration:
        return torch.device("cpu")
