"""build(): built-ins, torchvision by name, timm, file factories; layer choices for families."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
from torch import nn

import gradsum.models as M
from gradsum.core.layers import resolve_layer


@pytest.mark.parametrize(
    ("spec", "cls", "outputs"), [("pilotnet", M.PilotNet, 1), ("PotholeNet", M.PotholeNet, 2), ("digitsnet", M.DigitsNet, 10)]
)
def test_build_builtins(spec: str, cls: type, outputs: int) -> None:
    model = M.build(spec)
    assert isinstance(model, cls) and not model.training
    assert list(model.parameters())[-1].shape[0] == outputs
    assert list(M.build(spec, num_classes=3).parameters())[-1].shape[0] == 3


def test_build_unknown_spec_suggests() -> None:
    with pytest.raises(ValueError, match="did you mean pilotnet"):
        M.build("pilotnett")
    with pytest.raises(ValueError, match="closest: resnet18"):
        M.build("torchvision:resnet1")
    with pytest.raises(ValueError, match="positive integer"):
        M.build("pilotnet", num_classes=0)
    with pytest.raises(FileNotFoundError, match="never downloads"):
        M.build("torchvision:resnet18", weights="IMAGENET1K_V1")


def test_build_torchvision_resnet18_three_classes() -> None:
    model = M.build("torchvision:resnet18", num_classes=3)
    assert model(torch.rand(1, 3, 64, 64)).shape == (1, 3)
    # wrapped with torchvision's ImageNet normalisation: layer names carry the wrapper's prefix,
    # and the bare names resolve too
    assert M.default_layer_for(model) == "model.layer4"
    assert M.sise_blocks_for(model) == ["model.relu", "model.layer1", "model.layer2", "model.layer3", "model.layer4"]
    assert resolve_layer(model, "layer4")[1] is model.model.layer4


def test_build_torchvision_with_local_weights_then_new_head(tmp_path: Path) -> None:
    source = M.build("torchvision:resnet18")
    path = tmp_path / "r18.pt"
    torch.save(source.state_dict(), path)
    with pytest.raises(ValueError, match=r"fc.weight \(1000, 512\) in the file vs \(3, 512\) in the model"):
        M.build("torchvision:resnet18", num_classes=3, weights=path)  # the head is built first
    model = M.build("torchvision:resnet18", num_classes=3, weights=path, new_head=True)  # fine-tuning start
    torch.testing.assert_close(model.model.conv1.weight, source.model.conv1.weight)
    assert model.model.fc.out_features == 3


@pytest.mark.parametrize("name", ["mobilenet_v2", "squeezenet1_1", "regnet_x_400mf"])
def test_torchvision_family_layers_resolve_and_downsample(name: str) -> None:
    model = M.build(f"torchvision:{name}", num_classes=2)
    resolve_layer(model, M.default_layer_for(model))
    blocks = M.sise_blocks_for(model)
    assert blocks and len(blocks) >= 3
    sizes: list[int] = []
    hooks = [resolve_layer(model, b)[1].register_forward_hook(lambda _m, _i, o: sizes.append(o.shape[-1])) for b in blocks]
    with torch.no_grad():
        model(torch.rand(1, 3, 96, 96))
    for h in hooks:
        h.remove()
    assert sizes == sorted(sizes, reverse=True) and len(set(sizes)) == len(sizes)


def test_unknown_architecture_gives_none() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU())
    assert M.default_layer_for(model) is None and M.sise_blocks_for(model) is None


def test_replace_head_squeezenet_conv_head() -> None:
    model = M.replace_head(M.build("torchvision:squeezenet1_1"), 5)
    assert model(torch.rand(1, 3, 64, 64)).shape == (1, 5)


@pytest.mark.skipif(importlib.util.find_spec("timm") is not None, reason="timm is installed")
def test_timm_missing_names_the_extra() -> None:
    with pytest.raises(ImportError, match=r"gradsum\[timm\]"):
        M.build("timm:resnet18")


def test_build_from_file_factory(tmp_path: Path) -> None:
    f = tmp_path / "my_model.py"
    f.write_text(
        "from torch import nn\n"
        "def make(num_classes=4):\n"
        "    return nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, num_classes))\n"
        "def make_plain():\n"
        "    return nn.Linear(2, 2)\n"
        "def not_a_model():\n"
        "    return 42\n"
    )
    assert M.build(f"{f}:make")(torch.rand(1, 3, 8, 8)).shape == (1, 4)
    assert M.build(f"{f}:make", num_classes=6)(torch.rand(1, 3, 8, 8)).shape == (1, 6)
    with pytest.raises(ValueError, match="does not take num_classes"):
        M.build(f"{f}:make_plain", num_classes=3)
    with pytest.raises(ValueError, match="no function 'mak'.*make"):
        M.build(f"{f}:mak")
    with pytest.raises(TypeError, match="returned int"):
        M.build(f"{f}:not_a_model")
    with pytest.raises(FileNotFoundError, match="missing.py"):
        M.build(f"{tmp_path / 'missing.py'}:make")
    with pytest.raises(ValueError, match="no factory"):
        M.build(str(f))
