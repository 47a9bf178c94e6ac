"""Input normalisation as a module, so models take [0,1] pixels and explanations see pixels."""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["Normalize", "Normalized", "with_normalization", "IMAGENET_MEAN", "IMAGENET_STD"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _as_channel_tensor(values: float | Sequence[float], name: str) -> torch.Tensor:
    t = torch.as_tensor(values, dtype=torch.float32).flatten()
    if t.numel() == 0:
        raise ValueError(f"Normalize {name} is empty; give one value or one per channel")
    if name == "std" and bool((t <= 0).any()):
        raise ValueError(f"Normalize std must be > 0 for every channel, got {t.tolist()}")
    return t.view(1, -1, 1, 1)


class Normalize(nn.Module):
    """y = (x - mean) / std per channel; x is (B,C,H,W) in [0,1].

    mean and std are buffers (saved in the state dict, moved with `.to()`), not parameters.
    """

    def __init__(self, mean: float | Sequence[float], std: float | Sequence[float]) -> None:
        super().__init__()
        self.register_buffer("mean", _as_channel_tensor(mean, "mean"))
        self.register_buffer("std", _as_channel_tensor(std, "std"))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    def extra_repr(self) -> str:
        return f"mean={self.mean.flatten().tolist()}, std={self.std.flatten().tolist()}"


class Normalized(nn.Module):
    """`model(normalize(x))`: wraps a model that expects normalised input so that it takes
    [0,1] pixels. Its layers are reachable as ``model.<name>`` (e.g. ``model.layer4``)."""

    def __init__(self, model: nn.Module, mean: float | Sequence[float], std: float | Sequence[float]) -> None:
        super().__init__()
        self.normalize = Normalize(mean, std)
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(self.normalize(x))


def with_normalization(
    model: nn.Module,
    mean: float | Sequence[float] = IMAGENET_MEAN,
    std: float | Sequence[float] = IMAGENET_STD,
) -> Normalized:
    """Wrap `model` so it takes [0,1] input: returns ``Normalized(model, mean, std)``.

    The defaults are the ImageNet statistics torchvision models are trained with.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"with_normalization needs an nn.Module, got {type(model).__name__}")
    return Normalized(model, mean, std)
