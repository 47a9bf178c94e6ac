"""Models whose output is a dict/tuple, explanations under no_grad / inference_mode, input
dtypes, numpy targets, and the warning for an all-zero map."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from torch import nn

import gradsum as gs
from gradsum.core.outputs import select_output

METHODS = ["gradcam", "layercam", "saliency", "integrated-gradients", "smoothgrad", "rise", "scorecam",
           "ablationcam", "occlusion"]
FAST = {"integrated-gradients": {"steps": 4}, "smoothgrad": {"n_samples": 3}, "rise": {"n_masks": 16},
        "occlusion": {"window": 8}}


class Net(nn.Module):
    def __init__(self, structure: str = "tensor") -> None:
        super().__init__()
        torch.manual_seed(0)
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU())
        self.head = nn.Linear(8, 5)
        self.structure = structure

    def forward(self, x: torch.Tensor):  # type: ignore[no-untyped-def]
        logits = self.head(self.features(x).mean(dim=(2, 3)))
        if self.structure == "dict":
            return {"logits": logits, "features": logits.detach() * 0}
        if self.structure == "tuple":
            return logits, 3
        return logits


def _maps(model: nn.Module, x: torch.Tensor, **kw) -> dict[str, torch.Tensor]:  # type: ignore[no-untyped-def]
    res = gs.explain(model, x, methods=METHODS, layer="features.2", target=[1, 3],
                     options={k: v for k, v in FAST.items() if k in METHODS}, **kw)
    return {k: a.maps for k, a in res.items()}


def test_dict_and_tuple_outputs_give_the_tensor_models_maps() -> None:
    x = torch.rand(2, 3, 16, 16)
    plain = _maps(Net(), x)
    for structure, output in (("dict", "logits"), ("tuple", None)):
        other = _maps(Net(structure), x, output=output)
        for name in METHODS:
            torch.testing.assert_close(other[name], plain[name], rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="'logits' \\(2, 5\\), 'features' \\(2, 5\\).*output=KEY"):
        gs.explain(Net("dict"), x, methods=["gradcam"], layer="features.2")
    with pytest.raises(ValueError, match="output='nope' is not a key"):
        gs.explainer("saliency", Net("dict"), output="nope")(x)
    model = Net("dict")
    gs.explainer("gradcam", model, layer="features.2", output="logits")(x)
    assert not model._forward_hooks  # the selection is undone


def test_select_output_rules() -> None:
    t = torch.zeros(2, 3)
    assert select_output({"out": t, "aux": t + 1}) is t
    assert select_output((t,)) is t
    assert select_output([1, t]) is t
    assert select_output({"a": t, "b": 1}, None) is t
    assert select_output((t, t + 1), 1).sum() == 6
    assert select_output({"x": t}, lambda o: o["x"] + 2).sum() == 12
    with pytest.raises(TypeError, match="output must be None, a dict key"):
        gs.explainer("gradcam", Net(), output=1.5)


@pytest.mark.parametrize("context", [torch.no_grad, torch.inference_mode])
def test_methods_work_under_no_grad_and_inference_mode(context) -> None:  # type: ignore[no-untyped-def]
    x = torch.rand(2, 3, 16, 16)
    model = Net()  # made outside: parameters made under inference_mode cannot take part in autograd
    expected = _maps(model, x)
    with context():
        got = _maps(model, x if context is torch.no_grad else x.clone())
        assert not torch.is_grad_enabled()  # the caller's mode is back
    for name in METHODS:
        torch.testing.assert_close(got[name], expected[name], rtol=1e-5, atol=1e-6)
    with torch.inference_mode():
        inference_x = torch.rand(2, 3, 16, 16)
        a = gs.explainer("guided-backprop", model)(inference_x)
        assert torch.is_inference_mode_enabled()
    assert a.maps.shape == (2, 16, 16)


def test_input_dtype_is_cast_to_the_models_and_recorded() -> None:
    x = torch.rand(2, 3, 16, 16)
    expected = gs.explainer("saliency", Net())(x, target=1).maps
    for dtype in (torch.float64, torch.float16):
        a = gs.explainer("saliency", Net())(x.to(dtype), target=1)
        assert a.settings["input_cast"] == f"{str(dtype).replace('torch.', '')} -> float32"
        assert a.maps.dtype == torch.float32
        tol = 1e-6 if dtype == torch.float64 else 2e-2
        torch.testing.assert_close(a.maps, expected, rtol=tol, atol=tol * float(expected.abs().max()))


def test_numpy_targets_are_class_indices() -> None:
    x = torch.rand(2, 3, 16, 16)
    ref = gs.explainer("gradcam", Net(), layer="features.2")(x, target=[3, 3]).maps
    for target in (np.int64(3), np.array([3, 3]), [np.int32(3), np.int64(3)]):
        got = gs.explainer("gradcam", Net(), layer="features.2")(x, target=target)
        torch.testing.assert_close(got.maps, ref)
    with pytest.raises(TypeError, match="integer class indices"):
        gs.explainer("gradcam", Net(), layer="features.2")(x, target=np.array([1.0, 2.0]))


def test_all_zero_map_warns_with_its_cause() -> None:
    model = Net()
    nn.init.zeros_(model.head.weight)  # like torchvision's zero-initialised heads
    x = torch.rand(2, 3, 16, 16)
    with pytest.warns(UserWarning, match="gradcam: the map of image\\(s\\) 0, 1 is zero everywhere.*zero-initialised"):
        gs.explain(model, x, methods=["gradcam"], layer="features.2")
    with pytest.warns(UserWarning, match="saliency: the map .* with respect to the input is zero"):
        gs.explainer("saliency", model)(x)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        gs.explainer("saliency", Net())(x)  # a normal map: no warning


def test_explain_rejects_empty_methods_and_stray_options() -> None:
    x = torch.rand(1, 3, 16, 16)
    with pytest.raises(ValueError, match="methods is empty"):
        gs.explain(Net(), x, methods=[])
    with pytest.raises(ValueError, match="options are given for \\['rise'\\]"):
        gs.explain(Net(), x, methods=["gradcam"], options={"rise": {"n_masks": 8}})
