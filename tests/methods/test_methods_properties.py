"""Properties every CAM-family and gradient-family method must have."""
from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import gradsum as gs
from gradsum.core.probe import SpatialLayerError

CAM_METHODS = ["cam", "gradcam", "gradcam++", "xgradcam", "hirescam", "gradcam-elementwise", "layercam",
               "eigencam", "eigengradcam", "layer-visualization"]
GRADIENT_METHODS = ["saliency", "inputxgradient", "guided-backprop", "guided-gradcam", "integrated-gradients",
                    "smoothgrad"]
FAST_OPTIONS = {"integrated-gradients": {"steps": 8}, "smoothgrad": {"n_samples": 4}}


def _explain(method, model, x, target=None, layer="auto"):
    return gs.explainer(method, model, layer=layer, **FAST_OPTIONS.get(method, {}))(x, target=target)


def _state(model: nn.Module):
    return (
        [m.training for m in model.modules()],
        [p.requires_grad for p in model.parameters()],
        [None if p.grad is None else p.grad.clone() for p in model.parameters()],
        sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks) for m in model.modules()),
    )


def _same_state(a, b) -> bool:
    grads_equal = all(
        (x is None and y is None) or (x is not None and y is not None and torch.equal(x, y)) for x, y in zip(a[2], b[2], strict=True)
    )
    return a[0] == b[0] and a[1] == b[1] and grads_equal and a[3] == b[3]


def test_registry_lists_every_core_method():
    names = gs.available_methods()
    for m in CAM_METHODS + GRADIENT_METHODS:
        assert m in names
    with pytest.raises(ValueError, match="did you mean gradcam"):
        gs.explainer("gradcma", nn.Linear(1, 1))


@pytest.mark.parametrize("method", CAM_METHODS + GRADIENT_METHODS)
def test_shapes_and_model_state_restored(method, gap_model, images):
    gap_model.train()  # a model in train mode, partly frozen, with a stale .grad
    gap_model.fc.weight.requires_grad_(False)
    gap_model.features[0].weight.grad = torch.ones_like(gap_model.features[0].weight)
    before = _state(gap_model)
    attr = _explain(method, gap_model, images)
    assert attr.maps.shape == (4, 32, 32)
    assert attr.maps.dtype == torch.float32
    assert torch.isfinite(attr.maps).all()
    assert attr.scores.shape == (4,)
    assert attr.cost.forward_passes >= 4 and attr.cost.seconds > 0
    assert _same_state(before, _state(gap_model))
    assert gap_model.training


@pytest.mark.parametrize("method", ["gradcam", "saliency", "guided-backprop", "integrated-gradients"])
def test_state_restored_when_the_call_raises(method, gap_model, images):
    before = _state(gap_model)
    with pytest.raises(ValueError, match="out of range"):
        _explain(method, gap_model, images, target=99)
    assert _same_state(before, _state(gap_model))


@pytest.mark.parametrize("method", CAM_METHODS + GRADIENT_METHODS)
def test_each_map_equals_its_map_computed_alone(method, inplace_cnn, gap_model, images):
    targets = [1, 4, 2, 0]
    model, layer = (gap_model, "features.3") if method == "cam" else (inplace_cnn, "conv3")
    batch = _explain(method, model, images, target=targets, layer=layer)
    for i in range(images.shape[0]):
        alone = _explain(method, model, images[i : i + 1], target=targets[i], layer=layer)
        torch.testing.assert_close(batch.maps[i], alone.maps[0], rtol=1e-4, atol=1e-6)


def test_integrated_gradients_completeness_within_one_percent(inplace_cnn, images):
    attr = gs.explainer("integrated-gradients", inplace_cnn, steps=64, return_delta=True)(images, target=[1, 2, 3, 4])
    with torch.no_grad():
        gap = (inplace_cnn(images) - inplace_cnn(torch.zeros_like(images)))[torch.arange(4), torch.tensor([1, 2, 3, 4])]
    total = attr.input_maps.flatten(1).sum(1)
    assert ((total - gap).abs() <= 0.01 * gap.abs()).all()
    torch.testing.assert_close(attr.settings["delta"], total - gap, rtol=1e-3, atol=1e-5)
    torch.testing.assert_close(attr.maps, attr.input_maps.sum(1))


def test_cam_equals_gradcam_up_to_positive_scale_on_gap_linear(gap_model, images):
    cam = gs.explainer("cam", gap_model, layer="features.3")(images, target=[0, 1, 2, 3])
    grad = gs.explainer("gradcam", gap_model, layer="features.3")(images, target=[0, 1, 2, 3])
    hw = cam.layer_maps["features.3"].shape[-1] * cam.layer_maps["features.3"].shape[-2]
    torch.testing.assert_close(cam.maps / hw, grad.maps, rtol=1e-4, atol=1e-7)
    assert cam.maps.max() > 0


