"""Stochastic methods: an image's map depends on the seed and that image alone — not on its
position in the batch, the batch size or its neighbours (README: "the map of image i does
not depend on the other images"). Also: the constructors of these methods refuse invalid
arguments with an error that names the argument."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

import gradsum as gs
from gradsum.methods.gradient import SmoothGrad, make_baselines
from gradsum.methods.lime_shap import LIME, KernelSHAP

# each method with options small enough for a test; kernelshap's n_samples is below 2^M - 2
# for the superpixel counts here, so it samples coalitions (it enumerates them otherwise)
STOCHASTIC = {
    "smoothgrad": {"n_samples": 4},
    "smoothgrad-ig-uniform": {"n_samples": 2, "base": "integrated-gradients",
                              "base_options": {"steps": 3, "baseline": "uniform"}},
    "integrated-gradients": {"steps": 4, "baseline": "uniform"},
    "lime": {"n_samples": 40, "n_segments": 16},
    "kernelshap": {"n_samples": 40, "n_segments": 16},
    "rise": {"n_masks": 40},
}


def _method(key: str) -> str:
    return "smoothgrad" if key.startswith("smoothgrad") else key


def _smooth_images(n: int, seed: int, size: int = 24) -> torch.Tensor:
    """Images with some structure (upsampled 6x6 noise), so SLIC finds several superpixels."""
    coarse = torch.rand(n, 3, 6, 6, generator=torch.Generator().manual_seed(seed))
    return F.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False).clamp(0, 1)


@pytest.fixture(scope="module")
def model():
    from testmodels import InplaceReuseCNN

    torch.manual_seed(0)
    return InplaceReuseCNN().eval()


@pytest.fixture(scope="module")
def batches():
    """The same image at position 0 of a batch of 3, at position 5 of a batch of 7 with other
    neighbours, and alone."""
    image = _smooth_images(1, seed=1)
    first = torch.cat([image, _smooth_images(2, seed=2)])
    second = torch.cat([_smooth_images(5, seed=3), image, _smooth_images(1, seed=4)])
    return image, first, second


def _assert_same(a: torch.Tensor, b: torch.Tensor) -> None:
    """Identical up to float rounding of different batch compositions (<= 1e-6 of the map's
    largest value; the old batch-wide draws differed by 30-100% of it)."""
    scale = float(a.abs().max())
    assert scale > 0
    assert float((a - b).abs().max()) <= 1e-6 * scale


@pytest.mark.parametrize("key", list(STOCHASTIC))
def test_map_does_not_depend_on_position_or_neighbours(key, model, batches):
    image, first, second = batches
    explainer = gs.explainer(_method(key), model, seed=5, **STOCHASTIC[key])
    at_0 = explainer(first)
    at_5 = explainer(second)
    alone = explainer(image)
    assert int(at_0.targets[0]) == int(at_5.targets[5])  # same image, same explained class
    _assert_same(at_0.maps[0], at_5.maps[5])
    _assert_same(at_0.maps[0], alone.maps[0])


@pytest.mark.parametrize("key", list(STOCHASTIC))
def test_same_seed_same_maps_other_seed_other_maps(key, model, batches):
    _, first, _ = batches
    one = gs.explainer(_method(key), model, seed=5, **STOCHASTIC[key])(first)
    again = gs.explainer(_method(key), model, seed=5, **STOCHASTIC[key])(first)
    other = gs.explainer(_method(key), model, seed=6, **STOCHASTIC[key])(first)
    assert torch.equal(one.maps, again.maps)
    for i in range(first.shape[0]):
        assert not torch.allclose(one.maps[i], other.maps[i], rtol=1e-3, atol=0), f"image {i}"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("key", list(STOCHASTIC))
def test_cpu_and_cuda_draw_the_same_numbers(key, model, batches):
    """Draws come from a CPU generator and are then moved, so a GPU run explains with the same
    noise, baselines, coalitions and masks (maps agree up to GPU arithmetic, TF32 included)."""
    import copy

    _, first, _ = batches
    cpu = gs.explainer(_method(key), model, seed=5, **STOCHASTIC[key])(first)
    gpu_model = copy.deepcopy(model).cuda()
    gpu = gs.explainer(_method(key), gpu_model, seed=5, **STOCHASTIC[key])(first.cuda())
    assert gpu.maps.device.type == "cuda"
    assert float((gpu.maps.cpu() - cpu.maps).abs().max()) <= 1e-3 * float(cpu.maps.abs().max())


def test_smoothgrad_adds_the_same_draws_to_every_image_scaled_by_its_range():
    x = _smooth_images(3, seed=7)
    x[1] *= 0.5
    exp = SmoothGrad(torch.nn.Identity(), n_samples=5, sigma=0.2, seed=3)
    draws = exp.draws(x)
    assert draws.shape == (5, 3, 24, 24) and draws.device == x.device
    assert torch.equal(draws, torch.randn((5, 3, 24, 24), generator=torch.Generator().manual_seed(3)))
    noise = exp.noise(x).reshape(3, 5, 3, 24, 24)
    for i in range(3):
        spread = float(x[i].max() - x[i].min())
        torch.testing.assert_close(noise[i], 0.2 * spread * draws)


def test_uniform_baseline_is_one_draw_over_each_images_range():
    x = _smooth_images(4, seed=8)
    x[2] = x[2] * 0.3 + 0.6
    base = make_baselines(x, "uniform", seed=9)[0]
    u = torch.rand((1, 3, 24, 24), generator=torch.Generator().manual_seed(9))
    lo, hi = x.amin(dim=(1, 2, 3), keepdim=True), x.amax(dim=(1, 2, 3), keepdim=True)
    torch.testing.assert_close(base, lo + (hi - lo) * u)
    torch.testing.assert_close(make_baselines(x[2:3], "uniform", seed=9)[0], base[2:3])
    several = make_baselines(x, ["uniform", "uniform", "zeros"], seed=9)
    assert torch.equal(several[0], base) and not torch.allclose(several[1], base)
    assert torch.equal(several[1], make_baselines(x, "uniform", seed=10)[0]) and not several[2].any()


@pytest.mark.parametrize("cls", [LIME, KernelSHAP])
def test_coalitions_depend_on_the_seed_and_the_images_own_superpixel_count(cls):
    exp = cls(torch.nn.Identity(), n_samples=30, seed=4)
    z, w = exp.sample([9, 6, 12])
    for b, m in enumerate([9, 6, 12]):
        alone_z, alone_w = exp.sample([m])
        assert torch.equal(z[b, :30, :m], alone_z[0]) and torch.equal(w[b, :30], alone_w[0])
        assert not z[b, :, m:].any()  # padding stays off
    other, _ = cls(torch.nn.Identity(), n_samples=30, seed=5).sample([9])
    assert not torch.equal(other[0], z[0, :, :9])


# --- argument validation ---------------------------------------------------------------------

BAD = [
    ("smoothgrad", {"sigma": float("nan")}, ValueError, "sigma .*finite"),
    ("smoothgrad", {"sigma": float("inf")}, ValueError, "sigma .*finite"),
    ("smoothgrad", {"sigma": -0.1}, ValueError, "sigma .*>= 0"),
    ("smoothgrad", {"sigma": "0.1"}, TypeError, "sigma .*number"),
    ("smoothgrad", {"n_samples": 0}, ValueError, "n_samples must be an int >= 1"),
    ("smoothgrad", {"n_samples": 2.5}, TypeError, "n_samples must be an int"),
    ("smoothgrad", {"n_samples": 4.0}, TypeError, r"use n_samples=4"),
    ("smoothgrad", {"n_samples": True}, TypeError, "n_samples must be an int"),
    ("smoothgrad", {"variant": "smoothgrad_squared"}, ValueError, "did you mean 'smoothgrad_sq'"),
    ("smoothgrad", {"base": "salency"}, ValueError, "did you mean saliency"),
    ("smoothgrad", {"base": "gradcam"}, ValueError, "wraps a gradient method"),
    ("smoothgrad", {"base": None}, TypeError, "base must be the name"),
    ("smoothgrad", {"base_options": [("steps", 4)]}, TypeError, "base_options must be a dict"),
    ("smoothgrad", {"seed": 1.5}, TypeError, "seed must be an int"),
    ("smoothgrad", {"seed": 2**64}, ValueError, "seed must be in"),
    ("smoothgrad", {"batch_size": 0}, ValueError, "batch_size must be an int >= 1"),
    ("smoothgrad", {"batch_size": "big"}, ValueError, "batch_size must be 'auto'"),
    ("integrated-gradients", {"steps": 0}, ValueError, "steps must be an int >= 1"),
    ("integrated-gradients", {"steps": 2.5}, TypeError, "steps must be an int"),
    ("integrated-gradients", {"method": "simpson"}, ValueError, "unknown method 'simpson'"),
    ("integrated-gradients", {"method": "riemann_trapezoid", "steps": 1}, ValueError, "needs steps >= 2"),
    ("integrated-gradients", {"baseline": "unifrom"}, ValueError, "did you mean 'uniform'"),
    ("integrated-gradients", {"baseline": float("nan")}, ValueError, "baseline must be a finite number"),
    ("integrated-gradients", {"baseline": []}, ValueError, "baseline list is empty"),
    ("integrated-gradients", {"baseline": torch.tensor([0, 1])}, TypeError, "floating point"),
    ("integrated-gradients", {"baseline": torch.tensor([0.0, float("inf")])}, ValueError, "NaN or infinite"),
    ("integrated-gradients", {"baseline": None}, TypeError, "baseline must be"),
    ("integrated-gradients", {"return_delta": "yes"}, TypeError, "return_delta must be True or False"),
    ("integrated-gradients", {"seed": "0"}, TypeError, "seed must be an int"),
    ("saliency", {"channel_reduce": "average"}, ValueError, "unknown channel_reduce 'average'"),
    ("saliency", {"n_samples": 5}, TypeError, "saliency got unknown option.*'n_samples'.*takes"),
    ("integrated-gradients", {"step": 5}, TypeError, "did you mean 'steps'"),
    ("smoothgrad", {"sigm": 0.1}, TypeError, "did you mean 'sigma'"),
    ("smoothgrad", {"base_options": {"stpes": 4}, "base": "integrated-gradients"}, TypeError,
     "integrated-gradients got unknown option.*did you mean 'steps'"),
    ("lime", {"n_samples": 0}, ValueError, "n_samples must be an int >= 1"),
    ("lime", {"n_samples": 10.5}, TypeError, "n_samples must be an int"),
    ("lime", {"kernel_width": 0}, ValueError, "kernel_width .*> 0"),
    ("lime", {"kernel_width": float("nan")}, ValueError, "kernel_width .*finite"),
    ("lime", {"kernel_width": -1.0}, ValueError, "kernel_width .*> 0"),
    ("lime", {"alpha": -1.0}, ValueError, "alpha .*>= 0"),
    ("lime", {"alpha": float("inf")}, ValueError, "alpha .*finite"),
    ("lime", {"n_segments": 1}, ValueError, "n_segments must be an int >= 2"),
    ("lime", {"compactness": 0}, ValueError, "compactness .*> 0"),
    ("lime", {"score": "logit"}, ValueError, "unknown score 'logit'"),
    ("lime", {"baseline": float("nan")}, ValueError, "baseline .*finite"),
    ("lime", {"segments": np.zeros((4, 4), dtype=np.int64)}, TypeError, "segments must be an integer tensor"),
    ("lime", {"seed": None}, TypeError, "seed must be an int"),
    ("kernelshap", {"n_samples": -3}, ValueError, "n_samples must be an int >= 1"),
    ("kernelshap", {"score": 1}, TypeError, "score must be one of"),
    ("rise", {"n_masks": 0}, ValueError, "n_masks must be an int >= 1"),
    ("rise", {"p1": float("nan")}, ValueError, "p1 .*finite"),
    ("rise", {"p1": 1.0}, ValueError, "p1 .*< 1"),
    ("rise", {"grid": 3.0}, TypeError, "grid must be an int"),
    ("rise", {"baseline": float("inf")}, ValueError, "baseline .*finite"),
    ("rise", {"seed": 0.5}, TypeError, "seed must be an int"),
    ("occlusion", {"window": 2.5}, TypeError, "window must be a positive int"),
    ("occlusion", {"stride": (2, 0)}, ValueError, "stride must be a positive int"),
    ("occlusion", {"baseline": float("nan")}, ValueError, "baseline .*finite"),
    ("extremal", {"area": float("nan")}, ValueError, "area .*finite"),
    ("extremal", {"area": 1.0}, ValueError, "area .*< 1"),
    ("extremal", {"sigma": float("nan")}, ValueError, "sigma .*finite"),
    ("extremal", {"lr": 0}, ValueError, "lr .*> 0"),
    ("extremal", {"momentum": 1.5}, ValueError, "momentum must be >= 0 and < 1"),
    ("extremal", {"penalty": -1}, ValueError, "penalty .*>= 0"),
    ("extremal", {"iterations": 0}, ValueError, "iterations must be an int >= 1"),
    ("extremal", {"levels": 1}, ValueError, "levels must be an int >= 2"),
]


@pytest.mark.parametrize(("method", "kwargs", "error", "match"), BAD,
                         ids=[f"{m}-{next(iter(k))}-{i}" for i, (m, k, _, _) in enumerate(BAD)])
def test_bad_arguments_are_refused_at_construction(method, kwargs, error, match, model):
    with pytest.raises(error, match=match):
        gs.explainer(method, model, **kwargs)


def test_numpy_numbers_are_accepted(model):
    exp = gs.explainer("smoothgrad", model, n_samples=np.int64(3), sigma=np.float32(0.1), seed=np.int64(2))
    assert exp.n_samples == 3 and isinstance(exp.n_samples, int) and exp.seed == 2
    assert gs.explainer("lime", model, n_samples=np.int32(20)).n_samples == 20
    assert gs.explainer("occlusion", model, window=np.int64(4)).window == (4, 4)
    assert gs.explainer("integrated-gradients", model, steps=np.int16(5)).steps == 5


@settings(max_examples=40, deadline=None)
@given(sigma=st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-5, 5)))
def test_smoothgrad_sigma_is_accepted_iff_finite_and_non_negative(sigma):
    model = torch.nn.Conv2d(3, 1, 1)
    valid = math.isfinite(sigma) and sigma >= 0
    if valid:
        assert SmoothGrad(model, sigma=sigma).sigma == float(sigma)
    else:
        with pytest.raises(ValueError, match="sigma"):
            SmoothGrad(model, sigma=sigma)


@settings(max_examples=40, deadline=None)
@given(n=st.one_of(st.integers(-3, 600), st.floats(allow_nan=False, allow_infinity=False, width=32), st.booleans()))
def test_sample_counts_are_accepted_iff_positive_ints(n):
    model = torch.nn.Conv2d(3, 1, 1)
    valid = isinstance(n, int) and not isinstance(n, bool) and n >= 1
    for build in (lambda: SmoothGrad(model, n_samples=n), lambda: LIME(model, n_samples=n),
                  lambda: KernelSHAP(model, n_samples=n)):
        if valid:
            assert build().n_samples == n
        else:
            with pytest.raises((TypeError, ValueError), match="n_samples must be an int"):
                build()


@settings(max_examples=30, deadline=None)
@given(width=st.floats(allow_nan=True, allow_infinity=True))
def test_lime_kernel_width_is_accepted_iff_finite_and_positive(width):
    model = torch.nn.Conv2d(3, 1, 1)
    if math.isfinite(width) and width > 0:
        assert LIME(model, kernel_width=width).kernel_width == width
    else:
        with pytest.raises(ValueError, match="kernel_width"):
            LIME(model, kernel_width=width)
