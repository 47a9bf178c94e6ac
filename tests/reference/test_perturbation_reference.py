"""Perturbation family against the peer libraries on the same model, input and targets.

Score-CAM / Ablation-CAM / FullGrad vs pytorch-grad-cam: the peer min-max normalises each
small layer map (divisor max + 1e-7), resizes it with cv2 (bilinear, half-pixel centres =
torch's align_corners=False) and min-max normalises again. We compare with the same
computation on our `layer_maps` (FullGrad: on our raw `maps`, which the peer only
min-maxes). Models and inputs are float64 (see test_cam_reference.py for why). Occlusion vs
captum's `Occlusion` with the same window, stride and baseline, on raw values.
"""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torchvision

import gradsum as gs
from gradsum.methods.base import upsample

cam_lib = pytest.importorskip("pytorch_grad_cam")
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget  # noqa: E402

TARGETS = [1, 5]  # per-sample targets


def _peer_minmax(maps: torch.Tensor) -> torch.Tensor:
    flat = maps.flatten(1)
    flat = flat - flat.amin(dim=1, keepdim=True)
    flat = flat / (1e-7 + flat.amax(dim=1, keepdim=True))
    return flat.reshape(maps.shape)


def _as_peer(layer_map: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
    return _peer_minmax(upsample(_peer_minmax(layer_map.double()), size)).numpy()


def _peer(cls, model: torch.nn.Module, layer: str, x: torch.Tensor, targets: list[int]) -> np.ndarray:
    peer_model = copy.deepcopy(model)
    module = dict(peer_model.named_modules())[layer]
    with cls(model=peer_model, target_layers=[module]) as cam:
        return cam(input_tensor=x, targets=[ClassifierOutputTarget(t) for t in targets])


def _model(name: str, small_head: bool = True) -> torch.nn.Module:
    """Random-weight torchvision model in float64. VGG's 25088x4096 classifier costs more than
    its features at 32x32; with small_head=True it is replaced by 25088 -> 32 -> 10 (the
    methods under test only see it as "the layers after the target layer")."""
    torch.manual_seed(0)
    model = getattr(torchvision.models, name)(weights=None)
    if small_head and name.startswith("vgg"):
        model.classifier = torch.nn.Sequential(
            torch.nn.Linear(512 * 7 * 7, 32), torch.nn.ReLU(inplace=True), torch.nn.Linear(32, 10)
        )
    return model.double().eval()


def _input(size: int, batch: int = 2) -> torch.Tensor:
    return torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(0), dtype=torch.float64)


FAST = [("resnet18", "layer1", 16, 2), ("vgg11", "features.2", 32, 1)]
SLOW = [("resnet18", "layer3", 64, 2), ("resnet18", "layer4", 64, 2), ("vgg11", "features.15", 64, 2)]


def _check(method: str, peer_cls, arch: str, layer: str, size: int, batch: int, small_head: bool = True) -> None:
    model, x = _model(arch, small_head), _input(size, batch)
    peer = _peer(peer_cls, model, layer, x, TARGETS[:batch])
    attr = gs.explainer(method, model, layer=layer)(x, target=TARGETS[:batch])
    ours = _as_peer(attr.layer_maps[layer], (size, size))
    assert np.abs(ours - peer).max() < 1e-4
    if method == "ablationcam":
        assert attr.settings["tail"] == {layer: "fx"}


@pytest.mark.parametrize("arch,layer,size,batch", FAST)
@pytest.mark.parametrize("method", ["scorecam", "ablationcam"])
def test_score_and_ablation_cam_equal_peer(method, arch, layer, size, batch):
    _check(method, {"scorecam": cam_lib.ScoreCAM, "ablationcam": cam_lib.AblationCAM}[method], arch, layer, size,
           batch)


@pytest.mark.slow
@pytest.mark.parametrize("arch,layer,size,batch", SLOW)
@pytest.mark.parametrize("method", ["scorecam", "ablationcam"])
def test_score_and_ablation_cam_equal_peer_deep_layers(method, arch, layer, size, batch):
    _check(method, {"scorecam": cam_lib.ScoreCAM, "ablationcam": cam_lib.AblationCAM}[method], arch, layer, size,
           batch, small_head=False)


@pytest.mark.parametrize("arch", ["resnet18", "vgg11"])
def test_fullgrad_equals_peer(arch):
    model, x = _model(arch), _input(32)
    peer_model = copy.deepcopy(model)
    with cam_lib.FullGrad(model=peer_model, target_layers=[]) as cam:
        peer = cam(input_tensor=x, targets=[ClassifierOutputTarget(t) for t in TARGETS])
    attr = gs.explainer("fullgrad", model)(x, target=TARGETS)
    assert np.abs(_peer_minmax(attr.maps.double()).numpy() - peer).max() < 1e-4


def test_occlusion_equals_captum():
    captum = pytest.importorskip("captum.attr")
    from testmodels import InplaceReuseCNN

    torch.manual_seed(0)
    model = InplaceReuseCNN().eval()
    x = torch.rand(2, 3, 24, 24, generator=torch.Generator().manual_seed(1))
    for window, stride, baseline in [((6, 6), (3, 3), 0.0), ((5, 7), (4, 5), 0.3)]:
        ref = captum.Occlusion(model).attribute(
            x, sliding_window_shapes=(3, *window), strides=(3, *stride), baselines=baseline, target=TARGETS,
            perturbations_per_eval=16,
        )
        attr = gs.explainer("occlusion", model, window=window, stride=stride, baseline=baseline)(x, target=TARGETS)
        assert torch.allclose(ref[:, 0], ref[:, 2])  # the window spans every channel
        scale = ref.abs().max()
        assert (attr.maps - ref[:, 0]).abs().max() <= 1e-4 * scale