def test_cam_requires_a_linear_head(inplace_cnn, images):
    with pytest.raises(ValueError, match="followed by global average pooling and a linear layer"):
        gs.explainer("cam", inplace_cnn, layer="conv2")(images)


def test_auto_layer_is_the_last_spatial_map(inplace_cnn, gap_model, images):
    a = gs.explainer("gradcam", inplace_cnn)(images)
    assert a.settings["layers"] == ["conv3"]
    b = gs.explainer("gradcam", gap_model)(images)
    assert b.settings["layers"] == ["features"]
    torch.testing.assert_close(b.maps, gs.explainer("gradcam", gap_model, layer="features.3")(images).maps)


def test_module_called_twice_keeps_its_last_call(inplace_cnn, images):
    """inplace_cnn.relu runs after conv1 (32x32) and after conv2 (16x16): the last call wins."""
    a = gs.explainer("gradcam", inplace_cnn, layer="relu")(images)
    assert a.layer_maps["relu"].shape[-2:] == (16, 16)


def test_explain_shares_one_pass_for_all_cam_methods(inplace_cnn, images):
    methods = ["gradcam", "gradcam++", "xgradcam", "hirescam", "layercam", "eigencam"]
    res = gs.explain(inplace_cnn, images, methods=methods, layer="conv3", target=[0, 1, 2, 3])
    assert list(res) == methods
    assert res.cost.forward_passes == 4 and res.cost.backward_passes == 4
    for m in methods:  # identical to each method alone
        alone = gs.explainer(m, inplace_cnn, layer="conv3")(images, target=[0, 1, 2, 3])
        torch.testing.assert_close(res[m].maps, alone.maps)
    mixed = gs.explain(inplace_cnn, images, methods=["gradcam", "saliency"], layer="conv3")
    assert mixed.cost.forward_passes == 4 + 4  # shared CAM pass + saliency (one pass)


def test_multi_layer_fusion(inplace_cnn, images):
    a = gs.explainer("layercam", inplace_cnn, layer=["conv2", "conv3"])(images)
    assert set(a.layer_maps) == {"conv2", "conv3"}
    assert a.maps.min() >= 0 and a.maps.max() <= 1
    for fusion in ("max", "layercam"):
        b = gs.explainer("layercam", inplace_cnn, layer=["conv2", "conv3"], fusion=fusion)(images)
        assert b.maps.shape == (4, 32, 32) and b.maps.max() <= 1
    with pytest.raises(ValueError, match="unknown fusion"):
        gs.explainer("layercam", inplace_cnn, layer=["conv2", "conv3"], fusion="sum")


def test_regression_default_target_and_sign(steering_model):
    x = torch.rand(2, 3, 33, 100, generator=torch.Generator().manual_seed(0))
    for method in ["gradcam", "hirescam", "saliency", "inputxgradient", "integrated-gradients"]:
        up = _explain(method, steering_model, x)
        down = _explain(method, steering_model, x, target=gs.RegressionTarget(0, sign=-1))
        torch.testing.assert_close(up.scores, -down.scores)
        assert up.targets.tolist() == [0, 0]
    # signed attributions flip exactly; for Grad-CAM the ReLU keeps the other half
    a = _explain("inputxgradient", steering_model, x)
    b = _explain("inputxgradient", steering_model, x, target=gs.RegressionTarget(0, sign=-1))
    torch.testing.assert_close(a.maps, -b.maps)
    g_up = gs.explainer("hirescam", steering_model, layer="features.3")(x)
    g_down = gs.explainer("hirescam", steering_model, layer="features.3")(x, target=gs.RegressionTarget(sign=-1))
    raw = g_up.layer_maps["features.3"] - g_down.layer_maps["features.3"]  # relu(s) - relu(-s) = s
    assert (g_up.layer_maps["features.3"] * g_down.layer_maps["features.3"]).abs().max() == 0
    assert raw.abs().max() > 0


def test_guided_backprop_handles_functional_and_inplace_relu(images):
    class Functional(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3)
            self.fc = nn.Linear(4, 3)

        def forward(self, x):
            x = torch.relu_(self.conv(x))
            return self.fc(torch.nn.functional.relu(x).mean(dim=(2, 3)))

    torch.manual_seed(0)
    model = Functional().eval()
    gb = gs.explainer("guided-backprop", model)(images, target=0)
    plain = gs.explainer("saliency", model)(images, target=0)
    assert not torch.allclose(gb.input_maps.abs(), plain.input_maps)
    # the guided rule: zero the negative gradients at every ReLU -> recompute by hand
    x = images.clone().requires_grad_(True)
    pre = model.conv(x)
    mask = (pre > 0).float()
    g_mid = torch.autograd.grad(model.fc(pre.clamp_min(0).mean(dim=(2, 3)))[:, 0].sum(), pre, retain_graph=True)[0]
    g_mid = g_mid * mask
    g_mid = g_mid.clamp_min(0)  # second (functional) ReLU on the same positive values
    g_mid = g_mid * mask
    (expected,) = torch.autograd.grad(pre, x, grad_outputs=g_mid)
    torch.testing.assert_close(gb.input_maps, expected, rtol=1e-5, atol=1e-7)


