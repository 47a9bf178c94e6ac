"""PilotNet: the end-to-end steering CNN of Bojarski et al. 2016."""
from __future__ import annotations

from collections import OrderedDict
from typing import ClassVar

import torch
from torch import nn

from gradsum.models.normalize import Normalize

__all__ = ["PilotNet"]

_ACTIVATIONS = {"relu": nn.ReLU, "elu": nn.ELU}


def activation_module(name: str) -> nn.Module:
    """A fresh, not-in-place activation module by name ('relu' or 'elu')."""
    if name not in _ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(_ACTIVATIONS)}, got {name!r}")
    return _ACTIVATIONS[name]()


def conv_output_size(size: int, kernel: int, stride: int, padding: int = 0) -> int:
    """floor((size + 2 padding - kernel) / stride) + 1."""
    return (size + 2 * padding - kernel) // stride + 1


class PilotNet(nn.Module):
    """Bojarski et al. 2016, "End to End Learning for Self-Driving Cars" (arXiv:1604.07316).

    Input (B,3,66,200) in [0,1]. A fixed normalisation layer maps pixels to [-1,1]
    (x - 0.5) / 0.5, then conv 24/36/48 5x5 stride 2, conv 64/64 3x3 stride 1 (all
    unpadded), flatten (64x1x18 = 1152 at 66x200), fully connected 100-50-10-`outputs`.

    Activation: ReLU by default. The paper does not name its non-linearity (ELU is a
    common choice in re-implementations); ReLU is used here because the rule-based
    explanation methods (guided backpropagation, deconvnet) are defined on nn.ReLU
    modules. ``activation="elu"`` gives the ELU variant.

    Layer names: ``features.conv1 .. features.conv5`` and ``features.act1 .. act5``;
    ``default_layer`` is ``features.act5`` (the last conv block's output, 64x1x18);
    ``sise_blocks`` are the outputs feeding each stride-2 conv (act1, act2) plus act5.
    """

    default_layer: ClassVar[str] = "features.act5"
    sise_blocks: ClassVar[list[str]] = ["features.act1", "features.act2", "features.act5"]

    def __init__(
        self,
        outputs: int = 1,
        input_size: tuple[int, int] = (66, 200),
        activation: str = "relu",
    ) -> None:
        super().__init__()
        if outputs < 1:
            raise ValueError(f"PilotNet outputs must be >= 1, got {outputs}")
        spec = [(3, 24, 5, 2), (24, 36, 5, 2), (36, 48, 5, 2), (48, 64, 3, 1), (64, 64, 3, 1)]
        h, w = input_size
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        for i, (cin, cout, k, s) in enumerate(spec, start=1):
            layers[f"conv{i}"] = nn.Conv2d(cin, cout, kernel_size=k, stride=s)
            layers[f"act{i}"] = activation_module(activation)
            h, w = conv_output_size(h, k, s), conv_output_size(w, k, s)
        if h < 1 or w < 1:
            raise ValueError(
                f"PilotNet input_size {tuple(input_size)} is too small for its five unpadded "
                "convolutions; use at least 66x66 (the paper uses 66x200)"
            )
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.activation = activation
        self.normalize = Normalize(0.5, 0.5)
        self.features = nn.Sequential(layers)
        self.flatten = nn.Flatten()
        self.regressor = nn.Sequential(
            OrderedDict(
                fc1=nn.Linear(64 * h * w, 100),
                act1=activation_module(activation),
                fc2=nn.Linear(100, 50),
                act2=activation_module(activation),
                fc3=nn.Linear(50, 10),
                act3=activation_module(activation),
                fc4=nn.Linear(10, outputs),
            )
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-2:] != self.input_size:
            raise ValueError(
                f"PilotNet was built for {self.input_size[0]}x{self.input_size[1]} input, got "
                f"{x.shape[-2]}x{x.shape[-1]}; resize the images or build PilotNet(input_size=...)"
            )
        return self.regressor(self.flatten(self.features(self.normalize(x))))
