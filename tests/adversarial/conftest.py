"""A small CNN trained in a few seconds on sklearn's bundled 8x8 digits upsampled to 16x16 RGB."""
from __future__ import annotations

from collections import OrderedDict

import pytest
import torch
from torch import nn


def digits_tensors(size: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32).unsqueeze(1) / 16.0
    x = nn.functional.interpolate(x, size=(size, size), mode="bilinear", align_corners=False).clamp(0, 1)
    return x.expand(-1, 3, -1, -1).contiguous(), torch.tensor(d.target, dtype=torch.int64)


def small_cnn() -> nn.Module:
    return nn.Sequential(OrderedDict(
        conv1=nn.Conv2d(3, 16, 3, padding=1), act1=nn.ReLU(), pool1=nn.MaxPool2d(2),
        conv2=nn.Conv2d(16, 32, 3, padding=1), act2=nn.ReLU(), pool2=nn.MaxPool2d(2),
        flatten=nn.Flatten(), fc=nn.Linear(32 * 4 * 4, 10),
    ))


def train_digits(seed: int = 0, epochs: int = 3) -> tuple[nn.Module, torch.Tensor, torch.Tensor, float]:
    torch.manual_seed(seed)
    x, y = digits_tensors()
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(len(x), generator=g)
    train, test = perm[:1400], perm[1400:]
    model = small_cnn()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(epochs):
        for idx in train[torch.randperm(len(train), generator=g)].split(64):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        acc = (model(x[test]).argmax(1) == y[test]).float().mean().item()
    model.zero_grad(set_to_none=True)
    return model, x[test], y[test], acc


@pytest.fixture(scope="session")
def digits_model() -> tuple[nn.Module, torch.Tensor, torch.Tensor, float]:
    """(model in eval mode, test images (N,3,16,16), labels, test accuracy > 0.9)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        result = train_digits()
    finally:
        torch.set_num_threads(before)
    assert result[3] > 0.9, f"the digits fixture model reached only {result[3]:.3f} test accuracy"
    return result


@pytest.fixture(autouse=True)
def _one_thread():
    """These tiny models run faster on one thread than on two contended ones."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def second_digits_model() -> nn.Module:
    """Another digits CNN (different seed) for transfer tests."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model, _, _, acc = train_digits(seed=1)
    finally:
        torch.set_num_threads(before)
    assert acc > 0.9, f"the second digits model reached only {acc:.3f} test accuracy"
    return model
