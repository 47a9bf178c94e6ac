"""Gradient family against captum on the same model, input and per-sample targets.

Compared per channel (`Attribution.input_maps` against captum's (B,C,H,W) attributions),
relative tolerance 1e-4 of the largest attribution.
"""
from __future__ import annotations

import copy

import pytest
import torch
import torchvision

import gradsum as gs

captum_attr = pytest.importorskip("captum.attr")

TARGETS = [1, 5, 7, 3]


def _close(ours: torch.Tensor, theirs: torch.Tensor, rtol: float = 1e-4) -> None:
    scale = theirs.abs().max()
    assert scale > 0
    err = (ours - theirs).abs().max() / scale
    assert err <= rtol, f"max relative error {float(err):.2e}"


def _models():
    from testmodels import InplaceReuseCNN

    torch.manual_seed(0)
    resnet = torchvision.models.resnet18(weights=None).eval()
    torch.manual_seed(0)
    custom = InplaceReuseCNN().eval()
    return {"resnet18": (resnet, 64), "custom": (custom, 32)}


MODELS = _models()


@pytest.fixture(scope="module")
def inputs():
    gen = torch.Generator().manual_seed(3)
    return {size: torch.rand(4, 3, size, size, generator=gen) for size in (32, 64)}


@pytest.mark.parametrize("model_name", list(MODELS))
def test_saliency_equals_captum(model_name, inputs):
    model, size = MODELS[model_name]
    x = inputs[size]
    ours = gs.explainer("saliency", model)(x, target=TARGETS)
    theirs = captum_attr.Saliency(copy.deepcopy(model)).attribute(x.clone().requires_grad_(), target=TARGETS, abs=True)
    _close(ours.input_maps, theirs.detach())
    torch.testing.assert_close(ours.maps, theirs.detach().abs().amax(dim=1), rtol=1e-4, atol=1e-4 * float(theirs.abs().max()))


@pytest.mark.parametrize("model_name", list(MODELS))
def test_input_x_gradient_equals_captum(model_name, inputs):
    model, size = MODELS[model_name]
    x = inputs[size]
    ours = gs.explainer("inputxgradient", model)(x, target=TARGETS)
    theirs = captum_attr.InputXGradient(copy.deepcopy(model)).attribute(x.clone().requires_grad_(), target=TARGETS)
    _close(ours.input_maps, theirs.detach())
    _close(ours.maps, theirs.detach().sum(dim=1))


@pytest.mark.parametrize("method", ["gausslegendre", "riemann_left", "riemann_right", "riemann_middle"])
def test_integrated_gradients_equals_captum(method, inputs):
    model, size = MODELS["custom"]
    x = inputs[size]
    ours = gs.explainer("integrated-gradients", model, steps=32, method=method)(x, target=TARGETS)
    theirs = captum_attr.IntegratedGradients(copy.deepcopy(model)).attribute(
        x, baselines=0.0, target=TARGETS, n_steps=32, method=method
    )
    _close(ours.input_maps, theirs.detach())


def test_integrated_gradients_trapezoid_differs_from_captum_by_its_weight_bug(inputs):
    """captum's riemann_trapezoid puts n points on linspace(0, 1, n) (spacing 1/(n-1)) but
    gives them weights 1/n with halved ends, which sum to (n-1)/n: its integral is short by
    a factor (n-1)/n (3% at n=32). Ours uses the trapezoid weights 1/(n-1) (halved ends),
    which sum to 1. So ours = captum * n/(n-1) exactly, and ours satisfies completeness."""
    model, size = MODELS["custom"]
    x = inputs[size]
    n = 32
    ours = gs.explainer("integrated-gradients", model, steps=n, method="riemann_trapezoid", return_delta=True)(
        x, target=TARGETS
    )
    theirs = captum_attr.IntegratedGradients(copy.deepcopy(model)).attribute(
        x, baselines=0.0, target=TARGETS, n_steps=n, method="riemann_trapezoid"
    )
    _close(ours.input_maps, theirs.detach() * n / (n - 1))
    gap = (model(x) - model(torch.zeros_like(x))).gather(1, torch.tensor(TARGETS)[:, None])[:, 0].detach()
    ours_err = (ours.input_maps.flatten(1).sum(1) - gap).abs() / gap.abs()
    theirs_err = (theirs.detach().flatten(1).sum(1) - gap).abs() / gap.abs()
    assert bool((ours_err < theirs_err).all())


