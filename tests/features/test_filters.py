"""Filter grids and feature maps."""
from __future__ import annotations

import pytest
import torch
from matplotlib.figure import Figure
from torch import nn

import gradsum.features as gf


def test_first_layer_rgb_tiles_each_minmax_scaled(digits_model):
    model = digits_model[0]
    grid = gf.filter_grid(model)
    assert grid.layer == "conv1" and grid.rgb
    assert grid.tiles.shape == (16, 3, 3, 3)
    flat = grid.tiles.flatten(1)
    torch.testing.assert_close(flat.min(1).values, torch.zeros(16))
    torch.testing.assert_close(flat.max(1).values, torch.ones(16))
    w = model.conv1.weight.detach()[4]
    torch.testing.assert_close(grid.tiles[4], (w - w.min()) / (w.max() - w.min()))
    assert "16x3x3x3" in grid.title
    assert isinstance(grid.figure(), Figure)


def test_deeper_layer_grayscale_tiles_capped_with_shape_in_title(digits_model):
    model = digits_model[0]
    grid = gf.filter_grid(model, "conv2", max_tiles=20)
    assert not grid.rgb and grid.tiles.shape == (20, 1, 3, 3)
    assert grid.total_tiles == 32 * 16
    assert "32x16x3x3" in grid.title and "20 of 512" in grid.title
    assert grid.labels[17] == "1.1"  # filter 1, input channel 1
    w = model.conv2.weight.detach()[1, 1]
    torch.testing.assert_close(grid.tiles[17, 0], (w - w.min()) / (w.max() - w.min()))


def test_filter_grid_errors(digits_model):
    model = digits_model[0]
    with pytest.raises(ValueError, match="4-D weight"):
        gf.filter_grid(model, "fc")
    with pytest.raises(ValueError, match="no nn.Conv2d"):
        gf.filter_grid(nn.Sequential(nn.Flatten(), nn.Linear(4, 2)))
    with pytest.raises(ValueError, match="closest names"):
        gf.filter_grid(model, "conv9")


def test_feature_maps_and_sum(digits_model):
    model, x, _, _ = digits_model
    fm = gf.feature_maps(model, x[0], "act1")
    assert fm.maps.shape == (16, 16, 16)
    torch.testing.assert_close(fm.total, fm.maps.sum(0))
    with torch.no_grad():
        expected = model.act1(model.conv1(x[:1]))[0]
    torch.testing.assert_close(fm.maps, expected)
    fig = fm.figure()
    assert isinstance(fig, Figure) and len([a for a in fig.axes if a.images]) == 17
    with pytest.raises(ValueError, match="one image"):
        gf.feature_maps(model, x[:2], "act1")
    with pytest.raises(ValueError, match="spatial map"):
        gf.feature_maps(model, x[0], "fc")
