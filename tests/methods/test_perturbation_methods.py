"""Score-CAM, Ablation-CAM, FullGrad and extremal perturbation against direct computations."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

import gradsum as gs
from testmodels import GapLinear, InplaceReuseCNN


def _acts(model: nn.Module, layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    out = []
    handle = layer.register_forward_hook(lambda m, i, o: out.append(o.detach().clone()))
    with torch.no_grad():
        model(x)
    handle.remove()
    return out[0]


def _naive_scorecam(model, layer, x, target, baseline=False):
    a = _acts(model, layer, x)[0]
    scores, zero = [], None
    with torch.no_grad():
        for k in range(a.shape[0]):
            up = F.interpolate(a[k][None, None], size=x.shape[-2:], mode="bilinear", align_corners=True)[0, 0]
            mask = (up - up.min()) / (up.max() - up.min() + 1e-8)
            out = model(x * mask)
            scores.append(out.softmax(1)[0, target] if baseline else out[0, target])
        zero = model(torch.zeros_like(x)).softmax(1)[0, target]
    s = torch.stack(scores)
    w = s - zero if baseline else s.softmax(0)
    return (w[:, None, None] * a).sum(0).clamp_min(0)


def test_scorecam_equals_a_naive_loop_with_dead_channels_and_paper_baseline():
    torch.manual_seed(0)
    model = GapLinear().eval()
    with torch.no_grad():
        model.features[2].bias[:4] = -50.0  # four channels that are always 0 after the ReLU
    x = torch.rand(1, 3, 16, 16)
    for baseline in (False, True):
        attr = gs.explainer("scorecam", model, layer="features.3", baseline=baseline)(x, target=2)
        ref = _naive_scorecam(model, model.features[3], x, 2, baseline)
        assert torch.allclose(attr.layer_maps["features.3"][0], ref, atol=1e-5)
        assert attr.cost.masks == 12 - 4 + 1  # dead channels share one all-zero input
    assert attr.settings["score"] == "probability (softmax)"


def test_ablationcam_equals_a_naive_loop_and_channel_ratio_ablates_fewer():
    torch.manual_seed(0)
    model = GapLinear().eval()
    x = torch.rand(2, 3, 16, 16)
    attr = gs.explainer("ablationcam", model, layer="features.3")(x, target=[1, 3])
    a = _acts(model, model.features[3], x)
    with torch.no_grad():
        y = model(x)[[0, 1], [1, 3]]
        for b, t in enumerate([1, 3]):
            w = []
            for k in range(a.shape[1]):
                ablated = a[b:b + 1].clone()
                ablated[0, k] = 0
                y_k = model.fc(model.pool(ablated).flatten(1))[0, t]
                w.append((y[b] - y_k) / y[b])
            ref = (torch.stack(w)[:, None, None] * a[b]).sum(0).clamp_min(0)
            assert torch.allclose(attr.layer_maps["features.3"][b], ref, atol=1e-5)
    half = gs.explainer("ablationcam", model, layer="features.3", channels=0.5)(x, target=[1, 3])
    assert half.cost.masks <= 2 * 6 and half.settings["channels"] == 0.5


def test_fullgrad_completeness_on_a_piecewise_linear_network():
    torch.manual_seed(0)
    model = InplaceReuseCNN().eval()
    with torch.no_grad():
        model.bn1.running_mean.uniform_(-0.2, 0.2)
        model.bn1.running_var.uniform_(0.5, 1.5)
        model.bn1.bias.uniform_(-0.5, 0.5)
    x = torch.rand(3, 3, 16, 16, dtype=torch.float64)
    attr = gs.explainer("fullgrad", model.double())(x, target=[0, 4, 9])
    assert attr.settings["completeness_gap"].abs().max() < 1e-9
    assert attr.maps.shape == (3, 16, 16) and attr.maps.min() >= 0
    assert set(attr.settings["layers"]) == {"conv1", "bn1", "conv2", "conv3"}


class _Box(nn.Module):
    """Class 0 reads the contrast inside a box (blurring lowers it)."""

    def forward(self, x):
        contrast = (x[:, :, 8:16, 8:16] - 0.5).pow(2).sum((1, 2, 3))
        return torch.stack([contrast, torch.zeros(x.shape[0])], dim=1)


def test_extremal_mask_preserves_the_region_the_model_reads():
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    # the defaults (step 7, sigma 21, blur up to 20 px) are sized for 224-pixel images
    attr = gs.explainer("extremal", _Box(), iterations=40, step=4, sigma=6.0, max_blur=8.0)(x, target=0)
    mask = attr.maps[0]
    inside = torch.zeros(32, 32, dtype=torch.bool)
    inside[8:16, 8:16] = True
    assert mask.min() >= 0 and mask.max() <= 1
    assert mask[inside].mean() > mask[~inside].mean() + 0.5
    assert attr.cost.forward_passes == 41 and attr.cost.backward_passes == 40
    assert attr.settings["iterations"] == 40
