"""Property tests: projections and PGD results stay in the eps-ball and in [0,1]."""
from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import gradsum.adversarial as ga


@settings(max_examples=40, deadline=None)
@given(eps=st.floats(0.0, 1.0), scale=st.floats(1e-3, 10.0), norm=st.sampled_from(["inf", "2"]), seed=st.integers(0, 10**6))
def test_project_lands_in_ball(eps, scale, norm, seed):
    d = torch.randn(3, 2, 4, 4, generator=torch.Generator().manual_seed(seed)) * scale
    p = ga.project(d, eps, norm)
    size = p.flatten(1).abs().max(1).values if norm == "inf" else p.flatten(1).norm(dim=1)
    assert bool((size <= eps * (1 + 1e-5) + 1e-7).all())
    inside = (d.flatten(1).abs().max(1).values if norm == "inf" else d.flatten(1).norm(dim=1)) <= eps
    assert torch.equal(p[inside], d[inside])  # points already inside are untouched


_MODEL = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 3)).eval()


@settings(max_examples=25, deadline=None)
@given(eps=st.floats(0.0, 1.0), alpha=st.floats(0.0, 1.0), b=st.integers(1, 4), norm=st.sampled_from(["inf", 2]),
       targeted=st.booleans(), seed=st.integers(0, 1000))
def test_pgd_invariants(eps, alpha, b, norm, targeted, seed):
    x = torch.rand(b, 3, 8, 8, generator=torch.Generator().manual_seed(seed))
    adv = ga.pgd(_MODEL, x, torch.zeros(b, dtype=torch.long), eps=eps, alpha=alpha, steps=2, norm=norm,
                 targeted=targeted, seed=seed)
    assert adv.shape == x.shape and adv.dtype == x.dtype
    assert float(adv.min()) >= 0 and float(adv.max()) <= 1
    d = (adv - x).flatten(1)
    size = d.abs().max(1).values if norm == "inf" else d.norm(dim=1)
    assert bool((size <= eps + 1e-5).all())
