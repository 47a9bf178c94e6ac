"""NeuronTarget (an intermediate unit) against independent computations on the network
truncated at that layer by hand: captum's GuidedBackprop / IntegratedGradients on the
truncated nn.Sequential (target (c, y, x) for a (B,C,H,W) output; a wrapper returning the
spatial mean for the channel-mean form), plain torch.autograd.grad for saliency and input x
gradient, and Grad-CAM at an earlier layer from the gradient of the neuron with respect to
that layer's activation. Relative tolerance 1e-4 of the largest value.
"""
from __future__ import annotations

import pytest
import torch
from torch import nn

import gradsum as gs

captum_attr = pytest.importorskip("captum.attr")
pytestmark = pytest.mark.filterwarnings("ignore:Setting backward hooks:UserWarning")  # captum's own notice

LAYER = "5"  # the conv after the max-pool; the truncated net is model[:6]
CHANNELS, YS, XS = [3, 0, 7, 3], [2, 5, 0, 7], [4, 1, 7, 6]


def _close(ours: torch.Tensor, theirs: torch.Tensor, rtol: float = 1e-4) -> None:
    scale = theirs.abs().max()
    assert scale > 0
    err = (ours - theirs).abs().max() / scale
    assert err <= rtol, f"max relative error {float(err):.2e}"


@pytest.fixture(scope="module")
def model() -> nn.Sequential:
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(),          # 0, 1
        nn.Conv2d(6, 8, 3, padding=1), nn.ReLU(),          # 2, 3
        nn.MaxPool2d(2),                                   # 4
        nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),          # 5, 6
        nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),          # 7, 8
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 5),
    )
    with torch.no_grad():  # biases that make the guided rule matter (some units off, some on)
        for m in net:
            if isinstance(m, nn.Conv2d):
                m.bias.uniform_(-0.1, 0.1)
    return net.eval()


@pytest.fixture(scope="module")
def x() -> torch.Tensor:
    return torch.rand(4, 3, 16, 16, generator=torch.Generator().manual_seed(1))


def _truncated(model: nn.Sequential) -> nn.Sequential:
    return nn.Sequential(*list(model)[: int(LAYER) + 1]).eval()


class _ChannelMean(nn.Module):
    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).mean(dim=(2, 3))


def test_guided_backprop_of_a_neuron_equals_captum(model, x):
    ours = gs.explain(model, x, "guided-backprop", target=gs.NeuronTarget(LAYER, CHANNELS, YS, XS))["guided-backprop"]
    targets = list(zip(CHANNELS, YS, XS, strict=True))
    theirs = captum_attr.GuidedBackprop(_truncated(model)).attribute(x.clone().requires_grad_(), target=targets)
    _close(ours.input_maps, theirs.detach())
    # one neuron for all images (ints)
    one = gs.explainer("guided-backprop", model)(x, target=gs.NeuronTarget(LAYER, 2, 3, 3))
    theirs = captum_attr.GuidedBackprop(_truncated(model)).attribute(x.clone().requires_grad_(), target=(2, 3, 3))
    _close(one.input_maps, theirs.detach())
    assert ours.input_maps.abs().amax() > 0


def test_guided_backprop_of_a_channel_mean_equals_captum(model, x):
    ours = gs.explain(model, x, "guided-backprop", target=gs.NeuronTarget(LAYER, CHANNELS))["guided-backprop"]
    theirs = captum_attr.GuidedBackprop(_ChannelMean(_truncated(model))).attribute(
        x.clone().requires_grad_(), target=CHANNELS)
    _close(ours.input_maps, theirs.detach())


def test_integrated_gradients_of_a_neuron_equals_captum(model, x):
    ours = gs.explain(model, x, "integrated-gradients", target=gs.NeuronTarget(LAYER, CHANNELS, YS, XS),
                      options={"integrated-gradients": {"steps": 16}})["integrated-gradients"]
    theirs = captum_attr.IntegratedGradients(_truncated(model)).attribute(
        x, target=list(zip(CHANNELS, YS, XS, strict=True)), n_steps=16, method="gausslegendre")
    _close(ours.input_maps, theirs.detach())


def _neuron_gradient(model: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    xin = x.clone().requires_grad_(True)
    act = _truncated(model)(xin)
    neuron = act[torch.arange(x.shape[0]), torch.tensor(CHANNELS), torch.tensor(YS), torch.tensor(XS)]
    (grad,) = torch.autograd.grad(neuron.sum(), xin)
    return grad


def test_saliency_and_input_x_gradient_equal_autograd_of_the_neuron(model, x):
    target = gs.NeuronTarget(LAYER, CHANNELS, YS, XS)
    res = gs.explain(model, x, ["saliency", "inputxgradient"], target=target)
    grad = _neuron_gradient(model, x)
    _close(res["saliency"].input_maps, grad.abs())
    _close(res["inputxgradient"].input_maps, x * grad)
    act = _truncated(model)(x).detach()
    expected = act[torch.arange(4), torch.tensor(CHANNELS), torch.tensor(YS), torch.tensor(XS)]
    torch.testing.assert_close(res["saliency"].scores, expected)
    assert res["saliency"].targets.tolist() == CHANNELS


@pytest.mark.parametrize("form", ["position", "mean"])
def test_gradcam_at_an_earlier_layer_equals_hand_computation(model, x, form):
    earlier = 2  # conv before the max-pool
    position = form == "position"
    target = gs.NeuronTarget(LAYER, CHANNELS, YS, XS) if position else gs.NeuronTarget(LAYER, CHANNELS)
    ours = gs.explain(model, x, ["gradcam", "hirescam"], layer=str(earlier), target=target)
    acts = nn.Sequential(*list(model)[: earlier + 1])(x).detach().requires_grad_(True)
    out = nn.Sequential(*list(model)[earlier + 1: int(LAYER) + 1])(acts)
    rows = torch.arange(x.shape[0])
    neuron = out[rows, torch.tensor(CHANNELS), torch.tensor(YS), torch.tensor(XS)] if position else \
        out.mean(dim=(2, 3))[rows, torch.tensor(CHANNELS)]
    (grad,) = torch.autograd.grad(neuron.sum(), acts)
    gradcam = torch.einsum("bk,bkhw->bhw", grad.mean(dim=(2, 3)), acts.detach()).clamp_min(0)
    hirescam = (grad * acts.detach()).sum(dim=1).clamp_min(0)
    _close(ours["gradcam"].layer_maps[str(earlier)], gradcam)
    _close(ours["hirescam"].layer_maps[str(earlier)], hirescam)
