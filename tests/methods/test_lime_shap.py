"""LIME and KernelSHAP on models whose superpixel effects are known."""
from __future__ import annotations

import itertools
import math

import pytest
import torch
from torch import nn

import gradsum as gs
from gradsum.methods.lime_shap import superpixels


def _grid_segments(rows: int, cols: int, cell: int) -> torch.Tensor:
    return torch.arange(rows * cols).reshape(rows, cols).repeat_interleave(cell, 0).repeat_interleave(cell, 1)


class LinearPixels(nn.Module):
    """y = b + sum_u w_u x_u (a one-output regressor, linear in every superpixel)."""

    def __init__(self, weight: torch.Tensor, bias: float = 0.3):
        super().__init__()
        self.weight = nn.Parameter(weight)
        self.bias = bias

    def forward(self, x):
        return (x * self.weight).flatten(1).sum(dim=1, keepdim=True) + self.bias


def _linear_case(seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    segments = _grid_segments(4, 4, 4)  # 16 superpixels of 4 x 4 on a 16 x 16 image
    weight = torch.randn(3, 16, 16, generator=gen) * 0.1
    x = torch.rand(1, 3, 16, 16, generator=gen)
    contribution = (x[0] * weight).sum(dim=0)  # baseline 0: phi_i = sum over superpixel i of w x
    exact = torch.zeros(16).index_add_(0, segments.flatten(), contribution.flatten())
    return LinearPixels(weight).eval(), x, segments, exact


def test_kernelshap_recovers_exact_shapley_values_of_a_linear_model():
    model, x, segments, exact = _linear_case()
    attr = gs.explainer("kernelshap", model, segments=segments, n_samples=200, seed=1)(x)
    phi = attr.settings["superpixel_weights"][0]
    assert torch.allclose(phi.float(), exact, atol=1e-3)
    assert torch.allclose(attr.maps[0], exact[segments], atol=1e-3)
    # efficiency: the values sum to f(x) - f(baseline)
    with torch.no_grad():
        gap = model(x)[0, 0] - model(torch.zeros_like(x))[0, 0]
    assert abs(float(phi.sum()) - float(gap)) < 1e-4


def _brute_shapley(value, m: int) -> torch.Tensor:
    phi = torch.zeros(m, dtype=torch.float64)
    for i in range(m):
        others = [j for j in range(m) if j != i]
        for size in range(m):
            for subset in itertools.combinations(others, size):
                weight = math.factorial(size) * math.factorial(m - size - 1) / math.factorial(m)
                phi[i] += weight * (value(set(subset) | {i}) - value(set(subset)))
    return phi


def test_kernelshap_enumerates_small_games_exactly_for_nonlinear_models():
    segments = _grid_segments(2, 2, 4)  # 4 superpixels: all 14 coalitions are enumerated

    class Product(nn.Module):
        def forward(self, x):
            q = [x[:, :, 0:4, 0:4].mean((1, 2, 3)), x[:, :, 0:4, 4:8].mean((1, 2, 3)),
                 x[:, :, 4:8, 0:4].mean((1, 2, 3)), x[:, :, 4:8, 4:8].mean((1, 2, 3))]
            return (q[0] * q[1] + q[2] ** 2 - q[3])[:, None]

    x = torch.full((1, 3, 8, 8), 0.8, dtype=torch.float64)
    attr = gs.explainer("kernelshap", Product(), segments=segments, n_samples=20)(x)

    def value(coalition):
        q = [0.8 if i in coalition else 0.0 for i in range(4)]
        return q[0] * q[1] + q[2] ** 2 - q[3]

    assert torch.allclose(attr.settings["superpixel_weights"][0], _brute_shapley(value, 4), atol=1e-6)


def test_lime_recovers_sign_and_rank_of_linear_effects():
    model, x, segments, exact = _linear_case(seed=3)
    attr = gs.explainer("lime", model, segments=segments, n_samples=500, seed=0)(x)
    coef = attr.settings["superpixel_weights"][0].float()
    assert torch.equal(torch.sign(coef), torch.sign(exact))
    assert torch.equal(coef.argsort(), exact.argsort())
    assert attr.settings["kernel_width"] == 0.25


def test_superpixels_from_slic_and_user_masks():
    x = torch.zeros(2, 3, 32, 32)
    x[:, 0, :, 16:] = 1.0
    x[:, 1, 16:, :] = 1.0
    seg, counts = superpixels(x, n_segments=20)
    assert seg.shape == (2, 32, 32) and counts[0] >= 4
    assert all(int(s.max()) + 1 == c for s, c in zip(seg, counts, strict=True))
    user = torch.tensor([[5, 5], [9, 9]]).repeat_interleave(16, 0).repeat_interleave(16, 1)
    seg, counts = superpixels(x, user)
    assert counts == [2, 2] and seg[0, 0, 0] == 0 and seg[0, -1, 0] == 1


def test_bad_inputs():
    model, x, segments, _ = _linear_case()
    with pytest.raises(ValueError, match=r"n_samples >= 16"):
        gs.explainer("kernelshap", model, segments=segments, n_samples=10)(x)
    with pytest.raises(ValueError, match="expected"):
        gs.explainer("lime", model, segments=torch.zeros(8, 8, dtype=torch.long))(x)
    with pytest.raises(TypeError, match="integer"):
        gs.explainer("lime", model, segments=torch.zeros(16, 16))(x)
    with pytest.raises(ValueError, match="at least 2 superpixels"):
        gs.explainer("lime", model, segments=torch.zeros(16, 16, dtype=torch.long))(x)


def test_same_seed_same_result():
    model, x, segments, _ = _linear_case()
    a = gs.explainer("lime", model, segments=segments, n_samples=50, seed=4)(x)
    b = gs.explainer("lime", model, segments=segments, n_samples=50, seed=4)(x)
    c = gs.explainer("lime", model, segments=segments, n_samples=50, seed=5)(x)
    assert torch.equal(a.maps, b.maps) and not torch.equal(a.maps, c.maps)
