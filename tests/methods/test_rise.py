"""RISE: masks (seeded, cached, on device), and it points at what the model looks at."""
from __future__ import annotations

import pytest
import torch
from torch import nn

import gradsum as gs
from gradsum.methods.rise import rise_masks

BOX = (slice(12, 28), slice(16, 36))  # rows, cols of a 16 x 20 box in a 48 x 48 image


class BoxBrightness(nn.Module):
    """Two classes: logit 1 = mean brightness inside BOX (non-saturating), logit 0 = 0."""

    def forward(self, x):
        inside = x[:, :, BOX[0], BOX[1]].mean(dim=(1, 2, 3))
        return torch.stack([torch.zeros_like(inside), 4 * inside], dim=1)


def test_rise_defaults_point_into_the_box():
    model = BoxBrightness().eval()
    x = torch.rand(1, 3, 48, 48, generator=torch.Generator().manual_seed(0)) * 0.5 + 0.25
    attr = gs.explainer("rise", model)(x, target=1)
    assert attr.settings["n_masks"] == 4000 and attr.settings["grid"] == 7 and attr.settings["p1"] == 0.5
    assert attr.settings["score"] == "probability (softmax)"
    sal = attr.maps[0]
    inside = torch.zeros(48, 48, dtype=torch.bool)
    inside[BOX] = True
    peak = int(sal.flatten().argmax())
    assert inside.flatten()[peak]
    n = int(inside.sum())
    top = sal.flatten().topk(n).indices
    assert inside.flatten()[top].float().mean() >= 0.7


def test_masks_are_seeded_cached_and_shaped():
    a = rise_masks(30, 7, 0.5, (20, 24), seed=3)
    assert rise_masks(30, 7, 0.5, (20, 24), seed=3) is a
    b = rise_masks(30, 7, 0.5, (20, 24), seed=4)
    dense = a.take(torch.arange(30))
    assert dense.shape == (30, 20, 24)
    assert not torch.equal(dense, b.take(torch.arange(30)))
    assert dense.min() >= 0 and dense.max() <= 1
    # the on-the-fly path (used when masks do not fit the dense cache) gives the same masks
    assert torch.allclose(a._materialise(torch.tensor([4, 7])), dense[[4, 7]])
    big = rise_masks(2000, 5, 0.3, (8, 8), seed=0).take(torch.arange(2000))
    assert abs(float(big.mean()) - 0.3) < 0.03


def test_same_seed_same_map_and_seed_recorded():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                          nn.Linear(4, 3)).eval()
    x = torch.rand(2, 3, 16, 16)
    one = gs.explainer("rise", model, n_masks=100, seed=7)(x)
    two = gs.explainer("rise", model, n_masks=100, seed=7, batch_size=13)(x)
    other = gs.explainer("rise", model, n_masks=100, seed=8)(x)
    assert torch.allclose(one.maps, two.maps, atol=1e-6)
    assert not torch.allclose(one.maps, other.maps)
    assert one.settings["seed"] == 7


class Shifted(nn.Module):
    """model(z + shift): RISE on (x - b) with zeros masked out = RISE on x with baseline b."""

    def __init__(self, model, shift):
        super().__init__()
        self.model, self.shift = model, shift

    def forward(self, z):
        return self.model(z + self.shift)


def test_baseline_is_the_masked_out_value():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                          nn.Linear(4, 3)).eval()
    x = torch.rand(2, 3, 16, 16)
    grey = gs.explainer("rise", model, n_masks=60, baseline=0.5)(x, target=1)
    ref = gs.explainer("rise", Shifted(model, 0.5), n_masks=60)(x - 0.5, target=1)
    assert torch.allclose(grey.maps, ref.maps, atol=1e-5) and grey.settings["baseline"] == 0.5
    mean = x.mean(dim=(2, 3), keepdim=True)
    per_image = gs.explainer("rise", model, n_masks=60, baseline="mean")(x, target=1)
    for i in range(2):
        ref = gs.explainer("rise", Shifted(model, mean[i : i + 1]), n_masks=60)(x[i : i + 1] - mean[i : i + 1], target=1)
        assert torch.allclose(per_image.maps[i], ref.maps[0], atol=1e-5)
    zero = gs.explainer("rise", model, n_masks=60)(x, target=1)
    assert not torch.allclose(zero.maps, grey.maps) and zero.settings["baseline"] == 0.0
    with pytest.raises(ValueError, match="baseline"):
        gs.explainer("rise", model, baseline="median")
