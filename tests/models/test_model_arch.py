"""Built-in architectures: shapes, declared layers, normalisation wrapper."""
from __future__ import annotations

import pytest
import torch
from torch import nn

import gradsum.models as M
from gradsum.core.layers import resolve_layer


@pytest.mark.parametrize(
    ("model", "size", "outputs"),
    [
        (M.PilotNet(), (66, 200), 1),
        (M.PotholeNet(), (66, 200), 2),
        (M.PotholeNet(), (128, 128), 2),
        (M.DigitsNet(), (28, 28), 10),
        (M.DigitsNet(num_classes=4), (32, 32), 4),
    ],
)
def test_output_shapes(model: nn.Module, size: tuple[int, int], outputs: int) -> None:
    y = model.eval()(torch.rand(2, 3, *size))
    assert y.shape == (2, outputs)
    assert torch.isfinite(y).all()


def test_pilotnet_layer_sizes_match_the_paper() -> None:
    model = M.PilotNet().eval()
    shapes: dict[str, tuple[int, ...]] = {}
    hooks = [
        model.features.get_submodule(n).register_forward_hook(
            lambda _m, _i, o, n=n: shapes.__setitem__(n, tuple(o.shape[1:]))
        )
        for n in ("act1", "act2", "act3", "act4", "act5")
    ]
    model(torch.rand(1, 3, 66, 200))
    for h in hooks:
        h.remove()
    assert shapes == {
        "act1": (24, 31, 98), "act2": (36, 14, 47), "act3": (48, 5, 22),
        "act4": (64, 3, 20), "act5": (64, 1, 18),
    }  # fmt: skip
    assert model.regressor.fc1.in_features == 1152
    assert [m.out_features for m in model.regressor if isinstance(m, nn.Linear)] == [100, 50, 10, 1]


def test_pilotnet_normalises_inside_the_model() -> None:
    model = M.PilotNet()
    x = torch.rand(1, 3, 66, 200)
    torch.testing.assert_close(model.normalize(x), x * 2 - 1)


def test_pilotnet_rejects_wrong_input_size() -> None:
    with pytest.raises(ValueError, match=r"66x200.*input_size"):
        M.PilotNet()(torch.rand(1, 3, 64, 64))
    assert M.PilotNet(input_size=(80, 80))(torch.rand(1, 3, 80, 80)).shape == (1, 1)
    with pytest.raises(ValueError, match="too small"):
        M.PilotNet(input_size=(30, 30))


def test_pilotnet_elu_variant() -> None:
    model = M.PilotNet(activation="elu")
    assert isinstance(model.features.act1, nn.ELU)
    with pytest.raises(ValueError, match="activation"):
        M.PilotNet(activation="tanh")


@pytest.mark.parametrize("cls", [M.PilotNet, M.PotholeNet, M.DigitsNet])
def test_builtins_use_relu_modules_not_inplace(cls: type[nn.Module]) -> None:
    relus = [m for m in cls().modules() if isinstance(m, nn.ReLU)]
    assert relus, "built-in models expose nn.ReLU modules for explanation hooks"
    assert not any(m.inplace for m in relus)


@pytest.mark.parametrize(
    ("cls", "size"), [(M.PilotNet, (66, 200)), (M.PotholeNet, (64, 64)), (M.DigitsNet, (28, 28))]
)
def test_declared_layers_exist_and_shrink(cls: type[nn.Module], size: tuple[int, int]) -> None:
    model = cls().eval()
    assert M.default_layer_for(model) == cls.default_layer
    assert M.sise_blocks_for(model) == list(cls.sise_blocks)
    resolve_layer(model, cls.default_layer)
    heights: list[int] = []
    hooks = [
        resolve_layer(model, b)[1].register_forward_hook(lambda _m, _i, o: heights.append(o.shape[-2] * o.shape[-1]))
        for b in cls.sise_blocks
    ]
    model(torch.rand(1, 3, *size))
    for h in hooks:
        h.remove()
    assert heights == sorted(heights, reverse=True) and len(set(heights)) == len(heights)
    assert cls.sise_blocks[-1] == cls.default_layer


def test_normalize_and_wrapper() -> None:
    norm = M.Normalize([0.5, 0.25, 0.0], [0.5, 0.5, 2.0])
    x = torch.rand(2, 3, 4, 4)
    expected = (x - torch.tensor([0.5, 0.25, 0.0]).view(1, 3, 1, 1)) / torch.tensor([0.5, 0.5, 2.0]).view(1, 3, 1, 1)
    torch.testing.assert_close(norm(x), expected)
    assert set(norm.state_dict()) == {"mean", "std"} and not list(norm.parameters())
    with pytest.raises(ValueError, match="std must be > 0"):
        M.Normalize(0.5, [1.0, 0.0, 1.0])
    inner = M.DigitsNet().eval()
    wrapped = M.with_normalization(inner, 0.5, 0.5).eval()
    torch.testing.assert_close(wrapped(x.new_ones(1, 3, 28, 28) * 0.7), inner(x.new_ones(1, 3, 28, 28) * 0.4))
    assert M.default_layer_for(wrapped) == "model.features.act2"
    assert M.sise_blocks_for(wrapped) == ["model.features.act1", "model.features.act2"]
    resolve_layer(wrapped, M.default_layer_for(wrapped))
    with pytest.raises(TypeError, match="nn.Module"):
        M.with_normalization("resnet", 0.5, 0.5)  # type: ignore[arg-type]
