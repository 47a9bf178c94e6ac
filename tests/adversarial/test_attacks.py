"""FGSM, PGD, DeepFool and fooling images on a trained digits CNN."""
from __future__ import annotations

import pytest
import torch
from torch import nn

import gradsum.adversarial as ga
from gradsum.models.normalize import Normalize


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())


@pytest.mark.parametrize("norm,eps,alpha", [("inf", 8 / 255, 2 / 255), ("inf", 0.3, 0.05), (2, 1.0, 0.25), (2, 0.1, 0.5)])
@pytest.mark.parametrize("targeted", [False, True])
@pytest.mark.parametrize("random_start", [False, True])
def test_pgd_stays_in_ball_and_unit_range(digits_model, norm, eps, alpha, targeted, random_start):
    model, x, y, _ = digits_model
    x, y = x[:24], y[:24]
    labels = (y + 1) % 10 if targeted else y
    adv = ga.pgd(model, x, labels, eps=eps, alpha=alpha, steps=4, norm=norm, targeted=targeted,
                 random_start=random_start, seed=3)
    assert float(adv.min()) >= 0 and float(adv.max()) <= 1
    d = (adv - x).flatten(1)
    size = d.abs().max(1).values if norm == "inf" else d.norm(dim=1)
    assert bool((size <= eps + 1e-5).all()), size.max()


def test_pgd_breaks_the_model_and_targeted_hits_target(digits_model):
    model, x, y, _ = digits_model
    x, y = x[:64], y[:64]
    clean = accuracy(model, x, y)
    adv = ga.pgd(model, x, y, eps=0.2, alpha=0.05, steps=10)
    assert accuracy(model, adv, y) < clean - 0.5
    target = (y + 3) % 10
    adv_t = ga.pgd(model, x, target, eps=0.3, alpha=0.05, steps=20, targeted=True)
    assert accuracy(model, adv_t, target) > 0.8
    fg = ga.fgsm(model, x, y, eps=0.2)
    assert accuracy(model, fg, y) < clean


def test_random_start_is_seeded(digits_model):
    model, x, y, _ = digits_model
    a = ga.pgd(model, x[:8], y[:8], eps=0.1, steps=1, alpha=0.0, seed=5)
    b = ga.pgd(model, x[:8], y[:8], eps=0.1, steps=1, alpha=0.0, seed=5)
    c = ga.pgd(model, x[:8], y[:8], eps=0.1, steps=1, alpha=0.0, seed=6)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert float((a - x[:8]).abs().max()) > 0.05  # the start itself is spread over the ball


def test_bad_inputs(digits_model):
    model, x, y, _ = digits_model
    with pytest.raises(ValueError, match=r"eps must be in \[0,1\] pixel units"):
        ga.fgsm(model, x[:2], eps=8)
    with pytest.raises(ValueError, match=r"eps must be in \[0,1\]"):
        ga.pgd(model, x[:2], eps=-0.1)
    with pytest.raises(ValueError, match=r"pixels in \[0,1\]"):
        ga.pgd(model, (x[:2] - 0.5) / 0.2, eps=0.1)
    with pytest.raises(ValueError, match="norm must be"):
        ga.pgd(model, x[:2], norm=1)
    with pytest.raises(ValueError, match="labels must be"):
        ga.fgsm(model, x[:2], y[:3])


def test_pixel_space_wrapper_puts_normalisation_inside(digits_model):
    model, x, y, _ = digits_model
    norm = Normalize(0.5, 0.25)
    inner = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.LazyLinear(10))
    torch.manual_seed(0)
    inner(torch.zeros(1, 3, 16, 16))
    wrapped = ga.pixel_space(inner, 0.5, 0.25)
    ref = nn.Sequential(norm, inner)
    a = ga.fgsm(wrapped, x[:4], y[:4], eps=4 / 255)
    b = ga.fgsm(ref, x[:4], y[:4], eps=4 / 255)
    torch.testing.assert_close(a, b)
    assert float((a - x[:4]).abs().max()) <= 4 / 255 + 1e-6
    assert ga.pixel_space(model) is model
    with pytest.raises(ValueError, match="both mean and std"):
        ga.pixel_space(model, mean=0.5)


