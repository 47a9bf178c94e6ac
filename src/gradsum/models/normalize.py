"""Input normalisation as a module, so models take [0,1] pixels and explanations see pixels;
`Prepared` wraps a model with its normalisation and output selection."""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from gradsum.core.outputs import OutputSpec, check_output_spec, select_output

__all__ = ["Normalize", "Prepared", "Normalized", "with_normalization", "unwrap", "IMAGENET_MEAN", "IMAGENET_STD"]

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


class Prepared(nn.Module):
    """The user's model as gradsum runs it: [0,1] pixels -> ``normalize`` ((x - mean) / std,
    when mean/std are given) -> ``model`` -> the one tensor ``output`` selects from a
    dict/tuple output (see `gradsum.core.outputs`; default "out" or the only tensor).

    Images stay in pixel space everywhere in gradsum (maps, overlays, attack budgets); the
    model's own preprocessing lives here. Layer names work with or without the ``model.``
    prefix: ``layer="layer4"`` finds ``model.layer4``.
    """

    #: what `gradsum.core.layers.resolve_layer` puts before a name it does not find
    layer_prefix = "model."

    def __init__(self, model: nn.Module, mean: float | Sequence[float] | None = None,
                 std: float | Sequence[float] | None = None, output: OutputSpec = None) -> None:
        super().__init__()
        if not isinstance(model, nn.Module):
            raise TypeError(f"the model to wrap must be an nn.Module, got {type(model).__name__}")
        if (mean is None) != (std is None):
            raise ValueError("give both mean and std of the model's input normalisation, or neither")
        self.normalize = Normalize(mean, std) if mean is not None else nn.Identity()
        self.model = model
        self.output = check_output_spec(output)

    @property
    def mean_std(self) -> tuple[list[float], list[float]] | None:
        """(mean, std) per channel, or None when the input is not normalised here."""
        if isinstance(self.normalize, Normalize):
            return self.normalize.mean.flatten().tolist(), self.normalize.std.flatten().tolist()
        return None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return select_output(self.model(self.normalize(x)), self.output)

    def extra_repr(self) -> str:
        return f"output={self.output!r}" if self.output is not None else ""


#: the name of `Prepared` before it also selected outputs (same class)
Normalized = Prepared


def with_normalization(
    model: nn.Module,
    mean: float | Sequence[float] = IMAGENET_MEAN,
    std: float | Sequence[float] = IMAGENET_STD,
) -> Prepared:
    """Wrap `model` so it takes [0,1] input: returns ``Prepared(model, mean, std)``.

    The defaults are the ImageNet statistics torchvision models are trained with.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"with_normalization needs an nn.Module, got {type(model).__name__}")
    return Prepared(model, mean, std)


def unwrap(model: nn.Module) -> tuple[nn.Module, str]:
    """(the innermost model inside `Prepared` wrappers, the prefix of its layer names)."""
    prefix = ""
    while isinstance(model, Prepared):
        prefix += "model."
        model = model.model
    return model, prefix