def test_integrated_gradients_equals_captum_on_resnet(inputs):
    model, size = MODELS["resnet18"]
    x = inputs[size][:2]
    ours = gs.explainer("integrated-gradients", model, steps=16)(x, target=TARGETS[:2])
    theirs = captum_attr.IntegratedGradients(copy.deepcopy(model)).attribute(
        x, baselines=0.0, target=TARGETS[:2], n_steps=16, method="gausslegendre"
    )
    _close(ours.input_maps, theirs.detach())


@pytest.mark.parametrize("model_name", list(MODELS))
def test_guided_backprop_equals_captum(model_name, inputs):
    """captum overrides nn.ReLU modules' backward with hooks; we swap every ReLU call
    (modules and functional) for a guided ReLU. The models here use ReLU modules (resnet18
    calls one module twice per block and uses it in place); the custom model's one functional
    ReLU (after conv3) is also guided by us, so for it we compare with a copy whose
    functional call is an nn.ReLU module (captum can only see modules)."""
    model, size = MODELS[model_name]
    x = inputs[size]
    peer_model = copy.deepcopy(model)
    if model_name == "custom":
        from testmodels import InplaceReuseCNN

        class ModuleOnly(InplaceReuseCNN):
            def __init__(self):
                super().__init__()
                self.relu3 = torch.nn.ReLU()

            def forward(self, x):
                x = self.relu(self.bn1(self.conv1(x)))
                x = self.relu(self.conv2(x))
                x = self.relu3(self.conv3(x))
                return self.fc(self.pool(x).flatten(1))

        peer_model = ModuleOnly()
        peer_model.load_state_dict(model.state_dict())
        peer_model.eval()
    ours = gs.explainer("guided-backprop", model)(x, target=TARGETS)
    theirs = captum_attr.GuidedBackprop(peer_model).attribute(x.clone().requires_grad_(), target=TARGETS)
    _close(ours.input_maps, theirs.detach())


def test_smoothgrad_equals_captum_noise_tunnel_with_the_same_draws(inputs):
    """Same draws: we draw ONE set of n noise samples (n, C, H, W) = randn from a CPU generator
    seeded with `seed`, shared by every image (so an image's map does not depend on its
    position in the batch). captum draws torch.normal(0, stdev) of shape (B*n, C, H, W) from
    the global generator; called on one image at a time right after torch.manual_seed(seed),
    it draws exactly our (n, C, H, W) for each image. Each image here spans exactly [0, 1], so
    our per-image sigma * (max - min) equals captum's single stdev."""
    model, size = MODELS["custom"]
    x = inputs[size].clone()
    x[:, :, 0, 0] = 0.0
    x[:, :, 0, 1] = 1.0
    n, sigma, seed = 8, 0.15, 11
    for variant, nt_type in [("smoothgrad", "smoothgrad"), ("smoothgrad_sq", "smoothgrad_sq"), ("vargrad", "vargrad")]:
        ours = gs.explainer("smoothgrad", model, n_samples=n, sigma=sigma, variant=variant, seed=seed)(x, target=TARGETS)
        theirs = []
        for i, target in enumerate(TARGETS):
            torch.manual_seed(seed)
            theirs.append(captum_attr.NoiseTunnel(captum_attr.Saliency(copy.deepcopy(model))).attribute(
                x[i : i + 1], nt_type=nt_type, nt_samples=n, stdevs=sigma, target=target
            ).detach())
        _close(ours.input_maps, torch.cat(theirs))
