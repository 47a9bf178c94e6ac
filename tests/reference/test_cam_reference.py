"""CAM family against pytorch-grad-cam (the peer library) on the same model, input and targets.

pytorch-grad-cam scales each layer map as (m - min) / (max + 1e-7), resizes it with cv2
(bilinear, half-pixel centres = torch's align_corners=False) and scales the result the same
way again (in `aggregate_multi_layers`, also for one layer). The 1e-7 acts at the raw map's
scale, so the peer's maximum is max/(max + 1e-7), not 1 (a 1e-4 relative shift when the raw
maximum is 1e-3, as on random VGG weights). We apply exactly that pipeline to our raw
`layer_maps` and compare; `maps` is checked to be the upsampled `layer_maps`.

Models and inputs are float64: in float32, sum_k w_k A_k cancels heavily on randomly
initialised VGG (terms ~1e3 x the result), and numpy's and torch's different summation
orders then disagree by ~5e-4 after min-max — round-off in both, not a definition
difference. In float64 both agree to ~1e-7 (the peer's final cv2 resize is float32).
"""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torchvision

import gradsum as gs
from gradsum.core.layers import resolve_layers
from gradsum.core.probe import Probe
from gradsum.methods.base import upsample
from gradsum.methods.cam import eigen_projection

cam_lib = pytest.importorskip("pytorch_grad_cam")
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget  # noqa: E402

PEERS = {
    "gradcam": cam_lib.GradCAM,
    "gradcam++": cam_lib.GradCAMPlusPlus,
    "xgradcam": cam_lib.XGradCAM,
    "hirescam": cam_lib.HiResCAM,
    "layercam": cam_lib.LayerCAM,
    "gradcam-elementwise": cam_lib.GradCAMElementWise,
    "eigencam": cam_lib.EigenCAM,
    "eigengradcam": cam_lib.EigenGradCAM,
}
TARGETS = [1, 5, 7, 3]


def _peer_minmax(maps: torch.Tensor) -> torch.Tensor:
    flat = maps.flatten(1)
    flat = flat - flat.amin(dim=1, keepdim=True)
    flat = flat / (1e-7 + flat.amax(dim=1, keepdim=True))
    return flat.reshape(maps.shape)


def _peer(method: str, model: torch.nn.Module, layer: str, x: torch.Tensor) -> np.ndarray:
    peer_model = copy.deepcopy(model)
    module = dict(peer_model.named_modules())[layer]
    with PEERS[method](model=peer_model, target_layers=[module]) as cam:
        return cam(input_tensor=x, targets=[ClassifierOutputTarget(t) for t in TARGETS])


def _models():
    torch.manual_seed(0)
    resnet = torchvision.models.resnet18(weights=None).double().eval()
    torch.manual_seed(0)
    vgg = torchvision.models.vgg11(weights=None).double().eval()
    from testmodels import InplaceReuseCNN

    torch.manual_seed(0)
    custom = InplaceReuseCNN().double().eval()
    return {
        "resnet18": (resnet, ["layer4", "layer3"], 96),
        "vgg11": (vgg, ["features.19", "features.20"], 64),
        "custom": (custom, ["conv3", "conv2"], 32),
    }


MODELS = _models()
CASES = [(m, layer) for m, (_, layers, _) in MODELS.items() for layer in layers]


@pytest.fixture(scope="module")
def inputs():
    gen = torch.Generator().manual_seed(1)
    return {size: torch.rand(4, 3, size, size, generator=gen, dtype=torch.float64)
            for size in sorted({s for _, _, s in MODELS.values()})}


@pytest.fixture(scope="module")
def ours_by_case(inputs):
    """All eight methods of ours per (model, layer) from one shared pass (gs.explain)."""
    out = {}
    for model_name, layer in CASES:
        model, _, size = MODELS[model_name]
        out[model_name, layer] = gs.explain(model, inputs[size], methods=list(PEERS), layer=layer, target=TARGETS)
    return out


