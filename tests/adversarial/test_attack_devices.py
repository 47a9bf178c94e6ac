"""Attacks run on the device of their images and model: seeded starts (PGD's random start,
fooling images' noise) are drawn from a CPU generator, so a seed gives the same start on
every device; results and figures come back from the device once."""
from __future__ import annotations

import copy

import pytest
import torch
from matplotlib.figure import Figure

import gradsum.adversarial as ga
from gradsum.adversarial.fgsm_pgd import _flat_norm

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def test_pgd_linf_start_is_the_cpu_generator_draw(digits_model) -> None:
    model, x, y, _ = digits_model
    x, y = x[:4], y[:4]
    eps = 0.1
    # alpha 0: every step stays at the random start
    adv = ga.pgd(model, x, y, eps=eps, alpha=0.0, steps=1, random_start=True, seed=7)
    g = torch.Generator().manual_seed(7)
    expected = (x + torch.empty_like(x).uniform_(-eps, eps, generator=g)).clamp(0, 1)
    torch.testing.assert_close(adv, expected, rtol=0, atol=1e-7)
    other = ga.pgd(model, x, y, eps=eps, alpha=0.0, steps=1, random_start=True, seed=8)
    assert not torch.equal(adv, other)


def test_pgd_l2_start_is_the_cpu_generator_draw(digits_model) -> None:
    model, x, y, _ = digits_model
    x, y = x[:3], y[:3]
    adv = ga.pgd(model, x, y, eps=0.5, alpha=0.0, steps=1, norm=2, random_start=True, seed=2)
    g = torch.Generator().manual_seed(2)
    d = torch.empty_like(x).normal_(generator=g)
    r = torch.empty(3, 1, 1, 1).uniform_(0, 1, generator=g)
    start = (x + d * r / _flat_norm(d) * 0.5).clamp(0, 1)
    expected = (x + ga.project(start - x, 0.5, "2")).clamp(0, 1)
    torch.testing.assert_close(adv, expected, rtol=0, atol=1e-6)


def test_fooling_noise_start_is_the_cpu_generator_draw_and_figure_reads_it_once(digits_model) -> None:
    model = digits_model[0]
    res = ga.fooling_image(model, [1, 2], image_size=16, max_steps=1, seed=5)
    expected = torch.rand((2, 3, 16, 16), generator=torch.Generator().manual_seed(5))
    assert torch.equal(res.start, expected)
    assert isinstance(res.figure(), Figure)


@needs_cuda
def test_attacks_on_cuda_draw_the_cpu_starts_and_stay_on_the_gpu(digits_model) -> None:
    model, x, y, _ = digits_model
    x, y = x[:8], y[:8]
    gpu = copy.deepcopy(model).cuda()
    adv_cpu = ga.pgd(model, x, y, eps=0.1, alpha=0.0, steps=1, seed=3)
    adv_gpu = ga.pgd(gpu, x.cuda(), y.cuda(), eps=0.1, alpha=0.0, steps=1, seed=3)
    assert adv_gpu.device.type == "cuda"
    torch.testing.assert_close(adv_gpu.cpu(), adv_cpu, rtol=0, atol=1e-6)
    fool_cpu = ga.fooling_image(model, 3, image_size=16, max_steps=1, seed=1)
    fool_gpu = ga.fooling_image(gpu, 3, image_size=16, max_steps=1, seed=1)
    assert torch.equal(fool_gpu.start.cpu(), fool_cpu.start) and fool_gpu.images.device.type == "cuda"
    assert isinstance(fool_gpu.figure(), Figure)
    adv = ga.fgsm(gpu, x.cuda(), y.cuda(), eps=8 / 255)
    assert adv.device.type == "cuda" and float((adv.cpu() - x).abs().max()) <= 8 / 255 + 1e-6
    df = ga.deepfool(gpu, x[:2].cuda(), max_iter=3)
    assert df.adversarial.device.type == "cuda" and df.iterations.device.type == "cuda"
    uni = ga.universal_perturbation(gpu, x.cuda(), xi=0.1, delta=0.5, max_passes=1, max_iter=3)
    assert uni.v.device.type == "cuda" and 0.0 <= ga.fooling_rate(gpu, x.cuda(), uni.v) <= 1.0
    with pytest.raises(ValueError, match="move one of them"):
        ga.fgsm(gpu, x, y)  # images on the CPU, model on the GPU: one line, not a silent copy
