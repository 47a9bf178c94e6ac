"""Models: PilotNet, the pothole and digits CNNs, torchvision/timm by name, safe loading.

    import gradsum as gs
    model = gs.models.build("pilotnet")                  # random init
    model = gs.models.build("torchvision:resnet18", num_classes=3)
    model = gs.models.load("run/checkpoints/epoch_005.pt", model=gs.models.build("pilotnet"))
"""
from __future__ import annotations

from gradsum.models.io import UntrustedFileError, load, load_checkpoint, save
from gradsum.models.layers import default_layer_for, sise_blocks_for
from gradsum.models.normalize import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    Normalize,
    Normalized,
    with_normalization,
)
from gradsum.models.pilotnet import PilotNet
from gradsum.models.small import DigitsNet, PotholeNet
from gradsum.models.zoo import BUILTIN_MODELS, build, replace_head

__all__ = [
    "PilotNet",
    "PotholeNet",
    "DigitsNet",
    "Normalize",
    "Normalized",
    "with_normalization",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "build",
    "BUILTIN_MODELS",
    "replace_head",
    "default_layer_for",
    "sise_blocks_for",
    "load",
    "save",
    "load_checkpoint",
    "UntrustedFileError",
]