def _pipeline(raw: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    return _peer_minmax(upsample(_peer_minmax(raw), size))


@pytest.mark.parametrize("method", [m for m in PEERS if not m.startswith("eigen")])
@pytest.mark.parametrize("model_name,layer", CASES)
def test_cam_methods_equal_pytorch_grad_cam(method, model_name, layer, inputs, ours_by_case):
    model, _, size = MODELS[model_name]
    if model_name == "custom" and layer == "conv2":
        pytest.skip("conv2 is followed by an in-place ReLU: the peer's stored activation is "
                    "overwritten (see test_inplace_relu_after_layer_uses_the_true_activation)")
    x = inputs[size]
    attr = ours_by_case[model_name, layer][method]
    raw = attr.layer_maps[layer]
    assert torch.equal(attr.maps, upsample(raw, (size, size)))
    ours = _pipeline(raw, (size, size))
    theirs = torch.from_numpy(_peer(method, model, layer, x)).double()
    assert ours.shape == theirs.shape
    assert (ours - theirs).abs().max() <= 1e-4


@pytest.mark.parametrize("method", ["eigencam", "eigengradcam"])
@pytest.mark.parametrize("model_name,layer", [c for c in CASES if c != ("custom", "conv2")])
def test_eigen_methods_equal_peer_up_to_svd_sign(method, model_name, layer, inputs, ours_by_case):
    """The SVD sign is arbitrary (LAPACK decides it in the peer); our default flips it to
    correlate with sum_k A_k. Per image, the peer's map equals ours or the one from the
    opposite sign of the projection, and ours is the one whose projection correlates
    positively with the channel sum of the projected matrix (A, or A*g for eigengradcam)."""
    model, _, size = MODELS[model_name]
    x = inputs[size]
    theirs = torch.from_numpy(_peer(method, model, layer, x)).double()
    with Probe(model, resolve_layers(model, layer)) as probe:
        out = model(x)
    acts = probe.captured[layer].activation
    if method == "eigengradcam":
        (g,) = probe.gradients(gs.ClassTarget(TARGETS).bind(out)(out), [layer])
        acts = acts * g
    proj = eigen_projection(acts.detach(), sign="none")
    plus = _pipeline(proj.clamp_min(0), (size, size))
    minus = _pipeline((-proj).clamp_min(0), (size, size))
    ours = _pipeline(ours_by_case[model_name, layer][method].layer_maps[layer], (size, size))
    total = acts.detach().sum(dim=1).flatten(1)  # the projected matrix's channel sum
    agrees = ((proj.flatten(1) * (total - total.mean(dim=1, keepdim=True))).sum(dim=1) >= 0)
    for i in range(x.shape[0]):
        err = min((plus[i] - theirs[i]).abs().max(), (minus[i] - theirs[i]).abs().max())
        assert err <= 1e-4, f"image {i}: {err}"
        expected = plus[i] if agrees[i] else minus[i]
        assert (ours[i] - expected).abs().max() <= 1e-6


def test_inplace_relu_after_layer_uses_the_true_activation(inputs):
    """conv2 of the custom model is followed by ReLU(inplace=True). Our probe keeps conv2's
    real (pre-ReLU) output; the same model with a non-in-place ReLU is the ground truth."""
    model, _, size = MODELS["custom"]
    x = inputs[size]
    clean = copy.deepcopy(model)
    clean.relu = torch.nn.ReLU(inplace=False)
    for method in ("gradcam", "hirescam", "layercam", "eigencam"):
        a = gs.explainer(method, model, layer="conv2")(x, target=TARGETS)
        b = gs.explainer(method, clean, layer="conv2")(x, target=TARGETS)
        torch.testing.assert_close(a.maps, b.maps, rtol=1e-5, atol=1e-6)
        assert bool((a.layer_maps["conv2"] != 0).any())
