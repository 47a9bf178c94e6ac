"""Channels-last input layout: same results as the default layout, and models that `.view`
their activations still work (run as given, remembered)."""
from __future__ import annotations

import pytest
import torch
from torch import nn

import gradsum as gs
from gradsum.core import layout
from testmodels import InplaceReuseCNN


class ViewFlatten(nn.Module):
    """Flattens a spatial activation with .view, which channels-last input cannot pass."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 8 * 8, 3)

    def forward(self, x):
        return self.fc(torch.relu(self.conv(x)).view(x.shape[0], -1))


@pytest.fixture(autouse=True)
def _switch_back_on():
    yield
    layout.set_channels_last(True)


@pytest.mark.parametrize("method", ["gradcam", "gradcam++", "saliency", "guided-backprop", "inputxgradient"])
def test_channels_last_gives_the_default_layouts_maps(method):
    torch.manual_seed(0)
    model = InplaceReuseCNN().eval()
    x = torch.rand(4, 3, 16, 16)
    fast = gs.explainer(method, model, layer="conv3")(x, target=[1, 2, 3, 4])
    layout.set_channels_last(False)
    plain = gs.explainer(method, model, layer="conv3")(x, target=[1, 2, 3, 4])
    torch.testing.assert_close(fast.maps, plain.maps, rtol=1e-5, atol=1e-6 * float(plain.maps.abs().max()))
    assert fast.maps.is_contiguous() and (fast.input_maps is None or fast.input_maps.is_contiguous())


def test_a_model_that_views_its_activations_runs_as_given_and_is_remembered():
    torch.manual_seed(0)
    model = ViewFlatten().eval()
    x = torch.rand(4, 3, 8, 8)
    assert layout.prefers_channels_last(model, x)
    with pytest.raises(RuntimeError, match="view size"):  # what the fallback protects from
        model(x.contiguous(memory_format=torch.channels_last))
    first = gs.explainer("saliency", model)(x, target=[0, 1, 2, 0])
    assert not layout.prefers_channels_last(model, x)  # remembered: no second failed pass
    layout.set_channels_last(False)
    torch.testing.assert_close(first.maps, gs.explainer("saliency", model)(x, target=[0, 1, 2, 0]).maps)


def test_other_errors_are_not_swallowed():
    class Broken(nn.Module):
        def forward(self, x):
            raise RuntimeError("something else went wrong")

    with pytest.raises(RuntimeError, match="something else"):
        gs.explainer("saliency", Broken())(torch.rand(1, 3, 4, 4))


def test_only_float32_cpu_multichannel_batches_switch():
    model = nn.Identity()
    assert layout.prefers_channels_last(model, torch.rand(4, 3, 4, 4))
    assert not layout.prefers_channels_last(model, torch.rand(layout.MIN_BATCH - 1, 3, 4, 4))
    assert not layout.prefers_channels_last(model, torch.rand(4, 3, 4, 4, dtype=torch.float64))
    assert not layout.prefers_channels_last(model, torch.rand(4, 1, 4, 4))
    layout.set_channels_last(False)
    assert not layout.prefers_channels_last(model, torch.rand(4, 3, 4, 4))


def test_derived_batches_choose_their_layout_and_fall_back_too():
    """One image, but SmoothGrad's 8 noisy copies are a batch that goes channels-last: a model
    that .views its activations must fall back there as well."""
    torch.manual_seed(0)
    model = ViewFlatten().eval()
    x = torch.rand(1, 3, 8, 8)
    assert not layout.prefers_channels_last(model, x)
    first = gs.explainer("smoothgrad", model, n_samples=8)(x, target=[1])
    assert model in layout._refuses
    layout.set_channels_last(False)
    torch.testing.assert_close(first.maps, gs.explainer("smoothgrad", model, n_samples=8)(x, target=[1]).maps)
