"""Models: PilotNet, the pothole and digits CNNs, a small ViT, torchvision/timm by name, safe loading.

    import gradsum as gs
    model = gs.models.build("pilotnet")                  # random init
    model = gs.models.build("torchvision:resnet18", num_classes=3)
    model = gs.models.build("vit-tiny")                  # patch-8 ViT for 64x128 road scenes
    model = gs.models.build(weights="run/checkpoints/epoch_005.pt")   # the checkpoint says what it is
    model = gs.models.build("torchvision:fcn_resnet50", num_classes=5)  # output "out" explained
"""
from __future__ import annotations

from gradsum.models.card import ModelCard, attach_card, card_of, read_card
from gradsum.models.io import UntrustedFileError, load, load_checkpoint, save
from gradsum.models.layers import default_layer_for, sise_blocks_for
from gradsum.models.normalize import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    Normalize,
    Normalized,
    Prepared,
    with_normalization,
)
from gradsum.models.pilotnet import PilotNet
from gradsum.models.small import DigitsNet, PotholeNet
from gradsum.models.vit import ViTTiny
from gradsum.models.zoo import BUILTIN_MODELS, build, replace_head, standard_normalization

__all__ = [
    "PilotNet",
    "PotholeNet",
    "DigitsNet",
    "ViTTiny",
    "Normalize",
    "Normalized",
    "Prepared",
    "ModelCard",
    "attach_card",
    "card_of",
    "read_card",
    "standard_normalization",
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
