"""The random-map control: uniform, seeded, per image whatever the batch."""
from __future__ import annotations

import pytest
import torch
from torch import nn

import gradsum as gs


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(4, 3)).eval()


def test_random_map_is_uniform_seeded_and_independent_of_the_batch():
    model, x = _model(), torch.rand(3, 3, 40, 50)
    exp = gs.explainer("random", model, seed=3)
    both = exp(x)
    assert both.maps.shape == (3, 40, 50)
    assert torch.equal(both.maps[2], exp(x[2:]).maps[0])
    assert torch.equal(both.maps, exp(x).maps)
    assert not torch.equal(both.maps, gs.explainer("random", model, seed=4)(x).maps)
    assert not torch.equal(both.maps[0], both.maps[1])
    values = both.maps.flatten()
    assert float(values.min()) >= 0 and float(values.max()) <= 1
    assert abs(float(values.mean()) - 0.5) < 0.02  # U(0,1)
    assert torch.equal(both.targets, model(x).argmax(1))
    assert gs.method_info("random").family == "control"


def test_random_map_on_a_coarse_grid():
    attr = gs.explainer("random", _model(), grid=(2, 5))(torch.rand(1, 3, 20, 50))
    assert attr.maps.shape == (1, 20, 50)
    assert attr.settings["grid"] == (2, 5)


@pytest.mark.parametrize("grid", [0, (1, 2, 3), 2.5])
def test_random_map_refuses_a_bad_grid(grid):
    with pytest.raises((TypeError, ValueError), match="grid"):
        gs.explainer("random", _model(), grid=grid)