def test_attacks_restore_model_state(digits_model):
    model, x, y, _ = digits_model
    model.train()
    try:
        ga.pgd(model, x[:4], y[:4], steps=2)
        ga.deepfool(model, x[:2], max_iter=3)
        ga.fooling_image(model, 3, start=x[:1], max_steps=2)
        assert all(m.training for m in model.modules())
        assert all(p.requires_grad and p.grad is None for p in model.parameters())
        with pytest.raises(ValueError):
            ga.fgsm(model, x[:2], eps=3.0)
        assert all(m.training for m in model.modules())
    finally:
        model.eval()


def test_deepfool_fools_with_small_norm_and_batches_consistently(digits_model):
    model, x, _, _ = digits_model
    res = ga.deepfool(model, x[:12])
    assert float(res.fooled.float().mean()) >= 0.9
    with torch.no_grad():
        assert torch.equal(model(res.adversarial).argmax(1)[res.fooled], res.adversarial_labels[res.fooled])
    assert bool((res.adversarial_labels[res.fooled] != res.labels[res.fooled]).all())
    assert float(res.norms.median()) < 3.0
    assert int(res.iterations.max()) <= 50
    one = ga.deepfool(model, x[3:4])
    torch.testing.assert_close(one.perturbation[0], res.perturbation[3], atol=1e-5, rtol=1e-4)
    assert int(one.iterations[0]) == int(res.iterations[3])


def test_deepfool_overshoot_scales_the_perturbation(digits_model):
    model, x, _, _ = digits_model
    small = ga.deepfool(model, x[:4], overshoot=0.0, clip=False)
    assert bool(small.fooled.all())
    with pytest.raises(ValueError, match="overshoot"):
        ga.deepfool(model, x[:1], overshoot=-1)


def test_fooling_image_from_noise_and_from_image(digits_model):
    model, x, y, _ = digits_model
    res = ga.fooling_image(model, torch.tensor([4, 8]), image_size=16, alpha=2 / 255, max_steps=300, seed=0)
    assert bool(res.reached.all()) and bool((res.probability > 0.99).all())
    assert int(res.steps.min()) >= 1
    with torch.no_grad():
        p = model(res.images).softmax(1)[torch.arange(2), res.target]
    torch.testing.assert_close(p, res.probability)
    start = x[:1]
    target = int((y[0] + 1) % 10)
    img = ga.fooling_image(model, target, start=start, level=0.9, max_steps=300)
    assert bool(img.reached[0]) and float(img.probability[0]) >= 0.9
    assert float((img.images - start).abs().max()) > 0
    bounded = ga.fooling_image(model, target, start=start, level=0.999999, max_steps=20, eps=4 / 255)
    assert float((bounded.images - start).abs().max()) <= 4 / 255 + 1e-6
    capped = ga.fooling_image(model, target, start=start, level=0.999999, max_steps=3)
    assert int(capped.steps[0]) == 3 and not bool(capped.reached[0])
    from matplotlib.figure import Figure
    assert isinstance(img.figure(), Figure)
    with pytest.raises(ValueError, match=r"class 10 does not exist.*0\.\.9"):
        ga.fooling_image(model, 10, image_size=16)
    with pytest.raises(ValueError, match="level"):
        ga.fooling_image(model, 1, image_size=16, level=1.5)


def test_batched_candidate_gradients_equal_per_class_gradients(digits_model):
    from gradsum.adversarial.deepfool import _candidate_gradients

    model = digits_model[0]
    x = digits_model[1][:3].clone().requires_grad_(True)
    f = model(x)[:, [4, 1, 7]]
    g = _candidate_gradients(f, x)
    for j in range(3):
        (ref,) = torch.autograd.grad(f[:, j].sum(), x, retain_graph=True)
        torch.testing.assert_close(g[:, j], ref)
