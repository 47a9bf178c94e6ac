"""Which layer to explain, and which blocks SISE fuses, for built-in and known models.

Built-in models declare ``default_layer`` and ``sise_blocks`` class attributes. For
torchvision families the choices follow the SISE rule (Sattarzadeh et al. 2021): the input
of each spatial downsampling plus the last conv output. Unknown models give None and the
core auto-detects from shapes in a forward pass.
"""
from __future__ import annotations

from torch import nn

from gradsum.models.normalize import unwrap

__all__ = ["default_layer_for", "sise_blocks_for"]

_STRIDED = (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)
# torchvision class name -> the Sequential whose children are the stages
_STAGED = {
    "MobileNetV2": "features",
    "MobileNetV3": "features",
    "EfficientNet": "features",
    "ConvNeXt": "features",
    "MNASNet": "layers",
    "SqueezeNet": "features",
}


def _stride(module: nn.Module) -> int:
    s = getattr(module, "stride", 1)
    if isinstance(s, tuple | list):
        return max(int(v) for v in s)
    return int(s) if s is not None else 1


def _downsamples(module: nn.Module) -> bool:
    """True when `module` or any conv/pool inside it has a stride > 1."""
    return any(
        isinstance(m, _STRIDED) and _stride(m) > 1 for m in module.modules()
    )


def _stage_blocks(seq: nn.Module, prefix: str) -> list[str]:
    """Children of `seq` that feed a downsampling child, plus the last child."""
    children = list(seq.named_children())
    blocks = [
        f"{prefix}.{children[i - 1][0]}"
        for i in range(1, len(children))
        if _downsamples(children[i][1])
    ]
    last = f"{prefix}.{children[-1][0]}"
    if last not in blocks:
        blocks.append(last)
    return blocks


def _torchvision_family(model: nn.Module) -> str | None:
    cls = type(model)
    return cls.__name__ if cls.__module__.startswith("torchvision.") else None


def _pool_names(model: nn.Module) -> list[str]:
    return [f"features.{n}" for n, m in model.features.named_children() if isinstance(m, nn.MaxPool2d)]


def _timm_transformer_layer(model: nn.Module) -> str | None:
    """timm ViT-style models (VisionTransformer, DeiT, Eva, ...: a ``blocks`` list whose blocks
    have ``norm1`` and ``attn``): the last block's ``norm1``; timm Swin: the final ``norm``."""
    if type(model).__name__.startswith("SwinTransformer") and isinstance(getattr(model, "norm", None), nn.Module):
        return "norm"
    blocks = getattr(model, "blocks", None)
    if isinstance(blocks, nn.ModuleList | nn.Sequential) and len(blocks) > 0:
        last_name, last = list(blocks.named_children())[-1]
        if isinstance(getattr(last, "norm1", None), nn.Module) and isinstance(getattr(last, "attn", None), nn.Module):
            return f"blocks.{last_name}.norm1"
    return None


def default_layer_for(model: nn.Module) -> str | None:
    """The layer to explain by default: the model's ``default_layer`` attribute, else the
    last conv stage of a known torchvision family (ResNet: layer4; VGG/AlexNet: the last
    MaxPool of features; DenseNet: features.norm5; MobileNet/EfficientNet/ConvNeXt: the last
    child of features; RegNet: trunk_output; ShuffleNetV2: conv5; segmentation FCN /
    DeepLabV3 / LRASPP: the backbone's last stage), else None (auto-detect).

    Transformers: the normalisation before the last block's attention, where the patch
    tokens still receive gradient (after the last block only the class token reaches the
    head): torchvision ViT ``encoder.layers.encoder_layer_<last>.ln_1``, timm ViT/DeiT
    ``blocks.<last>.norm1``; Swin, which has no class token: the last stage's output after
    the final norm (torchvision: ``permute``, already (B,C,h,w); timm: ``norm``)."""
    inner, prefix = unwrap(model)
    declared = getattr(inner, "default_layer", None)
    if isinstance(declared, str):
        return prefix + declared
    if type(inner).__module__.startswith("timm."):
        timm_name = _timm_transformer_layer(inner)
        return prefix + timm_name if timm_name is not None else None
    family = _torchvision_family(inner)
    name: str | None = None
    if family == "VisionTransformer":
        last = list(inner.encoder.layers.named_children())[-1][0]
        name = f"encoder.layers.{last}.ln_1"
    elif family == "SwinTransformer":
        name = "permute"
    elif family == "ResNet":
        name = "layer4"
    elif family in ("VGG", "AlexNet"):
        pools = _pool_names(inner)
        name = pools[-1] if pools else None
    elif family == "DenseNet":
        name = "features.norm5"
    elif family in _STAGED:
        seq_name = _STAGED[family]
        last = list(getattr(inner, seq_name).named_children())[-1][0]
        name = f"{seq_name}.{last}"
    elif family == "RegNet":
        name = "trunk_output"
    elif family == "ShuffleNetV2":
        name = "conv5"
    elif family in ("FCN", "DeepLabV3", "LRASPP"):  # segmentation: the backbone's last stage, not the head
        name = f"backbone.{list(inner.backbone.named_children())[-1][0]}"
    return prefix + name if name is not None else None


def sise_blocks_for(model: nn.Module) -> list[str] | None:
    """SISE blocks: the model's ``sise_blocks`` attribute, else for torchvision families
    (ResNet: relu, layer1..layer4; VGG/AlexNet: each MaxPool of features; DenseNet: relu0,
    transition1..3 conv, norm5; MobileNet/EfficientNet/ConvNeXt/MNASNet/SqueezeNet: each
    stage feeding a strided stage, plus the last; RegNet: stem, block1..block4;
    ShuffleNetV2: conv1, maxpool, stage2, stage3, conv5), else None (auto-detect)."""
    inner, prefix = unwrap(model)
    declared = getattr(inner, "sise_blocks", None)
    if isinstance(declared, list | tuple) and all(isinstance(b, str) for b in declared):
        return [prefix + b for b in declared]
    family = _torchvision_family(inner)
    names: list[str] | None = None
    if family == "ResNet":
        names = ["relu", "layer1", "layer2", "layer3", "layer4"]
    elif family in ("VGG", "AlexNet"):
        names = _pool_names(inner) or None
    elif family == "DenseNet":
        transitions = [n for n, _ in inner.features.named_children() if n.startswith("transition")]
        names = ["features.relu0"] + [f"features.{t}.conv" for t in transitions] + ["features.norm5"]
    elif family in _STAGED:
        seq_name = _STAGED[family]
        names = _stage_blocks(getattr(inner, seq_name), seq_name)
    elif family == "RegNet":
        names = ["stem"] + _stage_blocks(inner.trunk_output, "trunk_output")
    elif family == "ShuffleNetV2":
        names = ["conv1", "maxpool", "stage2", "stage3", "conv5"]
    return [prefix + n for n in names] if names else None