def test_guided_gradcam_is_guided_backprop_times_gradcam(inplace_cnn, images):
    gg = gs.explainer("guided-gradcam", inplace_cnn, layer="conv3")(images, target=[0, 1, 2, 3])
    gb = gs.explainer("guided-backprop", inplace_cnn)(images, target=[0, 1, 2, 3])
    gc = gs.explainer("gradcam", inplace_cnn, layer="conv3")(images, target=[0, 1, 2, 3])
    torch.testing.assert_close(gg.input_maps, gb.input_maps * gc.maps[:, None])


@pytest.mark.parametrize(
    "bad,error,match",
    [
        (torch.rand(3, 32, 32), ValueError, "unsqueeze"),
        (torch.randint(0, 255, (1, 3, 32, 32)), TypeError, "floating-point"),
        (torch.full((1, 3, 32, 32), float("nan")), ValueError, "NaN"),
        (torch.rand(0, 3, 32, 32), ValueError, "empty batch"),
        ([[1.0]], TypeError, "torch.Tensor"),
    ],
)
def test_bad_inputs_are_named(bad, error, match, inplace_cnn):
    for method in ("gradcam", "saliency"):
        with pytest.raises(error, match=match):
            gs.explainer(method, inplace_cnn)(bad)


def test_unknown_layer_and_non_spatial_layer(inplace_cnn, images):
    with pytest.raises(ValueError, match="closest names"):
        gs.explainer("gradcam", inplace_cnn, layer="conv4")
    with pytest.raises(SpatialLayerError, match="layer 'fc' gives shape \\(4, 10\\)"):
        gs.explainer("gradcam", inplace_cnn, layer="fc")(images)


def test_smoothgrad_variants_and_seed(inplace_cnn, images):
    a = gs.explainer("smoothgrad", inplace_cnn, n_samples=4, seed=3)(images)
    b = gs.explainer("smoothgrad", inplace_cnn, n_samples=4, seed=3)(images)
    c = gs.explainer("smoothgrad", inplace_cnn, n_samples=4, seed=4)(images)
    torch.testing.assert_close(a.maps, b.maps)
    assert not torch.allclose(a.maps, c.maps)
    sq = gs.explainer("smoothgrad", inplace_cnn, n_samples=4, seed=3, variant="smoothgrad_sq")(images)
    var = gs.explainer("smoothgrad", inplace_cnn, n_samples=4, seed=3, variant="vargrad")(images)
    torch.testing.assert_close(var.input_maps, sq.input_maps - a.input_maps**2, rtol=1e-4, atol=1e-9)
    ig = gs.explainer("smoothgrad", inplace_cnn, base="integrated-gradients", n_samples=2,
                      base_options={"steps": 4})(images)
    assert ig.settings["channel_reduce"] == "sum"
    with pytest.raises(ValueError, match="wraps a gradient method"):
        gs.explainer("smoothgrad", inplace_cnn, base="gradcam")


@settings(max_examples=15, deadline=None)
@given(
    batch=st.integers(1, 3),
    height=st.integers(8, 24),
    width=st.integers(8, 24),
    method=st.sampled_from(["gradcam", "gradcam++", "layercam", "saliency", "inputxgradient"]),
)
def test_shape_and_dtype_invariants(batch, height, width, method):
    from testmodels import InplaceReuseCNN

    torch.manual_seed(0)
    model = InplaceReuseCNN().eval()
    x = torch.rand(batch, 3, height, width)
    attr = gs.explainer(method, model, layer="conv3")(x)
    assert attr.maps.shape == (batch, height, width)
    assert attr.maps.dtype == x.dtype
    assert torch.isfinite(attr.normalized()).all()
    assert attr.normalized().min() >= 0 and attr.normalized().max() <= 1


def test_prediction_sign_target_explains_each_image_in_its_own_direction(images):
    from testmodels import GapLinear

    torch.manual_seed(5)
    model = GapLinear(num_classes=1).eval()
    with torch.no_grad():
        pred = model(images)[:, 0]
    both = gs.explainer("cam", model, layer="features.3")(images, target=gs.RegressionTarget(sign="prediction"))
    up = gs.explainer("cam", model, layer="features.3")(images, target=gs.RegressionTarget(sign=1))
    down = gs.explainer("cam", model, layer="features.3")(images, target=gs.RegressionTarget(sign=-1))
    for i in range(images.shape[0]):
        expected = up.maps[i] if pred[i] >= 0 else down.maps[i]
        torch.testing.assert_close(both.maps[i], expected)
    assert (both.scores >= 0).all()
