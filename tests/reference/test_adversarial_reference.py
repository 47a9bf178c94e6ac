"""FGSM and PGD against torchattacks (dev-only oracle) on the same model, input and seed."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from gradsum.adversarial import fgsm, pgd

torchattacks = pytest.importorskip("torchattacks")


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2),
        nn.Flatten(), nn.Linear(32, 5),
    ).eval()
    x = torch.rand(6, 3, 12, 12, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        y = model(x).argmax(1)
    target = (y + 1) % 5
    return model, x, y, target


@pytest.mark.parametrize("eps", [2 / 255, 8 / 255, 0.1])
def test_fgsm_equals_torchattacks(setup, eps):
    model, x, y, _ = setup
    ours = fgsm(model, x, y, eps=eps)
    theirs = torchattacks.FGSM(model, eps=eps)(x, y)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-6)
    assert not torch.equal(ours, x)


def test_fgsm_targeted_equals_torchattacks(setup):
    model, x, _, target = setup
    atk = torchattacks.FGSM(model, eps=8 / 255)
    atk.set_mode_targeted_by_label(quiet=True)
    torch.testing.assert_close(fgsm(model, x, target, eps=8 / 255, targeted=True), atk(x, target), rtol=0, atol=1e-6)


@pytest.mark.parametrize("targeted", [False, True])
def test_pgd_linf_without_random_start_equals_torchattacks(setup, targeted):
    model, x, y, target = setup
    labels = target if targeted else y
    atk = torchattacks.PGD(model, eps=8 / 255, alpha=2 / 255, steps=7, random_start=False)
    if targeted:
        atk.set_mode_targeted_by_label(quiet=True)
    ours = pgd(model, x, labels, eps=8 / 255, alpha=2 / 255, steps=7, targeted=targeted, random_start=False)
    torch.testing.assert_close(ours, atk(x, labels), rtol=0, atol=1e-6)


def test_pgd_linf_random_start_matches_torchattacks_draw(setup):
    """torchattacks draws U(-eps, eps) from the global generator; ours from a generator
    seeded with `seed`: seeding the global one identically gives the same numbers."""
    model, x, y, _ = setup
    ours = pgd(model, x, y, eps=8 / 255, alpha=2 / 255, steps=5, seed=1234)
    torch.manual_seed(1234)
    theirs = torchattacks.PGD(model, eps=8 / 255, alpha=2 / 255, steps=5, random_start=True)(x, y)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-6)


@pytest.mark.parametrize("random_start", [False, True])
def test_pgd_l2_equals_torchattacks(setup, random_start):
    model, x, y, _ = setup
    ours = pgd(model, x, y, eps=0.5, alpha=0.1, steps=6, norm=2, random_start=random_start, seed=7)
    torch.manual_seed(7)
    theirs = torchattacks.PGDL2(model, eps=0.5, alpha=0.1, steps=6, random_start=random_start)(x, y)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-5)
