"""The features library across devices: top_patches(device=) streams a dataset to the
model's device (or the one given) and hands its result back on the data's device;
activation maximisation and the empirical receptive field draw from CPU generators, so a
seed gives the same start on every device."""
from __future__ import annotations

import copy

import pytest
import torch

import gradsum.features as gf
from gradsum.data.samples import Sample
from gradsum.features.params import FFTParam, PixelParam

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def _samples(x: torch.Tensor) -> list[Sample]:
    return [Sample(image=img, id=f"s{i}") for i, img in enumerate(x)]


def test_top_patches_device_none_is_the_models_and_equals_cpu(digits_model) -> None:
    model, x, _, _ = digits_model
    data = _samples(x[:12])
    a = gf.top_patches(model, "act1", data, k=3, batch_size=5)
    b = gf.top_patches(model, "act1", data, k=3, batch_size=5, device="cpu")
    c = gf.top_patches(model, "act1", x[:12], k=3, batch_size=5)
    for r in (a, b, c):
        assert all(t.device.type == "cpu" for t in (r.values, r.index, r.y, r.x, r.boxes, r.crops))
    for name in ("values", "index", "y", "x", "boxes", "crops"):
        assert torch.equal(getattr(a, name), getattr(b, name)) and torch.equal(getattr(a, name), getattr(c, name))


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is present")
def test_top_patches_absent_device_is_one_line(digits_model) -> None:
    with pytest.raises(ValueError, match="no CUDA device is available here") as info:
        gf.top_patches(digits_model[0], "act1", digits_model[1][:2], device="cuda")
    assert "\n" not in str(info.value)


def test_params_draw_on_the_generators_device() -> None:
    shape = (2, 3, 8, 10)
    p = PixelParam(shape, generator=torch.Generator().manual_seed(1), device=torch.device("cpu"))
    u = torch.rand(shape, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(p.image(), 0.5 + (u - 0.5) * 0.125, rtol=0, atol=0)
    f = FFTParam(shape, generator=torch.Generator().manual_seed(1), device=torch.device("cpu"))
    spec = torch.randn((2, 3, 8, 6, 2), generator=torch.Generator().manual_seed(1)) * 0.01
    assert torch.equal(f.spectrum.detach(), spec)


@needs_cuda
def test_features_on_cuda_match_the_cpu(digits_model) -> None:
    model, x, _, _ = digits_model
    gpu = copy.deepcopy(model).cuda()
    with torch.backends.cudnn.flags(enabled=True, allow_tf32=False):
        cpu_res = gf.top_patches(model, "act2", _samples(x[:16]), k=2, batch_size=8)
        gpu_res = gf.top_patches(gpu, "act2", _samples(x[:16]), k=2, batch_size=8)  # device None: the model's
        assert gpu_res.values.device.type == "cpu"  # back on the data's device
        torch.testing.assert_close(gpu_res.values, cpu_res.values, rtol=1e-4, atol=1e-5)
        on_gpu = gf.top_patches(gpu, "act2", x[:16].cuda(), k=2, batch_size=8)
        assert on_gpu.values.device.type == "cuda"
        # lr 1e-9: one Adam step barely moves the start, so the images are the (CPU-drawn) starts
        kw = {"image_size": 16, "param": "pixel", "optimizer": "adam", "lr": 1e-9, "steps": 1, "preset": None}
        a = gf.maximize(model, gf.channel("act2", [0, 1]), seed=5, **kw)
        b = gf.maximize(gpu, gf.channel("act2", [0, 1]), seed=5, **kw)
    assert b.images.device.type == "cuda" and b.history.device.type == "cuda"
    torch.testing.assert_close(b.images.cpu(), a.images, rtol=0, atol=1e-6)
    rf_cpu = gf.receptive_field(model, "act2", 16, method="empirical")
    rf_gpu = gf.receptive_field(gpu, "act2", 16, method="empirical")
    assert rf_cpu == rf_gpu
    fm = gf.feature_maps(gpu, x[0].cuda(), "act1")
    assert fm.maps.device.type == "cuda" and fm.figure() is not None
