"""Hand-computed cases for the model-truth metrics, on linear models whose outputs are known."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from gradsum.core.targets import ClassTarget
from gradsum.metrics import (
    MetricWarning,
    average_drop,
    confidence_change,
    deletion,
    deletion_insertion,
    faithfulness_correlation,
    gaussian_blur,
    increase_in_confidence,
    insertion,
    noisy_linear_impute,
    road,
)


class Linear2(nn.Module):
    """logit 0 = sum(x * w) (summed over channels), logit 1 = 0; a dropout to test modes."""

    def __init__(self, w: torch.Tensor):
        super().__init__()
        self.w = nn.Parameter(w.clone())
        self.drop = nn.Dropout(0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.drop((x * self.w).sum(dim=(1, 2, 3)))
        return torch.stack([s, torch.zeros_like(s)], dim=1)


W = torch.tensor([[4.0, 3.0], [2.0, 1.0]])


def _model() -> Linear2:
    return Linear2(W[None])


LOGIT0 = ClassTarget(0, score="logit")


def test_deletion_and_insertion_curves_hand_computed():
    x = torch.ones(1, 1, 2, 2)
    res = deletion_insertion(_model(), x, W[None], target=LOGIT0, step=1, insertion_substrate="zeros")
    d, i = res["deletion"], res["insertion"]
    assert d.extras["fractions"].tolist() == [0, 0.25, 0.5, 0.75, 1.0]
    assert d.extras["curves"][0].tolist() == pytest.approx([10, 6, 3, 1, 0])
    assert i.extras["curves"][0].tolist() == pytest.approx([0, 4, 7, 9, 10])
    assert float(d.values[0]) == pytest.approx(3.75)
    assert float(i.values[0]) == pytest.approx(6.25)
    assert d.settings["substrate"] == "zeros" and d.settings["score"] == "logit" and d.settings["step"] == 1
    # the single-mode wrappers give the same numbers
    assert float(deletion(_model(), x, W[None], target=LOGIT0, step=1).values[0]) == pytest.approx(3.75)
    ins = insertion(_model(), x, W[None], target=LOGIT0, step=1, substrate="zeros")
    assert float(ins.values[0]) == pytest.approx(6.25)


def test_default_step_is_width_and_steps_override():
    x = torch.rand(2, 3, 4, 6)
    model = Linear2(torch.rand(1, 4, 6))
    r = deletion(model, x, torch.rand(2, 4, 6))
    assert r.settings["step"] == 6 and r.extras["curves"].shape == (2, 5)  # 24 px / 6 + 1
    r2 = deletion(model, x, torch.rand(2, 4, 6), steps=3)
    assert r2.extras["fractions"].tolist() == pytest.approx([0, 1 / 3, 2 / 3, 1])
    with pytest.raises(ValueError, match="not both"):
        deletion(model, x, torch.rand(2, 4, 6), step=2, steps=3)


def test_default_score_is_probability_of_predicted_class():
    x = torch.ones(1, 1, 2, 2)
    r = deletion(_model(), x, W[None], step=4)
    # clean logits (10, 0): predicted class 0 with p = sigmoid(10); all deleted: logits (0,0) -> 0.5
    assert r.settings["score"] == "probability"
    assert r.extras["curves"][0].tolist() == pytest.approx([1 / (1 + math.exp(-10)), 0.5])


def test_ties_broken_by_seed_reproducibly():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(1, 1, 4, 4, generator=g)
    model = Linear2(torch.rand(1, 4, 4, generator=g))
    flat = torch.ones(1, 4, 4)
    a = deletion(model, x, flat, target=LOGIT0, step=1, seed=3).extras["curves"]
    b = deletion(model, x, flat, target=LOGIT0, step=1, seed=3).extras["curves"]
    c = deletion(model, x, flat, target=LOGIT0, step=1, seed=4).extras["curves"]
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_blur_substrate_kernel_11_sigma_5_keeps_constants():
    x = torch.full((1, 3, 8, 8), 0.7)
    assert torch.allclose(gaussian_blur(x), x)
    spike = torch.zeros(1, 1, 21, 21)
    spike[0, 0, 10, 10] = 1
    k = gaussian_blur(spike)[0, 0]
    assert float(k.sum()) == pytest.approx(1.0, abs=1e-5)
    assert (k[10, 5:16] > 0).all() and k[10, 4] == 0 and k[10, 16] == 0  # 11 wide
    assert float(k[10, 11] / k[10, 10]) == pytest.approx(math.exp(-1 / 50), rel=1e-5)


def test_batch_invariance_and_engine_chunks():
    g = torch.Generator().manual_seed(2)
    x = torch.rand(3, 3, 5, 5, generator=g)
    maps = torch.rand(3, 5, 5, generator=g)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 9, 3))
    seen = []
    full = deletion_insertion(model, x, maps, batch_size=7, progress=lambda done, n: seen.append((done, n)))
    # 3 images x 2 curves x (6 points - 1 clean point) perturbed inputs, in chunks of 7
    assert seen[-1] == (30, 30) and len(seen) == 5
    for i in range(3):
        one = deletion_insertion(model, x[i : i + 1], maps[i : i + 1], batch_size=1)
        for mode in ("deletion", "insertion"):
            assert torch.allclose(one[mode].extras["curves"][0], full[mode].extras["curves"][i], atol=1e-6)


def test_model_state_is_restored_even_in_train_mode():
    model = _model().train()
    model.w.requires_grad_(True)
    x = torch.ones(2, 1, 2, 2)
    r = deletion(model, x, torch.rand(2, 2, 2), target=LOGIT0, step=1)
    assert model.training and model.drop.training and model.w.requires_grad and model.w.grad is None
    # eval mode was used inside (no dropout): the clean point equals the exact logit
    assert r.extras["curves"][:, 0].tolist() == pytest.approx([10.0, 10.0])


def test_average_drop_and_increase_hand_computed():
    x = torch.ones(1, 1, 2, 2)
    drop, inc = confidence_change(_model(), x, W[None], target=LOGIT0)
    # E = minmax(W) = [[1, 2/3], [1/3, 0]] -> O = 4 + 2 + 2/3 = 20/3; drop = 100 (10 - 20/3)/10
    assert float(drop.values[0]) == pytest.approx(100 / 3, rel=1e-5)
    assert float(inc.values[0]) == 0.0
    assert drop.settings["normalize"] == "minmax" and drop.settings["score"] == "logit"
    kept = average_drop(_model(), x, W[None], target=LOGIT0, keep=0.5)  # keep 4 and 3 -> O = 7
    assert float(kept.values[0]) == pytest.approx(30.0)
    assert kept.settings["keep"] == 0.5


def test_increase_in_confidence_counts_strict_increase():
    model = Linear2(torch.tensor([[[1.0, -1.0]]]))
    x = torch.ones(2, 1, 1, 2)
    maps = torch.tensor([[[1.0, 0.0]], [[0.0, 1.0]]])
    # image 0: E keeps the +1 pixel: O = 1 > Y = 0? Y = 0 -> drop undefined (NaN), increase 100
    with pytest.warns(MetricWarning, match="not positive"):
        r = increase_in_confidence(model, x, maps, target=LOGIT0)
    assert r.values.tolist() == [100.0, 0.0]


def test_average_drop_rejects_unnormalised_weights():
    with pytest.raises(ValueError, match=r"\[0,1\]"):
        average_drop(_model(), torch.ones(1, 1, 2, 2), W[None], normalize="none")


def test_imputation_hand_computed_center_and_corner():
    img = torch.tensor([[[1.0, 2.0, 3.0], [4.0, 0.0, 6.0], [7.0, 8.0, 9.0]]])[None]
    removed = torch.zeros(1, 3, 3, dtype=torch.bool)
    removed[0, 1, 1] = True
    out = noisy_linear_impute(img, removed, noise=0.0)
    expected = (2 + 4 + 6 + 8) / 6 + (1 + 3 + 7 + 9) / 12
    assert float(out[0, 0, 1, 1]) == pytest.approx(expected)
    assert torch.equal(out[0, 0][~removed[0]], img[0, 0][~removed[0]])
    corner = torch.zeros(1, 3, 3, dtype=torch.bool)
    corner[0, 0, 0] = True
    out = noisy_linear_impute(img, corner, noise=0.0)
    assert float(out[0, 0, 0, 0]) == pytest.approx((2 / 6 + 4 / 6 + 0 / 12) / (5 / 12), rel=1e-5)


def test_imputation_two_adjacent_unknowns_solve_jointly():
    img = torch.tensor([[[0.0, 0.0, 0.0, 0.0]]])[None].expand(1, 1, 1, 4).clone()
    img[0, 0, 0, 0], img[0, 0, 0, 3] = 1.0, 4.0
    removed = torch.tensor([[[False, True, True, False]]])
    out = noisy_linear_impute(img, removed, noise=0.0, tol=1e-9)
    # 1-D chain: u1 = (1 + u2)/2, u2 = (u1 + 4)/2 -> u1 = 2, u2 = 3
    assert out[0, 0, 0, 1:3].tolist() == pytest.approx([2.0, 3.0], abs=1e-5)


def test_imputation_noise_is_seeded():
    img = torch.rand(2, 3, 6, 6)
    removed = torch.rand(2, 6, 6) > 0.5
    a = noisy_linear_impute(img, removed, noise=0.01, seed=1)
    b = noisy_linear_impute(img, removed, noise=0.01, seed=1)
    c = noisy_linear_impute(img, removed, noise=0.0)
    assert torch.equal(a, b)
    diff = (a - c)[removed[:, None].expand_as(a)]
    assert 0.005 < float(diff.std()) < 0.02 and torch.equal((a - c)[~removed[:, None].expand_as(a)], torch.zeros(0).new_zeros(int((~removed).sum()) * 3))


def test_road_linear_model_on_constant_image_and_chunk_independence():
    # constant image: imputation restores it exactly (noise 0) -> MoRF = LeRF = Y
    model = Linear2(torch.rand(1, 6, 6))
    x = torch.ones(2, 1, 6, 6)
    r = road(model, x, torch.rand(2, 6, 6), target=LOGIT0, noise=0.0, percentages=(20, 50))
    clean = float(model.w.detach().sum())
    assert r.extras["morf"].reshape(-1).tolist() == pytest.approx([clean] * 4, rel=1e-4)
    assert r.extras["lerf"].reshape(-1).tolist() == pytest.approx([clean] * 4, rel=1e-4)
    assert r.values.tolist() == pytest.approx([0.0, 0.0], abs=1e-3)
    g = torch.Generator().manual_seed(5)
    x = torch.rand(3, 3, 8, 8, generator=g)
    maps = torch.rand(3, 8, 8, generator=g)
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 36, 3))
    a = road(net, x, maps, percentages=(10, 50, 90), batch_size=1)
    b = road(net, x, maps, percentages=(10, 50, 90), batch_size=64)
    assert torch.allclose(a.extras["morf"], b.extras["morf"], atol=1e-5)
    assert a.settings["noise"] == 0.01 and a.extras["lerf"].shape == (3, 3)


def test_road_morf_removes_the_most_relevant_pixels():
    # logit0 = 10 * x[0,0] - ..., removing the top pixel (the one the map ranks first) hurts
    w = torch.zeros(1, 4, 4)
    w[0, 0, 0] = 10.0
    model = Linear2(w)
    x = torch.zeros(1, 1, 4, 4)
    x[0, 0, 0, 0] = 1.0
    good = torch.zeros(1, 4, 4)
    good[0, 0, 0] = 1.0
    r = road(model, x, good, target=LOGIT0, noise=0.0, percentages=(10,))
    assert float(r.extras["morf"][0, 0]) == pytest.approx(0.0, abs=1e-4)  # neighbours are 0
    assert float(r.extras["lerf"][0, 0]) == pytest.approx(10.0, abs=1e-4)
    assert float(r.values[0]) == pytest.approx(5.0, abs=1e-4)


def test_faithfulness_correlation_perfect_and_inverted_maps():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(1, 5, 5, generator=g)
    model = Linear2(w)
    x = torch.rand(2, 1, 5, 5, generator=g) + 0.5
    contrib = (x[:, 0] * w)  # exact per-pixel contribution to the logit
    r = faithfulness_correlation(model, x, contrib, target=LOGIT0, n_subsets=30, subset=5)
    assert r.values.tolist() == pytest.approx([1.0, 1.0], abs=1e-5)
    r2 = faithfulness_correlation(model, x, -contrib, target=LOGIT0, n_subsets=30, subset=5)
    assert r2.values.tolist() == pytest.approx([-1.0, -1.0], abs=1e-5)
    again = faithfulness_correlation(model, x, contrib + 0.3 * torch.rand(2, 5, 5), target=LOGIT0, n_subsets=30, subset=5, seed=1, batch_size=7)
    again2 = faithfulness_correlation(model, x, contrib + 0.3 * torch.rand(2, 5, 5), target=LOGIT0, n_subsets=30, subset=5, seed=1, batch_size=64)
    assert again.settings["seed"] == 1 and again.settings["score"] == "logit"
    assert torch.equal(again.extras["drops"], again2.extras["drops"])  # subsets do not depend on chunks


def test_faithfulness_correlation_constant_map_nan():
    with pytest.warns(MetricWarning, match="do not vary"):
        r = faithfulness_correlation(_model(), torch.ones(1, 1, 2, 2), torch.ones(1, 2, 2), n_subsets=5, subset=2)
    assert math.isnan(r.values[0])


def test_shape_mismatch_is_a_readable_error():
    with pytest.raises(ValueError, match="do not match the images"):
        deletion(_model(), torch.ones(1, 1, 2, 2), torch.ones(1, 3, 3))


def test_multigrid_and_jacobi_preconditioners_agree():
    g = torch.Generator().manual_seed(3)
    img = torch.rand(3, 2, 40, 24, generator=g, dtype=torch.float64)
    smooth = torch.nn.functional.interpolate(torch.rand(3, 1, 3, 3, generator=g), size=(40, 24), mode="bilinear")[:, 0]
    removed = smooth > smooth.flatten(1).quantile(0.3, dim=1)[:, None, None]  # 70% in blobs
    a = noisy_linear_impute(img, removed, noise=0.0, tol=1e-10, multigrid=True)
    b = noisy_linear_impute(img, removed, noise=0.0, tol=1e-10, multigrid=False)
    assert torch.allclose(a, b, atol=1e-7)
    loose = noisy_linear_impute(img.float(), removed, noise=0.0)  # default tol 1e-4
    assert float((loose.double() - a).abs().max()) < 1e-3
